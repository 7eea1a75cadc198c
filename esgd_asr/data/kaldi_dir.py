"""Kaldi data directories: reading and writing their text tables, and validating a directory.

A data dir holds `wav.scp`, `text`, `utt2spk`, `spk2utt` and optionally `segments`, `spk2gender`,
`utt2dur`, `feats.scp`, `cmvn.scp`. Every table is `key value...` per line, sorted by key in the C locale.
"""
from __future__ import annotations

import io
import os
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from esgd_asr.atomic import atomic_outputs, atomic_write_text
from esgd_asr.errors import EsgdError

REQUIRED_FILES = ("wav.scp", "text", "utt2spk", "spk2utt")


def read_table_lines(path: str | Path, allow_empty_value: bool = False) -> dict[str, tuple[int, str]]:
    """Read `key value` lines into an ordered dict key -> (line number, value); a line that is not UTF-8, a blank
    line, a duplicate key or (by default) an empty value is an error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise EsgdError(f"{path}: no such file")
    table: dict[str, tuple[int, str]] = {}
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").rstrip("\n")
            except UnicodeDecodeError as err:
                raise EsgdError(f"{path}:{lineno}: not UTF-8 (byte {raw[err.start]:#04x} at column {err.start + 1})"
                                ) from None
            if not line.strip():
                raise EsgdError(f"{path}:{lineno}: empty line")
            key, _, value = line.strip().partition(" ")
            value = value.strip()
            if not value and not allow_empty_value:
                raise EsgdError(f"{path}:{lineno}: key '{key}' has an empty value")
            if key in table:
                raise EsgdError(f"{path}:{lineno}: duplicate key '{key}' (first on line {table[key][0]})")
            table[key] = (lineno, value)
    return table


def read_table(path: str | Path, allow_empty_value: bool = False) -> dict[str, str]:
    """Read `key value` lines into an ordered dict, checked as by read_table_lines."""
    return {key: value for key, (_, value) in read_table_lines(path, allow_empty_value).items()}


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


def split_share(keys: list[str], nj: int, job: int) -> list[str]:
    """Job `job` (1-based) of `nj`: a contiguous block of `keys`; the first len % nj blocks get one extra, as Kaldi's
    split_scp.pl deals out utterances (and, by speaker, split_data.sh)."""
    if nj < 1 or not 1 <= job <= nj:
        raise EsgdError(f"--job={job} must be in 1..--nj ({nj})")
    size, extra = divmod(len(keys), nj)
    start = (job - 1) * size + min(job - 1, extra)
    return keys[start:start + size + (job <= extra)]


@dataclass
class DataDir:
    """The contents of a Kaldi data dir, held as tables keyed by utterance / recording / speaker id."""

    wav_scp: dict[str, str]
    text: dict[str, str]
    utt2spk: dict[str, str]
    segments: dict[str, str] | None = None
    spk2gender: dict[str, str] = field(default_factory=dict)
    utt2dur: dict[str, float] = field(default_factory=dict)
    reco2file_and_channel: dict[str, str] = field(default_factory=dict)  # for CTM scoring: recording -> file channel

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
            reco2file_and_channel=_read_optional(path / "reco2file_and_channel"),
        )

    def write(self, path: str | Path) -> None:
        """Write every table into `path` (a fresh directory is built beside it and swapped in)."""
        with atomic_outputs() as stage:
            self.write_into(stage(path, directory=True))

    def write_into(self, path: Path) -> None:
        """Write every table into the existing directory `path`."""
        write_table(path / "wav.scp", self.wav_scp)
        write_table(path / "text", self.text)
        write_table(path / "utt2spk", self.utt2spk)
        write_table(path / "spk2utt", utt2spk_to_spk2utt(self.utt2spk))
        if self.segments is not None:
            write_table(path / "segments", self.segments)
        if self.spk2gender:
            write_table(path / "spk2gender", self.spk2gender)
        if self.utt2dur:
            write_table(path / "utt2dur", {k: f"{v:.3f}" for k, v in self.utt2dur.items()})
        if self.reco2file_and_channel:
            write_table(path / "reco2file_and_channel", self.reco2file_and_channel)


def _read_optional(path: Path) -> dict[str, str]:
    return read_table(path) if path.is_file() else {}


def check_wav_complete(path: str | Path, where: str) -> None:
    """Refuse a RIFF wav file whose header promises more audio data than the file holds (a truncated copy, which
    soundfile would read silently as a shorter recording)."""
    with open(path, "rb") as f:
        if f.read(12)[8:] != b"WAVE":
            return
        size, pos = os.fstat(f.fileno()).st_size, 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk, length = struct.unpack("<4sI", f.read(8))
            if chunk == b"data":
                if length != 0xFFFFFFFF and pos + 8 + length > size:  # 0xFFFFFFFF: the size of a streamed wav
                    raise EsgdError(f"{where}: '{path}' is truncated: its header promises {length} bytes of "
                                    f"audio, the file holds {size - pos - 8}")
                return
            pos += 8 + length + (length & 1)


def read_wav_entry(rxfilename: str, where: str) -> tuple[np.ndarray, int]:
    """Read the audio a wav.scp value describes: a file path, or a command ending in '|'."""
    try:
        if rxfilename.endswith("|"):
            proc = subprocess.run(rxfilename[:-1], shell=True, capture_output=True, check=True)
            return sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
        check_wav_complete(rxfilename, where)
        return sf.read(rxfilename, dtype="float32", always_2d=True)
    except subprocess.CalledProcessError as err:
        msg = err.stderr.decode(errors="replace").strip().splitlines()
        raise EsgdError(f"{where}: command failed: {rxfilename} ({msg[-1] if msg else err.returncode})") from None
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise EsgdError(f"{where}: cannot read audio '{rxfilename}': {err}") from None


def check_audio_header(rxfilename: str, where: str) -> None:
    """A wav.scp entry that is a file must have a readable, complete header (else an error naming it)."""
    if rxfilename.endswith("|"):
        return
    try:
        check_wav_complete(rxfilename, where)
        sf.info(rxfilename)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise EsgdError(f"{where}: cannot read audio '{rxfilename}': {err}") from None


# Kaldi's extract-segments --max-overshoot: a segment may end this much past its recording (it is cut there)
MAX_OVERSHOOT = 0.5

Lines = dict[str, tuple[int, str]]


def check_segment_ends(segments_path: Path, segments: Lines, durations: dict[str, float]) -> None:
    """Refuse a segment ending more than MAX_OVERSHOOT seconds past the end of its recording (where known)."""
    for utt, (lineno, value) in segments.items():
        reco, _, end = value.split()
        if reco in durations and float(end) > durations[reco] + MAX_OVERSHOOT:
            raise EsgdError(f"{segments_path}:{lineno}: segment '{utt}' ends at {float(end):g} s, past the end of "
                            f"recording '{reco}' ({durations[reco]:g} s) by more than {MAX_OVERSHOOT} s")


def check_utterances(path: Path, allow_empty_text: bool = False, wav: bool = True) -> tuple[Lines, Lines | None]:
    """The checks of a data dir's wav.scp, text, utt2spk and segments that need no audio and no sorting (every
    message names the file and line); returns the wav.scp and segments tables. wav=False: a features-only dir,
    without wav.scp."""
    for name in ("wav.scp", "text", "utt2spk") if wav else ("text", "utt2spk"):
        if not (path / name).is_file():
            raise EsgdError(f"{path / name}: missing")
    wav_scp = read_table_lines(path / "wav.scp") if wav else {}
    text = read_table_lines(path / "text", allow_empty_value=True)
    utt2spk = read_table_lines(path / "utt2spk")
    if not utt2spk:
        raise EsgdError(f"{path / 'utt2spk'}: no utterances")
    _same_keys(path / "text", text, path / "utt2spk", utt2spk)
    if not allow_empty_text:
        for utt, (lineno, words) in text.items():
            if not words:
                raise EsgdError(f"{path / 'text'}:{lineno}: empty transcript for utterance '{utt}'")
    if wav and (path / "reco2file_and_channel").is_file():
        _check_reco2file_and_channel(path / "reco2file_and_channel", wav_scp, path / "wav.scp")
    if not (path / "segments").is_file():
        if wav:
            _same_keys(path / "wav.scp", wav_scp, path / "utt2spk", utt2spk)
        return wav_scp, None
    segments = read_table_lines(path / "segments")
    _same_keys(path / "segments", segments, path / "utt2spk", utt2spk)
    for utt, (lineno, value) in segments.items():
        where = f"{path / 'segments'}:{lineno}"
        fields = value.split()
        try:
            start, end = float(fields[1]), float(fields[2])
        except (ValueError, IndexError):
            start = end = None
        if len(fields) != 3 or start is None:
            raise EsgdError(f"{where}: expected '<utterance> <recording> <start> <end>', got '{utt} {value}'")
        if wav and fields[0] not in wav_scp:
            raise EsgdError(f"{where}: recording '{fields[0]}' of segment '{utt}' is not in wav.scp")
        if not 0 <= start < end:
            raise EsgdError(f"{where}: segment '{utt}' has start {start:g} and end {end:g} (need 0 <= start < end)")
    return wav_scp, segments


def _check_reco2file_and_channel(path: Path, wav_scp: Lines, wav_path: Path) -> None:
    """Kaldi's checks: `<recording> <file> <channel>` lines, channel A or B (1 is accepted, as Kaldi does with a
    warning), for exactly the recordings of wav.scp."""
    table = read_table_lines(path)
    for reco, (lineno, value) in table.items():
        fields = value.split()
        if len(fields) != 2 or fields[1] not in ("A", "B", "1"):
            raise EsgdError(f"{path}:{lineno}: expected '<recording> <file> <channel A, B or 1>', got "
                            f"'{reco} {value}'")
    _same_keys(path, table, wav_path, wav_scp)


def check_source_dir(path: str | Path) -> Lines | None:
    """Check a Kaldi data dir to be imported, before anything is written: its tables as check_utterances does and
    every audio file's header; returns its segments, if any (their ends are checked once recordings are read)."""
    path = Path(path)
    wav_scp, segments = check_utterances(path)
    for reco, (lineno, rx) in wav_scp.items():
        check_audio_header(rx, f"{path / 'wav.scp'}:{lineno}: recording '{reco}'")
    return segments


