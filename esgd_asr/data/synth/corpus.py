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

from esgd_asr.data.synth.audio import (NOISE_COLOURS, SAMPLE_RATE, Perturbation, UtteranceSpec, render,
                                       require_tools, synthesise)
from esgd_asr.data.synth.speakers import ENGINES, Speaker, SpeakerFactory
from esgd_asr.data.synth.text import DEFAULT_COLLECTIONS, fortune_sentences
from esgd_asr.errors import EsgdError

SPLITS = ("train", "dev", "test")
HELDOUT = "heldout"  # the test sentences read by voices used nowhere in train/dev/test
PAD_SECONDS = 0.4  # sox pad 0.15 + 0.25
SECONDS_PER_WORD = {"espeak-ng": 0.305, "festival": 0.34, "flite": 0.34}  # at rate 1, measured on the corpus
BATCH = 8  # utterances of one speaker rendered by one task (festival starts once for them)


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
    sources: tuple[str, ...] = ("espeak-ng:0.5", "festival:0.25", "flite:0.25")  # engine:share of the speakers
    festival_voices: tuple[str, ...] = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
    flite_voices: tuple[str, ...] = ("kal16", "slt")
    heldout_voices: tuple[str, ...] = ("flite:awb", "flite:rms")  # engine:voice, used nowhere else
    heldout_minutes: float = 20.0  # 0: no held-out set
    num_heldout_speakers: int = 4

    def shares(self) -> dict[str, float]:
        """--sources as {engine: share}; refused with one line naming the option when malformed."""
        shares = {}
        for item in self.sources:
            engine, _, share = item.partition(":")
            try:
                shares[engine] = float(share)
            except ValueError:
                raise EsgdError(f"conf: --sources: '{item}' is not engine:share") from None
            if engine not in ENGINES or shares[engine] <= 0:
                raise EsgdError(f"conf: --sources: '{item}': engine must be one of {', '.join(ENGINES)}, "
                                "share above 0")
        return shares

    def voices(self) -> dict[str, tuple[str, ...]]:
        return {"festival": self.festival_voices, "flite": self.flite_voices}

    def heldout(self) -> list[tuple[str, str]]:
        """--heldout-voices as (engine, voice) pairs; a voice that train/dev/test also use is refused."""
        pairs = []
        for item in self.heldout_voices:
            engine, _, voice = item.partition(":")
            if engine not in ("festival", "flite") or not voice:
                raise EsgdError(f"conf: --heldout-voices: '{item}' is not festival:<voice> or flite:<voice>")
            if engine in self.shares() and voice in self.voices()[engine]:
                raise EsgdError(f"conf: --heldout-voices: {item} is also a voice of train/dev/test")
            pairs.append((engine, voice))
        return pairs

    def target_seconds(self, split: str) -> float:
        return {"train": self.train_hours * 3600, "dev": self.dev_minutes * 60, "test": self.test_minutes * 60}[split]

    def num_speakers(self, split: str) -> int:
        return {"train": self.num_train_speakers, "dev": self.num_dev_speakers, "test": self.num_test_speakers}[split]


def estimated_seconds(text: str, speaker: Speaker, speed: float = 1.0) -> float:
    """Rough duration of the utterance, for planning split sizes."""
    return len(text.split()) * SECONDS_PER_WORD[speaker.engine] / speaker.rate / speed + PAD_SECONDS


def _perturbation(rng: random.Random, cfg: SynthConfig) -> Perturbation:
    return Perturbation(
        speed=round(rng.uniform(cfg.speed_min, cfg.speed_max), 3),
        snr_db=round(rng.uniform(cfg.snr_min_db, cfg.snr_max_db), 1) if rng.random() < cfg.noise_prob else None,
        noise=rng.choice(NOISE_COLOURS),
        reverb=(rng.randint(20, 70), rng.randint(30, 90)) if rng.random() < cfg.reverb_prob else None,
        telephone=rng.random() < cfg.telephone_prob,
    )


