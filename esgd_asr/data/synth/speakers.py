"""Synthetic speakers: an espeak-ng accent x voice variant (formant set) x pitch x speaking rate."""
from __future__ import annotations

import itertools
import random
from dataclasses import asdict, dataclass

ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
           "en-us-nyc")
MALE_VARIANTS = tuple(f"m{i}" for i in range(1, 8))
FEMALE_VARIANTS = tuple(f"f{i}" for i in range(1, 6))


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker; `voice` is the espeak-ng `-v` argument."""

    id: str
    accent: str
    variant: str
    pitch: int  # espeak-ng -p, 0..99
    rate: int  # espeak-ng -s, words per minute
    gender: str  # 'm' or 'f', Kaldi spk2gender

    @property
    def voice(self) -> str:
        return f"{self.accent}+{self.variant}"

    def to_dict(self) -> dict:
        return asdict(self)


def make_speakers(count: int, seed: int) -> list[Speaker]:
    """`count` distinct speakers, alternating gender, drawn without repeating an (accent, variant) pair."""
    rng = random.Random(seed)
    pairs = {g: list(itertools.product(ACCENTS, variants))
             for g, variants in (("m", MALE_VARIANTS), ("f", FEMALE_VARIANTS))}
    for g in pairs:
        rng.shuffle(pairs[g])
    if count > len(pairs["m"]) + len(pairs["f"]):
        raise ValueError(f"at most {len(pairs['m']) + len(pairs['f'])} distinct speakers can be made")
    speakers = []
    for i in range(count):
        preferred = "m" if i % 2 == 0 else "f"
        gender = preferred if pairs[preferred] else ("f" if preferred == "m" else "m")
        accent, variant = pairs[gender].pop()
        pitch = rng.randint(25, 60) if gender == "m" else rng.randint(45, 80)
        speakers.append(Speaker(f"spk{i + 1:03d}", accent, variant, pitch, rng.randint(135, 190), gender))
    return speakers
