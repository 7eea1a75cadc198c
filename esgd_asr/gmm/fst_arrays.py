"""FSTs as numpy arc arrays and back, through OpenFst's text form (lattices: esgd_asr.decode.lattice_text).

kaldifst's `to_str` and `compile` run in C++, so bulk edits of large graphs (relabelling, adding self-loops and
transition costs) are done on arrays in numpy rather than arc by arc in Python. kaldi-hmm-gmm's own FST functions
cannot be used with kaldifst 1.8 objects (different OpenFst arc types), so this is the bridge for all graph work.
"""
from __future__ import annotations

from dataclasses import dataclass

import kaldifst
import numpy as np

from esgd_asr.errors import EsgdError


@dataclass
class FstArrays:
    """Arcs (src, dst, ilabel, olabel, weight), final states with their weights, and the start state."""

    src: np.ndarray
    dst: np.ndarray
    ilabel: np.ndarray
    olabel: np.ndarray
    weight: np.ndarray
    final_state: np.ndarray
    final_weight: np.ndarray
    start: int
    num_states: int


def split_rows(text: str, where: str) -> tuple[list[list[str]], list[list[str]]]:
    arcs, finals = [], []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) in (4, 5):
            arcs.append(fields)
        elif len(fields) in (1, 2):
            finals.append(fields)
        elif fields:
            raise EsgdError(f"{where}: bad FST text line '{line}'")
    return arcs, finals


def start_state_of(text: str) -> int:
    first = text.split(None, 1)
    return int(first[0]) if first else -1


def num_states_of(*arrays: np.ndarray) -> int:
    return int(max((int(a.max()) for a in arrays if a.size), default=-1)) + 1


def fst_to_arrays(fst: kaldifst.StdVectorFst) -> FstArrays:
    """The arcs and finals of a tropical FST (state ids kept)."""
    text = fst.to_str()
    arcs, finals = split_rows(text, "fst")
    a = np.array([r if len(r) == 5 else r + ["0"] for r in arcs], dtype=object).reshape(-1, 5)
    f = np.array([r if len(r) == 2 else r + ["0"] for r in finals], dtype=object).reshape(-1, 2)
    src, dst = a[:, 0].astype(np.int64), a[:, 1].astype(np.int64)
    final_state = f[:, 0].astype(np.int64)
    return FstArrays(src, dst, a[:, 2].astype(np.int64), a[:, 3].astype(np.int64), a[:, 4].astype(np.float64),
                     final_state, f[:, 1].astype(np.float64), start_state_of(text),
                     max(num_states_of(src, dst, final_state), fst.num_states))


def arrays_to_fst(fa: FstArrays) -> kaldifst.StdVectorFst:
    """A tropical FST from arrays; the start state's lines come first, as OpenFst's text format requires."""
    if fa.start < 0:
        return kaldifst.StdVectorFst()
    order = np.argsort(fa.src != fa.start, kind="stable")
    arc_lines = [f"{s} {d} {i} {o} {w:.8g}" for s, d, i, o, w in zip(
        fa.src[order].tolist(), fa.dst[order].tolist(), fa.ilabel[order].tolist(), fa.olabel[order].tolist(),
        fa.weight[order].tolist())]
    final_order = np.argsort(fa.final_state != fa.start, kind="stable")
    final_lines = [f"{s} {w:.8g}" for s, w in zip(fa.final_state[final_order].tolist(),
                                                   fa.final_weight[final_order].tolist())]
    if not arc_lines or fa.src[order][0] != fa.start:
        if not final_lines or fa.final_state[final_order][0] != fa.start:
            return kaldifst.StdVectorFst()  # the start state reaches nothing: the empty FST
        lines = final_lines + arc_lines
    else:
        lines = arc_lines + final_lines
    return kaldifst.compile(s="\n".join(lines) + "\n", acceptor=False, keep_state_numbering=True)
