"""Grapheme-to-phoneme fallback: espeak-ng's IPA transcription mapped onto the (stress-less) ARPAbet set."""
from __future__ import annotations

import subprocess

from esgd_asr.errors import EsgdError

ZWJ = "\u200d"  # espeak-ng --ipa=3 ties the letters of one phoneme with a zero-width joiner
STRESS = "ˈˌ"
MODIFIERS = "ː\u0329\u0303"  # length, syllabic, nasalised

IPA_TO_ARPABET = {
    "ɑː": "AA", "ɑ": "AA", "ɒ": "AA", "æ": "AE", "a": "AE", "ʌ": "AH", "ə": "AH", "ɐ": "AH", "ɔː": "AO", "ɔ": "AO",
    "aʊ": "AW", "aɪ": "AY", "ɛ": "EH", "e": "EH", "eɪ": "EY", "ɜː": "ER", "ɜ": "ER", "ɚ": "ER", "ɝ": "ER",
    "ɪ": "IH", "ᵻ": "IH", "i": "IY", "iː": "IY", "oʊ": "OW", "əʊ": "OW", "o": "OW", "oː": "OW", "ɔɪ": "OY",
    "ʊ": "UH", "u": "UW", "uː": "UW",
    "ɛɹ": "EH R", "ɪɹ": "IH R", "ʊɹ": "UH R", "ɔːɹ": "AO R", "ɔɹ": "AO R", "ɑːɹ": "AA R", "ɑɹ": "AA R",
    "ɛə": "EH R", "ɪə": "IH R", "ʊə": "UH R", "iə": "IY AH", "aɪə": "AY ER", "aɪɚ": "AY ER", "əl": "AH L",
    "p": "P", "b": "B", "t": "T", "d": "D", "k": "K", "g": "G", "ɡ": "G", "f": "F", "v": "V", "θ": "TH",
    "ð": "DH", "s": "S", "z": "Z", "ʃ": "SH", "ʒ": "ZH", "h": "HH", "tʃ": "CH", "dʒ": "JH", "m": "M", "n": "N",
    "ŋ": "NG", "l": "L", "ɫ": "L", "ɹ": "R", "r": "R", "w": "W", "ʍ": "W", "j": "Y", "ɾ": "T", "ʔ": "T",
    "x": "K", "ç": "HH", "n\u0329": "N", "l\u0329": "L", "m\u0329": "M",
}


def ipa_units(ipa: str) -> list[str]:
    """Split an espeak-ng --ipa=3 word into phoneme units (tied letters stay together, stress dropped)."""
    units: list[str] = []
    joining = False
    for ch in ipa:
        if ch in STRESS or ch.isspace():
            continue
        if ch == ZWJ:
            joining = True
            continue
        if (joining or ch in MODIFIERS) and units:
            units[-1] += ch
        else:
            units.append(ch)
        joining = False
    return units


def ipa_to_arpabet(ipa: str) -> list[str]:
    """Map an IPA word to ARPAbet phones; a tied unit unknown as a whole is mapped letter by letter."""
    phones: list[str] = []
    for unit in ipa_units(ipa):
        mapped = IPA_TO_ARPABET.get(unit)
        if mapped is None:
            parts = [IPA_TO_ARPABET.get(u) for u in _letters(unit)]
            if any(p is None for p in parts):
                raise ValueError(f"no ARPAbet phone for IPA '{unit}'")
            mapped = " ".join(parts)
        phones.extend(mapped.split())
    return phones


def _letters(unit: str) -> list[str]:
    """Letters of a unit, each with the modifiers that follow it."""
    letters: list[str] = []
    for ch in unit:
        if ch in MODIFIERS and letters:
            letters[-1] += ch
        else:
            letters.append(ch)
    return letters


def espeak_g2p(words: list[str], voice: str = "en-us") -> dict[str, list[str]]:
    """Pronounce each word with espeak-ng; words it cannot turn into ARPAbet are left out."""
    if not words:
        return {}
    text = "".join(f"{w.lower()}.\n" for w in words)
    try:
        proc = subprocess.run(["espeak-ng", "-q", "-v", voice, "--ipa=3"], input=text.encode(),
                              capture_output=True, check=True)
    except FileNotFoundError:
        raise EsgdError("'espeak-ng' not found on PATH; install it with: apt-get install espeak-ng") from None
    lines = [line for line in proc.stdout.decode().splitlines() if line.strip()]
    if len(lines) != len(words):
        raise EsgdError(f"espeak-ng returned {len(lines)} transcriptions for {len(words)} words")
    prons = {}
    for word, ipa in zip(words, lines):
        try:
            phones = ipa_to_arpabet(ipa)
        except ValueError:
            continue
        if phones:
            prons[word] = phones
    return prons
