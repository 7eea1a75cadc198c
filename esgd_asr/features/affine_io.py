"""Affine feature transforms in Kaldi's conventions: reading / writing matrices (final.mat, trans.*), applying and
composing them, and per-speaker transform tables.

A transform is an (R, D) linear or (R, D + 1) affine matrix whose last column is the offset, applied to a (T, D)
feature matrix as x' = A x (+ b), as Kaldi's transform-feats does; compose(a, b) is "b first, then a", as Kaldi's
compose-transforms. Single matrices are written in Kaldi's binary form (kaldiio-readable, float32 like Kaldi's
BaseFloat) or Kaldi's text form (`[ ... ]`); tables of matrices (one per speaker) are ark + scp pairs.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import kaldiio
import numpy as np
import torch
from kaldiio.matio import write_array

from esgd_asr.atomic import atomic_path, atomic_write_bytes
from esgd_asr.errors import EsgdError
from esgd_asr.features.feature_io import ArkScpWriter, ScpReader


def as_matrix(matrix, name: str = "matrix") -> torch.Tensor:
    """A 2-D float64 tensor from a numpy array / tensor, with finite entries."""
    m = torch.as_tensor(np.asarray(matrix) if not isinstance(matrix, torch.Tensor) else matrix).double()
    if m.ndim != 2 or m.numel() == 0:
        raise EsgdError(f"{name}: expected a non-empty matrix, got shape {tuple(m.shape)}")
    if not bool(torch.isfinite(m).all()):
        raise EsgdError(f"{name}: NaN or infinity in the matrix")
    return m


def split_affine(matrix, input_dim: int, name: str = "transform") -> tuple[torch.Tensor, torch.Tensor]:
    """(A, b) of an (R, D) or (R, D + 1) transform for inputs of dim D; any other width is an error naming `name`."""
    m = as_matrix(matrix, name)
    if m.shape[1] == input_dim:
        return m, torch.zeros(m.shape[0], dtype=m.dtype)
    if m.shape[1] == input_dim + 1:
        return m[:, :-1], m[:, -1]
    raise EsgdError(f"{name}: transform of shape {tuple(m.shape)} does not fit features of dim {input_dim} "
                    f"(needs {input_dim} or {input_dim + 1} columns)")


def apply_affine(feats, matrix, name: str = "features") -> torch.Tensor:
    """Kaldi transform-feats: (T, D) -> (T, R), x' = A x + b, computed in float64, returned in the input's float
    dtype (float32 for integer input); `name` (e.g. the utterance) labels errors."""
    x = torch.as_tensor(feats)
    if x.ndim != 2 or x.shape[0] == 0:
        raise EsgdError(f"{name}: expected a non-empty (frames, dim) feature matrix, got shape {tuple(x.shape)}")
    A, b = split_affine(matrix, x.shape[1], name)
    A, b = A.to(x.device), b.to(x.device)
    out = x.double() @ A.T + b
    return out.to(x.dtype if x.is_floating_point() else torch.float32)


def compose_affine(a, b, b_is_affine: bool = True, name: str = "compose") -> torch.Tensor:
    """Kaldi compose-transforms: the transform applying `b` then `a`, as an (R_a, D + 1) affine matrix.

    `b` is (R_b, D + 1) with its offset in the last column (or (R_b, D) linear with `b_is_affine=False`, Kaldi's
    --b-is-affine); `a` is (R_a, R_b) linear or (R_a, R_b + 1) affine, told apart by its width."""
    bm = as_matrix(b, f"{name}: second transform")
    if not b_is_affine:
        bm = torch.cat([bm, torch.zeros(bm.shape[0], 1, dtype=bm.dtype)], dim=1)
    Ab, bb = bm[:, :-1], bm[:, -1]
    Aa, ba = split_affine(a, bm.shape[0], f"{name}: first transform")
    return torch.cat([Aa @ Ab, (Aa @ bb + ba)[:, None]], dim=1)


def identity_affine(dim: int, dtype=torch.float64) -> torch.Tensor:
    """[I 0]: the (dim, dim + 1) transform that changes nothing."""
    return torch.cat([torch.eye(dim, dtype=dtype), torch.zeros(dim, 1, dtype=dtype)], dim=1)


@dataclass
class AffineTransform:
    """A fixed transform as a `transforms.Compose` step; `name` labels errors."""

    matrix: torch.Tensor
    name: str = "features"

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        return apply_affine(feats, self.matrix, self.name)


# ----------------------------------------------------------------------------------------------------------------
# files

def matrix_to_text(matrix) -> str:
    """Kaldi's text form of a matrix: ` [` then one row per line, the last closed by `]`."""
    m = np.asarray(as_matrix(matrix).numpy(), dtype=np.float64)
    rows = ["  " + " ".join(f"{v:.9g}" for v in row) for row in m]
    return " [\n" + "\n".join(rows) + " ]\n"


