"""Kaldi's LatticeFasterDecoder (beam, max-active, min-active, lattice beam, periodic lattice pruning), compiled
with numba over an HCLG held as arrays.

kaldi-decoder's only lattice decoder (LatticeSimpleDecoder) has no max-active, and kaldi-hmm-gmm's
LatticeFasterDecoder neither takes kaldifst graphs nor returns lattices (shared findings), so the search is here.
It follows Kaldi's lattice-faster-decoder.cc: a token per (frame, graph state) with its best forward cost, a
forward link per arc that passed the adaptive cutoff (GetCutoff: beam, max-active, min-active, beam-delta), the
epsilon closure of every frame, and every `prune_interval` frames the backward extra-cost pruning of tokens and links
that cannot be on a path within `lattice_beam` of the best one (PruneForwardLinks / PruneTokensForFrame). The
result is Kaldi's raw state-level lattice: a state per surviving token, arcs (transition-id, word, graph cost,
scaled acoustic cost), final weights from the graph's finals (or 0 on every last-frame token when no final state
was reached, Kaldi's --allow-partial).
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from esgd_asr.errors import EsgdError
from esgd_asr.decode.lattice_text import LatticeArrays
from esgd_asr.gmm.fst_arrays import FstArrays

_NO_TOKEN = -1


@dataclass(frozen=True)
class SearchGraph:
    """The arcs of every state in CSR form, emitting (input label > 0) and epsilon apart, and final costs."""

    emit_first: np.ndarray  # (num_states + 1,) arcs of state s: emit_first[s]:emit_first[s + 1]
    emit_ilabel: np.ndarray
    emit_olabel: np.ndarray
    emit_weight: np.ndarray
    emit_dst: np.ndarray
    eps_first: np.ndarray
    eps_olabel: np.ndarray
    eps_weight: np.ndarray
    eps_dst: np.ndarray
    final_cost: np.ndarray  # (num_states,), inf where not final
    start: int
    max_ilabel: int
    max_emit_arcs: int      # the most emitting arcs out of one state

    @classmethod
    def from_arrays(cls, fa: FstArrays) -> "SearchGraph":
        if fa.start < 0:
            raise EsgdError("the decoding graph is empty (no start state)")

        def csr(mask):
            order = np.flatnonzero(mask)[np.argsort(fa.src[mask], kind="stable")]
            first = np.searchsorted(fa.src[order], np.arange(fa.num_states + 1)).astype(np.int64)
            return first, order

        emit_first, emit = csr(fa.ilabel > 0)
        eps_first, eps = csr(fa.ilabel == 0)
        final_cost = np.full(fa.num_states, np.inf)
        final_cost[fa.final_state] = fa.final_weight
        return cls(emit_first, fa.ilabel[emit].astype(np.int32), fa.olabel[emit].astype(np.int32),
                   fa.weight[emit].astype(np.float32), fa.dst[emit].astype(np.int32),
                   eps_first, fa.olabel[eps].astype(np.int32), fa.weight[eps].astype(np.float32),
                   fa.dst[eps].astype(np.int32), final_cost, fa.start, int(fa.ilabel.max(initial=0)),
                   int(np.diff(emit_first).max(initial=0)))


@dataclass(frozen=True)
class SearchOptions:
    beam: float = 13.0
    max_active: int = 7000
    min_active: int = 200
    lattice_beam: float = 6.0
    prune_interval: int = 25
    beam_delta: float = 0.5


def search(graph: SearchGraph, loglikes: np.ndarray, opts: SearchOptions) -> tuple[LatticeArrays, bool]:
    """Decode (T, num_input_labels) acoustic-scaled log-likelihoods (input label i scores column i - 1); the raw
    lattice (state 0 the start, acoustic costs as scaled for the search; no states when nothing survived) and
    whether a final state was reached."""
    loglikes = np.ascontiguousarray(loglikes, dtype=np.float32)
    if loglikes.ndim != 2 or loglikes.shape[1] < graph.max_ilabel:
        raise EsgdError(f"log-likelihoods of shape {loglikes.shape} do not cover the graph's input labels "
                        f"(up to {graph.max_ilabel})")
    out = _search(graph.emit_first, graph.emit_ilabel, graph.emit_olabel, graph.emit_weight, graph.emit_dst,
                  graph.eps_first, graph.eps_olabel, graph.eps_weight, graph.eps_dst, graph.final_cost,
                  graph.start, graph.max_emit_arcs, loglikes, float(opts.beam), int(opts.max_active),
                  int(opts.min_active), float(opts.lattice_beam), int(opts.prune_interval), float(opts.beam_delta))
    src, dst, ilabel, olabel, g, ac, first_last, last_states, reached = out
    # the last frame's tokens end the lattice: with their graph final costs, or all at 0 when none is final
    final_cost = graph.final_cost[last_states]
    final = np.isfinite(final_cost) if reached else np.ones(len(last_states), bool)
    final_state = first_last + np.flatnonzero(final)
    final_graph = final_cost[final] if reached else np.zeros(len(final_state))
    num_states = first_last + len(last_states)
    lattice = LatticeArrays(src, dst, ilabel, olabel, g.astype(np.float64), ac.astype(np.float64), final_state,
                            final_graph, np.zeros_like(final_graph), 0 if num_states else -1, int(num_states))
    return lattice, bool(reached)


@numba.njit(cache=True)
def _grow(a, n):
    if n <= a.shape[0]:
        return a
    b = np.empty(max(n, 2 * a.shape[0]), a.dtype)
    b[: a.shape[0]] = a
    return b


@numba.njit(cache=True)
def _reserve_tokens(n, tok_state, tok_cost, tok_eps_lo, tok_eps_hi):
    """The token arrays with room for `n` tokens."""
    return _grow(tok_state, n), _grow(tok_cost, n), _grow(tok_eps_lo, n), _grow(tok_eps_hi, n)


@numba.njit(cache=True)
def _reserve_links(n, l_src, l_dst, l_ilabel, l_olabel, l_graph, l_ac, l_alive):
    """The link arrays with room for `n` links."""
    return (_grow(l_src, n), _grow(l_dst, n), _grow(l_ilabel, n), _grow(l_olabel, n), _grow(l_graph, n),
            _grow(l_ac, n), _grow(l_alive, n))


@numba.njit(cache=True, inline="always")
def _new_token(state, index, state_tok, tok_state, tok_eps_lo, tok_eps_hi):
    """Token `index` at graph state `state` (room reserved; its cost set by the caller)."""
    state_tok[state], tok_state[index], tok_eps_lo[index], tok_eps_hi[index] = index, state, 0, 0
    return index


@numba.njit(cache=True, inline="always")
def _set_link(j, src, dst, ilabel, olabel, graph, ac, l_src, l_dst, l_ilabel, l_olabel, l_graph, l_ac, l_alive):
    """Link `j` (room reserved)."""
    l_src[j], l_dst[j], l_ilabel[j], l_olabel[j], l_graph[j], l_ac[j], l_alive[j] = \
        src, dst, ilabel, olabel, graph, ac, True


@numba.njit(cache=True)
def _kth_smallest(costs, k):
    return np.partition(costs.copy(), k)[k]


@numba.njit(cache=True)
def _search(emit_first, emit_ilabel, emit_olabel, emit_weight, emit_dst, eps_first, eps_olabel, eps_weight, eps_dst,
            final_cost, start, max_emit_arcs, loglikes, beam, max_active, min_active, lattice_beam, prune_interval,
            beam_delta):
    num_frames = loglikes.shape[0]
    # tokens frame after frame (frame_tok[f]:frame_tok[f + 1]); tok_eps_* the span of a token's epsilon links
    tok_state = np.empty(4096, np.int32)
    tok_cost = np.empty(4096, np.float64)
    tok_eps_lo = np.zeros(4096, np.int64)
    tok_eps_hi = np.zeros(4096, np.int64)
    # links grouped by the frame of their destination token (frame_link[f]:frame_link[f + 1])
    l_src = np.empty(16384, np.int64)
    l_dst = np.empty(16384, np.int64)
    l_ilabel = np.empty(16384, np.int32)
    l_olabel = np.empty(16384, np.int32)
    l_graph = np.empty(16384, np.float32)
    l_ac = np.empty(16384, np.float32)
    l_alive = np.empty(16384, np.bool_)
    frame_tok = np.zeros(num_frames + 2, np.int64)
    frame_link = np.zeros(num_frames + 2, np.int64)
    state_tok = np.full(len(final_cost), _NO_TOKEN, np.int32)
    queue = np.empty(4096, np.int64)

    tok_state[0], tok_cost[0], num_toks, num_links = start, 0.0, 1, 0
    state_tok[start] = 0
    last_pruned, reached_final = 0, False
    for t in range(num_frames + 1):
        # ---- epsilon closure of frame t (ProcessNonemitting); a token whose cost improves is processed again and
        # its earlier epsilon links are dropped
        lo = frame_tok[t]
        best = np.inf
        for i in range(lo, num_toks):
            best = min(best, tok_cost[i])
        cutoff = best + beam
        queue = _grow(queue, num_toks - lo)
        qn = 0
        for i in range(lo, num_toks):
            queue[qn] = i
            qn += 1
        while qn > 0:
            qn -= 1
            tok = queue[qn]
            cost = tok_cost[tok]
            if cost > cutoff:
                continue
            for j in range(tok_eps_lo[tok], tok_eps_hi[tok]):
                l_alive[j] = False
            s = tok_state[tok]
            tok_eps_lo[tok] = num_links
            arcs = eps_first[s + 1] - eps_first[s]
            if num_toks + arcs > tok_state.shape[0] or num_links + arcs > l_src.shape[0]:
                tok_state, tok_cost, tok_eps_lo, tok_eps_hi = _reserve_tokens(
                    num_toks + arcs, tok_state, tok_cost, tok_eps_lo, tok_eps_hi)
                l_src, l_dst, l_ilabel, l_olabel, l_graph, l_ac, l_alive = _reserve_links(
                    num_links + arcs, l_src, l_dst, l_ilabel, l_olabel, l_graph, l_ac, l_alive)
            for a in range(eps_first[s], eps_first[s + 1]):
                new_cost = cost + eps_weight[a]
                if new_cost >= cutoff:
                    continue
                d = eps_dst[a]
                nt = state_tok[d]
                if nt == _NO_TOKEN or new_cost < tok_cost[nt]:
                    if nt == _NO_TOKEN:
                        nt = _new_token(d, num_toks, state_tok, tok_state, tok_eps_lo, tok_eps_hi)
                        num_toks += 1
                    tok_cost[nt] = new_cost
                    queue = _grow(queue, qn + 1)
                    queue[qn] = nt
                    qn += 1
                _set_link(num_links, tok, nt, 0, eps_olabel[a], eps_weight[a], 0.0, l_src, l_dst, l_ilabel, l_olabel,
                          l_graph, l_ac, l_alive)
                num_links += 1
            tok_eps_hi[tok] = num_links
        frame_tok[t + 1] = num_toks
        frame_link[t + 1] = num_links
        for i in range(lo, num_toks):
            state_tok[tok_state[i]] = _NO_TOKEN

        at_end = t == num_frames
        if at_end or t - last_pruned >= prune_interval:
            extra, reached_final = _extra_costs(t, at_end, frame_tok, frame_link, tok_state, tok_cost, l_src, l_dst,
                                                l_ilabel, l_graph, l_ac, l_alive, final_cost, lattice_beam)
            num_toks, num_links = _compact(t, at_end, extra, lattice_beam, frame_tok, frame_link, tok_state, tok_cost,
                                           tok_eps_lo, tok_eps_hi, l_src, l_dst, l_ilabel, l_olabel, l_graph, l_ac,
                                           l_alive)
            last_pruned = t
        if at_end:
            break

        # ---- emitting arcs of frame t into frame t + 1 (GetCutoff, ProcessEmitting)
        lo, hi = frame_tok[t], num_toks
        if hi == lo:
            continue  # nothing survived: the lattice is empty
        best, best_tok = np.inf, lo
        for i in range(lo, hi):
            if tok_cost[i] < best:
                best, best_tok = tok_cost[i], i
        cutoff, adaptive_beam, narrowed = best + beam, beam, False
        if hi - lo > max_active:
            c = _kth_smallest(tok_cost[lo:hi], max_active)
            if c < cutoff:
                cutoff, adaptive_beam, narrowed = c, c - best + beam_delta, True
        if not narrowed and hi - lo > min_active:  # widened to keep min-active tokens
            c = _kth_smallest(tok_cost[lo:hi], min_active)
            if c > cutoff:
                cutoff, adaptive_beam = c, c - best + beam_delta
        # room for every arc of every token: the loop below writes without checks
        tok_state, tok_cost, tok_eps_lo, tok_eps_hi = _reserve_tokens(
            num_toks + max_emit_arcs * (hi - lo), tok_state, tok_cost, tok_eps_lo, tok_eps_hi)
        l_src, l_dst, l_ilabel, l_olabel, l_graph, l_ac, l_alive = _reserve_links(
            num_links + max_emit_arcs * (hi - lo), l_src, l_dst, l_ilabel, l_olabel, l_graph, l_ac, l_alive)
        next_cutoff = np.inf  # first estimate from the best token's arcs, then tightened as better tokens appear
        s = tok_state[best_tok]
        for a in range(emit_first[s], emit_first[s + 1]):
            next_cutoff = min(next_cutoff, best + emit_weight[a] - loglikes[t, emit_ilabel[a] - 1] + adaptive_beam)
        for tok in range(lo, hi):
            cost = tok_cost[tok]
            if cost > cutoff:
                continue
            s = tok_state[tok]
            for a in range(emit_first[s], emit_first[s + 1]):
                ac = -loglikes[t, emit_ilabel[a] - 1]
                new_cost = cost + emit_weight[a] + ac
                if new_cost >= next_cutoff:
                    continue
                next_cutoff = min(next_cutoff, new_cost + adaptive_beam)
                d = emit_dst[a]
                nt = state_tok[d]
                if nt == _NO_TOKEN:
                    nt = _new_token(d, num_toks, state_tok, tok_state, tok_eps_lo, tok_eps_hi)
                    num_toks += 1
                    tok_cost[nt] = new_cost
                elif new_cost < tok_cost[nt]:
                    tok_cost[nt] = new_cost
                _set_link(num_links, tok, nt, emit_ilabel[a], emit_olabel[a], emit_weight[a], ac, l_src, l_dst,
                          l_ilabel, l_olabel, l_graph, l_ac, l_alive)
                num_links += 1

    lo = frame_tok[num_frames]
    return (l_src[:num_links].copy(), l_dst[:num_links].copy(), l_ilabel[:num_links].copy(),
            l_olabel[:num_links].copy(), l_graph[:num_links].copy(), l_ac[:num_links].copy(), lo,
            tok_state[lo:num_toks].copy(), reached_final)


@numba.njit(cache=True)
def _link_extra(j, extra, tok_cost, l_src, l_dst, l_graph, l_ac):
    """How much worse than the best path the best path through link j is (Kaldi's link_extra_cost)."""
    return extra[l_dst[j]] + tok_cost[l_src[j]] + l_graph[j] + l_ac[j] - tok_cost[l_dst[j]]


@numba.njit(cache=True)
def _extra_costs(t, at_end, frame_tok, frame_link, tok_state, tok_cost, l_src, l_dst, l_ilabel, l_graph, l_ac,
                 l_alive, final_cost, lattice_beam):
    """Backward pass from frame t (PruneForwardLinks[Final]): every token's extra cost, links beyond the lattice
    beam killed. Frame t's tokens count as 0 unless `at_end`, when they count from their final costs (or from
    their forward costs alone when no final state was reached)."""
    lo, hi = frame_tok[t], frame_tok[t + 1]
    extra = np.full(hi, np.inf)
    reached_final = False
    if at_end:
        best_final, best = np.inf, np.inf
        for i in range(lo, hi):
            best_final = min(best_final, tok_cost[i] + final_cost[tok_state[i]])
            best = min(best, tok_cost[i])
        reached_final = best_final < np.inf
        for i in range(lo, hi):
            extra[i] = tok_cost[i] + final_cost[tok_state[i]] - best_final if reached_final else tok_cost[i] - best
    else:
        extra[lo:hi] = 0.0
    first = t if at_end else t - 1
    for f in range(first, -1, -1):
        if f < t:  # emitting links out of frame f: their destinations' extra costs are final
            for j in range(frame_link[f + 1], frame_link[f + 2]):
                if l_alive[j] and l_ilabel[j] != 0:
                    extra[l_src[j]] = min(extra[l_src[j]], _link_extra(j, extra, tok_cost, l_src, l_dst, l_graph, l_ac))
        changed = True
        while changed:  # epsilon links inside frame f may lower each other's sources: relax to convergence
            changed = False
            for j in range(frame_link[f], frame_link[f + 1]):
                if l_alive[j] and l_ilabel[j] == 0:
                    le = _link_extra(j, extra, tok_cost, l_src, l_dst, l_graph, l_ac)
                    if le < extra[l_src[j]]:
                        extra[l_src[j]] = le
                        changed = True
        for g in range(f, min(f + 1, t) + 1):
            for j in range(frame_link[g], frame_link[g + 1]):
                if l_alive[j] and (l_ilabel[j] == 0) == (g == f):
                    if _link_extra(j, extra, tok_cost, l_src, l_dst, l_graph, l_ac) > lattice_beam:
                        l_alive[j] = False
    return extra, reached_final


@numba.njit(cache=True)
def _compact(t, at_end, extra, lattice_beam, frame_tok, frame_link, tok_state, tok_cost, tok_eps_lo, tok_eps_hi,
             l_src, l_dst, l_ilabel, l_olabel, l_graph, l_ac, l_alive):
    """Drop tokens beyond the lattice beam (all of frame t's are kept unless `at_end`) and dead links, in place,
    keeping the frame order; returns the new token and link counts."""
    new_id = np.full(frame_tok[t + 1], _NO_TOKEN, np.int64)
    n = 0
    for f in range(t + 1):
        first = n
        for i in range(frame_tok[f], frame_tok[f + 1]):
            if (f == t and not at_end) or extra[i] <= lattice_beam:
                new_id[i] = n
                tok_state[n], tok_cost[n] = tok_state[i], tok_cost[i]
                tok_eps_lo[n], tok_eps_hi[n] = 0, 0  # spans are used only while frame t's closure runs
                n += 1
        frame_tok[f] = first
    frame_tok[t + 1] = n
    m = 0
    for f in range(t + 1):
        first = m
        for j in range(frame_link[f], frame_link[f + 1]):
            if l_alive[j] and new_id[l_src[j]] != _NO_TOKEN and new_id[l_dst[j]] != _NO_TOKEN:
                l_src[m], l_dst[m] = new_id[l_src[j]], new_id[l_dst[j]]
                l_ilabel[m], l_olabel[m], l_graph[m], l_ac[m], l_alive[m] = \
                    l_ilabel[j], l_olabel[j], l_graph[j], l_ac[j], True
                m += 1
        frame_link[f] = first
    frame_link[t + 1] = m
    return n, m
