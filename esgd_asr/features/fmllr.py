"""fMLLR (constrained MLLR) for diagonal GMMs, Kaldi's gmm-est-fmllr / FmllrDiagGmmAccs; the speaker-adapted LDA
front end of the neural stages and a reader producing its features from a data dir.

A speaker's transform W = [A b] (D, D + 1) maps features to x' = A x + b = W x+ (x+ = [x; 1]). Statistics, given
Gaussian posteriors gamma_tg of the speaker's frames against the model's Gaussians (means mu_g, variances s_g):

    beta = sum gamma_tg,   K = sum_{t,g} gamma_tg (mu_g / s_g) x+_t^T   (D, D + 1),
    G_i = sum_{t,g} gamma_tg / s_gi x+_t x+_t^T                         (D + 1, D + 1), i = 0..D-1,

and the auxiliary function (the transformed frames' log-likelihood up to a constant, the log|det A| Jacobian
included) is  Q(W) = beta log|det A| + tr(W K^T) - 1/2 sum_i w_i G_i w_i^T.
The full update (Kaldi's FmllrInnerUpdate) sweeps the rows i: with c the cofactor row of A extended by a 0,
w_i = (alpha c + k_i) G_i^-1, where alpha solves alpha^2 c G_i^-1 c^T + alpha c G_i^-1 k_i^T - beta = 0 (the
root with the larger Q): each row update maximises Q exactly, so Q never decreases over sweeps. As in Kaldi, the
update starts from the given W (identity by default), the whole result is dropped (W kept) if Q did not increase,
and a speaker with count <= min_count keeps W. "diag" (A diagonal) and "offset" (A = I) updates are also offered.

Kaldi's train_sat.sh estimates each pass's transform on features already through the current one and composes the
two; `estimate_fmllr` does that for several passes (Gaussian posteriors recomputed on the adapted features).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from esgd_asr.errors import EsgdError
from esgd_asr.features.affine_io import (TransformTable, apply_affine, as_matrix, compose_affine, identity_affine,
                                         load_stats, read_matrix, save_stats)
from esgd_asr.features.feature_source import FeatureSource, FrontEnd
from esgd_asr.features.lda import as_posteriors
from esgd_asr.features.mllt import CHUNK, DiagGaussians
from esgd_asr.features.transforms import splice

log = logging.getLogger(__name__)

FMLLR_ACCS_FORMAT = "esgd-fmllr-accs"
UPDATE_TYPES = ("full", "diag", "offset", "none")


@dataclass
class FmllrOptions:
    """Kaldi's FmllrOptions (gmm-est-fmllr --fmllr-update-type, --fmllr-min-count, --fmllr-num-iters)."""

    update_type: str = "full"
    min_count: float = 500.0
    num_iters: int = 40


@dataclass
class FmllrResult:
    matrix: torch.Tensor  # (D, D + 1)
    objf_impr: float  # total auxf improvement (0 when the transform was kept)
    count: float
    auxf: list[float]  # Q before the first sweep and after each sweep
    pass_loglike: list[float] = field(default_factory=list)  # estimate_fmllr only, see there

    @property
    def objf_impr_per_frame(self) -> float:
        return self.objf_impr / max(self.count, 1e-10)


def fmllr_auxf(matrix, beta: float, K: torch.Tensor, G: torch.Tensor) -> float:
    """Q(W) = beta log|det A| + tr(W K^T) - 1/2 sum_i w_i G_i w_i^T."""
    W = torch.as_tensor(matrix).double()
    D = W.shape[0]
    logdet = torch.linalg.slogdet(W[:, :D]).logabsdet
    return float(beta * logdet + (W * K).sum() - 0.5 * torch.einsum("ia,iab,ib->", W, G, W))


