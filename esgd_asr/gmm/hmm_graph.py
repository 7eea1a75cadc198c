"""The HMM level of decoding graphs: the H transducer (transition-ids -> context windows), self-loops, and
transition costs, with transition-ids as input labels as in Kaldi.

H is built as Kaldi's GetHTransducer does, without self-loops ("Ha"): for every input label of C o L o G
(a phone context window from `kaldifst.compose_context`, or a disambiguation symbol), the HMM of the window's
central phone with its pdfs from the context dependency, entered from one hub state. Self-loops are added after
determinization (Kaldi's AddSelfLoops without reordering: a state whose outgoing arcs all leave one HMM state
gets that state's self-loop; other states are split first). Transition costs depend only on the transition-id,
so they are added last, arc by arc, which lets training graphs be stored without them and rescored every pass.
For a triphone system only the pdf lookup changes (a tree instead of the monophone ContextDependency).
"""
from __future__ import annotations

from typing import Callable

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np

from esgd_asr.errors import EsgdError
from esgd_asr.gmm.fst_arrays import FstArrays, arrays_to_fst, fst_to_arrays
from esgd_asr.gmm.model import TransitionInfo


def disambig_tid(num_tids: int, disambig_phones: list[int], phone: int) -> int:
    """Input label standing for a disambiguation phone in H: beyond every transition-id (disambig_tid.int);
    phone 0 stands for C's start-of-utterance symbol #-1 (context width > 1), which gets the label after them."""
    if phone == 0:
        return num_tids + 1 + len(disambig_phones)
    return num_tids + 1 + disambig_phones.index(phone)


class HBuilder:
    """Builds Ha for any C's ilabel_info with one model: the topology's HMMs, the transition states by tuple and
    the transition-ids by (transition state, destination) are tabulated once."""

    def __init__(self, topo: khg.HmmTopology, info: TransitionInfo, central_position: int,
                 pdfs_of: Callable[[np.ndarray, np.ndarray], np.ndarray], disambig_phones: list[int]):
        self.info, self.central_position, self.pdfs_of = info, central_position, pdfs_of
        self.disambig_phones = list(disambig_phones)
        self.num_tids = len(info.tstate) - 1
        self.by_tuple = {t: s + 1 for s, t in enumerate(info.tuples)}
        # per phone: per emitting HMM state (forward pdf-class, self-loop pdf-class, destinations other than itself)
        self.hmms: dict[int, list[tuple[int, int, list[int]]]] = {}
        for phone in topo.phones:
            hmm = topo.topology_for_phone(phone)
            self.hmms[phone] = [(hmm[h].forward_pdf_class, hmm[h].self_loop_pdf_class,
                                 [dest for dest, _ in hmm[h].transitions]) for h in range(len(hmm) - 1)]
        self.tid_of = {}  # (transition state, destination hmm state) -> transition-id
        for tid in range(1, self.num_tids + 1):
            s = int(info.tstate[tid])
            phone, hmm_state = info.tuples[s - 1][:2]
            self.tid_of[s, self.hmms[phone][hmm_state][2][tid - info.first_tid[s]]] = tid

    def make(self, ilabel_info: list[list[int]]) -> kaldifst.StdVectorFst:
        """Ha: transition-ids (no self-loops, no costs) -> indices into `ilabel_info`, sorted on output labels."""
        arcs: list[tuple[int, int, int, int]] = []
        windows, indices = [], []
        for index, window in enumerate(ilabel_info):
            if not window:
                continue
            if len(window) == 1 and window[0] <= 0:  # C writes a disambiguation symbol d as [-d], #-1 as [0]
                phone = -window[0]
                if phone and phone not in self.disambig_phones:
                    raise EsgdError(f"context window {window}: {phone} is not a disambiguation symbol")
                arcs.append((0, 0, disambig_tid(self.num_tids, self.disambig_phones, phone), index))
            elif window[self.central_position] != 0:  # a window with no central phone carries no acoustics
                windows.append(window)
                indices.append(index)
        # the pdfs of every (window, HMM state, forward / self-loop pdf-class), in one batch
        rows, classes = [], []
        for w, window in enumerate(windows):
            for forward, loop, _ in self.hmms[window[self.central_position]]:
                rows += [w, w]
                classes += [forward, loop]
        pdfs = self.pdfs_of(np.asarray(windows, dtype=np.int64).reshape(len(windows), -1)[rows],
                            np.asarray(classes, dtype=np.int64)).tolist() if rows else []
        num_states, k = 1, 0  # state 0: the hub, start and final
        for window, index in zip(windows, indices):
            phone = window[self.central_position]
            hmm = self.hmms[phone]
            final = len(hmm)
            for h, (_, _, dests) in enumerate(hmm):
                tuple_ = (phone, h, pdfs[k], pdfs[k + 1])
                k += 2
                tstate = self.by_tuple.get(tuple_)
                if tstate is None:
                    raise EsgdError(f"phone {phone} state {h}: no transition state {tuple_} in the transition model")
                for dest in dests:
                    if dest == h:
                        continue
                    tid = self.tid_of[tstate, dest]
                    target = 0 if dest == final else num_states + dest
                    arcs.append((num_states + h, target, tid, 0))
                    if h == 0:
                        arcs.append((0, target, tid, index))
            num_states += final
        a = np.array(arcs, dtype=np.int64).reshape(-1, 4)
        h = arrays_to_fst(FstArrays(a[:, 0], a[:, 1], a[:, 2], a[:, 3], np.zeros(len(a)), np.array([0]),
                                    np.array([0.0]), 0, num_states))
        kaldifst.connect(h)
        kaldifst.arcsort(h, sort_type="olabel")
        return h


