"""Diagonal-covariance universal background model (UBM) for i-vectors, trained by EM in torch.

Training follows Kaldi's steps/online/nnet2/train_diag_ubm.sh: an in-memory initialisation like
gmm-global-init-from-feats (means on distinct random frames, the global variance everywhere, EM on a random
subset of frames while splitting the heaviest Gaussians from `initial_gauss_proportion * num_gauss` up to
`num_gauss` by half-way), then a few EM passes with top-N Gaussian selection (recomputed every pass; Kaldi keeps
the selection of the initial model). Gaussians whose weight falls below `min_gaussian_weight` keep their mean and
variance (and are removed after the last pass if asked, as Kaldi does).

The model file also records the FrontEnd (CMVN from cmvn.scp, deltas) its features went through, so the
i-vector stages reproduce it from a data dir. File format (torch.save of a dict, read with weights_only):
`{"format": "esgd-diag-ubm", "weights": (C,), "means": (C, D), "variances": (C, D), "front_end": {...}}`.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from esgd_asr.atomic import atomic_torch_save
from esgd_asr.errors import EsgdError
from esgd_asr.features.feature_source import FrontEnd

log = logging.getLogger(__name__)

UBM_FORMAT = "esgd-diag-ubm"
CHUNK_FRAMES = 16384


class DiagGmm:
    """A diagonal-covariance GMM: weights (C,), means (C, D), variances (C, D), on any device."""

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, variances: torch.Tensor):
        self.weights, self.means, self.variances = weights, means, variances
        inv_var = 1.0 / variances
        # log N(x; mu, var) + log w = gconst + [x, x^2] @ proj
        self._proj = torch.cat([means * inv_var, -0.5 * inv_var], 1).T.contiguous()
        self._gconst = torch.log(weights.clamp_min(1e-30)) - 0.5 * (
            torch.log(2 * math.pi * variances).sum(1) + (means * means * inv_var).sum(1))

    @property
    def num_gauss(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def to(self, device=None, dtype=None) -> "DiagGmm":
        return DiagGmm(*(t.to(device=device, dtype=dtype) for t in (self.weights, self.means, self.variances)))

    def check_dim(self, dim: int, where: str) -> None:
        """Raise an EsgdError naming `where` unless features of width `dim` fit this model."""
        if dim != self.dim:
            raise EsgdError(f"{where}: feature dimension {dim} does not match the UBM's dimension {self.dim}")

    def component_loglikes(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C) log(w_c N(x_n; mu_c, var_c))."""
        return torch.addmm(self._gconst, torch.cat([x, x * x], 1), self._proj)

    def posteriors(self, x: torch.Tensor, num_gselect: int | None = None,
                   min_post: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense (N, C) posteriors over the top `num_gselect` Gaussians (all if None), pruned below `min_post`
        (the best is always kept) and renormalised as Kaldi's gmm-global-get-post; plus (N,) exact log-likes."""
        ll = self.component_loglikes(x)
        total = torch.logsumexp(ll, 1)
        if num_gselect is None or num_gselect >= self.num_gauss:
            post = torch.exp(ll - total[:, None])
            if min_post > 0:
                post = _prune(post, post.argmax(1, keepdim=True), min_post)
            return post, total
        top, idx = ll.topk(num_gselect, dim=1)
        top_post = torch.softmax(top, 1)
        if min_post > 0:
            top_post = _prune(top_post, torch.zeros_like(idx[:, :1]), min_post)
        return torch.zeros_like(ll).scatter_(1, idx, top_post), total

    def split(self, target: int, perturb_factor: float, generator: torch.Generator) -> "DiagGmm":
        """Split the heaviest Gaussian repeatedly until there are `target`: halve its weight and move the two
        means apart by +-perturb_factor standard deviations along a random direction (Kaldi's DiagGmm::Split)."""
        w, m, v = self.weights.clone(), self.means.clone(), self.variances.clone()
        for _ in range(target - self.num_gauss):
            i = int(w.argmax())
            delta = perturb_factor * v[i].sqrt() * torch.randn(self.dim, generator=generator,
                                                               dtype=m.dtype).to(m.device)
            w[i] *= 0.5
            w, m, v = torch.cat([w, w[i:i + 1]]), torch.cat([m, (m[i] + delta)[None]]), torch.cat([v, v[i:i + 1]])
            m[i] -= delta
        return DiagGmm(w, m, v)

    def save(self, path: str | Path, front_end: FrontEnd) -> None:
        """Write the model (float32, CPU) and its front end atomically."""
        state = {"format": UBM_FORMAT, "weights": self.weights.float().cpu(), "means": self.means.float().cpu(),
                 "variances": self.variances.float().cpu(), "front_end": dataclasses.asdict(front_end)}
        atomic_torch_save(state, path)

    @classmethod
    def load(cls, path: str | Path) -> tuple["DiagGmm", FrontEnd]:
        state = load_state(path, UBM_FORMAT)
        try:
            return cls.from_state(state, path), FrontEnd(**state["front_end"])
        except (KeyError, TypeError) as err:
            raise EsgdError(f"{path}: malformed UBM ({err})") from err

    @classmethod
    def from_state(cls, state: dict, path: str | Path) -> "DiagGmm":
        """A model from the tensors of a saved state; errors name `path`."""
        try:
            return cls(state["weights"], state["means"], state["variances"])
        except (KeyError, TypeError, RuntimeError) as err:
            raise EsgdError(f"{path}: malformed UBM ({err})") from err


def _prune(post: torch.Tensor, best: torch.Tensor, min_post: float) -> torch.Tensor:
    keep = (post >= min_post).scatter_(1, best, True)
    post = post * keep
    return post / post.sum(1, keepdim=True)


def load_state(path: str | Path, expected_format: str) -> dict:
    """Read a model dict written by atomic_torch_save and check its format tag."""
    if not Path(path).is_file():
        raise EsgdError(f"{path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt file
        raise EsgdError(f"{path}: cannot read model ({err})") from err
    if not isinstance(state, dict) or state.get("format") != expected_format:
        raise EsgdError(f"{path}: not an {expected_format} model file")
    return state


class NumberedModels:
    """The checkpoints of train_diag_ubm / train_extractor: the model after pass n as <exp_dir>/n<suffix>, written
    with `write(model, path)`, the newest only (what --stage n continues from)."""

    def __init__(self, exp_dir: Path, suffix: str, write: Callable[[object, Path], None]):
        self.exp_dir, self.suffix, self.write = exp_dir, suffix, write

    def path(self, n: int) -> Path:
        return self.exp_dir / f"{n}{self.suffix}"

    def clear(self) -> None:
        """Remove an earlier run's numbered models (a run afresh)."""
        for old in self.exp_dir.glob(f"[0-9]*{self.suffix}"):
            old.unlink()

    def __call__(self, n: int, model) -> None:
        self.write(model, self.path(n))
        self.path(n - 1).unlink(missing_ok=True)


@dataclass
class GmmStats:
    """Zeroth, first and (diagonal) second-order statistics of frames under a GMM, in float64."""

    count: torch.Tensor
    first: torch.Tensor
    second: torch.Tensor
    loglike: float = 0.0
    num_frames: int = 0

    @classmethod
    def accumulate(cls, gmm: DiagGmm, frames: torch.Tensor, num_gselect: int | None = None,
                   chunk_frames: int = CHUNK_FRAMES) -> "GmmStats":
        """Accumulate over `frames` (N, D) in chunks; the log-likelihood is exact (over all Gaussians)."""
        dev = gmm.means.device
        stats = cls(torch.zeros(gmm.num_gauss, dtype=torch.float64, device=dev),
                    torch.zeros(gmm.num_gauss, gmm.dim, dtype=torch.float64, device=dev),
                    torch.zeros(gmm.num_gauss, gmm.dim, dtype=torch.float64, device=dev))
        loglike = torch.zeros((), dtype=torch.float64, device=dev)
        for start in range(0, frames.shape[0], chunk_frames):
            x = frames[start:start + chunk_frames].to(device=dev, dtype=gmm.means.dtype)
            post, ll = gmm.posteriors(x, num_gselect)
            stats.count += post.sum(0)
            stats.first += post.T @ x
            stats.second += post.T @ (x * x)
            loglike += ll.sum(dtype=torch.float64)
        stats.loglike, stats.num_frames = float(loglike), frames.shape[0]
        return stats


def mle_update(gmm: DiagGmm, stats: GmmStats, min_variance: float = 0.001, min_gaussian_weight: float = 1e-4,
               remove_low_count: bool = False) -> DiagGmm:
    """Maximum-likelihood re-estimation with a variance floor. Gaussians lighter than `min_gaussian_weight`
    keep their mean and variance, or are removed when `remove_low_count` is set."""
    dtype = gmm.means.dtype
    weights = stats.count / stats.count.sum()
    low = weights < min_gaussian_weight
    occ = stats.count.clamp_min(1e-30)[:, None]
    means = stats.first / occ
    variances = (stats.second / occ - means * means).clamp_min(min_variance)
    means = torch.where(low[:, None], gmm.means.double(), means)
    variances = torch.where(low[:, None], gmm.variances.double(), variances)
    if remove_low_count and bool(low.any()):
        keep = ~low
        log.info("removing %d Gaussians with weight below %g", int(low.sum()), min_gaussian_weight)
        weights, means, variances = weights[keep] / weights[keep].sum(), means[keep], variances[keep]
    return DiagGmm(weights.to(dtype), means.to(dtype), variances.to(dtype))


@dataclass
class UbmOptions:
    """Options of UBM training, named and defaulted as in Kaldi's train_diag_ubm.sh."""

    num_gauss: int = 256
    num_iters_init: int = 20
    initial_gauss_proportion: float = 0.5
    num_frames: int = 500000
    num_iters: int = 4
    num_gselect: int = 30
    min_gaussian_weight: float = 1e-4
    min_variance: float = 0.001
    remove_low_count_gaussians: bool = True
    srand: int = 0


def init_from_frames(frames: torch.Tensor, num_gauss: int, num_gauss_init: int, num_iters: int,
                     min_variance: float, min_gaussian_weight: float, generator: torch.Generator,
                     history: list[dict] | None = None) -> DiagGmm:
    """Kaldi's gmm-global-init-from-feats on in-memory frames (N, D): full-posterior EM with splitting."""
    num_frames = frames.shape[0]
    if num_frames < 10 * num_gauss:
        raise EsgdError(f"too few frames ({num_frames}) to train {num_gauss} Gaussians: need at least 10 per "
                        "Gaussian (lower --num-gauss or --subsample)")
    var = frames.double().var(0, unbiased=False)
    if float(var.max()) <= 0:
        raise EsgdError("features have no positive variance")
    pick = torch.randperm(num_frames, generator=generator)[:num_gauss_init].to(frames.device)
    gmm = DiagGmm(torch.full((num_gauss_init,), 1.0 / num_gauss_init, dtype=frames.dtype, device=frames.device),
                  frames[pick].clone(), var.to(frames.dtype).expand(num_gauss_init, -1).clone())
    gauss_inc = -(-(num_gauss - num_gauss_init) // max(1, num_iters // 2))
    for it in range(num_iters):
        stats = GmmStats.accumulate(gmm, frames)
        _log_iter("init", it, stats, gmm, history)
        gmm = mle_update(gmm, stats, min_variance, min_gaussian_weight)
        if gmm.num_gauss < num_gauss:
            gmm = gmm.split(min(num_gauss, gmm.num_gauss + gauss_inc), 0.1, generator)
            log.info("split to %d Gaussians", gmm.num_gauss)
    return gmm


def train_diag_ubm(frames: torch.Tensor, opts: UbmOptions = UbmOptions(), device: str | torch.device = "cpu",
                   history: list[dict] | None = None, start: tuple[int, DiagGmm] | None = None,
                   checkpoint: Callable[[int, DiagGmm], None] | None = None) -> DiagGmm:
    """Train a UBM on `frames` (N, D): initialise on a random subset of `num_frames`, then `num_iters` EM
    passes over all frames with top-`num_gselect` posteriors. Per-iteration log-likelihoods go to `history`.
    `checkpoint(n, gmm)` gets the model after the initialisation (n = 0) and after each EM pass n; `start = (n,
    gmm)` continues from such a model (no initialisation), ending with the model of an uninterrupted run."""
    frames = frames.to(device=device, dtype=torch.float32)
    if start is None:
        generator = torch.Generator().manual_seed(opts.srand)
        subset = frames
        if frames.shape[0] > opts.num_frames:
            subset = frames[torch.randperm(frames.shape[0], generator=generator)[:opts.num_frames].to(frames.device)]
        num_gauss_init = max(1, int(opts.initial_gauss_proportion * opts.num_gauss))
        gmm = init_from_frames(subset, opts.num_gauss, num_gauss_init, opts.num_iters_init, opts.min_variance,
                               opts.min_gaussian_weight, generator, history)
        first = 0
        if checkpoint is not None:
            checkpoint(0, gmm)
    else:
        first, gmm = start[0], start[1].to(device=frames.device, dtype=torch.float32)
    for it in range(first, opts.num_iters):
        stats = GmmStats.accumulate(gmm, frames, opts.num_gselect)
        _log_iter("em", it, stats, gmm, history)
        last = it == opts.num_iters - 1
        gmm = mle_update(gmm, stats, opts.min_variance, opts.min_gaussian_weight,
                         remove_low_count=last and opts.remove_low_count_gaussians)
        if checkpoint is not None:
            checkpoint(it + 1, gmm)
    return gmm


def _log_iter(phase: str, it: int, stats: GmmStats, gmm: DiagGmm, history: list[dict] | None) -> None:
    per_frame = stats.loglike / stats.num_frames
    log.info("%s iteration %d: log-likelihood per frame %.5f over %d frames (%d Gaussians)",
             phase, it, per_frame, stats.num_frames, gmm.num_gauss)
    if history is not None:
        history.append({"phase": phase, "iter": it, "loglike": per_frame, "num_gauss": gmm.num_gauss})
