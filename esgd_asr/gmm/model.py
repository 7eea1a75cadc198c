"""A GMM-HMM acoustic model: HMM topology, context dependency, transition model and diagonal GMMs.

The context dependency is either kaldi-hmm-gmm's monophone `ContextDependency` or a decision tree
(`esgd_asr.gmm.tree.ContextTree`, triphones); `GmmHmm.pdf_of`, `context_width` and `central_position` hide which,
so training graphs, HCLG, alignment and decoding treat both alike. kaldi-hmm-gmm cannot build a TransitionModel
from a tree, so a triphone TransitionModel is made from the tree's transition-state tuples and set through the
object's pickling state, computed as Kaldi's TransitionModel constructor does (`transition_model_from_tuples`).

The model file (e.g. `final.mdl`) is a pickle of a dict that kaldi-hmm-gmm reads back (its objects pickle through
their own `__getstate__`, which holds Kaldi's binary form):
`{"format": "esgd-gmm-hmm", "topo": <topo text>, "ctx_dep": ContextDependency or None, "tree": <ContextTree text>
or None, "trans_model": TransitionModel, "am": AmDiagGmm, "front_end": {kind, fields}}`. The front end (CMVN and
deltas, or CMVN, splicing and final.mat; `esgd_asr.gmm.front_end`) is kept with the model so that alignment and
decoding reproduce the features it was trained on.

Log-likelihoods of all pdfs (or of a chosen few) for a whole utterance are computed in torch from the AmDiagGmm's
parameters.
"""
from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import kaldi_hmm_gmm as khg
import numba
import numpy as np
import torch

from esgd_asr.atomic import atomic_write_bytes
from esgd_asr.errors import EsgdError
from esgd_asr.features.affine_io import split_affine
from esgd_asr.features.feature_source import FrontEnd
from esgd_asr.gmm.front_end import LdaFrontEnd, front_end_from_state, front_end_state
from esgd_asr.gmm.tree import ContextTree, hmm_pdf_classes_of

MODEL_FORMAT = "esgd-gmm-hmm"


@dataclass
class TransitionInfo:
    """Per transition-id arrays (index 0 unused): transition state, pdf, phone, self-loop flag, log-probs."""

    tstate: np.ndarray
    pdf: np.ndarray
    phone: np.ndarray
    is_loop: np.ndarray
    is_final: np.ndarray  # the transition leaves the phone (enters its HMM's final state)
    log_prob: np.ndarray
    first_tid: np.ndarray  # per transition state (index 0 unused): its first transition-id
    loop_tid: np.ndarray  # per transition state (index 0 unused): its self-loop's transition-id, or 0
    tuples: list[tuple[int, int, int, int]]  # per transition state - 1: (phone, hmm state, forward pdf, loop pdf)

    @classmethod
    def of(cls, tm: khg.TransitionModel) -> "TransitionInfo":
        n = tm.num_transition_ids
        tids = np.arange(n + 1)
        tstate = np.asarray(tm.id2state[: n + 1], dtype=np.int64)
        pdf = np.asarray(tm.id2pdf_id[: n + 1], dtype=np.int64)
        phone = np.array([0] + [tm.transition_id_to_phone(t) for t in tids[1:]], dtype=np.int64)
        is_loop = np.array([False] + [tm.is_self_loop(t) for t in tids[1:]])
        is_final = np.array([False] + [tm.is_final(t) for t in tids[1:]])
        log_prob = np.asarray(tm.log_probs[: n + 1], dtype=np.float64)
        first_tid = np.asarray(tm.state2id[: tm.num_transition_states + 1], dtype=np.int64)
        loop_tid = np.zeros(tm.num_transition_states + 1, dtype=np.int64)
        loop_tid[tstate[is_loop]] = tids[is_loop]
        tuples = [tuple(t.__getstate__()) for t in tm.tuples]
        return cls(tstate, pdf, phone, is_loop, is_final, log_prob, first_tid, loop_tid, tuples)

    def transition_costs(self, transition_scale: float = 1.0, self_loop_scale: float = 1.0) -> np.ndarray:
        """Cost (-log prob) of each transition-id as Kaldi's AddTransitionProbs puts it on graph arcs: self-loops
        get -self_loop_scale * log p(loop); others -transition_scale * log p(t | no loop) - self_loop_scale *
        log(1 - p(loop)). With both scales 1 this is -log p(t). Index 0 (epsilon) costs 0."""
        p_loop = np.zeros(len(self.loop_tid))
        has_loop = self.loop_tid > 0
        p_loop[has_loop] = np.exp(self.log_prob[self.loop_tid[has_loop]])
        log_no_loop = np.log(np.clip(1.0 - p_loop[self.tstate], 1e-20, None))
        cost = np.where(self.is_loop, -self_loop_scale * self.log_prob,
                        -transition_scale * (self.log_prob - log_no_loop) - self_loop_scale * log_no_loop)
        cost[0] = 0.0
        return cost


