"""Pieces of the synthesiser: speakers, channel effects, SNR, split planning."""
from pathlib import Path

import numpy as np
import pytest

from esgd_asr.data.synth.audio import Perturbation, scale_to_snr
from esgd_asr.data.synth.corpus import SynthConfig, plan_corpus
from esgd_asr.data.synth.speakers import make_speakers
from esgd_asr.data.synth.text import fortune_sentences
from esgd_asr.errors import EsgdError


def test_default_speakers_are_distinct_and_gender_balanced():
    speakers = make_speakers(40, seed=1)
    assert len({(s.accent, s.variant) for s in speakers}) == 40
    assert len({(s.voice, s.pitch, s.rate) for s in speakers}) == 40
    assert sum(s.gender == "f" for s in speakers) == 20
    assert all(s.variant.startswith(s.gender) for s in speakers)
    assert make_speakers(40, seed=1) == speakers


def test_noise_is_scaled_to_the_requested_snr():
    rng = np.random.default_rng(0)
    signal, noise = rng.normal(0, 0.3, 16000), rng.normal(0, 2.0, 16000)
    for snr in (10.0, 17.5, 30.0):
        scaled = scale_to_snr(signal, noise, snr)
        assert 10 * np.log10(np.mean(signal**2) / np.mean(scaled**2)) == pytest.approx(snr, abs=1e-9)


def test_sox_effect_chain():
    effects = Perturbation(speed=1.05, snr_db=20, reverb=(40, 60), telephone=True).sox_effects()
    assert effects[:3] == ["pad", "0.15", "0.25"]
    assert effects[effects.index("speed") + 1] == "1.050"
    assert "reverb" in effects and "sinc" in effects and effects[-2:] == ["rate", "16000"]
    assert "speed" not in Perturbation().sox_effects()


def test_default_plan_meets_the_corpus_contract():
    cfg = SynthConfig()
    plan = plan_corpus(cfg, fortune_sentences(cfg.collections), Path("/nonexistent"))
    speakers = {split: {spk.id for _, spk in utts} for split, utts in plan.items()}
    assert [len(speakers[s]) for s in ("train", "dev", "test")] == [32, 4, 4]
    sentences = {split: {spec.text for spec, _ in utts} for split, utts in plan.items()}
    assert not sentences["train"] & sentences["dev"] and not sentences["dev"] & sentences["test"]
    assert not sentences["train"] & sentences["test"]
    train_vocab = {w for s in sentences["train"] for w in s.split()}
    assert len(train_vocab) >= 2000
    assert all(w in train_vocab for split in ("dev", "test") for s in sentences[split] for w in s.split())
    perturbations = [spec.perturbation for utts in plan.values() for spec, _ in utts]
    assert all(0.9 <= p.speed <= 1.1 for p in perturbations)
    assert all(10 <= p.snr_db <= 30 for p in perturbations if p.snr_db is not None)
    assert 0.6 < np.mean([p.snr_db is not None for p in perturbations]) < 0.8
    assert 0.1 < np.mean([p.telephone for p in perturbations]) < 0.2


def test_too_large_a_split_is_refused():
    with pytest.raises(EsgdError, match="not enough sentences for the train split"):
        plan_corpus(SynthConfig(train_hours=100.0), fortune_sentences(), Path("/nonexistent"))
