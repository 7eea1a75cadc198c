"""Plan and render the synthesised default corpus: splits with disjoint speakers and sentences."""
from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

from lhotse import AudioSource, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from tqdm import tqdm

from esgd_asr.data.synth.audio import NOISE_COLOURS, SAMPLE_RATE, Perturbation, UtteranceSpec, render, require_tools
from esgd_asr.data.synth.speakers import Speaker, make_speakers
from esgd_asr.data.synth.text import DEFAULT_COLLECTIONS, fortune_sentences
from esgd_asr.errors import EsgdError

SPLITS = ("train", "dev", "test")
PAD_SECONDS = 0.4  # sox pad 0.15 + 0.25


@dataclass
class SynthConfig:
    """Sizes and channel settings of the corpus (conf/synth.conf)."""

    train_hours: float = 3.0
    dev_minutes: float = 20.0
    test_minutes: float = 20.0
    num_train_speakers: int = 32
    num_dev_speakers: int = 4
    num_test_speakers: int = 4
    vocab_size: int = 4000  # sentences are drawn from the most frequent words of the collections
    max_eval_oov: int = 0  # dev/test sentences may hold this many words unseen in train text
    speed_min: float = 0.9
    speed_max: float = 1.1
    noise_prob: float = 0.7
    snr_min_db: float = 10.0
    snr_max_db: float = 30.0
    reverb_prob: float = 0.25
    telephone_prob: float = 0.15
    seed: int = 1
    collections: tuple[str, ...] = DEFAULT_COLLECTIONS

    def target_seconds(self, split: str) -> float:
        return {"train": self.train_hours * 3600, "dev": self.dev_minutes * 60, "test": self.test_minutes * 60}[split]

    def num_speakers(self, split: str) -> int:
        return {"train": self.num_train_speakers, "dev": self.num_dev_speakers, "test": self.num_test_speakers}[split]


def estimated_seconds(text: str, speaker: Speaker) -> float:
    """Rough duration of espeak-ng speech at the speaker's rate, for planning split sizes."""
    return len(text.split()) * 60.0 / speaker.rate * 0.89 + PAD_SECONDS  # 0.89: measured on the default corpus


def _perturbation(rng: random.Random, cfg: SynthConfig) -> Perturbation:
    return Perturbation(
        speed=round(rng.uniform(cfg.speed_min, cfg.speed_max), 3),
        snr_db=round(rng.uniform(cfg.snr_min_db, cfg.snr_max_db), 1) if rng.random() < cfg.noise_prob else None,
        noise=rng.choice(NOISE_COLOURS),
        reverb=(rng.randint(20, 70), rng.randint(30, 90)) if rng.random() < cfg.reverb_prob else None,
        telephone=rng.random() < cfg.telephone_prob,
    )


def plan_corpus(cfg: SynthConfig, sentences: list[str], wav_dir: Path) -> dict[str, list[tuple[UtteranceSpec, Speaker]]]:
    """Assign sentences to speakers split by split; no speaker or sentence is shared between splits."""
    rng = random.Random(cfg.seed)
    counts = Counter(w for s in sentences for w in s.split())
    vocab = {w for w, _ in counts.most_common(cfg.vocab_size)}
    pool = [s for s in sentences if all(w in vocab for w in s.split())]
    rng.shuffle(pool)
    speakers = make_speakers(sum(cfg.num_speakers(s) for s in SPLITS), cfg.seed)
    plan: dict[str, list[tuple[UtteranceSpec, Speaker]]] = {}
    train_vocab: set[str] = set()
    first = 0
    for split in SPLITS:
        split_speakers = speakers[first:first + cfg.num_speakers(split)]
        first += len(split_speakers)
        if not split_speakers:
            raise EsgdError(f"conf: --num-{split}-speakers must be at least 1")
        utts, total, rest = [], 0.0, []
        for sentence in pool:
            if total >= cfg.target_seconds(split):
                rest.append(sentence)
                continue
            if split != "train" and sum(w not in train_vocab for w in sentence.split()) > cfg.max_eval_oov:
                rest.append(sentence)
                continue
            speaker = split_speakers[len(utts) % len(split_speakers)]
            utt_id = f"{speaker.id}-{len(utts) // len(split_speakers):05d}"
            spec = UtteranceSpec(utt_id, sentence, speaker.voice, speaker.pitch, speaker.rate,
                                 wav_dir / speaker.id / f"{utt_id}.wav", _perturbation(rng, cfg), rng.getrandbits(32))
            utts.append((spec, speaker))
            total += (estimated_seconds(sentence, speaker) - PAD_SECONDS) / spec.perturbation.speed + PAD_SECONDS
        if total < cfg.target_seconds(split):
            raise EsgdError(f"not enough sentences for the {split} split ({total:.0f} of "
                            f"{cfg.target_seconds(split):.0f} s); raise --vocab-size or lower the split sizes")
        if split == "train":
            train_vocab = {w for spec, _ in utts for w in spec.text.split()}
        plan[split] = utts
        pool = rest
    return plan


