"""Kaldi ark/scp feature files through kaldiio: a writer that leaves nothing complete-looking on failure, a checked
reader that names the utterance of a missing or truncated matrix, and merging of per-job tables."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import kaldiio
import numpy as np
from kaldiio.matio import write_array

from esgd_asr.data.kaldi_dir import read_table, write_table
from esgd_asr.errors import EsgdError, writing


class ArkScpWriter:
    """Write binary matrices to `ark` and their `key ark:offset` lines to `scp` (sorted, written at the end).

    Use as a context manager: on an exception the ark is deleted and no scp is written. `scp_ark`, when given, is
    the path the scp lines name instead of `ark`: an ark written aside and moved there once complete.
    """

    def __init__(self, ark: str | Path, scp: str | Path, scp_ark: str | Path | None = None):
        self.ark, self.scp = Path(ark), Path(scp)
        self.scp_ark = Path(scp_ark or ark)
        if any(c.isspace() for c in str(self.scp_ark)):
            raise EsgdError(f"{self.scp_ark}: ark paths must not contain whitespace (scp lines are space-separated)")
        self.ark.parent.mkdir(parents=True, exist_ok=True)
        self.scp.unlink(missing_ok=True)  # a stale scp must not outlive the ark rewritten under it
        self.entries: dict[str, str] = {}
        self._file = open(self.ark, "wb")

    def write(self, key: str, matrix: np.ndarray) -> None:
        """Append one matrix (written as float32 or float64, as given) under `key`."""
        if not key or any(c.isspace() for c in key):
            raise EsgdError(f"{self.ark}: bad key '{key}'")
        if key in self.entries:
            raise EsgdError(f"{self.ark}: duplicate key '{key}'")
        matrix = np.ascontiguousarray(matrix)
        if matrix.dtype not in (np.float32, np.float64):
            matrix = matrix.astype(np.float32)
        with writing(self.ark):
            self._file.write(f"{key} ".encode())
            self.entries[key] = f"{self.scp_ark}:{self._file.tell()}"
            write_array(self._file, matrix)

    def close(self) -> None:
        """Finish the ark, then write the scp atomically."""
        with writing(self.ark):
            self._file.close()
        write_table(self.scp, self.entries)

    def abort(self) -> None:
        """Drop everything written so far."""
        self._file.close()
        self.ark.unlink(missing_ok=True)

    def __enter__(self) -> "ArkScpWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class ScpReader:
    """Random access to the matrices of an scp file, by key; failures name the scp, key and ark position."""

    def __init__(self, scp: str | Path, table: dict[str, str] | None = None):
        """`table`: entries to read instead of the scp's (messages still name `scp`)."""
        self.scp = Path(scp)
        self.table = read_table(self.scp) if table is None else table

    def __contains__(self, key: str) -> bool:
        return key in self.table

    def __len__(self) -> int:
        return len(self.table)

    def keys(self) -> list[str]:
        return list(self.table)

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self.table:
            raise EsgdError(f"{self.scp}: no entry for '{key}'")
        rxfile = self.table[key]
        where = f"{self.scp}: '{key}' ({rxfile})"
        ark, sep, offset = rxfile.rpartition(":")
        if sep and offset.isdigit() and not ark.endswith("|"):
            if not os.path.isfile(ark):
                raise EsgdError(f"{where}: no such ark file")
            if int(offset) >= os.path.getsize(ark):
                raise EsgdError(f"{where}: offset points past the end of the ark (truncated?)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                matrix = kaldiio.load_mat(rxfile)
        except Exception as err:  # kaldiio signals a short read with ValueError, AssertionError, EOFError, ...
            raise EsgdError(f"{where}: cannot read the matrix, truncated or corrupt ark "
                            f"({type(err).__name__}: {err})") from None
        if not isinstance(matrix, np.ndarray) or matrix.ndim != 2:
            raise EsgdError(f"{where}: expected a matrix")
        return matrix if matrix.flags.writeable else matrix.copy()  # kaldiio may hand out a read-only buffer

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for key in self.table:
            yield key, self[key]


def merge_tables(parts: Sequence[str | Path], out: str | Path) -> dict[str, str]:
    """Concatenate `key value` tables (e.g. per-job scp files) into `out`, sorted; a repeated key is an error."""
    merged: dict[str, str] = {}
    for part in parts:
        for key, value in read_table(part).items():
            if key in merged:
                raise EsgdError(f"{part}: key '{key}' already appears in an earlier part")
            merged[key] = value
    write_table(out, merged)
    return merged
