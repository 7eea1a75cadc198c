"""Sentences for the synthesised corpus: Debian's `fortunes` collections, normalised to upper-case words.

Normalisation follows what Kaldi recipes expect in `text`: upper-case words separated by single spaces,
numbers and a few symbols spelled out, punctuation removed, apostrophes of contractions kept.
"""
from __future__ import annotations

import re
from pathlib import Path

from num2words import num2words

from esgd_asr.errors import EsgdError

FORTUNES_DIR = Path("/usr/share/games/fortunes")
# Collections of prose; code, ASCII art and mostly-name collections are left out.
DEFAULT_COLLECTIONS = (
    "computers", "cookie", "definitions", "education", "food", "fortunes", "humorists", "kids", "law",
    "literature", "love", "medicine", "men-women", "miscellaneous", "people", "pets", "platitudes",
    "politics", "riddles", "science", "sports", "wisdom", "work",
)

_SYMBOLS = {"&": " and ", "%": " percent ", "+": " plus ", "=": " equals ", "@": " at ", "$": " dollars "}
_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:st|nd|rd|th)?")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"^[A-Z]+(?:'[A-Z]+)?$")


def _spell_number(match: re.Match) -> str:
    token = match.group(0)
    if token[-2:] in ("st", "nd", "rd", "th"):
        return " " + num2words(int(token[:-2]), to="ordinal") + " "
    if "." in token:
        return " " + num2words(float(token)) + " "
    value = int(token)
    if 1100 <= value <= 1999 or 2010 <= value <= 2099:
        return " " + num2words(value, to="year") + " "
    return " " + num2words(value) + " "


def normalise_sentence(sentence: str) -> str | None:
    """Return the sentence as upper-case words, or None when it cannot be normalised cleanly."""
    s = sentence.replace("\u2019", "'").replace("`", "'")
    s = re.sub(r"\$(\d+)", r"\1 dollars", s)
    for symbol, spoken in _SYMBOLS.items():
        s = s.replace(symbol, spoken)
    s = re.sub(r"(?<=\d),(?=\d{3})", "", s)
    s = _NUMBER.sub(_spell_number, s)
    s = re.sub(r"[-/]", " ", s)
    s = re.sub(r"[\"()\[\]{}:;,.!?*_]", " ", s)
    s = re.sub(r"(^|\s)'+|'+(\s|$)", " ", s)  # quotes, not apostrophes inside words
    words = s.upper().split()
    if not words or not all(_WORD.match(w) for w in words):
        return None
    return " ".join(words)


def fortune_sentences(collections=DEFAULT_COLLECTIONS, root: Path = FORTUNES_DIR,
                      min_words: int = 4, max_words: int = 18) -> list[str]:
    """All distinct normalised sentences of the given fortune collections, in a stable order."""
    if not root.is_dir():
        raise EsgdError(f"{root}: not found; install Debian's 'fortunes' package (apt-get install fortunes)")
    seen: dict[str, None] = {}
    for name in collections:
        path = root / name
        if not path.is_file():
            raise EsgdError(f"{path}: fortune collection not found")
        for entry in path.read_text(encoding="latin-1").split("\n%\n"):
            body = "\n".join(line for line in entry.splitlines() if not line.strip().startswith("--"))
            body = " ".join(body.split())
            for raw in _SENTENCE_END.split(body):
                sentence = normalise_sentence(raw)
                if sentence and min_words <= len(sentence.split()) <= max_words:
                    seen.setdefault(sentence)
    return list(seen)
