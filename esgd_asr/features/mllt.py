"""MLLT / semi-tied covariance (Kaldi's gmm-acc-mllt + est-mllt, Gopinath's / Gales's method), and the diagonal
Gaussians (with their within-pdf posteriors) that MLLT and fMLLR statistics are gathered against.

Model: in the space y = A x of the current features x, Gaussian g has mean A mu_g and diagonal variances s_g
(mu_g, s_g the current model's). The auxiliary function of a square A, given Gaussian posteriors gamma_tg, is

    Q(A) = beta log|det A| - 1/2 sum_i a_i G_i a_i^T,   G_i = sum_{t,g} gamma_tg / s_gi (mu_g - x_t)(mu_g - x_t)^T,

beta = sum gamma_tg and a_i the i-th row of A (Kaldi's MlltAccs; Q is the log-likelihood of the transformed data up
to a constant). The update (MlltAccs::Update) sweeps the rows: with c_i the i-th row of A^-T (the cofactor row up
to a scale), a_i = c_i G_i^-1 sqrt(beta / (c_i G_i^-1 c_i^T)), which maximises Q over a_i exactly, so Q never
decreases. est-mllt starts from A = I on statistics gathered in the current space; the result is composed with the
current transform (final.mat = A . LDA, or A . previous final.mat) and the model's means become A mu_g
(gmm-transform-means; variances are kept and re-estimated by the next EM pass).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from esgd_asr.errors import EsgdError
from esgd_asr.features.affine_io import compose_affine, load_stats, save_stats, split_affine
from esgd_asr.features.lda import Posteriors, as_posteriors

log = logging.getLogger(__name__)

MLLT_ACCS_FORMAT = "esgd-mllt-accs"
CHUNK = 2048  # (frame, Gaussian) pairs per outer-product block


@dataclass
class DiagGaussians:
    """All Gaussians of a diagonal-GMM acoustic model, flattened (the order of `esgd_asr.gmm.model.PdfScorer`):
    per Gaussian its weight within its pdf, mean, diagonal variance and pdf id."""

    weights: torch.Tensor  # (G,)
    means: torch.Tensor  # (G, D)
    variances: torch.Tensor  # (G, D)
    gauss2pdf: torch.Tensor  # (G,) int64, pdfs 0..P-1
    slots: torch.Tensor = field(init=False, repr=False)  # (P, width) Gaussian ids per pdf, -1 padded

    def __post_init__(self):
        self.weights = torch.as_tensor(self.weights).double().reshape(-1)
        self.means = torch.as_tensor(self.means).double()
        self.variances = torch.as_tensor(self.variances).double()
        self.gauss2pdf = torch.as_tensor(self.gauss2pdf).long().reshape(-1)
        G = self.weights.shape[0]
        if self.means.ndim != 2 or self.means.shape[0] != G or self.variances.shape != self.means.shape \
                or self.gauss2pdf.shape[0] != G or G == 0:
            raise EsgdError(f"Gaussians: weights {tuple(self.weights.shape)}, means {tuple(self.means.shape)}, "
                            f"variances {tuple(self.variances.shape)}, gauss2pdf {tuple(self.gauss2pdf.shape)} "
                            f"do not agree")
        if not bool((self.variances > 0).all()) or not bool((self.weights >= 0).all()):
            raise EsgdError("Gaussians: variances must be positive and weights non-negative")
        if int(self.gauss2pdf.min()) < 0:
            raise EsgdError("Gaussians: negative pdf id")
        num_pdfs = int(self.gauss2pdf.max()) + 1
        counts = torch.bincount(self.gauss2pdf, minlength=num_pdfs)
        order = torch.argsort(self.gauss2pdf, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(G) - starts[self.gauss2pdf[order]]
        self.slots = torch.full((num_pdfs, int(counts.max())), -1, dtype=torch.long)
        self.slots[self.gauss2pdf[order], rank] = order

    @classmethod
    def single_gmm(cls, weights, means, variances) -> "DiagGaussians":
        """One GMM (a UBM, or one pdf): every Gaussian belongs to pdf 0."""
        return cls(weights, means, variances, torch.zeros(len(torch.as_tensor(weights)), dtype=torch.long))

    @classmethod
    def from_am(cls, am) -> "DiagGaussians":
        """From a kaldi-hmm-gmm AmDiagGmm (pdfs in order, Gaussians in order within each pdf)."""
        w, m, v, p = [], [], [], []
        for pdf in range(am.num_pdfs):
            gmm = am.get_pdf(pdf)
            inv_vars = np.asarray(gmm.inv_vars, dtype=np.float64)
            w.append(np.asarray(gmm.weights, dtype=np.float64))
            m.append(np.asarray(gmm.means_invvars, dtype=np.float64) / inv_vars)
            v.append(1.0 / inv_vars)
            p.append(np.full(inv_vars.shape[0], pdf))
        return cls(*(torch.from_numpy(np.concatenate(a)) for a in (w, m, v, p)))

    @property
    def num_gauss(self) -> int:
        return self.weights.shape[0]

    @property
    def num_pdfs(self) -> int:
        return self.slots.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def transform_means(self, matrix) -> "DiagGaussians":
        """The model with means A mu + b (variances and weights kept), as Kaldi's gmm-transform-means."""
        return DiagGaussians(self.weights, transform_means(self.means, matrix), self.variances, self.gauss2pdf)

    def gauss_posteriors(self, feats, pdf_post, weights=None, name: str = "features") -> tuple[Posteriors, float]:
        """Gaussian posteriors within each frame's pdf(s), scaled by the pdf posterior (Kaldi's
        AccumulateFromGmm per pdf); `pdf_post` as in `as_posteriors` over pdfs. Also returns the weighted total
        log-likelihood of the frames."""
        x = torch.as_tensor(feats).double()
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise EsgdError(f"{name}: features of shape {tuple(x.shape)} do not fit Gaussians of dim {self.dim}")
        post = as_posteriors(pdf_post, x.shape[0], self.num_pdfs, weights, name)
        frames, gauss, w_out, total = [], [], [], 0.0
        log_w = self.weights.clamp_min(1e-300).log()
        const = -0.5 * (self.dim * math.log(2 * math.pi) + self.variances.log().sum(1))
        inv_var = 1.0 / self.variances
        for lo in range(0, post.frames.numel(), CHUNK):
            f, p, w = (t[lo:lo + CHUNK] for t in post)
            idx = self.slots[p]  # (n, width)
            valid = idx >= 0
            safe = idx.clamp_min(0)
            diff = x[f][:, None, :] - self.means[safe]
            ll = log_w[safe] + const[safe] - 0.5 * (diff.square() * inv_var[safe]).sum(-1)
            ll = ll.masked_fill(~valid, -math.inf)
            frame_ll = torch.logsumexp(ll, 1)
            gp = torch.exp(ll - frame_ll[:, None]) * w[:, None]
            total += float((frame_ll * w).sum())
            keep = valid & (gp > 0)
            frames.append(f[:, None].expand_as(idx)[keep])
            gauss.append(idx[keep])
            w_out.append(gp[keep])
        if not frames:
            empty = torch.zeros(0, dtype=torch.long)
            return Posteriors(empty, empty, torch.zeros(0, dtype=torch.float64)), 0.0
        return Posteriors(torch.cat(frames), torch.cat(gauss), torch.cat(w_out)), total