class FmllrAccs:
    """Kaldi's FmllrDiagGmmAccs (full statistics): beta, K (D, D + 1), G (D, D + 1, D + 1), float64."""

    def __init__(self, dim: int):
        if dim < 1:
            raise EsgdError(f"fMLLR statistics need a positive dimension, got {dim}")
        self.beta = 0.0
        self.K = torch.zeros(dim, dim + 1, dtype=torch.float64)
        self.G = torch.zeros(dim, dim + 1, dim + 1, dtype=torch.float64)

    @property
    def dim(self) -> int:
        return self.K.shape[0]

    def accumulate(self, feats, means, variances, gauss_post, name: str = "features") -> None:
        """Add (T, D) frames with Gaussian posteriors (`as_posteriors` over the G rows of means / variances)."""
        x = torch.as_tensor(feats).double()
        means, variances = torch.as_tensor(means).double(), torch.as_tensor(variances).double()
        if x.ndim != 2 or x.shape[1] != self.dim or means.shape[1:] != (self.dim,) or variances.shape != means.shape:
            raise EsgdError(f"{name}: features {tuple(x.shape)}, means {tuple(means.shape)} and variances "
                            f"{tuple(variances.shape)} do not fit fMLLR statistics of dim {self.dim}")
        post = as_posteriors(gauss_post, x.shape[0], means.shape[0], name=name)
        T, D = x.shape
        a = torch.zeros(T, D, dtype=torch.float64)  # per frame: sum_g gamma mu_g / s_g
        b = torch.zeros(T, D, dtype=torch.float64)  # per frame: sum_g gamma / s_g
        a.index_add_(0, post.frames, post.weights[:, None] * means[post.index] / variances[post.index])
        b.index_add_(0, post.frames, post.weights[:, None] / variances[post.index])
        used = torch.unique(post.frames)
        xplus = torch.cat([x[used], torch.ones(len(used), 1, dtype=torch.float64)], 1)
        a, b = a[used], b[used]
        self.K += a.T @ xplus
        for lo in range(0, len(used), CHUNK):
            xp = xplus[lo:lo + CHUNK]
            outer = (xp[:, :, None] * xp[:, None, :]).reshape(len(xp), -1)
            self.G += (b[lo:lo + CHUNK].T @ outer).reshape(D, D + 1, D + 1)
        self.beta += float(post.weights.sum())

    def accumulate_gmm(self, feats, gaussians: DiagGaussians, pdf_post, weights=None,
                       name: str = "features") -> float:
        """Kaldi's gmm-est-fmllr accumulation: Gaussian posteriors within the aligned pdfs (computed on `feats`),
        then `accumulate`; returns the frames' weighted log-likelihood."""
        post, loglike = gaussians.gauss_posteriors(feats, pdf_post, weights, name)
        self.accumulate(feats, gaussians.means, gaussians.variances, post, name)
        return loglike

    def __iadd__(self, other: "FmllrAccs") -> "FmllrAccs":
        if other.dim != self.dim:
            raise EsgdError(f"fMLLR statistics of dim {other.dim} and {self.dim} cannot be added")
        self.beta += other.beta
        self.K += other.K
        self.G += other.G
        return self

    def save(self, path: str | Path) -> None:
        save_stats(path, FMLLR_ACCS_FORMAT, beta=np.float64(self.beta), K=self.K.numpy(), G=self.G.numpy())

    @classmethod
    def load(cls, path: str | Path) -> "FmllrAccs":
        data = load_stats(path, FMLLR_ACCS_FORMAT)
        accs = cls(data["K"].shape[0])
        accs.beta, accs.K, accs.G = float(data["beta"]), *(torch.from_numpy(data[k]).double() for k in "KG")
        return accs

    def auxf(self, matrix) -> float:
        return fmllr_auxf(matrix, self.beta, self.K, self.G)

    def update(self, opts: FmllrOptions | None = None, init=None, name: str = "speaker") -> FmllrResult:
        """Kaldi's FmllrDiagGmmAccs::Update from `init` (default [I 0]); `name` labels errors and log lines."""
        opts = opts or FmllrOptions()
        D = self.dim
        W = identity_affine(D) if init is None else as_matrix(init, f"{name}: initial fMLLR transform").clone()
        if W.shape != (D, D + 1):
            raise EsgdError(f"{name}: initial fMLLR transform of shape {tuple(W.shape)}, expected ({D}, {D + 1})")
        if opts.update_type not in UPDATE_TYPES:
            raise EsgdError(f"--fmllr-update-type={opts.update_type}: must be one of {'|'.join(UPDATE_TYPES)}")
        if torch.linalg.matrix_rank(W[:, :D]) < D:
            raise EsgdError(f"{name}: the initial fMLLR matrix is singular")
        if self.beta <= opts.min_count or opts.update_type == "none":
            if opts.update_type != "none":
                log.warning("%s: not updating fMLLR, count %g is below --fmllr-min-count=%g", name, self.beta,
                            opts.min_count)
            q = self.auxf(W) if self.beta > 0 else 0.0
            return FmllrResult(W, 0.0, self.beta, [q])
        G = 0.5 * (self.G + self.G.transpose(1, 2))
        old = W.clone()
        auxf = [self.auxf(W)]
        if opts.update_type == "full":
            chol, info = torch.linalg.cholesky_ex(G)
            if bool((info != 0).any()):
                raise EsgdError(f"{name}: fMLLR statistics are singular (count {self.beta:g})")
            Ginv = torch.cholesky_inverse(chol)
            for _ in range(opts.num_iters):
                for i in range(D):
                    self._full_row_update(W, Ginv[i], i)
                auxf.append(self.auxf(W))
        elif opts.update_type == "diag":
            if not torch.equal(W[:, :D], torch.diag(torch.diagonal(W[:, :D]))):
                raise EsgdError(f"{name}: a diagonal fMLLR update needs a diagonal initial matrix")
            for i in range(D):
                g_iii, g_idd, g_idi = G[i, i, i], G[i, D, D], G[i, D, i]
                qa = g_idi * g_idi / g_idd - g_iii
                qb = self.K[i, i] - g_idi * self.K[i, D] / g_idd
                s = (-qb - torch.sqrt(qb * qb - 4 * qa * self.beta)) / (2 * qa)
                W[i, i], W[i, D] = s, (self.K[i, D] - s * g_idi) / g_idd
            auxf.append(self.auxf(W))
        elif opts.update_type == "offset":
            if not torch.equal(W[:, :D], torch.eye(D, dtype=W.dtype)):
                raise EsgdError(f"{name}: an offset-only fMLLR update needs a unit initial matrix")
            W[:, D] = (self.K[:, D] - G[torch.arange(D), torch.arange(D), D]) / G[:, D, D]
            auxf.append(self.auxf(W))
        impr = auxf[-1] - auxf[0]
        if impr < 0 and not math.isclose(auxf[-1], auxf[0], rel_tol=1e-6):
            log.warning("%s: not applying the fMLLR change, the objective did not increase (%g -> %g)", name,
                        auxf[0], auxf[-1])
            return FmllrResult(old, 0.0, self.beta, auxf)
        log.info("%s: fMLLR objective improvement %.6g per frame over %g frames", name, impr / self.beta, self.beta)
        return FmllrResult(W, impr, self.beta, auxf)

    def _full_row_update(self, W: torch.Tensor, Ginv_i: torch.Tensor, i: int) -> None:
        D = self.dim
        cof = torch.zeros(D + 1, dtype=torch.float64)
        cof[:D] = torch.linalg.inv(W[:, :D]).T[i]  # cofactor row i of A, divided by det(A)
        k = self.K[i]
        gc = Ginv_i @ cof
        e1, e2 = float(gc @ cof), float(gc @ k)
        discr = math.sqrt(e2 * e2 + 4 * e1 * self.beta)
        best = None
        for alpha in ((-e2 + discr) / (2 * e1), (-e2 - discr) / (2 * e1)):
            q = self.beta * math.log(abs(alpha * e1 + e2)) - 0.5 * alpha * alpha * e1
            if best is None or q > best[0]:
                best = (q, alpha)
        W[i] = Ginv_i @ (best[1] * cof + k)


