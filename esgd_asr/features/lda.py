"""Linear discriminant analysis on spliced frames (Kaldi's acc-lda + est-lda), and the options of LDA+MLLT training.

Statistics (per class c = pdf / senone id of the aligned frame, weighted by its posterior): count n_c, sum s_c, and
the total (uncentred) scatter S = sum_t w_t x_t x_t^T, all float64. Estimation, as Kaldi's LdaEstimate::Estimate:
N = sum n_c, m = sum s_c / N, total covariance T = S / N - m m^T, between-class covariance
B = sum_c (n_c / N) m_c m_c^T - m m^T, within-class W = T - B. With the Cholesky factor W = L L^T, the symmetric
L^-1 B L^-T = U diag(l) U^T (eigenvalues sorted decreasing), and the full transform is U^T L^-1: its output has
unit within-class covariance and diagonal between-class covariance diag(l), dimensions ordered by l (the
generalised eigenvalues of B v = l W v). The first `dim` rows are kept.

Offset: Kaldi's est-lda writes a (dim, D) linear matrix unless --remove-offset=true, when it appends the column
-M m so that the projected training data have zero mean. Here the matrix is always (dim, D + 1) (Kaldi's
transform-feats reads either form): the offset column is -M m with `remove_offset=True`, else zeros (Kaldi's
default, equivalent to the linear matrix).

Frames are given either as an alignment (T,) of class ids with optional per-frame weights (Kaldi's ali-to-post
plus weight-silence-post), a dense (T, C) posterior matrix, or sparse `Posteriors` triples.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from esgd_asr.errors import EsgdError
from esgd_asr.features.affine_io import load_stats, save_stats

log = logging.getLogger(__name__)

LDA_ACCS_FORMAT = "esgd-lda-accs"


class Posteriors(NamedTuple):
    """Sparse posteriors: entry n gives frame `frames[n]` weight `weights[n]` on class / Gaussian `index[n]`."""

    frames: torch.Tensor  # (N,) int64
    index: torch.Tensor  # (N,) int64
    weights: torch.Tensor  # (N,) float64


def as_posteriors(post, num_frames: int, num_index: int, weights=None, name: str = "posteriors") -> Posteriors:
    """Normalise posteriors to `Posteriors` (zero weights dropped), checking frame and index ranges.

    `post` is an integer (T,) alignment (weight 1, or `weights` (T,) per frame), a float (T, K) dense posterior
    matrix, or a `Posteriors` / (frames, index, weights) triple."""
    if isinstance(post, tuple):
        frames, index, w = (torch.as_tensor(p) for p in post)
        frames, index, w = frames.long().reshape(-1), index.long().reshape(-1), w.double().reshape(-1)
        if not frames.shape == index.shape == w.shape:
            raise EsgdError(f"{name}: frames, indices and weights differ in length")
    else:
        post = torch.as_tensor(post)
        if post.ndim == 1 and not post.is_floating_point():
            if post.shape[0] != num_frames:
                raise EsgdError(f"{name}: alignment has {post.shape[0]} frames, the features {num_frames}")
            frames, index = torch.arange(num_frames), post.long()
            w = torch.ones(num_frames, dtype=torch.float64) if weights is None else \
                torch.as_tensor(weights).double().reshape(-1)
            if w.shape[0] != num_frames:
                raise EsgdError(f"{name}: {w.shape[0]} frame weights for {num_frames} frames")
        elif post.ndim == 2:
            if post.shape != (num_frames, num_index):
                raise EsgdError(f"{name}: posterior matrix of shape {tuple(post.shape)}, expected "
                                f"({num_frames}, {num_index})")
            frames, index = post.nonzero(as_tuple=True)
            w = post[frames, index].double()
        else:
            raise EsgdError(f"{name}: expected an integer alignment, a (frames, classes) matrix or sparse triples")
    if w.numel() and not bool(torch.isfinite(w).all()):
        raise EsgdError(f"{name}: NaN or infinity in the weights")
    if frames.numel():
        if int(frames.min()) < 0 or int(frames.max()) >= num_frames:
            raise EsgdError(f"{name}: frame index outside 0..{num_frames - 1}")
        if int(index.min()) < 0 or int(index.max()) >= num_index:
            bad = int(index.max()) if int(index.max()) >= num_index else int(index.min())
            raise EsgdError(f"{name}: class / Gaussian index {bad} outside 0..{num_index - 1}")
    keep = w != 0
    return Posteriors(frames[keep], index[keep], w[keep])


@dataclass
class LdaMlltOptions:
    """Options of LDA+MLLT training (conf/lda.conf), named and defaulted as Kaldi's steps/train_lda_mllt.sh."""

    left_context: int = 4  # splice-feats --left-context
    right_context: int = 4
    dim: int = 40  # est-lda --dim
    remove_offset: bool = False  # est-lda --remove-offset (Kaldi's default false)
    allow_large_dim: bool = False  # est-lda --allow-large-dim (dim >= number of classes)
    silence_weight: float = 0.0  # weight-silence-post before acc-lda / gmm-acc-mllt
    num_iters: int = 35  # training passes of the LDA+MLLT system
    mllt_iters: str = "2,4,6,12"  # passes after which MLLT is re-estimated
    mllt_update_iters: int = 200  # row sweeps of one MLLT update (Kaldi's MlltAccs::Update)

    def mllt_iteration_set(self) -> list[int]:
        try:
            iters = sorted({int(s) for s in self.mllt_iters.replace(",", " ").split()})
        except ValueError:
            raise EsgdError(f"--mllt-iters={self.mllt_iters}: expected comma-separated integers") from None
        if any(not 1 <= i <= self.num_iters for i in iters):
            raise EsgdError(f"--mllt-iters={self.mllt_iters}: iterations must lie in 1..{self.num_iters}")
        return iters

    @property
    def splice_width(self) -> int:
        return self.left_context + self.right_context + 1


