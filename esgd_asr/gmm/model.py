"""A GMM-HMM acoustic model: HMM topology, context dependency, transition model and diagonal GMMs.

The model file (e.g. `final.mdl`) is a pickle of a dict that kaldi-hmm-gmm reads back (its objects pickle through
their own `__getstate__`, which holds Kaldi's binary form):
`{"format": "esgd-gmm-hmm", "topo": <topo text>, "ctx_dep": ContextDependency, "trans_model": TransitionModel,
"am": AmDiagGmm, "front_end": {FrontEnd fields}}`. The front end (per-speaker CMVN, deltas) is kept with the model
so that alignment and decoding reproduce the features it was trained on.

Log-likelihoods of all pdfs for a whole utterance are computed in torch from the AmDiagGmm's parameters.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path

import kaldi_hmm_gmm as khg
import numpy as np
import torch

from esgd_asr.errors import EsgdError
from esgd_asr.features.ubm import FrontEnd

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
    """Topology text, ContextDependency, TransitionModel, AmDiagGmm and the feature front end."""

    topo_text: str
    ctx_dep: khg.ContextDependency
    trans_model: khg.TransitionModel
    am: khg.AmDiagGmm
    front_end: FrontEnd

    @property
    def num_pdfs(self) -> int:
        return self.trans_model.num_pdfs

    @property
    def dim(self) -> int:
        return self.am.dim

    def transitions(self) -> TransitionInfo:
        return TransitionInfo.of(self.trans_model)

    def phones(self) -> list[int]:
        return list(self.trans_model.phones)

    def save(self, path: str | Path) -> None:
        """Write the model atomically."""
        path = Path(path)
        state = {"format": MODEL_FORMAT, "topo": self.topo_text, "ctx_dep": self.ctx_dep,
                 "trans_model": self.trans_model, "am": self.am, "front_end": dataclasses.asdict(self.front_end)}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

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
        return cls(state["topo"], state["ctx_dep"], state["trans_model"], state["am"],
                   FrontEnd(**state["front_end"]))


class PdfScorer:
    """All pdfs' log-likelihoods for (T, dim) features in one batched torch computation."""

    def __init__(self, am: khg.AmDiagGmm):
        consts, proj, slots = [], [], []
        offset = 0
        for pdf in range(am.num_pdfs):
            gmm = am.get_pdf(pdf)
            inv_vars = np.asarray(gmm.inv_vars, dtype=np.float64)
            consts.append(np.asarray(gmm.gconsts, dtype=np.float64))
            proj.append(np.concatenate([np.asarray(gmm.means_invvars, dtype=np.float64), -0.5 * inv_vars], 1))
            slots.append(np.arange(offset, offset + inv_vars.shape[0]))
            offset += inv_vars.shape[0]
        width = max(len(s) for s in slots)
        self.num_gauss = offset
        # (num_pdfs, width) Gaussian index per slot; padding points at an extra column holding -inf
        self.slots = torch.tensor(np.stack([np.pad(s, (0, width - len(s)), constant_values=offset) for s in slots]))
        self.gconst = torch.tensor(np.concatenate(consts))
        self.proj = torch.tensor(np.concatenate(proj).T.copy())  # (2 * dim, G)

    def gauss_loglikes(self, feats: torch.Tensor) -> torch.Tensor:
        """(T, G + 1) per-Gaussian log-likelihoods including weights; the last column is -inf padding."""
        x = feats.double()
        ll = self.gconst + torch.cat([x, x * x], 1) @ self.proj
        return torch.cat([ll, torch.full((x.shape[0], 1), -torch.inf, dtype=ll.dtype)], 1)

    def pdf_loglikes(self, feats: torch.Tensor) -> torch.Tensor:
        """(T, num_pdfs) log-likelihoods (float64)."""
        return torch.logsumexp(self.gauss_loglikes(feats)[:, self.slots], dim=2)


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
