"""Sufficient statistics of GMM-HMM training from alignments (Kaldi's gmm-acc-stats-ali), accumulated by a loop
compiled with numba, and the maximum-likelihood update with mixing-up (gmm-est) done by kaldi-hmm-gmm.

Per Gaussian (in `PdfScorer` order): occupancy, first- and second-order sums; per transition-id: counts; and the
total log-likelihood of the aligned frames. Stats files are `.npz` written atomically; jobs' files are summed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import kaldi_hmm_gmm as khg
import numba
import numpy as np
import torch

from esgd_asr.atomic import atomic_path
from esgd_asr.errors import EsgdError
from esgd_asr.gmm.model import GmmHmm, PdfScorer


@dataclass
class GmmStats:
    occ: np.ndarray  # (G,)
    x: np.ndarray  # (G, D)
    x2: np.ndarray  # (G, D)
    trans: np.ndarray  # (num_transition_ids + 1,)
    loglike: float
    frames: int

    @classmethod
    def zeros(cls, num_gauss: int, dim: int, num_tids: int) -> "GmmStats":
        return cls(np.zeros(num_gauss), np.zeros((num_gauss, dim)), np.zeros((num_gauss, dim)),
                   np.zeros(num_tids + 1), 0.0, 0)

    def add_utterance(self, scorer: PdfScorer, feats: torch.Tensor, pdfs: np.ndarray, tids: np.ndarray) -> float:
        """Add one aligned utterance (Gaussian posteriors within each frame's pdf; only those Gaussians are
        evaluated); returns its log-likelihood."""
        utt_ll = _accumulate_aligned(feats.double().numpy(), np.asarray(pdfs, dtype=np.int64), scorer.bounds,
                                     scorer.gconst.numpy(), scorer.mean_invvar.numpy(), scorer.inv_var.numpy(),
                                     self.occ, self.x, self.x2)
        np.add.at(self.trans, tids, 1.0)
        self.loglike += utt_ll
        self.frames += len(tids)
        return utt_ll

    def __iadd__(self, other: "GmmStats") -> "GmmStats":
        if other.x.shape != self.x.shape or other.trans.shape != self.trans.shape:
            raise EsgdError("statistics of different models cannot be added")
        self.occ += other.occ
        self.x += other.x
        self.x2 += other.x2
        self.trans += other.trans
        self.loglike += other.loglike
        self.frames += other.frames
        return self

    def save(self, path: str | Path) -> None:
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, occ=self.occ, x=self.x, x2=self.x2, trans=self.trans, loglike=self.loglike,
                     frames=self.frames)

    @classmethod
    def load(cls, path: str | Path) -> "GmmStats":
        path = Path(path)
        if not path.is_file():
            raise EsgdError(f"{path}: no such statistics file (did its job fail?)")
        try:
            with np.load(path) as z:
                return cls(z["occ"], z["x"], z["x2"], z["trans"], float(z["loglike"]), int(z["frames"]))
        except (OSError, KeyError, ValueError) as err:
            raise EsgdError(f"{path}: unreadable statistics ({err})") from None


@numba.njit(cache=True)
def _accumulate_aligned(feats, pdfs, bounds, gconst, mean_invvar, inv_var, occ, xsum, x2sum) -> float:
    """gmm-acc-stats-ali's inner loop: for each frame, the log-likelihoods of its pdf's Gaussians (rows
    bounds[pdf] .. bounds[pdf + 1] - 1), their posteriors, and the posterior-weighted zeroth, first and second-order
    sums added into occ, xsum, x2sum (float64); returns the frames' total log-likelihood."""
    dim = feats.shape[1]
    ll = np.empty(np.max(bounds[1:] - bounds[:-1]))
    total = 0.0
    for t in range(feats.shape[0]):
        lo, hi = bounds[pdfs[t]], bounds[pdfs[t] + 1]
        best = -np.inf
        for g in range(lo, hi):
            v = gconst[g]
            for d in range(dim):
                v += feats[t, d] * (mean_invvar[g, d] - 0.5 * feats[t, d] * inv_var[g, d])
            ll[g - lo] = v
            best = max(best, v)
        norm = 0.0
        for g in range(lo, hi):
            norm += np.exp(ll[g - lo] - best)
        frame_ll = best + np.log(norm)
        total += frame_ll
        for g in range(lo, hi):
            post = np.exp(ll[g - lo] - frame_ll)
            occ[g] += post
            for d in range(dim):
                xsum[g, d] += post * feats[t, d]
                x2sum[g, d] += post * feats[t, d] * feats[t, d]
    return total