@dataclass
class GmmHmm:
    """Topology text, context dependency (monophone ContextDependency or ContextTree), TransitionModel, AmDiagGmm
    and the feature front end."""

    topo_text: str
    ctx_dep: khg.ContextDependency | ContextTree
    trans_model: khg.TransitionModel
    am: khg.AmDiagGmm
    front_end: FrontEnd | LdaFrontEnd

    @property
    def num_pdfs(self) -> int:
        return self.trans_model.num_pdfs

    @property
    def dim(self) -> int:
        return self.am.dim

    @property
    def context_width(self) -> int:
        return self.ctx_dep.context_width

    @property
    def central_position(self) -> int:
        return self.ctx_dep.central_position

    def pdf_of(self, window: list[int], pdf_class: int) -> int:
        """The pdf of a phone window (context_width phones, 0 = none) and pdf-class."""
        ok, pdf = self.ctx_dep.compute(phone_seq=list(window), pdf_class=pdf_class)
        if not ok:
            raise EsgdError(f"context dependency has no pdf for window {list(window)}, pdf-class {pdf_class}")
        return pdf

    def pdfs_of(self, windows: np.ndarray, pdf_classes: np.ndarray) -> np.ndarray:
        """`pdf_of` for many (window, pdf-class) pairs: (n, context_width) windows, (n,) pdf-classes."""
        windows, pdf_classes = np.asarray(windows, dtype=np.int64), np.asarray(pdf_classes, dtype=np.int64)
        if isinstance(self.ctx_dep, ContextTree):
            pdfs = self.ctx_dep.map_events(np.concatenate([windows, pdf_classes[:, None]], 1))
            if (pdfs < 0).any():
                bad = int(np.flatnonzero(pdfs < 0)[0])
                raise EsgdError(f"context tree has no pdf for window {windows[bad].tolist()}, pdf-class "
                                f"{int(pdf_classes[bad])}")
            return pdfs
        return np.array([self.pdf_of(w, c) for w, c in zip(windows.tolist(), pdf_classes.tolist())], dtype=np.int64)

    def check_dim(self, feats: torch.Tensor, where: str) -> None:
        if feats.shape[1] != self.dim:
            raise EsgdError(f"{where}: feature dimension {feats.shape[1]} does not match the model's {self.dim}")

    def topology(self) -> khg.HmmTopology:
        topo = khg.HmmTopology()
        topo.read(self.topo_text)
        return topo

    def transitions(self) -> TransitionInfo:
        return TransitionInfo.of(self.trans_model)

    def phones(self) -> list[int]:
        return list(self.trans_model.phones)

    def save(self, path: str | Path) -> None:
        """Write the model atomically."""
        tree = isinstance(self.ctx_dep, ContextTree)
        state = {"format": MODEL_FORMAT, "topo": self.topo_text, "ctx_dep": None if tree else self.ctx_dep,
                 "tree": self.ctx_dep.to_text() if tree else None, "trans_model": self.trans_model, "am": self.am,
                 "front_end": front_end_state(self.front_end)}
        atomic_write_bytes(path, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))

    @classmethod
    def load(cls, path: str | Path) -> "GmmHmm":
        path = Path(path)
        if not path.is_file():
            raise EsgdError(f"{path}: no such model file")
        try:
            with open(path, "rb") as f:
                state = pickle.load(f)
        except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError) as err:
            raise EsgdError(f"{path}: not a readable GMM-HMM model ({type(err).__name__})") from None
        if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
            raise EsgdError(f"{path}: not an {MODEL_FORMAT} model file")
        ctx_dep = ContextTree.from_text(state["tree"], str(path)) if state.get("tree") else state["ctx_dep"]
        return cls(state["topo"], ctx_dep, state["trans_model"], state["am"],
                   front_end_from_state(state["front_end"]))


