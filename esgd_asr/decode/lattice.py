"""Lattice decoding, lattice archives, and best paths under many LM weights at once.

`LatticeDecoder` runs Kaldi's lattice-faster search (beam_search.py: beam, max-active, lattice beam) over an HCLG
whose input labels are transition-ids, with acoustic-scaled log-likelihoods in the DecodableCtc layout. The raw
state-level lattice (pruned to the lattice beam) is kept with its acoustic costs unscaled, as Kaldi stores
lattices, in a gzipped Kaldi text archive: `utt-id`, then one `src dst transition-id word graph,acoustic` line per
arc and `state graph,acoustic` per final state, then an empty line.

`best_paths` finds, in one pass over a lattice, the best word sequence for every (LM weight, word insertion
penalty) pair with Kaldi's scoring semantics (lattice-scale --inv-acoustic-scale=LMWT | lattice-add-penalty |
lattice-best-path): cost = graph + penalty * words + acoustic / LMWT.
"""
from __future__ import annotations

import gzip
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import kaldifst
import numba
import numpy as np

from esgd_asr.decode.beam_search import SearchGraph, SearchOptions, search
from esgd_asr.errors import EsgdError
from esgd_asr.decode.lattice_text import LatticeArrays, lattice_text, parse_lattice_text
from esgd_asr.gmm.fst_arrays import FstArrays, fst_to_arrays


@dataclass(frozen=True)
class DecodeOptions:
    beam: float = 13.0
    lattice_beam: float = 6.0
    acwt: float = 0.083333
    max_active: int = 7000  # Kaldi's defaults, as in decode.sh / decode_nnet.sh
    min_active: int = 200


@dataclass
class DecodeResult:
    lattice_text: str  # Kaldi text lattice, acoustic costs unscaled; empty when nothing survived
    reached_final: bool
    seconds: float


class LatticeDecoder:
    """One HCLG, many utterances."""

    def __init__(self, hclg: kaldifst.StdVectorFst | FstArrays, opts: DecodeOptions):
        if opts.acwt <= 0 or opts.beam <= 0 or opts.lattice_beam <= 0:
            raise EsgdError(f"--acwt, --beam and --lattice-beam must be positive ({opts})")
        if opts.max_active < 1 or opts.min_active < 0 or opts.min_active > opts.max_active:
            raise EsgdError(f"--max-active must be positive and not below --min-active ({opts})")
        self.opts = opts
        self.graph = SearchGraph.from_arrays(hclg if isinstance(hclg, FstArrays) else fst_to_arrays(hclg))
        self.search_opts = SearchOptions(beam=opts.beam, max_active=opts.max_active, min_active=opts.min_active,
                                         lattice_beam=opts.lattice_beam)

    def decode(self, tid_loglikes: np.ndarray) -> DecodeResult:
        """Decode acoustic-scaled (T, num_transition_ids) log-likelihoods; with no final state reached, the
        lattice ends on every surviving token of the last frame, as Kaldi's --allow-partial does."""
        start = time.perf_counter()
        lattice, reached_final = search(self.graph, tid_loglikes, self.search_opts)
        return DecodeResult(lattice_text(lattice, 1.0 / self.opts.acwt), reached_final, time.perf_counter() - start)


def write_lattice_archive(path: str | Path, lattices: Iterator[tuple[str, str]]) -> int:
    """Write (utt, lattice text) pairs to a gzipped Kaldi text archive, renamed into place when complete."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp"
    count = 0
    try:
        with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=1) as f:
            for utt, text in lattices:
                f.write(f"{utt}\n{text}\n")
                count += 1
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def read_lattice_archive(path: str | Path) -> Iterator[tuple[str, LatticeArrays]]:
    """(utt, lattice) pairs of a gzipped text archive, read in blocks of a few MB."""
    path = Path(path)
    if not path.is_file():
        raise EsgdError(f"{path}: no such lattice archive")
    try:
        with gzip.open(path, "rb") as f:
            pending = b""
            while True:
                chunk = f.read(1 << 22)
                entries = (pending + chunk).split(b"\n\n")
                pending = entries.pop()
                for entry in entries:
                    entry = entry.lstrip(b"\n")
                    if entry.strip():
                        key, _, body = entry.partition(b"\n")
                        key = key.strip().decode()
                        yield key, parse_lattice_text(body, f"{path}: lattice '{key}'")
                if not chunk:
                    break
            if pending.strip():
                key = pending.strip().split(b"\n", 1)[0].decode(errors="replace")
                raise EsgdError(f"{path}: lattice '{key}' is truncated (no closing empty line)")
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise EsgdError(f"{path}: unreadable lattice archive ({err})") from None


def best_paths(lat: LatticeArrays, lmwts: list[float], penalties: list[float], where: str = "lattice"
               ) -> dict[tuple[float, float], list[int]]:
    """Best word sequence for every (LM weight, insertion penalty); an empty lattice gives empty sequences."""
    combos = [(lmwt, wip) for lmwt in lmwts for wip in penalties]
    return {c: _nonzero(lat.olabel, arcs) for c, arcs in zip(combos, _best_path_arcs(lat, combos, where))}


def best_path_labels(lat: LatticeArrays, lmwt: float, where: str = "lattice") -> list[int]:
    """Input labels (transition-ids, one per frame) of the best path at LM weight `lmwt` (no insertion penalty), as
    Kaldi's lattice-best-path --acoustic-scale=1/lmwt writes the alignment; empty for an empty lattice."""
    return _nonzero(lat.ilabel, _best_path_arcs(lat, [(lmwt, 0.0)], where)[0])