def remove_disambig_tids(fa: FstArrays, num_tids: int) -> FstArrays:
    """Disambiguation input labels (> num_tids) become epsilon (Kaldi's fstrmsymbols on disambig_tid.int)."""
    fa.ilabel = np.where(fa.ilabel > num_tids, 0, fa.ilabel)
    return fa


def add_self_loops(fa: FstArrays, info: TransitionInfo) -> FstArrays:
    """Give every state that leaves an HMM state that state's self-loop (zero cost). A state whose outgoing arcs
    leave several HMM states, or that is also final, or has epsilon arcs, keeps its final weight and epsilon arcs
    and reaches each HMM state's arcs through a new epsilon arc to a new state that carries the loop."""
    num_tids = len(info.tstate) - 1
    if fa.ilabel.size and fa.ilabel.max() > num_tids:
        raise EsgdError("add_self_loops: disambiguation symbols must be removed first")
    cls = info.tstate[fa.ilabel]  # 0 for epsilon arcs
    looped = (cls > 0) & (info.loop_tid[cls] > 0)
    n = fa.num_states
    lo = np.full(n, np.iinfo(np.int64).max)
    hi = np.full(n, -1)
    np.minimum.at(lo, fa.src, np.where(looped, cls, -1))
    np.maximum.at(hi, fa.src, np.where(looped, cls, -1))
    is_final = np.zeros(n, dtype=bool)
    is_final[fa.final_state] = True
    uniform = (lo == hi) & (lo > 0) & ~is_final
    src = fa.src.copy()
    new_arcs = []
    # states with one HMM state class: the loop sits on the state itself
    q = np.flatnonzero(uniform)
    loop_src = [q]
    loop_cls = [lo[q]]
    # other states: one new state per (state, class) pair
    move = looped & ~uniform[fa.src]
    pairs, inverse = np.unique(np.stack([fa.src[move], cls[move]], 1), axis=0, return_inverse=True)
    new_states = n + np.arange(len(pairs))
    src[np.flatnonzero(move)] = new_states[inverse.reshape(-1)]
    if len(pairs):
        new_arcs.append((pairs[:, 0], new_states, np.zeros(len(pairs), np.int64), np.zeros(len(pairs), np.int64)))
        loop_src.append(new_states)
        loop_cls.append(pairs[:, 1])
    ls, lc = np.concatenate(loop_src), np.concatenate(loop_cls)
    new_arcs.append((ls, ls, info.loop_tid[lc], np.zeros(len(ls), np.int64)))
    return FstArrays(np.concatenate([src] + [a[0] for a in new_arcs]),
                     np.concatenate([fa.dst] + [a[1] for a in new_arcs]),
                     np.concatenate([fa.ilabel] + [a[2] for a in new_arcs]),
                     np.concatenate([fa.olabel] + [a[3] for a in new_arcs]),
                     np.concatenate([fa.weight] + [np.zeros(len(a[0])) for a in new_arcs]),
                     fa.final_state, fa.final_weight, fa.start, n + len(pairs))


def add_transition_costs(fa: FstArrays, costs: np.ndarray) -> FstArrays:
    """Arc weights plus the cost of their transition-id (`TransitionInfo.transition_costs`)."""
    return FstArrays(fa.src, fa.dst, fa.ilabel, fa.olabel, fa.weight + costs[fa.ilabel], fa.final_state,
                     fa.final_weight, fa.start, fa.num_states)


def compose_h(h: kaldifst.StdVectorFst, clg: kaldifst.StdVectorFst, info: TransitionInfo,
              what: str) -> FstArrays:
    """H o CLG, determinized in the log semiring (Kaldi's fstdeterminizestar --use-log), disambiguation
    transition-ids removed, self-loops added; returned as arrays without transition costs."""
    kaldifst.arcsort(clg, sort_type="ilabel")
    hclg = kaldifst.compose(h, clg)
    if hclg.num_states == 0:
        raise EsgdError(f"{what}: H o C o L o G is empty (no path through the graph)")
    kaldifst.determinize_star(hclg, use_log=True)  # returns True only when stopped by a state limit (none here)
    fa = remove_disambig_tids(fst_to_arrays(hclg), len(info.tstate) - 1)
    return add_self_loops(fa, info)