def transition_model_from_tuples(topo: khg.HmmTopology, tuples: list[tuple[int, int, int, int]],
                                 num_pdfs: int) -> khg.TransitionModel:
    """A TransitionModel for sorted unique transition-state tuples (phone, hmm_state, forward_pdf, self_loop_pdf),
    e.g. `ContextTree.transition_tuples`, with the topology's initial probabilities (Kaldi's TransitionModel
    constructor: ComputeDerived, InitializeProbs), set through kaldi-hmm-gmm's pickling state."""
    tuples = [tuple(int(v) for v in t) for t in tuples]
    if tuples != sorted(set(tuples)):
        raise EsgdError("transition-state tuples must be sorted and unique")
    state2id, id2state, id2pdf, log_probs, non_loop = [0, 1], [0], [0], [0.0], [0.0]
    for tstate, (phone, hmm_state, forward_pdf, loop_pdf) in enumerate(tuples, 1):
        if not (0 <= forward_pdf < num_pdfs and 0 <= loop_pdf < num_pdfs):
            raise EsgdError(f"transition state {tuples[tstate - 1]}: pdf outside 0..{num_pdfs - 1}")
        entry = topo.topology_for_phone(phone)[hmm_state]
        loop_prob = 0.0
        for dest, prob in entry.transitions:
            id2state.append(tstate)
            id2pdf.append(loop_pdf if dest == hmm_state else forward_pdf)
            log_probs.append(math.log(prob) if prob > 0 else -math.inf)
            if dest == hmm_state:
                loop_prob = prob
        state2id.append(len(id2state))
        non_loop.append(math.log(max(1.0 - loop_prob, 1e-10)) if loop_prob > 0 else 0.0)
    tm = khg.TransitionModel.__new__(khg.TransitionModel)  # pybind11 builds the object in __setstate__
    tm.__setstate__(([khg_tuple(*t) for t in tuples], topo, state2id, id2state, id2pdf, num_pdfs, log_probs,
                     non_loop))
    return tm


def khg_tuple(phone: int, hmm_state: int, forward_pdf: int, self_loop_pdf: int):
    """kaldi-hmm-gmm's TransitionModelTuple (not exported by name; the type of a TransitionModel's tuples)."""
    return _TUPLE_TYPE(phone, hmm_state, forward_pdf, self_loop_pdf)


def _tuple_type():
    topo = khg.HmmTopology()
    topo.read("<Topology>\n<TopologyEntry>\n<ForPhones> 1 </ForPhones>\n<State> 0 <PdfClass> 0 <Transition> 0 0.5 "
              "<Transition> 1 0.5 </State>\n<State> 1 </State>\n</TopologyEntry>\n</Topology>\n")
    ctx = khg.monophone_context_dependency(phones=[1], phone2num_pdf_classes=[0, 1])
    return type(khg.TransitionModel(ctx_dep=ctx, hmm_topo=topo).tuples[0])


_TUPLE_TYPE = _tuple_type()