def estimate_fmllr(utterances: Sequence[tuple[object, object]], gaussians: DiagGaussians,
                   opts: FmllrOptions | None = None, num_passes: int = 1, init=None,
                   name: str = "speaker") -> FmllrResult:
    """One speaker's transform from its utterances, each a ((T, D) features, pdf posteriors) pair (pdf posteriors
    as in `as_posteriors`, e.g. the (T,) pdf alignment). Each pass accumulates on the features through the current
    transform, updates from the identity and composes (train_sat.sh's gmm-est-fmllr + compose-transforms).

    The result's `auxf` is the last pass's; `pass_loglike[p]` is the weighted log-likelihood of the frames through
    the transform of pass p's start, log|det A| Jacobian included (EM: non-decreasing over passes); `objf_impr`
    sums the passes' auxf improvements."""
    W = identity_affine(gaussians.dim) if init is None else as_matrix(init, f"{name}: initial fMLLR transform")
    total_impr, pass_loglike = 0.0, []
    result = None
    for _ in range(num_passes):
        accs = FmllrAccs(gaussians.dim)
        loglike = 0.0
        for n, (feats, pdf_post) in enumerate(utterances):
            where = f"{name}: utterance {n}"
            loglike += accs.accumulate_gmm(apply_affine(torch.as_tensor(feats).double(), W, where), gaussians,
                                           pdf_post, name=where)
        pass_loglike.append(loglike + accs.beta * float(torch.linalg.slogdet(W[:, :-1]).logabsdet))
        result = accs.update(opts, name=name)
        W = compose_affine(result.matrix, W)
        total_impr += result.objf_impr
    if result is None:
        raise EsgdError(f"{name}: --num-passes must be at least 1")
    return FmllrResult(W, total_impr, result.count, result.auxf, pass_loglike)


