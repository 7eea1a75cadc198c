"""Synthetic speakers drawn from several synthesisers (conf/synth.conf: --sources, --*-voices, --heldout-voices).

- espeak-ng (formant synthesis): accent (8 English voices) x voice variant (formant set m1-m7, f1-f5) x pitch x rate;
- festival (diphone voices kal and ked, the HTS voice slt) and flite (diphone kal16, clustergen voices slt, awb, rms):
  a voice x speaking rate x a shift of the whole spectrum by sox `pitch` (F0 and formants together, as a shorter
  or longer vocal tract), so that a few recorded voices give many speakers.
"""
from __future__ import annotations

import itertools
import random
from dataclasses import asdict, dataclass

ENGINES = ("espeak-ng", "festival", "flite")
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
           "en-us-nyc")
MALE_VARIANTS = tuple(f"m{i}" for i in range(1, 8))
FEMALE_VARIANTS = tuple(f"f{i}" for i in range(1, 6))
# gender of the recorded voices behind festival's and flite's English voices
VOICE_GENDERS = {"kal_diphone": "m", "ked_diphone": "m", "cmu_us_slt_arctic_hts": "f",
                 "kal": "m", "kal16": "m", "slt": "f", "awb": "m", "rms": "m"}
SHIFT_CENTS = (-300, 300)  # spectrum shift of a festival / flite speaker (a third of an octave either way)
RATE_RANGE = (0.85, 1.15)  # their speaking rate relative to the voice's own
ESPEAK_WPM = 175  # espeak-ng's default rate: -s = 175 x rate


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: `voice` is the engine's voice (espeak-ng: accent+variant, the `-v` argument)."""

    id: str
    engine: str
    voice: str
    gender: str  # 'm' or 'f', Kaldi spk2gender
    rate: float  # speaking rate relative to the voice's own
    pitch: int = 50  # espeak-ng -p (0..99); unused by the other engines
    shift_cents: int = 0  # sox pitch shift of the festival / flite output; espeak-ng's variants set its formants

    def to_dict(self) -> dict:
        return asdict(self)


def engine_counts(count: int, shares: dict[str, float]) -> dict[str, int]:
    """Split `count` speakers over the engines in proportion to `shares` (largest remainder, ties by order)."""
    total = sum(shares.values())
    exact = {engine: count * share / total for engine, share in shares.items()}
    counts = {engine: int(x) for engine, x in exact.items()}
    by_remainder = sorted(shares, key=lambda e: -(exact[e] - counts[e]))
    for engine in by_remainder[:count - sum(counts.values())]:
        counts[engine] += 1
    return counts


class SpeakerFactory:
    """Draws distinct speakers, seeded: espeak-ng (accent, variant) pairs never repeat, gender alternates."""

    def __init__(self, seed: int, voices: dict[str, tuple[str, ...]]):
        self.rng = random.Random(seed)
        self.voices = voices
        self.pairs = {g: list(itertools.product(ACCENTS, variants))
                      for g, variants in (("m", MALE_VARIANTS), ("f", FEMALE_VARIANTS))}
        for g in self.pairs:
            self.rng.shuffle(self.pairs[g])
        self.next_id = 1
        self.drawn = {engine: 0 for engine in ENGINES}

    def draw(self, engine: str, voice: str | None = None) -> Speaker:
        """A new speaker of `engine`; festival / flite take `voice`, else their voices in turn."""
        spk_id = f"spk{self.next_id:03d}"
        self.next_id += 1
        if engine == "espeak-ng":
            return self._espeak(spk_id)
        if voice is None:
            voices = self.voices[engine]
            voice = voices[self.drawn[engine] % len(voices)]  # round-robin: every voice its share of speakers
            self.drawn[engine] += 1
        return Speaker(spk_id, engine, voice, VOICE_GENDERS.get(voice, "m"),
                       round(self.rng.uniform(*RATE_RANGE), 3), shift_cents=self.rng.randint(*SHIFT_CENTS))

    def _espeak(self, spk_id: str) -> Speaker:
        preferred = "m" if self.drawn["espeak-ng"] % 2 == 0 else "f"
        self.drawn["espeak-ng"] += 1
        gender = preferred if self.pairs[preferred] else ("f" if preferred == "m" else "m")
        if not self.pairs[gender]:
            raise ValueError(f"at most {len(ACCENTS) * (len(MALE_VARIANTS) + len(FEMALE_VARIANTS))} distinct "
                             "espeak-ng speakers can be made")
        accent, variant = self.pairs[gender].pop()
        pitch = self.rng.randint(25, 60) if gender == "m" else self.rng.randint(45, 80)
        return Speaker(spk_id, "espeak-ng", f"{accent}+{variant}", gender,
                       round(self.rng.randint(135, 190) / ESPEAK_WPM, 3), pitch=pitch)

    def speakers(self, count: int, shares: dict[str, float]) -> list[Speaker]:
        """`count` speakers, the engines in proportion to `shares`, interleaved."""
        counts = engine_counts(count, shares)
        order = [e for i in range(count) for e in counts if i < counts[e]]
        return [self.draw(engine) for engine in order]