class PdfScorer:
    """Pdfs' log-likelihoods for (T, dim) features: the Gaussians' in one matrix product, then each pdf's
    log-sum-exp over its Gaussians (held contiguously, pdf by pdf) in a compiled loop; all pdfs, or chosen ones.

    float64 by default (training statistics); float32 (Kaldi's BaseFloat) is enough for alignment and decoding."""

    def __init__(self, am: khg.AmDiagGmm, dtype: torch.dtype = torch.float64):
        consts, mean_ivar, ivar = [], [], []
        for pdf in range(am.num_pdfs):
            gmm = am.get_pdf(pdf)
            consts.append(np.asarray(gmm.gconsts, dtype=np.float64))
            mean_ivar.append(np.asarray(gmm.means_invvars, dtype=np.float64))
            ivar.append(np.asarray(gmm.inv_vars, dtype=np.float64))
        # pdf p's Gaussians are rows bounds[p] .. bounds[p + 1] - 1
        self.bounds = np.concatenate([[0], np.cumsum([len(c) for c in consts])]).astype(np.int64)
        self.num_gauss, self.dtype = int(self.bounds[-1]), dtype
        self.gconst = torch.tensor(np.concatenate(consts), dtype=dtype)
        self.mean_invvar = torch.tensor(np.concatenate(mean_ivar), dtype=dtype)  # (G, D)
        self.inv_var = torch.tensor(np.concatenate(ivar), dtype=dtype)  # (G, D)
        self.proj = torch.cat([self.mean_invvar, -0.5 * self.inv_var], 1).T.contiguous()  # (2 * dim, G)

    def gauss_loglikes(self, feats: torch.Tensor) -> torch.Tensor:
        """(T, G) per-Gaussian log-likelihoods including weights."""
        x = feats.to(self.dtype)
        return torch.addmm(self.gconst, torch.cat([x, x * x], 1), self.proj)

    def pdf_loglikes(self, feats: torch.Tensor, pdfs=None) -> torch.Tensor:
        """(T, num_pdfs) log-likelihoods, or (T, len(pdfs)) of the given pdf ids only (Gaussians of other pdfs are
        not computed)."""
        if pdfs is None:
            return torch.from_numpy(_segment_logsumexp(self.gauss_loglikes(feats).numpy(), self.bounds))
        pdfs = np.asarray(pdfs, dtype=np.int64)
        sizes = self.bounds[pdfs + 1] - self.bounds[pdfs]
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        gauss = torch.from_numpy(np.repeat(self.bounds[pdfs] - bounds[:-1], sizes) + np.arange(bounds[-1]))
        x = feats.to(self.dtype)
        ll = torch.addmm(self.gconst[gauss], torch.cat([x, x * x], 1), self.proj[:, gauss])
        return torch.from_numpy(_segment_logsumexp(ll.numpy(), bounds))


@numba.njit(cache=True)
def _segment_logsumexp(ll, bounds):
    """(T, len(bounds) - 1): row t's log-sum-exp over the columns bounds[p] .. bounds[p + 1] - 1 of `ll` (T, G)."""
    out = np.empty((ll.shape[0], len(bounds) - 1), ll.dtype)
    for t in range(ll.shape[0]):
        for p in range(len(bounds) - 1):
            best = ll[t, bounds[p]]
            for g in range(bounds[p] + 1, bounds[p + 1]):
                best = max(best, ll[t, g])
            total = 0.0
            for g in range(bounds[p], bounds[p + 1]):
                total += np.exp(ll[t, g] - best)
            out[t, p] = best + np.log(total)
    return out


def tid_loglikes(pdf_loglikes: torch.Tensor, info: TransitionInfo, scale: float) -> np.ndarray:
    """(T, num_transition_ids) float32 matrix whose column t-1 is the scaled log-likelihood of transition-id t's pdf:
    the layout kaldi_decoder.DecodableCtc reads (input label t scores column t - 1)."""
    cols = torch.from_numpy(info.pdf[1:])
    return (pdf_loglikes[:, cols] * scale).float().numpy()


