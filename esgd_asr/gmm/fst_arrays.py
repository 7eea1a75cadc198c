"""FSTs and lattices as numpy arc arrays and back, through OpenFst's text form.

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


@dataclass
class LatticeArrays:
    """A Kaldi lattice (LatticeWeight = graph cost, acoustic cost) as arrays; finals carry both costs too."""

    src: np.ndarray
    dst: np.ndarray
    ilabel: np.ndarray
    olabel: np.ndarray
    graph: np.ndarray
    acoustic: np.ndarray
    final_state: np.ndarray
    final_graph: np.ndarray
    final_acoustic: np.ndarray
    start: int
    num_states: int


def _split_rows(text: str, where: str) -> tuple[list[list[str]], list[list[str]]]:
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


def _start_of(text: str) -> int:
    first = text.split(None, 1)
    return int(first[0]) if first else -1


def _num_states(*arrays: np.ndarray) -> int:
    return int(max((int(a.max()) for a in arrays if a.size), default=-1)) + 1


def fst_to_arrays(fst: kaldifst.StdVectorFst) -> FstArrays:
    """The arcs and finals of a tropical FST (state ids kept)."""
    text = fst.to_str()
    arcs, finals = _split_rows(text, "fst")
    a = np.array([r if len(r) == 5 else r + ["0"] for r in arcs], dtype=object).reshape(-1, 5)
    f = np.array([r if len(r) == 2 else r + ["0"] for r in finals], dtype=object).reshape(-1, 2)
    src, dst = a[:, 0].astype(np.int64), a[:, 1].astype(np.int64)
    final_state = f[:, 0].astype(np.int64)
    return FstArrays(src, dst, a[:, 2].astype(np.int64), a[:, 3].astype(np.int64), a[:, 4].astype(np.float64),
                     final_state, f[:, 1].astype(np.float64), _start_of(text),
                     max(_num_states(src, dst, final_state), fst.num_states))


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


def lattice_text(lat: LatticeArrays, ac_scale: float = 1.0) -> str:
    """Kaldi's text form of a lattice, acoustic costs multiplied by `ac_scale`, the start state's arcs first;
    empty for a lattice without states."""
    if lat.start < 0:
        return ""
    order = np.argsort(lat.src != lat.start, kind="stable")
    arcs = [f"{s} {d} {i} {o} {g:.7g},{a:.7g}" for s, d, i, o, g, a in zip(
        lat.src[order].tolist(), lat.dst[order].tolist(), lat.ilabel[order].tolist(), lat.olabel[order].tolist(),
        lat.graph[order].tolist(), (lat.acoustic[order] * ac_scale).tolist())]
    finals = [f"{s} {g:.7g},{a:.7g}" for s, g, a in zip(
        lat.final_state.tolist(), lat.final_graph.tolist(), (lat.final_acoustic * ac_scale).tolist())]
    return "\n".join(arcs + finals) + "\n"


def parse_lattice_text(text: str, where: str) -> LatticeArrays:
    """A lattice from OpenFst / Kaldi text form, weights written `graph,acoustic`."""
    arcs, finals = _split_rows(text, where)
    try:
        a = np.array([r[:4] + r[4].split(",") if len(r) == 5 else r + ["0", "0"] for r in arcs],
                     dtype=object).reshape(-1, 6)
        f = np.array([[r[0]] + r[1].split(",") if len(r) == 2 else r + ["0", "0"] for r in finals],
                     dtype=object).reshape(-1, 3)
        src, dst = a[:, 0].astype(np.int64), a[:, 1].astype(np.int64)
        final_state = f[:, 0].astype(np.int64)
        return LatticeArrays(src, dst, a[:, 2].astype(np.int64), a[:, 3].astype(np.int64),
                             a[:, 4].astype(np.float64), a[:, 5].astype(np.float64), final_state,
                             f[:, 1].astype(np.float64), f[:, 2].astype(np.float64), _start_of(text),
                             _num_states(src, dst, final_state))
    except (ValueError, IndexError):
        raise EsgdError(f"{where}: malformed lattice text") from None