@dataclass(frozen=True)
class EstimateOptions:
    """gmm-est options."""

    min_gaussian_occupancy: float = 10.0
    min_gaussian_weight: float = 1e-5
    remove_low_count_gaussians: bool = True  # as Kaldi; a removed Gaussian can lower the likelihood of a pass
    min_variance: float = 1e-5  # Kaldi: 0.001, for MFCC scales; this PLP's delta-deltas have variances near 0.005
    mix_up: int = 0
    power: float = 0.25
    perturb_factor: float = 0.01
    min_count: float = 20.0
    transition_floor: float = 0.01
    transition_min_count: float = 5.0
    seed: int = 0  # of the mixing-up perturbations


def estimate(model: GmmHmm, stats: GmmStats, opts: EstimateOptions) -> dict[str, float]:
    """Update `model` in place (transitions, then GMMs, then mixing up to `opts.mix_up` Gaussians); returns
    figures for the log."""
    scorer_sizes = [model.am.num_gauss_in_pdf(p) for p in range(model.num_pdfs)]
    if sum(scorer_sizes) != len(stats.occ):
        raise EsgdError(f"statistics hold {len(stats.occ)} Gaussians, the model {sum(scorer_sizes)}")
    figures = {"frames": stats.frames, "loglike_per_frame": stats.loglike / max(stats.frames, 1)}
    impr, count = model.trans_model.mle_update(
        stats.trans, khg.MleTransitionUpdateConfig(floor=opts.transition_floor, mincount=opts.transition_min_count))
    figures["transition_impr_per_frame"] = impr / max(count, 1.0)
    acc = khg.AccumAmDiagGmm()
    acc.init(model=model.am, flags=int(khg.GmmUpdateFlags.kGmmAll))
    # kaldi-hmm-gmm copies per-pdf accumulators out, so stats go in through accumulate_for_gaussian: for each
    # dimension, two points mean +- std with half the occupancy each have exactly the given occupancy, sum, sum^2.
    g = 0
    for pdf, size in enumerate(scorer_sizes):
        for gauss in range(size):
            occ = stats.occ[g]
            if occ > 0:
                mean = stats.x[g] / occ
                std = np.sqrt(np.clip(stats.x2[g] / occ - mean * mean, 0.0, None))
                for point in (mean + std, mean - std):
                    acc.accumulate_for_gaussian(am=model.am, data=point.astype(np.float32), gmm_index=pdf,
                                                gauss_index=gauss, weight=occ / 2)
            g += 1
    config = khg.MleDiagGmmOptions(min_gaussian_weight=opts.min_gaussian_weight,
                                   min_gaussian_occupancy=opts.min_gaussian_occupancy,
                                   min_variance=opts.min_variance,
                                   remove_low_count_gaussians=opts.remove_low_count_gaussians)
    impr, count = khg.mle_am_diag_gmm_update(config=config, amdiag_gmm_acc=acc,
                                             flags=int(khg.GmmUpdateFlags.kGmmAll), am_gmm=model.am)
    figures["gmm_impr_per_frame"] = impr / max(count, 1.0)
    if opts.mix_up > model.am.num_gauss:
        pdf_occs = np.zeros(model.num_pdfs, dtype=np.float32)
        np.add.at(pdf_occs, np.repeat(np.arange(model.num_pdfs), scorer_sizes), stats.occ.astype(np.float32))
        mix_up(model.am, pdf_occs, opts)
    figures["num_gauss"] = model.am.num_gauss
    return figures


def mix_up(am: khg.AmDiagGmm, pdf_occs: np.ndarray, opts: EstimateOptions) -> None:
    """Kaldi's mixing up to opts.mix_up Gaussians (AmDiagGmm::SplitByCount: allotted by occupancy^power, the heaviest
    component split each time), with the split means moved apart by a generator seeded with opts.seed instead of
    Kaldi's unseeded one: each set of copies of one component gets random offsets of perturb_factor standard
    deviations that sum to zero (Kaldi: +- one offset per split), so that a run on the same input is repeated
    exactly."""
    am.split_by_count(state_occs=pdf_occs, target_components=opts.mix_up, perturb_factor=0.0, power=opts.power,
                      min_count=opts.min_count)
    rng = np.random.default_rng(opts.seed)
    for pdf in range(len(pdf_occs)):
        gmm = am.get_pdf(pdf)
        means = np.asarray(gmm.means, dtype=np.float64)
        inv_vars = np.asarray(gmm.inv_vars, dtype=np.float64)
        copies: dict[bytes, list[int]] = {}
        for i in range(len(means)):
            copies.setdefault(means[i].tobytes() + inv_vars[i].tobytes(), []).append(i)
        split = [members for members in copies.values() if len(members) > 1]
        for members in split:
            offsets = rng.standard_normal((len(members), means.shape[1]))
            means[members] += opts.perturb_factor * (offsets - offsets.mean(axis=0)) / np.sqrt(inv_vars[members])
        if split:
            gmm.set_means(means.astype(np.float32))
            gmm.compute_gconsts()
