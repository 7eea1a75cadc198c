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
import numpy as np
import torch

from esgd_asr.decode.beam_search import SearchGraph, SearchOptions, search
from esgd_asr.errors import EsgdError
from esgd_asr.gmm.fst_arrays import LatticeArrays, fst_to_arrays, lattice_text, parse_lattice_text


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

    def __init__(self, hclg: kaldifst.StdVectorFst, opts: DecodeOptions):
        if opts.acwt <= 0 or opts.beam <= 0 or opts.lattice_beam <= 0:
            raise EsgdError(f"--acwt, --beam and --lattice-beam must be positive ({opts})")
        if opts.max_active < 1 or opts.min_active < 0 or opts.min_active > opts.max_active:
            raise EsgdError(f"--max-active must be positive and not below --min-active ({opts})")
        self.opts = opts
        self.graph = SearchGraph.from_arrays(fst_to_arrays(hclg))
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
    path = Path(path)
    if not path.is_file():
        raise EsgdError(f"{path}: no such lattice archive")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            key, lines = None, []
            for line in f:
                line = line.rstrip("\n")
                if key is None:
                    if line.strip():
                        key = line.strip()
                elif line.strip():
                    lines.append(line)
                else:
                    yield key, parse_lattice_text("\n".join(lines), f"{path}: lattice '{key}'")
                    key, lines = None, []
            if key is not None:
                raise EsgdError(f"{path}: lattice '{key}' is truncated (no closing empty line)")
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise EsgdError(f"{path}: unreadable lattice archive ({err})") from None


def _levels(lat: LatticeArrays, where: str) -> np.ndarray:
    """Topological level of every state (Kahn's algorithm a frontier at a time); arcs go to higher levels."""
    n = lat.num_states
    indeg = np.bincount(lat.dst, minlength=n)
    order = np.argsort(lat.src, kind="stable")
    first = np.searchsorted(lat.src[order], np.arange(n + 1))
    level = np.full(n, -1)
    frontier = np.flatnonzero(indeg == 0)
    depth = 0
    while frontier.size:
        level[frontier] = depth
        counts = first[frontier + 1] - first[frontier]
        offsets = np.repeat(first[frontier] - np.cumsum(counts) + counts, counts)
        dst = lat.dst[order[np.arange(counts.sum()) + offsets]]
        indeg -= np.bincount(dst, minlength=n)
        frontier = np.unique(dst[indeg[dst] == 0])
        depth += 1
    if (level < 0).any():
        raise EsgdError(f"{where}: lattice has a cycle")
    return level


def best_paths(lat: LatticeArrays, lmwts: list[float], penalties: list[float], where: str = "lattice"
               ) -> dict[tuple[float, float], list[int]]:
    """Best word sequence for every (LM weight, insertion penalty); an empty lattice gives empty sequences."""
    combos = [(lmwt, wip) for lmwt in lmwts for wip in penalties]
    return {c: [int(lat.olabel[a]) for a in arcs if lat.olabel[a]]
            for c, arcs in zip(combos, _best_path_arcs(lat, combos, where))}


def best_path_labels(lat: LatticeArrays, lmwt: float, where: str = "lattice") -> list[int]:
    """Input labels (transition-ids, one per frame) of the best path at LM weight `lmwt` (no insertion penalty), as
    Kaldi's lattice-best-path --acoustic-scale=1/lmwt writes the alignment; empty for an empty lattice."""
    return [int(lat.ilabel[a]) for a in _best_path_arcs(lat, [(lmwt, 0.0)], where)[0] if lat.ilabel[a]]


def _best_path_arcs(lat: LatticeArrays, combos: list[tuple[float, float]], where: str) -> list[list[int]]:
    """The arcs of the best path for every (LM weight, insertion penalty), in order."""
    if lat.start < 0 or lat.final_state.size == 0:
        return [[] for _ in combos]
    inv_lmwt = torch.tensor([1.0 / c[0] for c in combos], dtype=torch.float64)
    wip = torch.tensor([c[1] for c in combos], dtype=torch.float64)
    is_word = torch.from_numpy(lat.olabel != 0).double()
    weight = (torch.from_numpy(lat.graph)[:, None] + is_word[:, None] * wip
              + torch.from_numpy(lat.acoustic)[:, None] * inv_lmwt)  # (A, C)
    n, num_combos = lat.num_states, len(combos)
    level = _levels(lat, where)
    cost = torch.full((n, num_combos), torch.inf, dtype=torch.float64)
    cost[lat.start] = 0.0
    back = torch.full((n, num_combos), -1, dtype=torch.int64)
    arc_level = level[lat.dst]
    arc_order = np.argsort(arc_level, kind="stable")
    bounds = np.searchsorted(arc_level[arc_order], np.arange(level.max() + 2))
    src_t, dst_t = torch.from_numpy(lat.src), torch.from_numpy(lat.dst)
    for depth in range(1, level.max() + 1):
        arcs = torch.from_numpy(arc_order[bounds[depth]:bounds[depth + 1]])
        if not len(arcs):
            continue
        states, local = torch.unique(dst_t[arcs], return_inverse=True)
        cand = cost[src_t[arcs]] + weight[arcs]
        index = local[:, None].expand(-1, num_combos)
        best = torch.full((len(states), num_combos), torch.inf, dtype=torch.float64)
        best.scatter_reduce_(0, index, cand, reduce="amin")
        winner = torch.where(cand == best[local], arcs[:, None].expand(-1, num_combos), -1)
        arg = torch.full((len(states), num_combos), -1, dtype=torch.int64)
        arg.scatter_reduce_(0, index, winner, reduce="amax")
        cost[states] = best
        back[states] = arg
    final_cost = (cost[torch.from_numpy(lat.final_state)] + torch.from_numpy(lat.final_graph)[:, None]
                  + torch.from_numpy(lat.final_acoustic)[:, None] * inv_lmwt)
    best_final = lat.final_state[final_cost.argmin(0).numpy()]
    reachable = torch.isfinite(final_cost.min(0).values).numpy()
    back_np = back.numpy()
    out = []
    for c in range(len(combos)):
        arcs, state = [], int(best_final[c])
        while reachable[c] and state != lat.start:
            arc = back_np[state, c]
            if arc < 0:
                raise EsgdError(f"{where}: broken back-pointer while tracing the best path")
            arcs.append(int(arc))
            state = int(lat.src[arc])
        out.append(arcs[::-1])
    return out
