"""Cepstral mean and variance normalisation with Kaldi's statistics layout.

Stats are a float64 (2, dim + 1) matrix: row 0 holds the per-dimension sums then the frame count, row 1 the sums
of squares then 0 (Kaldi's compute-cmvn-stats / apply-cmvn; 1-row stats are accepted for mean-only use).
"""
from __future__ import annotations

import torch

from esgd_asr.errors import EsgdError

VARIANCE_FLOOR = 1.0e-20


def _matrix(feats, name: str) -> torch.Tensor:
    feats = torch.as_tensor(feats)
    if feats.ndim != 2 or feats.shape[0] == 0:
        raise EsgdError(f"{name}: expected a non-empty (frames, dim) feature matrix, got shape {tuple(feats.shape)}")
    return feats


def cmvn_stats(feats, name: str = "features") -> torch.Tensor:
    """Kaldi CMVN stats (2, dim + 1) of one (T, dim) feature matrix."""
    x = _matrix(feats, name).double()
    stats = torch.zeros(2, x.shape[1] + 1, dtype=torch.float64)
    stats[0, :-1] = x.sum(dim=0)
    stats[1, :-1] = x.square().sum(dim=0)
    stats[0, -1] = x.shape[0]
    return stats


def add_cmvn_stats(total: torch.Tensor | None, feats, name: str = "features") -> torch.Tensor:
    """`total` plus the stats of `feats` (a new tensor; `total` may be None); dims must agree."""
    stats = cmvn_stats(feats, name)
    if total is None:
        return stats
    if total.shape != stats.shape:
        raise EsgdError(f"{name}: feature dim {stats.shape[1] - 1} differs from the {total.shape[1] - 1} "
                        f"accumulated so far")
    return total + stats


def check_cmvn_stats(stats, dim: int, norm_vars: bool, name: str) -> torch.Tensor:
    """Stats as a float64 tensor, checked for shape and count as Kaldi's apply-cmvn does."""
    stats = torch.as_tensor(stats).double()
    rows = (2,) if norm_vars else (1, 2)
    if stats.ndim != 2 or stats.shape[0] not in rows or stats.shape[1] != dim + 1:
        raise EsgdError(f"{name}: CMVN stats of shape {tuple(stats.shape)} do not fit features of dim {dim}"
                        + (" with variance normalisation" if norm_vars else ""))
    count = float(stats[0, -1])
    if count < 1.0:
        raise EsgdError(f"{name}: insufficient CMVN stats (count {count:g})")
    return stats


def cmvn_offset_scale(stats: torch.Tensor, norm_vars: bool, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(offset, scale) with normalised = feats * scale + offset; variances are floored at 1e-20 as in Kaldi."""
    count = stats[0, -1]
    mean = stats[0, :-1] / count
    if not norm_vars:
        return -mean, torch.ones_like(mean)
    var = (stats[1, :-1] / count - mean.square()).clamp_min(VARIANCE_FLOOR)
    scale = var.rsqrt()
    if not bool(torch.isfinite(scale).all()):
        raise EsgdError(f"{name}: NaN or infinity in the CMVN statistics")
    return -mean * scale, scale


def apply_cmvn(feats, stats, norm_vars: bool = False, name: str = "features") -> torch.Tensor:
    """Normalise (T, dim) features with Kaldi CMVN stats: subtract the mean, and divide by the std if `norm_vars`."""
    x = _matrix(feats, name)
    offset, scale = cmvn_offset_scale(check_cmvn_stats(stats, x.shape[1], norm_vars, name), norm_vars, name)
    out = x.double() * scale + offset if norm_vars else x.double() + offset
    return out.to(x.dtype if x.is_floating_point() else torch.float32)
