"""Composable feature transforms on (T, D) tensors: CMVN, Kaldi add-deltas, Kaldi splice-feats.

Each transform is a callable `feats -> feats`; `Compose` chains them, so GMM and neural stages build their
front end as e.g. `Compose([ApplyCmvn(stats), AddDeltas()])` or `Compose([ApplyCmvn(stats), Splice(5, 5)])`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from esgd_asr.errors import EsgdError
from esgd_asr.features.cmvn import apply_cmvn

Transform = Callable[[torch.Tensor], torch.Tensor]


def _context_frames(feats: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(T, len(offsets), D): frame t + offset for every offset, clamped to the first / last frame."""
    if feats.ndim != 2 or feats.shape[0] == 0:
        raise EsgdError(f"expected a non-empty (frames, dim) feature matrix, got shape {tuple(feats.shape)}")
    index = (torch.arange(feats.shape[0])[:, None] + offsets[None, :]).clamp(0, feats.shape[0] - 1)
    return feats[index]


@functools.cache
def delta_scales(order: int, window: int) -> torch.Tensor:
    """(order + 1, 2 * order * window + 1) filters of Kaldi's DeltaFeatures, centred on the current frame:
    order 0 is the identity, order i convolves order i-1 with j / sum_{j=-N}^{N} j^2. Cached: do not modify."""
    if order < 0 or window < 1:
        raise EsgdError(f"delta order {order} and window {window}: need order >= 0 and window >= 1")
    width = order * window
    scales = torch.zeros(order + 1, 2 * width + 1, dtype=torch.float64)
    scales[0, width] = 1.0
    taps = torch.arange(-window, window + 1, dtype=torch.float64)
    normalizer = taps.square().sum()
    for i in range(1, order + 1):
        for j, tap in zip(range(-window, window + 1), taps):
            scales[i] += tap / normalizer * scales[i - 1].roll(j)
    return scales


def add_deltas(feats: torch.Tensor, order: int = 2, window: int = 2) -> torch.Tensor:
    """Kaldi add-deltas: [x, delta x, ..., delta^order x] per frame, edge frames repeated; (T, D * (order + 1))."""
    scales = delta_scales(order, window)
    width = order * window
    context = _context_frames(feats, torch.arange(-width, width + 1)).double()
    out = torch.einsum("tkd,ok->tod", context, scales)
    return out.reshape(feats.shape[0], -1).to(feats.dtype)


def splice(feats: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Kaldi splice-feats: frames t-left..t+right side by side, edge frames repeated; (T, D * (left + right + 1))."""
    if left < 0 or right < 0:
        raise EsgdError(f"splice context {left}/{right}: must not be negative")
    return _context_frames(feats, torch.arange(-left, right + 1)).reshape(feats.shape[0], -1)


@dataclass
class ApplyCmvn:
    """Normalise with fixed Kaldi CMVN stats (e.g. one speaker's); `name` labels errors."""

    stats: torch.Tensor
    norm_vars: bool = False
    name: str = "features"

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        return apply_cmvn(feats, self.stats, self.norm_vars, self.name)


@dataclass(frozen=True)
class AddDeltas:
    """Kaldi add-deltas as a transform."""

    order: int = 2
    window: int = 2

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        return add_deltas(feats, self.order, self.window)


@dataclass(frozen=True)
class Splice:
    """Kaldi splice-feats as a transform."""

    left: int = 4
    right: int = 4

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        return splice(feats, self.left, self.right)


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        for transform in self.transforms:
            feats = transform(feats)
        return feats

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"