def _nonzero(labels: np.ndarray, arcs: list[int]) -> list[int]:
    """The non-epsilon labels of `arcs`, in order."""
    picked = labels[np.asarray(arcs, dtype=np.int64)]
    return picked[picked != 0].tolist()


def _best_path_arcs(lat: LatticeArrays, combos: list[tuple[float, float]], where: str) -> list[list[int]]:
    """The arcs of the best path for every (LM weight, insertion penalty), in order."""
    if lat.start < 0 or lat.final_state.size == 0:
        return [[] for _ in combos]
    inv_lmwt = np.array([1.0 / c[0] for c in combos])
    wip = np.array([c[1] for c in combos])
    cost, back, acyclic = _viterbi(lat.src, lat.dst, lat.graph.astype(np.float64), lat.acoustic.astype(np.float64),
                                   lat.olabel != 0, lat.start, lat.num_states, inv_lmwt, wip)
    if not acyclic:
        raise EsgdError(f"{where}: lattice has a cycle")
    final_cost = cost[lat.final_state] + lat.final_graph[:, None] + lat.final_acoustic[:, None] * inv_lmwt
    out = []
    for c in range(len(combos)):
        if not np.isfinite(final_cost[:, c].min()):
            out.append([])
            continue
        arcs = _trace(back[:, c], lat.src, lat.start, int(lat.final_state[final_cost[:, c].argmin()]))
        if arcs is None:
            raise EsgdError(f"{where}: broken back-pointer while tracing the best path")
        out.append(arcs.tolist())
    return out


@numba.njit(cache=True)
def _viterbi(src, dst, graph, acoustic, is_word, start, num_states, inv_lmwt, wip):
    """Best cost of every state under every (1 / LM weight, penalty) pair and the arc it came by, visiting states
    in topological order (Kahn's algorithm); ties go to the highest arc id. False when the lattice has a cycle."""
    num_arcs, num_combos = src.size, inv_lmwt.size
    first = np.zeros(num_states + 1, np.int64)
    indeg = np.zeros(num_states, np.int64)
    for a in range(num_arcs):
        first[src[a] + 1] += 1
        indeg[dst[a]] += 1
    for s in range(num_states):
        first[s + 1] += first[s]
    fill = first[:-1].copy()
    by_src = np.empty(num_arcs, np.int64)
    for a in range(num_arcs):
        by_src[fill[src[a]]] = a
        fill[src[a]] += 1
    cost = np.full((num_states, num_combos), np.inf)
    back = np.full((num_states, num_combos), -1, np.int64)
    cost[start, :] = 0.0
    queue = np.flatnonzero(indeg == 0)
    order = np.empty(num_states, np.int64)
    order[:queue.size] = queue
    head, tail = 0, queue.size
    while head < tail:
        s = order[head]
        head += 1
        for k in range(first[s], first[s + 1]):
            a = by_src[k]
            d = dst[a]
            for c in range(num_combos):
                cand = cost[s, c] + (graph[a] + is_word[a] * wip[c] + acoustic[a] * inv_lmwt[c])
                if cand < cost[d, c] or (cand == cost[d, c] and a > back[d, c]):
                    cost[d, c] = cand
                    back[d, c] = a
            indeg[d] -= 1
            if indeg[d] == 0:
                order[tail] = d
                tail += 1
    return cost, back, tail == num_states


@numba.njit(cache=True)
def _trace(back, src, start, state):
    """The arcs from the start state to `state` along the back-pointers, in order; None on a broken pointer."""
    arcs = []
    while state != start:
        a = back[state]
        if a < 0:
            return None
        arcs.append(a)
        state = src[a]
    return np.array(arcs[::-1], dtype=np.int64)