def render_corpus(plan: dict[str, list[tuple[UtteranceSpec, Speaker]]], nj: int) -> dict[str, float]:
    """Synthesise every planned utterance with `nj` processes; return each utterance's duration."""
    require_tools()
    specs = [spec for utts in plan.values() for spec, _ in utts]
    durations: dict[str, float] = {}
    with Pool(nj) as pool:
        results = pool.imap_unordered(_render_one, specs, chunksize=4)
        for utt_id, seconds in tqdm(results, total=len(specs), desc="synthesising", unit="utt"):
            durations[utt_id] = seconds
    return durations


def _render_one(spec: UtteranceSpec) -> tuple[str, float]:
    return spec.utt_id, render(spec)


def to_manifests(utts: list[tuple[UtteranceSpec, Speaker]], durations: dict[str, float]
                 ) -> tuple[RecordingSet, SupervisionSet]:
    """lhotse manifests of one split: a recording per utterance, a supervision spanning it."""
    recordings, supervisions = [], []
    for spec, speaker in utts:
        num_samples = round(durations[spec.utt_id] * SAMPLE_RATE)
        recordings.append(Recording(id=spec.utt_id, sources=[AudioSource("file", [0], str(spec.path.resolve()))],
                                    sampling_rate=SAMPLE_RATE, num_samples=num_samples,
                                    duration=num_samples / SAMPLE_RATE))
        supervisions.append(SupervisionSegment(
            id=spec.utt_id, recording_id=spec.utt_id, start=0.0, duration=num_samples / SAMPLE_RATE, channel=0,
            text=spec.text, speaker=speaker.id, gender=speaker.gender, language="English",
            custom={"voice": spec.voice, "pitch": spec.pitch, "rate": spec.rate,
                    "speed": spec.perturbation.speed, "snr_db": spec.perturbation.snr_db,
                    "noise": spec.perturbation.noise if spec.perturbation.snr_db is not None else None,
                    "reverb": spec.perturbation.reverb is not None, "telephone": spec.perturbation.telephone}))
    return RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions)


def make_synth_corpus(cfg: SynthConfig, corpus_dir: Path, nj: int
                      ) -> dict[str, tuple[RecordingSet, SupervisionSet]]:
    """Plan, render and describe the whole corpus; writes wavs and speakers.json under `corpus_dir`."""
    sentences = fortune_sentences(cfg.collections)
    plan = plan_corpus(cfg, sentences, corpus_dir / "wav")
    durations = render_corpus(plan, nj)
    speakers = {spk.id: spk.to_dict() | {"split": split} for split, utts in plan.items() for _, spk in utts}
    (corpus_dir / "speakers.json").write_text(json.dumps(speakers, indent=1, sort_keys=True))
    return {split: to_manifests(utts, durations) for split, utts in plan.items()}
