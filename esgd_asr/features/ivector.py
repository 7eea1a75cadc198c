"""Total-variability i-vector extractor on a diagonal UBM, trained by EM in torch (after Kaldi's IvectorExtractor).

Model, as in Kaldi (without the i-vector-dependent weights): the frames aligned to Gaussian i by the UBM posteriors
are N(M_i w, Sigma_i) with Sigma_i diagonal, and the i-vector w ~ N(o e_0, I) with a scalar prior offset o, so the
first column of M_i carries the mean supervector and the first-order stats are used uncentred. Given zeroth and
first-order stats gamma_i, f_i of an utterance, the posterior of w is Gaussian with precision
P = I + sum_i gamma_i M_i^T Sigma_i^-1 M_i and mean P^-1 (o e_0 + sum_i M_i^T Sigma_i^-1 f_i). Reported i-vectors
are that mean with o subtracted from dimension 0 (as Kaldi's extractors write them).

EM (one pass over fixed per-utterance stats): M_i = Y_i R_i^-1 with Y_i = sum_u f_ui E[w_u]^T and
R_i = sum_u gamma_ui E[w_u w_u^T]; optionally Sigma_i = diag(S_i - M_i Y_i^T) / gamma_i, floored at
`variance_floor_factor` times the pooled within-Gaussian variance of the data; Gaussians with less than
`gaussian_min_count` occupancy keep their parameters. Prior (Kaldi's minimum-divergence step): the mean mu and
centred covariance C of the posterior i-vector distributions are the ML prior N(mu, C); the transform
V = H C^-1/2 (H a Householder reflection sending C^-1/2 mu to a positive multiple of e_0) maps it back to
N(o' e_0, I) with o' = |C^-1/2 mu|, and M_i <- M_i V^-1 leaves the likelihood unchanged. The objective reported per
iteration is the exact marginal log-likelihood of the stats (Kaldi's auxf at the posterior), which EM never lowers.

File format (torch.save of a dict, read with weights_only): `{"format": "esgd-ivector-extractor", "ubm": {...},
"front_end": {...}, "posterior_opts": {...}, "M": (C, D, S), "variances": (C, D), "prior_offset": float}`.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from esgd_asr.atomic import atomic_torch_save
from esgd_asr.errors import EsgdError
from esgd_asr.features.feature_source import FrontEnd
from esgd_asr.features.ubm import CHUNK_FRAMES, DiagGmm, load_state

log = logging.getLogger(__name__)

IE_FORMAT = "esgd-ivector-extractor"
ONLINE_CHUNK_BLOCKS = 256


@dataclass(frozen=True)
class PosteriorOptions:
    """How frames are aligned to the UBM (Kaldi's online i-vector defaults); kept in the extractor file."""

    num_gselect: int = 5
    min_post: float = 0.025
    posterior_scale: float = 0.1


@dataclass
class IvectorTrainOptions:
    """Options of extractor training, named and defaulted as Kaldi's train_ivector_extractor.sh / -est."""

    ivector_dim: int = 100
    num_iters: int = 10
    update_variances: bool = True
    variance_floor_factor: float = 0.1
    gaussian_min_count: float = 100.0
    utts_per_batch: int = 64
    srand: int = 0


def frame_posteriors(ubm: DiagGmm, x: torch.Tensor, opts: PosteriorOptions) -> torch.Tensor:
    """(T, C) scaled, pruned UBM posteriors of frames `x` (T, D)."""
    post, _ = ubm.posteriors(x, opts.num_gselect, opts.min_post)
    return post * opts.posterior_scale


def utterance_stats(ubm: DiagGmm, feats, opts: PosteriorOptions, where: str = "features"
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zeroth (C,), first (C, D) and diagonal second-order (C, D) Baum-Welch stats of one utterance, float64."""
    x = torch.as_tensor(feats).to(device=ubm.means.device, dtype=ubm.means.dtype)
    ubm.check_dim(x.shape[1], where)
    gamma = torch.zeros(ubm.num_gauss, dtype=torch.float64, device=x.device)
    first = torch.zeros(ubm.num_gauss, ubm.dim, dtype=torch.float64, device=x.device)
    second = torch.zeros_like(first)
    for start in range(0, x.shape[0], CHUNK_FRAMES):
        chunk = x[start:start + CHUNK_FRAMES]
        post = frame_posteriors(ubm, chunk, opts)
        gamma += post.sum(0)
        first += post.T @ chunk
        second += post.T @ (chunk * chunk)
    return gamma, first, second


class IvectorExtractor:
    """UBM + front end + total-variability matrices M (C, D, S), variances (C, D) and the prior offset."""

    def __init__(self, ubm: DiagGmm, front_end: FrontEnd, M: torch.Tensor, variances: torch.Tensor,
                 prior_offset: float, posterior_opts: PosteriorOptions = PosteriorOptions()):
        self.ubm, self.front_end, self.posterior_opts = ubm.to(dtype=torch.float32), front_end, posterior_opts
        self.M, self.variances, self.prior_offset = M.double(), variances.double(), float(prior_offset)
        C, D, S = self.M.shape
        sigma_inv_m = self.M / self.variances[:, :, None]
        self._w64 = sigma_inv_m.reshape(C * D, S)
        self._u64 = torch.einsum("cds,cdt->cst", self.M, sigma_inv_m).reshape(C, S * S)
        self._w32, self._u32 = self._w64.float(), self._u64.float()
        self._gconst = (torch.log(self.ubm.weights.double().clamp_min(1e-30))
                        - 0.5 * (D * math.log(2 * math.pi) + torch.log(self.variances).sum(1)))

    @classmethod
    def initialize(cls, ubm: DiagGmm, front_end: FrontEnd, ivector_dim: int = 100,
                   posterior_opts: PosteriorOptions = PosteriorOptions(), seed: int = 0) -> "IvectorExtractor":
        """Kaldi's initialisation: prior offset 100, first column = UBM means / 100, other columns random
        (here scaled by the UBM standard deviations), variances = the UBM's."""
        prior_offset = 100.0
        generator = torch.Generator().manual_seed(seed)
        means, variances = ubm.means.double().cpu(), ubm.variances.double().cpu()
        M = torch.randn(ubm.num_gauss, ubm.dim, ivector_dim, generator=generator, dtype=torch.float64)
        M *= variances.sqrt()[:, :, None]
        M[:, :, 0] = means / prior_offset
        return cls(ubm.to(device="cpu"), front_end, M, variances, prior_offset, posterior_opts
                   ).to(ubm.means.device)

    @property
    def num_gauss(self) -> int:
        return self.M.shape[0]

    @property
    def feat_dim(self) -> int:
        return self.M.shape[1]

    @property
    def ivector_dim(self) -> int:
        return self.M.shape[2]

    @property
    def device(self) -> torch.device:
        return self.M.device

    def to(self, device) -> "IvectorExtractor":
        return IvectorExtractor(self.ubm.to(device=device), self.front_end, self.M.to(device),
                                self.variances.to(device), self.prior_offset, self.posterior_opts)

    def stats(self, feats, where: str = "features") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Baum-Welch stats of one utterance's (front-end processed) features under this extractor's UBM."""
        return utterance_stats(self.ubm, feats, self.posterior_opts, where)

    def ivectors_from_stats(self, gamma: torch.Tensor, first: torch.Tensor, max_count: float = 0.0) -> torch.Tensor:
        """(B, S) i-vectors (posterior means, offset removed) from stats gamma (B, C) and first (B, C, D).
        With `max_count` > 0, stats of more than that many (scaled) frames are scaled down to it, as Kaldi's
        online extractor does, so the prior keeps some weight."""
        linear, quad = self._data_terms(gamma.float(), first.float(), torch.float32)
        if max_count > 0:
            scale = (max_count / gamma.sum(1).double()).clamp(max=1.0)
            linear, quad = linear * scale[:, None], quad * scale[:, None, None]
        mean, _, _ = self._posterior(linear, quad)
        mean[:, 0] -= self.prior_offset
        return mean

    def extract(self, feats, where: str = "features") -> torch.Tensor:
        """The (S,) i-vector of one utterance's features (T, D)."""
        gamma, first, _ = self.stats(feats, where)
        return self.ivectors_from_stats(gamma[None], first[None])[0]

    def extract_online(self, feats, ivector_period: int = 10, max_count: float = 0.0,
                       where: str = "features") -> torch.Tensor:
        """Kaldi-style online i-vectors: row k (of ceil(T / period)) is estimated from frames 0..k*period."""
        x = torch.as_tensor(feats).to(device=self.device, dtype=torch.float32)
        self.ubm.check_dim(x.shape[1], where)
        num_frames, p = x.shape[0], ivector_period
        num_blocks = -(-num_frames // p)
        C, D = self.num_gauss, self.feat_dim
        # Padding p-1 frames in front makes block k hold frames k*p-p+1 .. k*p, the ones new to i-vector k.
        carry_gamma = torch.zeros(C, dtype=torch.float64, device=self.device)
        carry_linear = torch.zeros(self.ivector_dim, dtype=torch.float64, device=self.device)
        out = []
        for k0 in range(0, num_blocks, ONLINE_CHUNK_BLOCKS):
            nb = min(ONLINE_CHUNK_BLOCKS, num_blocks - k0)
            lo, hi = k0 * p - (p - 1), (k0 + nb) * p - (p - 1)
            real_lo, real_hi = max(lo, 0), min(hi, num_frames)
            post = torch.zeros(nb * p, C, device=self.device)
            xs = torch.zeros(nb * p, D, device=self.device)
            xs[real_lo - lo:real_hi - lo] = x[real_lo:real_hi]
            post[real_lo - lo:real_hi - lo] = frame_posteriors(self.ubm, x[real_lo:real_hi], self.posterior_opts)
            post, xs = post.view(nb, p, C), xs.view(nb, p, D)
            gamma = torch.cumsum(post.sum(1).double(), 0) + carry_gamma
            first = torch.bmm(post.transpose(1, 2), xs).reshape(nb, C * D)
            linear = torch.cumsum((first @ self._w32).double(), 0) + carry_linear
            carry_gamma, carry_linear = gamma[-1], linear[-1]
            quad = (gamma.float() @ self._u32).double().view(nb, self.ivector_dim, self.ivector_dim)
            if max_count > 0:
                scale = (max_count / gamma.sum(1)).clamp(max=1.0)
                linear, quad = linear * scale[:, None], quad * scale[:, None, None]
            mean, _, _ = self._posterior(linear, quad)
            mean[:, 0] -= self.prior_offset
            out.append(mean)
        return torch.cat(out)

    def _data_terms(self, gamma: torch.Tensor, first: torch.Tensor, dtype: torch.dtype
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """sum_i M_i^T Sigma_i^-1 f_i (B, S) and sum_i gamma_i U_i (B, S, S), in float64."""
        w, u = (self._w32, self._u32) if dtype == torch.float32 else (self._w64, self._u64)
        batch, S = gamma.shape[0], self.ivector_dim
        linear = (first.reshape(batch, -1).to(dtype) @ w).double()
        quad = (gamma.to(dtype) @ u).double().view(batch, S, S)
        return linear, quad

    def _posterior(self, linear: torch.Tensor, quad: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Add the prior to the data terms; return the posterior mean (B, S), the Cholesky factor of the
        precision (B, S, S) and the prior-included linear term (B, S)."""
        linear = linear.clone()
        linear[:, 0] += self.prior_offset
        quad = quad + torch.eye(self.ivector_dim, dtype=quad.dtype, device=quad.device)
        chol = torch.linalg.cholesky(quad)
        mean = torch.cholesky_solve(linear[:, :, None], chol)[:, :, 0]
        return mean, chol, linear

    def save(self, path: str | Path) -> None:
        state = {"format": IE_FORMAT,
                 "ubm": {k: getattr(self.ubm, k).cpu() for k in ("weights", "means", "variances")},
                 "front_end": dataclasses.asdict(self.front_end),
                 "posterior_opts": dataclasses.asdict(self.posterior_opts),
                 "M": self.M.cpu(), "variances": self.variances.cpu(), "prior_offset": self.prior_offset}
        atomic_torch_save(state, path)

    @classmethod
    def load(cls, path: str | Path) -> "IvectorExtractor":
        state = load_state(path, IE_FORMAT)
        try:
            return cls(DiagGmm.from_state(state["ubm"], path), FrontEnd(**state["front_end"]), state["M"],
                       state["variances"], state["prior_offset"], PosteriorOptions(**state["posterior_opts"]))
        except (KeyError, TypeError, RuntimeError) as err:
            raise EsgdError(f"{path}: malformed i-vector extractor ({err})") from err


@dataclass
class TrainingStats:
    """Baum-Welch stats of a training set: per-utterance gamma (U, C) and first order (U, C, D) (tensors or
    numpy arrays, e.g. memory-mapped), and the total diagonal second order (C, D)."""

    gamma: torch.Tensor | np.ndarray
    first: torch.Tensor | np.ndarray
    second_total: torch.Tensor

    def batches(self, batch_size: int, device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.gamma), batch_size):
            yield (torch.as_tensor(self.gamma[start:start + batch_size]).to(device, torch.float64),
                   torch.as_tensor(self.first[start:start + batch_size]).to(device, torch.float64))


def em_iteration(ie: IvectorExtractor, stats: TrainingStats, opts: IvectorTrainOptions = IvectorTrainOptions()
                 ) -> tuple[IvectorExtractor, float]:
    """One EM pass: returns the re-estimated extractor and the objective per frame under `ie` (before update)."""
    dev, f64 = ie.device, torch.float64
    C, D, S = ie.M.shape
    Y = torch.zeros(C * D, S, dtype=f64, device=dev)
    R = torch.zeros(C, S * S, dtype=f64, device=dev)
    gamma_tot = torch.zeros(C, dtype=f64, device=dev)
    first_tot = torch.zeros(C * D, dtype=f64, device=dev)
    ivec_sum = torch.zeros(S, dtype=f64, device=dev)
    ivec_scatter = torch.zeros(S, S, dtype=f64, device=dev)
    num_utts, loglike = 0, torch.zeros((), dtype=f64, device=dev)
    for gamma, first in stats.batches(opts.utts_per_batch, dev):
        linear, quad = ie._data_terms(gamma, first, f64)
        mean, chol, linear = ie._posterior(linear, quad)
        eye = torch.eye(S, dtype=f64, device=dev).expand_as(chol)
        chol_inv = torch.linalg.solve_triangular(chol, eye, upper=False)  # faster than cholesky_inverse
        moment2 = chol_inv.transpose(1, 2) @ chol_inv + mean[:, :, None] * mean[:, None, :]
        flat = first.reshape(first.shape[0], -1)
        Y += flat.T @ mean
        R += gamma.T @ moment2.reshape(-1, S * S)
        gamma_tot += gamma.sum(0)
        first_tot += flat.sum(0)
        ivec_sum += mean.sum(0)
        ivec_scatter += moment2.sum(0)
        num_utts += gamma.shape[0]
        logdet = 2 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum()
        loglike += (gamma @ ie._gconst).sum() - 0.5 * gamma.shape[0] * ie.prior_offset ** 2 \
            - 0.5 * logdet + 0.5 * (linear * mean).sum()
    if num_utts == 0:
        raise EsgdError("no training utterances for the i-vector extractor")
    second = stats.second_total.to(dev, f64)
    loglike -= 0.5 * (second / ie.variances).sum()
    objf = float(loglike / gamma_tot.sum())

    Y, R, first_tot = Y.view(C, D, S), R.view(C, S, S), first_tot.view(C, D)
    update = (gamma_tot > 0) & (gamma_tot >= opts.gaussian_min_count)
    M, variances = ie.M.clone(), ie.variances.clone()
    if bool(update.any()):
        chol_r = torch.linalg.cholesky(R[update])
        M[update] = torch.cholesky_solve(Y[update].transpose(1, 2), chol_r).transpose(1, 2)
        if opts.update_variances:
            occ = gamma_tot.clamp_min(1e-30)[:, None]
            pooled = (second - first_tot ** 2 / occ).sum(0) / gamma_tot.sum()
            new_var = (second - (M * Y).sum(2)) / occ
            variances[update] = torch.maximum(new_var, opts.variance_floor_factor * pooled)[update]
    if not bool(update.all()):
        log.warning("kept %d of %d Gaussians unchanged: occupancy (after the posterior scale) below "
                    "gaussian_min_count=%g", int((~update).sum()), C, opts.gaussian_min_count)
    M, prior_offset = _min_divergence_prior(M, ivec_sum / num_utts, ivec_scatter / num_utts)
    return IvectorExtractor(ie.ubm, ie.front_end, M, variances, prior_offset, ie.posterior_opts), objf


def _min_divergence_prior(M: torch.Tensor, mean: torch.Tensor, scatter: torch.Tensor
                          ) -> tuple[torch.Tensor, float]:
    """Re-express the ML prior N(mean, covar) of the i-vectors as N(o e_0, I) by w' = V w, M' = M V^-1."""
    S = mean.shape[0]
    covar = scatter - torch.outer(mean, mean)
    eigval, eigvec = torch.linalg.eigh(covar)
    if float(eigval.min()) < 1e-7:
        log.warning("flooring %d eigenvalues of the i-vector covariance", int((eigval < 1e-7).sum()))
    whiten = eigvec.T / eigval.clamp_min(1e-7).sqrt()[:, None]
    proj = whiten @ mean
    x = proj / proj.norm()
    v = x.clone()
    v[0] -= 1.0
    eye = torch.eye(S, dtype=M.dtype, device=M.device)
    householder = eye - 2 * torch.outer(v, v) / (v @ v) if float(v @ v) > 1e-20 else eye
    V = householder @ whiten
    log.info("i-vector covariance eigenvalues %.4g..%.4g; prior offset %.4g",
             float(eigval.min()), float(eigval.max()), float(proj.norm()))
    return M @ torch.linalg.inv(V), float((V @ mean)[0])


def train_extractor(ie: IvectorExtractor, stats: TrainingStats, opts: IvectorTrainOptions = IvectorTrainOptions(),
                    history: list[dict] | None = None, first_iter: int = 0,
                    checkpoint: Callable[[int, IvectorExtractor], None] | None = None) -> IvectorExtractor:
    """EM passes `first_iter` .. `opts.num_iters` - 1 (`ie` is the model before pass `first_iter`); the objective
    per frame of each pass's starting model goes to `history`, the model after pass n to `checkpoint(n + 1, ie)`."""
    for it in range(first_iter, opts.num_iters):
        ie, objf = em_iteration(ie, stats, opts)
        log.info("iteration %d: objective per frame %.5f", it, objf)
        if history is not None:
            history.append({"iter": it, "objf": objf})
        if checkpoint is not None:
            checkpoint(it + 1, ie)
    return ie