def _check_sorted(path: Path, table: Lines) -> None:
    keys = list(table)
    for a, b in zip(keys, keys[1:]):
        if a.encode() >= b.encode():
            raise EsgdError(f"{path}:{table[b][0]}: not sorted ('{a}' then '{b}'); sort with LC_ALL=C")


def validate_data_dir(path: str | Path, check_audio: bool = True, allow_empty_text: bool = False,
                      wav: bool = True) -> DataDir:
    """Check a data dir as Kaldi's validate_data_dir.sh does; raise EsgdError naming the file and line. wav=False
    (Kaldi's --no-wav): wav.scp is neither needed nor checked, as by the steps that read only features."""
    path = Path(path)
    if not (path / "spk2utt").is_file():
        raise EsgdError(f"{path / 'spk2utt'}: missing")
    wav_scp, segments = check_utterances(path, allow_empty_text, wav)
    for name in ("wav.scp", "text", "utt2spk", "spk2utt", "segments", "spk2gender", "feats.scp", "cmvn.scp",
                 "reco2file_and_channel"):
        if (path / name).is_file() and (wav or name != "wav.scp"):
            _check_sorted(path / name, read_table_lines(path / name, allow_empty_value=name == "text"))
    data = DataDir.read(path) if wav else DataDir(wav_scp={}, text=read_table(path / "text", allow_empty_value=True),
                                                   utt2spk=read_table(path / "utt2spk"))
    spk2utt = read_table_lines(path / "spk2utt")
    if {k: v for k, (_, v) in spk2utt.items()} != utt2spk_to_spk2utt(data.utt2spk):
        raise EsgdError(f"{path / 'spk2utt'}: does not match utt2spk (regenerate it from utt2spk)")
    utt2spk = read_table_lines(path / "utt2spk")
    for utt, (lineno, spk) in utt2spk.items():
        if not utt.startswith(spk):
            raise EsgdError(f"{path / 'utt2spk'}:{lineno}: utterance '{utt}' does not start with its speaker id "
                            f"'{spk}'")
    if (path / "feats.scp").is_file():
        _same_keys(path / "feats.scp", read_table_lines(path / "feats.scp"), path / "utt2spk", utt2spk)
    if (path / "cmvn.scp").is_file():
        _same_keys(path / "cmvn.scp", read_table_lines(path / "cmvn.scp"), path / "spk2utt", spk2utt)
    if check_audio and wav:
        durations = {}
        for reco, (lineno, rx) in wav_scp.items():
            where = f"{path / 'wav.scp'}:{lineno}: recording '{reco}'"
            samples, rate = read_wav_entry(rx, where)
            if samples.size == 0:
                raise EsgdError(f"{where}: no samples")
            if not np.isfinite(samples).all():
                raise EsgdError(f"{where}: non-finite samples")
            durations[reco] = len(samples) / rate
        if segments is not None:
            check_segment_ends(path / "segments", segments, durations)
    return data


def _same_keys(path: Path, table: Lines, reference_path: Path, reference: Lines) -> None:
    """`table` (read from `path`) has exactly the keys of `reference`; else name the first line at fault."""
    for key, (lineno, _) in table.items():
        if key not in reference:
            raise EsgdError(f"{path}:{lineno}: '{key}' is not in {reference_path.name}")
    for key, (lineno, _) in reference.items():
        if key not in table:
            raise EsgdError(f"{reference_path}:{lineno}: '{key}' has no entry in {path.name}")