def init_flat_model(topo_text: str, phone_sets: list[list[int]], feats_mean: np.ndarray, feats_var: np.ndarray,
                    front_end: FrontEnd) -> GmmHmm:
    """Monophone model, pdfs shared within each phone set (Kaldi gmm-init-mono --shared-phones), every pdf a
    single Gaussian with the data's global mean and variance."""
    topo = khg.HmmTopology()
    topo.read(topo_text)
    ctx_dep = khg.monophone_context_dependency_shared(phone_classes=phone_sets,
                                                      phone2num_pdf_classes=topo.get_phone_to_num_pdf_classes())
    trans_model = khg.TransitionModel(ctx_dep=ctx_dep, hmm_topo=topo)
    gmm = khg.DiagGmm(nmix=1, dim=len(feats_mean))
    gmm.set_weights(np.ones(1, dtype=np.float32))
    gmm.set_means(np.asarray(feats_mean, dtype=np.float32)[None])
    gmm.set_invvars((1.0 / np.asarray(feats_var, dtype=np.float32))[None])
    gmm.compute_gconsts()
    am = khg.AmDiagGmm()
    for _ in range(ctx_dep.num_pdfs):
        am.add_pdf(gmm)
    return GmmHmm(topo_text, ctx_dep, trans_model, am, front_end)


def transform_means(am: khg.AmDiagGmm, matrix) -> None:
    """Kaldi's gmm-transform-means: every Gaussian's mean mu -> A mu (+ b), variances kept; in place."""
    A, b = split_affine(matrix, am.dim, "mean transform")
    A, b = A.numpy(), b.numpy()
    for pdf in range(am.num_pdfs):
        gmm = am.get_pdf(pdf)  # a reference into the model
        means = np.asarray(gmm.means_invvars, dtype=np.float64) / np.asarray(gmm.inv_vars, dtype=np.float64)
        gmm.set_means((means @ A.T + b).astype(np.float32))
        gmm.compute_gconsts()


def init_model_from_tree(topo_text: str, tree: ContextTree, pdf_stats: np.ndarray, front_end,
                         var_floor: float = 0.01) -> GmmHmm:
    """Kaldi's gmm-init-model: a TransitionModel for the tree's transition-state tuples and one Gaussian per pdf
    from the tree statistics summed per pdf (`ContextTree.pdf_stats`, rows [count, sum, sum of squares]); variances
    floored at `var_floor`; a pdf without statistics gets the mean and variance of all the data."""
    topo = khg.HmmTopology()
    topo.read(topo_text)
    if sorted(tree.phones) != sorted(topo.phones):
        raise EsgdError(f"the tree's phones ({len(tree.phones)}) are not the topology's ({len(topo.phones)})")
    pdf_stats = np.asarray(pdf_stats, dtype=np.float64)
    if pdf_stats.shape[0] != tree.num_pdfs or pdf_stats.shape[1] % 2 != 1:
        raise EsgdError(f"pdf statistics of shape {pdf_stats.shape} for a tree of {tree.num_pdfs} pdfs")
    dim = (pdf_stats.shape[1] - 1) // 2
    total = pdf_stats.sum(0)
    if total[0] <= 0:
        raise EsgdError("gmm-init-model: the tree statistics are empty")
    tuples = tree.transition_tuples(hmm_pdf_classes_of(topo, tree.phones))
    trans_model = transition_model_from_tuples(topo, tuples, tree.num_pdfs)
    am = khg.AmDiagGmm()
    for row in pdf_stats:
        row = row if row[0] > 0 else total
        mean = row[1:1 + dim] / row[0]
        var = np.maximum(row[1 + dim:] / row[0] - mean * mean, var_floor)
        gmm = khg.DiagGmm(nmix=1, dim=dim)
        gmm.set_weights(np.ones(1, dtype=np.float32))
        gmm.set_means(mean.astype(np.float32)[None])
        gmm.set_invvars((1.0 / var).astype(np.float32)[None])
        gmm.compute_gconsts()
        am.add_pdf(gmm)
    return GmmHmm(topo_text, tree, trans_model, am, front_end)