def transform_means(means, matrix) -> torch.Tensor:
    """(G, D) means through an (D', D) or (D', D + 1) transform: mu' = A mu + b."""
    mu = torch.as_tensor(means).double()
    A, b = split_affine(matrix, mu.shape[1], "mean transform")
    return mu @ A.T + b


def mllt_objective(matrix, beta: float, G: torch.Tensor) -> float:
    """Q(A) = beta log|det A| - 1/2 sum_i a_i G_i a_i^T."""
    A = torch.as_tensor(matrix).double()
    return float(beta * torch.linalg.slogdet(A).logabsdet - 0.5 * torch.einsum("ia,iab,ib->", A, G, A))


@dataclass
class MlltResult:
    matrix: torch.Tensor  # (D, D) square transform A
    objf_impr: float  # total auxiliary-function improvement (divide by count for per frame)
    count: float
    objf: list[float]  # Q before the first sweep and after each sweep (non-decreasing)

    @property
    def objf_impr_per_frame(self) -> float:
        return self.objf_impr / max(self.count, 1e-10)


class MlltAccs:
    """Kaldi's MlltAccs: beta and G_i (i = 0..D-1), float64."""

    def __init__(self, dim: int):
        if dim < 1:
            raise EsgdError(f"MLLT statistics need a positive dimension, got {dim}")
        self.beta = 0.0
        self.G = torch.zeros(dim, dim, dim, dtype=torch.float64)

    @property
    def dim(self) -> int:
        return self.G.shape[0]

    def accumulate(self, feats, means, variances, gauss_post, name: str = "features") -> None:
        """Add (T, D) frames with Gaussian posteriors (`as_posteriors` over the G rows of means / variances)."""
        x = torch.as_tensor(feats).double()
        means, variances = torch.as_tensor(means).double(), torch.as_tensor(variances).double()
        if x.ndim != 2 or x.shape[1] != self.dim or means.shape[1:] != (self.dim,) or variances.shape != means.shape:
            raise EsgdError(f"{name}: features {tuple(x.shape)}, means {tuple(means.shape)} and variances "
                            f"{tuple(variances.shape)} do not fit MLLT statistics of dim {self.dim}")
        post = as_posteriors(gauss_post, x.shape[0], means.shape[0], name=name)
        D = self.dim
        for lo in range(0, post.frames.numel(), CHUNK):
            f, g, w = (t[lo:lo + CHUNK] for t in post)
            d = means[g] - x[f]  # (n, D)
            scale = w[:, None] / variances[g]  # (n, D): weight of G_i for each i
            outer = (d[:, :, None] * d[:, None, :]).reshape(-1, D * D)
            self.G += (scale.T @ outer).reshape(D, D, D)
            self.beta += float(w.sum())

    def accumulate_gmm(self, feats, gaussians: DiagGaussians, pdf_post, weights=None,
                       name: str = "features") -> float:
        """Kaldi's gmm-acc-mllt: Gaussian posteriors within the aligned pdfs, then `accumulate`; returns the
        frames' weighted log-likelihood."""
        post, loglike = gaussians.gauss_posteriors(feats, pdf_post, weights, name)
        self.accumulate(feats, gaussians.means, gaussians.variances, post, name)
        return loglike

    def __iadd__(self, other: "MlltAccs") -> "MlltAccs":
        if other.dim != self.dim:
            raise EsgdError(f"MLLT statistics of dim {other.dim} and {self.dim} cannot be added")
        self.beta += other.beta
        self.G += other.G
        return self

    def save(self, path: str | Path) -> None:
        save_stats(path, MLLT_ACCS_FORMAT, beta=np.float64(self.beta), G=self.G.numpy())

    @classmethod
    def load(cls, path: str | Path) -> "MlltAccs":
        data = load_stats(path, MLLT_ACCS_FORMAT)
        accs = cls(data["G"].shape[0])
        accs.beta, accs.G = float(data["beta"]), torch.from_numpy(data["G"]).double()
        return accs

    def objective(self, matrix) -> float:
        return mllt_objective(matrix, self.beta, self.G)

    def update(self, init=None, num_iters: int = 200) -> MlltResult:
        """Kaldi's MlltAccs::Update: `num_iters` sweeps of exact row updates from `init` (default I)."""
        D = self.dim
        if self.beta <= 0:
            raise EsgdError("MLLT: no statistics (count is zero)")
        if self.beta < 10 * D:
            log.warning("MLLT update: %s count %g for dim %d", "very small" if self.beta > 2 * D else "insufficient",
                        self.beta, D)
        A = torch.eye(D, dtype=torch.float64) if init is None else torch.as_tensor(init).double().clone()
        if A.shape != (D, D):
            raise EsgdError(f"MLLT: initial matrix of shape {tuple(A.shape)}, expected ({D}, {D})")
        G = 0.5 * (self.G + self.G.transpose(1, 2))
        chol, info = torch.linalg.cholesky_ex(G)
        if bool((info != 0).any()):
            raise EsgdError(f"MLLT: statistics of dim {int((info != 0).nonzero()[0, 0])} are singular "
                            f"(count {self.beta:g}): too little data")
        Ginv = torch.cholesky_inverse(chol)
        objf = [mllt_objective(A, self.beta, G)]
        for sweep in range(num_iters):
            for i in range(D):
                cof = torch.linalg.inv(A).T[i]  # cofactor row of row i, up to the factor det(A)
                before = self.beta * math.log(abs(float(A[i] @ cof))) - 0.5 * float(A[i] @ G[i] @ A[i])
                gc = Ginv[i] @ cof
                row = gc * math.sqrt(self.beta / float(cof @ gc))
                after = self.beta * math.log(abs(float(row @ cof))) - 0.5 * float(row @ G[i] @ row)
                if after < before - abs(before) * 1e-5:
                    raise EsgdError(f"MLLT: objective decreased in the row update ({before:g} -> {after:g})")
                A[i] = row
            objf.append(mllt_objective(A, self.beta, G))
            if sweep < 10 or sweep % 10 == 0:
                log.debug("MLLT sweep %d: objective improvement %.6g per frame over %g frames", sweep,
                          (objf[-1] - objf[0]) / self.beta, self.beta)
        impr = objf[-1] - objf[0]
        log.info("MLLT: objective improvement %.6g per frame over %g frames", impr / self.beta, self.beta)
        return MlltResult(A, impr, self.beta, objf)


def compose_mllt(mllt, transform) -> torch.Tensor:
    """final.mat = A . transform (Kaldi's compose-transforms mllt.mat old.mat), as a (D, D_in + 1) matrix;
    `transform` is the current (D, D_in + 1) LDA (+ previous MLLT) matrix, offset column last."""
    return compose_affine(mllt, transform, b_is_affine=True, name="MLLT composition")