def write_matrix(path: str | Path, matrix, binary: bool = True, double: bool = False) -> None:
    """Write one matrix atomically: Kaldi binary (float32, or float64 if `double`) or Kaldi text."""
    path = Path(path)
    m = as_matrix(matrix, str(path)).numpy()
    if binary:
        buf = io.BytesIO()
        write_array(buf, np.ascontiguousarray(m, dtype=np.float64 if double else np.float32))
        atomic_write_bytes(path, buf.getvalue())
    else:
        atomic_write_bytes(path, matrix_to_text(m).encode())


def read_matrix(path: str | Path) -> np.ndarray:
    """Read one Kaldi matrix file (binary or text) as float64; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise EsgdError(f"{path}: no such matrix file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = kaldiio.load_mat(str(path))
    except Exception as err:  # kaldiio raises ValueError, AssertionError, ... on bad input
        raise EsgdError(f"{path}: not a readable Kaldi matrix ({type(err).__name__}: {err})") from None
    if not isinstance(m, np.ndarray) or m.ndim != 2 or m.size == 0:
        raise EsgdError(f"{path}: expected a non-empty matrix")
    return np.array(m, dtype=np.float64)


def write_transforms(ark: str | Path, scp: str | Path, transforms: Mapping[str, object]) -> None:
    """Per-speaker (or per-utterance) transforms as an ark + scp (Kaldi's trans.JOB), float32, sorted by key."""
    with ArkScpWriter(ark, scp) as writer:
        for key in sorted(transforms, key=str.encode):
            writer.write(key, as_matrix(transforms[key], f"{ark}: '{key}'").numpy().astype(np.float32))


class TransformTable:
    """Transforms keyed by speaker (or utterance) from an scp (random access) or an ark (read whole), or a dict."""

    def __init__(self, source: str | Path | Mapping[str, object]):
        if isinstance(source, Mapping):
            self.where = "transforms"
            self._table: Mapping = {k: np.asarray(v, dtype=np.float64) for k, v in source.items()}
            return
        path = Path(source)
        self.where = str(path)
        if path.suffix == ".scp":
            self._table = ScpReader(path)
            return
        if not path.is_file():
            raise EsgdError(f"{path}: no such transform archive")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._table = {k: np.array(v, dtype=np.float64) for k, v in kaldiio.load_ark(str(path))}
        except Exception as err:
            raise EsgdError(f"{path}: not a readable archive of matrices ({type(err).__name__}: {err})") from None

    def __contains__(self, key: str) -> bool:
        return key in self._table

    def keys(self) -> list[str]:
        return list(self._table.keys())

    def __len__(self) -> int:
        return len(self._table)

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._table:
            raise EsgdError(f"{self.where}: no transform for '{key}'")
        return np.asarray(self._table[key], dtype=np.float64)


# ----------------------------------------------------------------------------------------------------------------
# accumulator files (npz, atomic; jobs' files are summed by the accumulators' own __iadd__)

def save_stats(path: str | Path, fmt: str, **arrays) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, format=np.array(fmt), **{k: np.asarray(v) for k, v in arrays.items()})


def load_stats(path: str | Path, fmt: str) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise EsgdError(f"{path}: no such statistics file")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as err:
        raise EsgdError(f"{path}: not a readable statistics file ({type(err).__name__})") from None
    if str(data.pop("format", "")) != fmt:
        raise EsgdError(f"{path}: not an {fmt} statistics file")
    return data