@dataclass
class LdaResult:
    """The estimated transform and its diagnostics."""

    matrix: torch.Tensor  # (dim, D + 1), offset column last
    full: torch.Tensor  # (D, D): all rows, no offset (Kaldi's est-lda --write-full-matrix)
    eigenvalues: torch.Tensor  # (D,) decreasing: between-class variance of each output dim (within-class is 1)
    total_mean: torch.Tensor  # (D,)
    count: float


class LdaAccs:
    """Kaldi's LdaEstimate statistics: per-class counts and sums, and the total scatter (float64)."""

    def __init__(self, num_classes: int, dim: int):
        if num_classes < 1 or dim < 1:
            raise EsgdError(f"LDA statistics need at least one class and dimension, got {num_classes}, {dim}")
        self.zero = torch.zeros(num_classes, dtype=torch.float64)
        self.first = torch.zeros(num_classes, dim, dtype=torch.float64)
        self.second = torch.zeros(dim, dim, dtype=torch.float64)

    @property
    def num_classes(self) -> int:
        return self.zero.shape[0]

    @property
    def dim(self) -> int:
        return self.first.shape[1]

    @property
    def count(self) -> float:
        return float(self.zero.sum())

    def accumulate(self, feats, classes, weights=None, name: str = "features") -> None:
        """Add one utterance's (T, D) spliced frames with their classes (see `as_posteriors`)."""
        x = torch.as_tensor(feats)
        if x.ndim != 2 or x.shape[0] == 0:
            raise EsgdError(f"{name}: expected a non-empty (frames, dim) feature matrix, got shape {tuple(x.shape)}")
        if x.shape[1] != self.dim:
            raise EsgdError(f"{name}: feature dim {x.shape[1]} differs from the LDA statistics' dim {self.dim}")
        x = x.double()
        post = as_posteriors(classes, x.shape[0], self.num_classes, weights, name)
        if post.frames.numel() == 0:
            return
        wx = post.weights[:, None] * x[post.frames]
        self.zero.index_add_(0, post.index, post.weights)
        self.first.index_add_(0, post.index, wx)
        self.second += wx.T @ x[post.frames]

    def __iadd__(self, other: "LdaAccs") -> "LdaAccs":
        if other.first.shape != self.first.shape:
            raise EsgdError(f"LDA statistics of shape {tuple(other.first.shape)} and {tuple(self.first.shape)} "
                            f"cannot be added")
        self.zero += other.zero
        self.first += other.first
        self.second += other.second
        return self

    def save(self, path: str | Path) -> None:
        save_stats(path, LDA_ACCS_FORMAT, zero=self.zero.numpy(), first=self.first.numpy(),
                   second=self.second.numpy())

    @classmethod
    def load(cls, path: str | Path) -> "LdaAccs":
        data = load_stats(path, LDA_ACCS_FORMAT)
        accs = cls(*data["first"].shape)
        accs.zero, accs.first, accs.second = (torch.from_numpy(data[k]).double() for k in ("zero", "first", "second"))
        return accs

    def estimate(self, dim: int = 40, remove_offset: bool = False, allow_large_dim: bool = False) -> LdaResult:
        """The (dim, D + 1) LDA transform (see the module doc)."""
        total = self.count
        if total <= 0:
            raise EsgdError("LDA: no statistics (total count is zero)")
        if not 1 <= dim <= self.dim:
            raise EsgdError(f"LDA: --dim={dim} must lie in 1..{self.dim} (the spliced feature dim)")
        if dim >= self.num_classes and not allow_large_dim:
            raise EsgdError(f"LDA: --dim={dim} needs more than {dim} classes (have {self.num_classes}; the "
                            f"between-class covariance has rank at most classes - 1); use --allow-large-dim")
        mean = self.first.sum(0) / total
        total_cov = self.second / total - torch.outer(mean, mean)
        seen = self.zero > 0
        class_means = self.first[seen] / self.zero[seen, None]
        between = (class_means.T * (self.zero[seen] / total)) @ class_means - torch.outer(mean, mean)
        within = total_cov - between
        within = 0.5 * (within + within.T)
        chol, info = torch.linalg.cholesky_ex(within)
        if int(info) != 0:
            raise EsgdError(f"LDA: the within-class covariance is singular ({total:g} frames, "
                            f"{int(seen.sum())} classes seen): too little data or constant feature dims")
        eye = torch.eye(self.dim, dtype=torch.float64)
        chol_inv = torch.linalg.solve_triangular(chol, eye, upper=False)
        middle = chol_inv @ between @ chol_inv.T
        evals, evecs = torch.linalg.eigh(0.5 * (middle + middle.T))
        order = torch.argsort(evals, descending=True)
        evals, evecs = evals[order], evecs[:, order]
        full = evecs.T @ chol_inv
        # sign convention (Kaldi's SVD leaves it arbitrary): the largest-magnitude entry of each row is positive
        sign = torch.sign(full.gather(1, full.abs().argmax(1, keepdim=True))).squeeze(1)
        full = full * sign[:, None]
        m = full[:dim]
        offset = -(m @ mean) if remove_offset else torch.zeros(dim, dtype=torch.float64)
        log.info("LDA: %g frames; eigenvalues %s; selected %d of sum %.4g: %.4g", total,
                 " ".join(f"{v:.3g}" for v in evals.tolist()), dim, float(evals.sum()), float(evals[:dim].sum()))
        return LdaResult(torch.cat([m, offset[:, None]], 1), full, evals, mean, total)