def plan_corpus(cfg: SynthConfig, sentences: list[str], wav_dir: Path) -> dict[str, list[tuple[UtteranceSpec, Speaker]]]:
    """Assign sentences to speakers split by split; no speaker or sentence is shared between train, dev and test.
    The held-out split reads the test sentences with the --heldout-voices."""
    rng = random.Random(cfg.seed)
    counts = Counter(w for s in sentences for w in s.split())
    vocab = {w for w, _ in counts.most_common(cfg.vocab_size)}
    pool = [s for s in sentences if all(w in vocab for w in s.split())]
    rng.shuffle(pool)
    shares, heldout_voices = cfg.shares(), cfg.heldout()
    factory = SpeakerFactory(cfg.seed, cfg.voices())
    plan: dict[str, list[tuple[UtteranceSpec, Speaker]]] = {}
    train_vocab: set[str] = set()
    for split in SPLITS:
        if cfg.num_speakers(split) < 1:
            raise EsgdError(f"conf: --num-{split}-speakers must be at least 1")
        split_speakers = factory.speakers(cfg.num_speakers(split), shares)
        if split == "train":
            usable = pool
        else:
            usable = [s for s in pool if sum(w not in train_vocab for w in s.split()) <= cfg.max_eval_oov]
        plan[split] = _assign(cfg, rng, split, usable, split_speakers, cfg.target_seconds(split), wav_dir)
        taken = {spec.text for spec, _ in plan[split]}
        pool = [s for s in pool if s not in taken]
        if split == "train":
            train_vocab = {w for text in taken for w in text.split()}
    if cfg.heldout_minutes > 0:
        speakers = [factory.draw(*heldout_voices[i % len(heldout_voices)]) for i in range(cfg.num_heldout_speakers)]
        if not speakers:
            raise EsgdError("conf: --num-heldout-speakers must be at least 1 (or --heldout-minutes 0)")
        test_sentences = [spec.text for spec, _ in plan["test"]]
        repeats = int(cfg.heldout_minutes * 60 // sum(estimated_seconds(t, speakers[0]) for t in test_sentences)) + 2
        plan[HELDOUT] = _assign(cfg, rng, HELDOUT, test_sentences * repeats, speakers, cfg.heldout_minutes * 60,
                                wav_dir)
    return plan


def _assign(cfg: SynthConfig, rng: random.Random, split: str, sentences: list[str], speakers: list[Speaker],
            target_seconds: float, wav_dir: Path) -> list[tuple[UtteranceSpec, Speaker]]:
    """Sentences in order, to the speakers in turn, until `target_seconds` of speech are planned."""
    utts, total = [], 0.0
    for sentence in sentences:
        if total >= target_seconds:
            break
        speaker = speakers[len(utts) % len(speakers)]
        utt_id = f"{speaker.id}-{len(utts) // len(speakers):05d}"
        spec = UtteranceSpec(utt_id, sentence, speaker, wav_dir / speaker.id / f"{utt_id}.wav",
                             _perturbation(rng, cfg), rng.getrandbits(32))
        utts.append((spec, speaker))
        total += estimated_seconds(sentence, speaker, spec.perturbation.speed)
    if total < target_seconds:
        raise EsgdError(f"not enough sentences for the {split} split ({total:.0f} of {target_seconds:.0f} s); "
                        "raise --vocab-size or lower the split sizes")
    return utts


def render_corpus(plan: dict[str, list[tuple[UtteranceSpec, Speaker]]], nj: int) -> dict[str, float]:
    """Synthesise every planned utterance with `nj` processes; return each utterance's duration."""
    require_tools([spk for utts in plan.values() for _, spk in utts])
    by_speaker: dict[str, list[UtteranceSpec]] = {}
    for utts in plan.values():
        for spec, speaker in utts:
            by_speaker.setdefault(speaker.id, []).append(spec)
    batches = [specs[i:i + BATCH] for specs in by_speaker.values() for i in range(0, len(specs), BATCH)]
    durations: dict[str, float] = {}
    with Pool(nj) as pool, tqdm(total=sum(map(len, batches)), desc="synthesising", unit="utt") as bar:
        for rendered in pool.imap_unordered(_render_batch, batches):
            durations.update(rendered)
            bar.update(len(rendered))
    return durations


def _render_batch(specs: list[UtteranceSpec]) -> list[tuple[str, float]]:
    return [(spec.utt_id, render(spec, wav)) for spec, wav in zip(specs, synthesise(specs))]


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
            custom={"engine": speaker.engine, "voice": speaker.voice, "pitch": speaker.pitch, "rate": speaker.rate,
                    "shift_cents": speaker.shift_cents,
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
