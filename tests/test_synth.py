"""Pieces of the synthesiser: speakers, channel effects, SNR, split planning, the held-out set."""
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_CORPUS_OPTIONS

from esgd_asr.data.synth.audio import Perturbation, scale_to_snr, speaker_effects
from esgd_asr.data.synth.corpus import HELDOUT, SynthConfig, plan_corpus
from esgd_asr.data.synth.speakers import SpeakerFactory, engine_counts
from esgd_asr.data.synth.text import fortune_sentences
from esgd_asr.errors import EsgdError

SHARES = {"espeak-ng": 0.5, "festival": 0.25, "flite": 0.25}


def test_speakers_follow_the_engine_shares_and_are_distinct():
    factory = SpeakerFactory(1, SynthConfig().voices())
    speakers = factory.speakers(32, SHARES)
    assert Counter(s.engine for s in speakers) == {"espeak-ng": 16, "festival": 8, "flite": 8}
    espeak = [s for s in speakers if s.engine == "espeak-ng"]
    assert len({s.voice for s in espeak}) == 16 and sum(s.gender == "f" for s in espeak) == 8
    assert all(s.voice.split("+")[1].startswith(s.gender) for s in espeak)
    assert {s.voice for s in speakers if s.engine == "festival"} == set(SynthConfig().festival_voices)
    assert {s.voice for s in speakers if s.engine == "flite"} == set(SynthConfig().flite_voices)
    others = [s for s in speakers if s.engine != "espeak-ng"]
    assert len({(s.voice, s.shift_cents, s.rate) for s in others}) == 16
    assert all(-300 <= s.shift_cents <= 300 and 0.85 <= s.rate <= 1.15 for s in others)
    assert SpeakerFactory(1, SynthConfig().voices()).speakers(32, SHARES) == speakers
    assert engine_counts(3, SHARES) == {"espeak-ng": 1, "festival": 1, "flite": 1}
    assert engine_counts(4, {"espeak-ng": 1.0}) == {"espeak-ng": 4}


def test_speaker_effects_shift_festival_and_flite_voices_only():
    factory = SpeakerFactory(3, SynthConfig().voices())
    festival, espeak = factory.draw("festival"), factory.draw("espeak-ng")
    effects = speaker_effects(festival)
    assert effects[:2] == ["pitch", str(festival.shift_cents)] and effects[2:4] == ["tempo", "-s"]
    assert speaker_effects(espeak) == []


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
    assert {spk.engine for _, spk in plan["train"]} == {"espeak-ng", "festival", "flite"}
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


def test_heldout_set_reads_test_sentences_with_voices_used_nowhere_else():
    cfg = SynthConfig()
    plan = plan_corpus(cfg, fortune_sentences(cfg.collections), Path("/nonexistent"))
    voices = {split: {(spk.engine, spk.voice) for _, spk in utts} for split, utts in plan.items()}
    assert voices[HELDOUT] == {("flite", "awb"), ("flite", "rms")}
    assert not voices[HELDOUT] & (voices["train"] | voices["dev"] | voices["test"])
    assert len({spk.id for _, spk in plan[HELDOUT]}) == 4
    assert not {spk.id for _, spk in plan[HELDOUT]} & {spk.id for _, spk in plan["test"]}
    assert {spec.text for spec, _ in plan[HELDOUT]} <= {spec.text for spec, _ in plan["test"]}
    assert "heldout" not in plan_corpus(SynthConfig(heldout_minutes=0), fortune_sentences(), Path("/x"))


@pytest.mark.parametrize("option, message", [
    ({"heldout_voices": ("flite:slt",)}, "flite:slt is also a voice of train/dev/test"),
    ({"heldout_voices": ("awb",)}, "--heldout-voices: 'awb' is not festival:<voice>"),
    ({"sources": ("espeak-ng:0.5", "mbrola:0.5")}, "--sources: 'mbrola:0.5': engine must be one of"),
    ({"sources": ("festival:x",)}, "--sources: 'festival:x' is not engine:share"),
])
def test_bad_voice_options_are_refused_naming_the_option(option, message):
    with pytest.raises(EsgdError, match=message):
        plan_corpus(SynthConfig(**option), fortune_sentences(), Path("/nonexistent"))


def test_a_missing_synthesiser_stops_corpus_making_with_one_line(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("espeak-ng", "sox", "flite"):  # no festival
        (bin_dir / tool).symlink_to(f"/usr/bin/{tool}")
    result = subprocess.run([sys.executable, "-m", "esgd_asr.cli.make_synth_corpus", *TINY_CORPUS_OPTIONS,
                             str(tmp_path / "c"), str(tmp_path / "m"), str(tmp_path / "d")],
                            capture_output=True, text=True, env={**os.environ, "PATH": str(bin_dir)})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].endswith(
        "error: synthesiser 'festival' not found on PATH; install it with: apt-get install festival")
    assert not (tmp_path / "d").exists()


def test_too_large_a_split_is_refused():
    with pytest.raises(EsgdError, match="not enough sentences for the train split"):
        plan_corpus(SynthConfig(train_hours=100.0), fortune_sentences(), Path("/nonexistent"))