# ----------------------------------------------------------------------------------------------------------------
# the speaker-adapted LDA front end

class SpeakerAdaptedLda:
    """CMVN'd (T, d) features -> splice +-context -> final.mat (LDA + MLLT) -> the speaker's fMLLR (if any).

    A `transforms.Compose` step (after `ApplyCmvn`); `name` (e.g. the utterance) labels errors."""

    def __init__(self, final_mat, fmllr=None, left_context: int = 4, right_context: int = 4,
                 name: str = "features"):
        self.final_mat = as_matrix(final_mat, "final.mat")
        self.fmllr = None if fmllr is None else as_matrix(fmllr, f"{name}: fMLLR transform")
        self.left_context, self.right_context, self.name = left_context, right_context, name
        lda_dim = self.final_mat.shape[0]
        if self.fmllr is not None and self.fmllr.shape[1] not in (lda_dim, lda_dim + 1):
            raise EsgdError(f"{name}: fMLLR transform of shape {tuple(self.fmllr.shape)} does not fit the "
                            f"{lda_dim}-dim output of final.mat")

    @property
    def out_dim(self) -> int:
        return self.final_mat.shape[0] if self.fmllr is None else self.fmllr.shape[0]

    def with_fmllr(self, fmllr, name: str) -> "SpeakerAdaptedLda":
        return SpeakerAdaptedLda(self.final_mat, fmllr, self.left_context, self.right_context, name)

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(feats)
        if x.ndim != 2 or x.shape[0] == 0:
            raise EsgdError(f"{self.name}: expected a non-empty (frames, dim) feature matrix, "
                            f"got shape {tuple(x.shape)}")
        width = self.left_context + self.right_context + 1
        cols = self.final_mat.shape[1]
        if x.shape[1] * width not in (cols, cols - 1):
            raise EsgdError(f"{self.name}: final.mat of shape {tuple(self.final_mat.shape)} does not fit features "
                            f"of dim {x.shape[1]} spliced over {width} frames ({x.shape[1] * width})")
        y = apply_affine(splice(x, self.left_context, self.right_context), self.final_mat, self.name)
        if self.fmllr is not None:
            y = apply_affine(y, self.fmllr, f"{self.name}: fMLLR")
        return y


class LdaFeatureReader:
    """The speaker-adapted LDA features of a data dir, on the fly: feats.scp -> per-speaker CMVN (cmvn.scp) ->
    splice -> final.mat -> fMLLR of the utterance's speaker (trans.scp / ark keyed by speaker, as Kaldi's
    transform-feats --utt2spk; a per-utterance table works too). Without `trans` it gives the speaker-independent
    LDA+MLLT features."""

    def __init__(self, data_dir: str | Path, final_mat, trans: str | Path | Mapping | None = None,
                 left_context: int = 4, right_context: int = 4, norm_vars: bool = False, cmvn: bool = True):
        self.source = FeatureSource(data_dir, FrontEnd(cmvn=cmvn, norm_vars=norm_vars))
        if isinstance(final_mat, (str, Path)):
            final_mat = read_matrix(final_mat)
        self.base = SpeakerAdaptedLda(final_mat, None, left_context, right_context)
        self.trans = None if trans is None else TransformTable(trans)

    @property
    def utts(self) -> list[str]:
        return self.source.utts

    def __len__(self) -> int:
        return len(self.source)

    def fmllr_for(self, utt: str):
        """The utterance's fMLLR matrix (by its speaker, else by the utterance), or None without transforms."""
        if self.trans is None:
            return None
        spk = self.source.utt2spk[utt]
        if spk in self.trans:
            return self.trans[spk]
        if utt in self.trans:
            return self.trans[utt]
        raise EsgdError(f"{self.trans.where}: no fMLLR transform for speaker '{spk}' (utterance '{utt}')")

    def transform_for(self, utt: str) -> SpeakerAdaptedLda:
        """The splice + final.mat + fMLLR transform of one utterance (input: its CMVN'd features)."""
        where = f"{self.source.feats.scp}: utterance '{utt}'"
        return self.base.with_fmllr(self.fmllr_for(utt), where)

    def load(self, utt: str) -> torch.Tensor:
        return self.transform_for(utt)(self.source.load(utt))

    def __iter__(self):
        for utt in self.utts:
            yield utt, self.load(utt)
