"""Kaldi data directories: reading and writing their text tables, and validating a directory.

A data dir holds `wav.scp`, `text`, `utt2spk`, `spk2utt` and optionally `segments`, `spk2gender`,
`utt2dur`, `feats.scp`, `cmvn.scp`. Every table is `key value...` per line, sorted by key in the C locale.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from esgd_asr.atomic import atomic_write_text
from esgd_asr.errors import EsgdError

REQUIRED_FILES = ("wav.scp", "text", "utt2spk", "spk2utt")


def read_table(path: str | Path, allow_empty_value: bool = False) -> dict[str, str]:
    """Read `key value` lines into an ordered dict; a duplicate key or (by default) empty value is an error."""
    path = Path(path)
    if not path.is_file():
        raise EsgdError(f"{path}: no such file")
    table: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                raise EsgdError(f"{path}:{lineno}: empty line")
            key, _, value = line.strip().partition(" ")
            value = value.strip()
            if not value and not allow_empty_value:
                raise EsgdError(f"{path}:{lineno}: key '{key}' has an empty value")
            if key in table:
                raise EsgdError(f"{path}:{lineno}: duplicate key '{key}'")
            table[key] = value
    return table


def write_table(path: str | Path, table: dict[str, object]) -> None:
    """Write a table sorted by key (C-locale byte order), atomically."""
    path = Path(path)
    lines = [f"{k} {table[k]}\n" for k in sorted(table, key=lambda s: s.encode())]
    atomic_write_text(path, "".join(lines))


def utt2spk_to_spk2utt(utt2spk: dict[str, str]) -> dict[str, str]:
    """Invert utt2spk; utterances of a speaker are listed in sorted order."""
    spk2utt: dict[str, list[str]] = {}
    for utt in sorted(utt2spk, key=lambda s: s.encode()):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    return {spk: " ".join(utts) for spk, utts in spk2utt.items()}


@dataclass
class DataDir:
    """The contents of a Kaldi data dir, held as tables keyed by utterance / recording / speaker id."""

    wav_scp: dict[str, str]
    text: dict[str, str]
    utt2spk: dict[str, str]
    segments: dict[str, str] | None = None
    spk2gender: dict[str, str] = field(default_factory=dict)
    utt2dur: dict[str, float] = field(default_factory=dict)

    @classmethod
    def read(cls, path: str | Path) -> "DataDir":
        path = Path(path)
        if not path.is_dir():
            raise EsgdError(f"{path}: not a data directory")
        return cls(
            wav_scp=read_table(path / "wav.scp"),
            text=read_table(path / "text", allow_empty_value=True),
            utt2spk=read_table(path / "utt2spk"),
            segments=read_table(path / "segments") if (path / "segments").is_file() else None,
            spk2gender=_read_optional(path / "spk2gender"),
            utt2dur={k: float(v) for k, v in _read_optional(path / "utt2dur").items()},
        )

    def write(self, path: str | Path) -> None:
        """Write every table into `path` (a fresh directory is built beside it and swapped in)."""
        path = Path(path)
        tmp = path.parent / f".{path.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write_table(tmp / "wav.scp", self.wav_scp)
        write_table(tmp / "text", self.text)
        write_table(tmp / "utt2spk", self.utt2spk)
        write_table(tmp / "spk2utt", utt2spk_to_spk2utt(self.utt2spk))
        if self.segments is not None:
            write_table(tmp / "segments", self.segments)
        if self.spk2gender:
            write_table(tmp / "spk2gender", self.spk2gender)
        if self.utt2dur:
            write_table(tmp / "utt2dur", {k: f"{v:.3f}" for k, v in self.utt2dur.items()})
        replace_dir(tmp, path)


def _read_optional(path: Path) -> dict[str, str]:
    return read_table(path) if path.is_file() else {}


def replace_dir(src: Path, dst: Path) -> None:
    """Move a finished directory into place, replacing `dst` only once `src` is complete."""
    old = dst.parent / f".{dst.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)


def read_wav_entry(rxfilename: str, where: str) -> tuple[np.ndarray, int]:
    """Read the audio a wav.scp value describes: a file path, or a command ending in '|'."""
    try:
        if rxfilename.endswith("|"):
            proc = subprocess.run(rxfilename[:-1], shell=True, capture_output=True, check=True)
            return sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
        return sf.read(rxfilename, dtype="float32", always_2d=True)
    except subprocess.CalledProcessError as err:
        msg = err.stderr.decode(errors="replace").strip().splitlines()
        raise EsgdError(f"{where}: command failed: {rxfilename} ({msg[-1] if msg else err.returncode})") from None
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise EsgdError(f"{where}: cannot read audio '{rxfilename}': {err}") from None


def _check_sorted_unique(path: Path) -> None:
    keys = [line.split(" ", 1)[0] for line in path.read_text(encoding="utf-8").splitlines()]
    for lineno, (a, b) in enumerate(zip(keys, keys[1:]), 2):
        if a.encode() >= b.encode():
            raise EsgdError(f"{path}:{lineno}: not sorted or duplicate key ('{a}' then '{b}'); sort with LC_ALL=C")


def validate_data_dir(path: str | Path, check_audio: bool = True, allow_empty_text: bool = False) -> DataDir:
    """Check a data dir as Kaldi's validate_data_dir.sh does; raise EsgdError naming the file and line."""
    path = Path(path)
    for name in REQUIRED_FILES:
        if not (path / name).is_file():
            raise EsgdError(f"{path / name}: missing")
    for name in ("wav.scp", "text", "utt2spk", "spk2utt", "segments", "spk2gender", "feats.scp", "cmvn.scp"):
        if (path / name).is_file():
            _check_sorted_unique(path / name)
    data = DataDir.read(path)
    if not data.utt2spk:
        raise EsgdError(f"{path / 'utt2spk'}: no utterances")
    utts = set(data.utt2spk)
    _same_keys(path / "text", data.text, utts)
    if not allow_empty_text:
        for lineno, (utt, words) in enumerate(data.text.items(), 1):
            if not words.strip():
                raise EsgdError(f"{path / 'text'}:{lineno}: empty transcript for utterance '{utt}'")
    spk2utt = read_table(path / "spk2utt")
    if spk2utt != utt2spk_to_spk2utt(data.utt2spk):
        raise EsgdError(f"{path / 'spk2utt'}: does not match utt2spk (regenerate it from utt2spk)")
    for utt, spk in data.utt2spk.items():
        if not utt.startswith(spk):
            raise EsgdError(f"{path / 'utt2spk'}: utterance '{utt}' does not start with its speaker id '{spk}'")
    if data.segments is not None:
        _same_keys(path / "segments", data.segments, utts)
        for utt, value in data.segments.items():
            fields = value.split()
            if len(fields) != 3 or fields[0] not in data.wav_scp:
                raise EsgdError(f"{path / 'segments'}: bad entry for '{utt}' (recording unknown or not 3 fields)")
            start, end = float(fields[1]), float(fields[2])
            if not 0 <= start < end:
                raise EsgdError(f"{path / 'segments'}: segment '{utt}' has start {start} >= end {end}")
    else:
        _same_keys(path / "wav.scp", data.wav_scp, utts)
    for name in ("feats.scp", "cmvn.scp"):
        if (path / name).is_file():
            keys = set(read_table(path / name))
            if name == "feats.scp":
                _same_keys(path / name, dict.fromkeys(keys), utts)
            else:
                _same_keys(path / name, dict.fromkeys(keys), set(spk2utt), reference="spk2utt")
    if check_audio:
        for reco, rx in data.wav_scp.items():
            samples, rate = read_wav_entry(rx, f"{path / 'wav.scp'}: recording '{reco}'")
            if samples.size == 0:
                raise EsgdError(f"{path / 'wav.scp'}: recording '{reco}' has no samples")
            if not np.isfinite(samples).all():
                raise EsgdError(f"{path / 'wav.scp'}: recording '{reco}' has non-finite samples")
    return data


def _same_keys(path: Path, table: dict, expected: set[str], reference: str = "utt2spk") -> None:
    keys = set(table)
    if keys != expected:
        missing = sorted(expected - keys)
        extra = sorted(keys - expected)
        detail = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise EsgdError(f"{path}: keys differ from {reference} ({detail})")
