"""The lattice-faster search against Kaldi's own LatticeSimpleDecoder (kaldi-decoder) on random graphs."""
import kaldi_hmm_gmm  # noqa: F401  (before kaldifst / kaldi_decoder)

import kaldi_decoder
import kaldifst
import numpy as np
import pytest

from esgd_asr.decode.beam_search import SearchGraph, SearchOptions, search
from esgd_asr.decode.lattice import DecodeOptions, LatticeDecoder, best_paths
from esgd_asr.errors import EsgdError
from esgd_asr.decode.lattice_text import LatticeArrays, parse_lattice_text
from esgd_asr.gmm.fst_arrays import fst_to_arrays

NUM_LABELS = 6


def random_graph(rng, num_states=30):
    """A graph with emitting arcs (self-loops included) anywhere, epsilon arcs only forward (no epsilon cycles),
    word labels on some arcs, and a few final states."""
    lines = []
    for s in range(num_states):
        for _ in range(rng.integers(1, 4)):
            d = int(rng.integers(0, num_states))
            lines.append(f"{s} {d} {rng.integers(1, NUM_LABELS + 1)} {rng.integers(0, 5)} {rng.uniform(0, 3):.4f}")
        if s + 1 < num_states and rng.random() < 0.3:
            d = int(rng.integers(s + 1, num_states))
            lines.append(f"{s} {d} 0 {rng.integers(0, 5)} {rng.uniform(0, 2):.4f}")
    finals = [f"{s} {rng.uniform(0, 2):.4f}" for s in range(num_states) if rng.random() < 0.2]
    fst = kaldifst.compile(s="\n".join(lines + finals) + "\n", acceptor=False, keep_state_numbering=True)
    kaldifst.arcsort(fst, sort_type="ilabel")
    return fst


def kaldi_lattice(fst, loglikes, beam, lattice_beam):
    decoder = kaldi_decoder.LatticeSimpleDecoder(
        fst, kaldi_decoder.LatticeSimpleDecoderConfig(beam=beam, lattice_beam=lattice_beam))
    decoder.decode(kaldi_decoder.DecodableCtc(loglikes))
    ok, lattice = decoder.get_raw_lattice(use_final_probs=True)
    assert ok
    return parse_lattice_text(lattice.to_str(), "kaldi")


def best_cost(lat, lmwt=1.0):
    """The cost of the best complete path (graph + acoustic / lmwt)."""
    return float(np.min(_forward(lat, lmwt)[lat.final_state] + lat.final_graph + lat.final_acoustic / lmwt))


def test_search_finds_kaldis_best_path_and_lattice_beam():
    rng = np.random.default_rng(0)
    checked = 0
    for trial in range(30):
        fst = random_graph(rng)
        loglikes = rng.normal(-3.0, 2.0, size=(int(rng.integers(5, 60)), NUM_LABELS)).astype(np.float32)
        ref = kaldi_lattice(fst, loglikes, beam=12.0, lattice_beam=5.0)
        decoder = LatticeDecoder(fst, DecodeOptions(beam=12.0, lattice_beam=5.0, acwt=1.0, max_active=10**9))
        result = decoder.decode(loglikes)
        if ref.final_state.size == 0:
            continue
        ours = parse_lattice_text(result.lattice_text, "ours")
        assert best_cost(ours) == pytest.approx(best_cost(ref), abs=1e-3), trial
        for lmwt in (0.5, 2.0):  # the lattices agree off the search's own scale too, within the lattice beam
            assert best_paths(ours, [lmwt], [0.0]) == best_paths(ref, [lmwt], [0.0]) or \
                abs(best_cost(ours, lmwt) - best_cost(ref, lmwt)) < 1e-3, trial
        # every arc kept lies on a complete path within the lattice beam of the best one
        fwd, bwd = _forward(ours), _forward(_reversed(ours))
        through = fwd[ours.src] + ours.graph + ours.acoustic + bwd[ours.dst]
        assert through.max() <= best_cost(ours) + 5.0 + 1e-3
        checked += 1
    assert checked >= 20


def _forward(lat, lmwt=1.0):
    """Every state's best cost from the start (Bellman-Ford: the lattices are small)."""
    cost = np.full(lat.num_states, np.inf)
    cost[lat.start] = 0.0
    for _ in range(lat.num_states):
        np.minimum.at(cost, lat.dst, cost[lat.src] + lat.graph + lat.acoustic / lmwt)
    return cost


def _reversed(lat):
    """The lattice backwards from a super-initial state joined to the finals by their final weights."""
    n = lat.num_states
    src = np.concatenate([lat.dst, np.full(lat.final_state.size, n)])
    dst = np.concatenate([lat.src, lat.final_state])
    return LatticeArrays(src, dst, np.zeros_like(src), np.zeros_like(src),
                         np.concatenate([lat.graph, lat.final_graph]),
                         np.concatenate([lat.acoustic, lat.final_acoustic]),
                         np.array([lat.start]), np.zeros(1), np.zeros(1), n, n + 1)


def test_max_active_bounds_the_search_and_keeps_a_path():
    rng = np.random.default_rng(1)
    fst = random_graph(rng, num_states=200)
    loglikes = rng.normal(-3.0, 1.0, size=(80, NUM_LABELS)).astype(np.float32)
    graph = SearchGraph.from_arrays(fst_to_arrays(fst))
    full, full_reached = search(graph, loglikes, SearchOptions(beam=30.0, max_active=10**9, min_active=0,
                                                               lattice_beam=2.0))
    narrow, narrow_reached = search(graph, loglikes, SearchOptions(beam=30.0, max_active=5, min_active=0,
                                                                   lattice_beam=2.0))
    assert full_reached and narrow_reached
    assert narrow.num_states < full.num_states
    # pruning can only lose the best path, never invent a better one
    assert best_cost(narrow) >= best_cost(full) - 1e-4


def test_partial_lattice_when_no_final_state_is_reached():
    fst = kaldifst.compile(s="0 1 1 7 0.5\n1 1 2 0 0.1\n2 0.0\n", acceptor=False, keep_state_numbering=True)
    result = LatticeDecoder(fst, DecodeOptions(beam=10.0, lattice_beam=4.0, acwt=1.0)).decode(
        np.zeros((4, 2), np.float32))
    assert not result.reached_final
    lat = parse_lattice_text(result.lattice_text, "partial")
    assert best_paths(lat, [1.0], [0.0])[1.0, 0.0] == [7]


def test_bad_options_and_short_loglikes_are_errors():
    fst = kaldifst.compile(s="0 1 3 1 0.5\n1 0.0\n", acceptor=False, keep_state_numbering=True)
    with pytest.raises(EsgdError, match="max-active"):
        LatticeDecoder(fst, DecodeOptions(max_active=0))
    with pytest.raises(EsgdError, match="input labels"):
        LatticeDecoder(fst, DecodeOptions()).decode(np.zeros((3, 2), np.float32))
