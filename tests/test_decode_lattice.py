"""Lattice best paths under a grid of LM weights / insertion penalties, lattice archives and FST arrays."""
import kaldi_hmm_gmm  # noqa: F401  (before kaldifst)
import gzip

import kaldifst
import numpy as np
import pytest

from esgd_asr.decode.lattice import best_paths, read_lattice_archive, write_lattice_archive
from esgd_asr.errors import EsgdError
from esgd_asr.decode.lattice_text import _POW10, _lattice_numbers, _parse_lattice_rows, parse_lattice_text
from esgd_asr.gmm.fst_arrays import arrays_to_fst, fst_to_arrays

# two competing word paths from 0 to 3; an epsilon arc listed before the arc that reaches its source state
LATTICE = """0 1 5 11 1,10
0 2 6 12 4,4
2 4 7 0 0,1
4 3 0 13 0,0
1 3 8 0 0,2
3 0.5,0
"""


def brute_force(lmwt, wip):
    """Costs of the two paths: [11] = 1 + 12/lmwt + wip; [12, 13] = 4 + 5/lmwt + 2 wip."""
    a = 1 + 12 / lmwt + wip
    b = 4 + 5 / lmwt + 2 * wip
    return [11] if a < b else [12, 13]


def test_best_paths_follow_lm_weight_and_penalty():
    lat = parse_lattice_text(LATTICE, "test")
    lmwts, wips = [1.0, 2.0, 3.0, 5.0, 10.0], [0.0, 0.4, 1.0, 3.0]  # no ties on this grid
    paths = best_paths(lat, lmwts, wips)
    for lmwt in lmwts:
        for wip in wips:
            assert paths[lmwt, wip] == brute_force(lmwt, wip), (lmwt, wip)
    assert {tuple(p) for p in paths.values()} == {(11,), (12, 13)}  # both outcomes occur on this grid


def test_best_paths_match_kaldifst_shortest_path_on_random_dags():
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = 12
        arcs = [(s, d) for s in range(n) for d in range(s + 1, min(n, s + 4)) if rng.random() < 0.7]
        arcs += [(s, s + 1) for s in range(n - 1)]
        lines = [f"{s} {d} {rng.integers(1, 9)} {rng.integers(0, 4)} {rng.uniform(0, 3):.3f},{rng.uniform(0, 9):.3f}"
                 for s, d in arcs]
        order = sorted(range(len(lines)), key=lambda i: arcs[i][0] != 0)
        text = "\n".join(lines[i] for i in order) + f"\n{n - 1} 0,0\n"
        lat = parse_lattice_text(text, "random")
        lmwt = float(rng.integers(5, 15))
        got = best_paths(lat, [lmwt], [0.0])[lmwt, 0.0]
        # reference: the same costs as a tropical FST and OpenFst's shortest path
        ref = kaldifst.compile(s="\n".join(
            f"{s} {d} {i} {o} {float(g) + float(a) / lmwt:.6f}"
            for s, d, i, o, (g, a) in ((*line.split()[:4], line.split()[4].split(",")) for line in
                                       (lines[i] for i in order))) + f"\n{n - 1} 0\n")
        ok, _, words, _ = kaldifst.get_linear_symbol_sequence(kaldifst.shortest_path(ref))
        assert ok and got == list(words)


def test_compiled_lattice_parser_equals_python_floats_bit_for_bit():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 1e3, 300), rng.normal(0, 1e-5, 100), [0.0, -0.0, 1e10, 1.5e-21, 7]])
    lines = [f"{i}\t{i + 1} {i % 7} {i % 3} {a:.7g},{b:.12g}" for i, (a, b) in enumerate(zip(values, values[::-1]))]
    text = "\n".join(lines + ["12 4 5 0", "405 -2.5e+3,+1.25E-2", "7", ""])
    assert _lattice_numbers(np.frombuffer(text.encode(), np.uint8), _POW10) is not None  # the compiled path
    for lattice in (text, text + "9 inf,0\n", text + "8 1.2345678901234567,0\n"):  # the last two: in Python
        fast, slow = parse_lattice_text(lattice, "fast"), _parse_lattice_rows(lattice, "slow")
        for field in vars(slow):
            mine, reference = getattr(fast, field), getattr(slow, field)
            assert np.array_equal(np.atleast_1d(mine).view(np.uint8), np.atleast_1d(reference).view(np.uint8)), field
    for bad in ("0 1 2 3 x,1\n", "0 1 2.5 3 1,1\n", "0 1 2\n", "0 1 2 3 1,2,3\n", "0 1,2 3 4 1,1\n"):
        with pytest.raises(EsgdError, match="malformed|bad FST text"):
            parse_lattice_text(bad, "bad")


def test_empty_lattice_gives_empty_hypotheses():
    lat = parse_lattice_text("", "empty")
    assert best_paths(lat, [10.0], [0.0, 1.0]) == {(10.0, 0.0): [], (10.0, 1.0): []}


def test_cyclic_lattice_is_an_error():
    lat = parse_lattice_text("0 1 1 1 0,0\n1 0 1 0 0,0\n1 0,0\n", "cyclic")
    with pytest.raises(EsgdError, match="cycle"):
        best_paths(lat, [10.0], [0.0])


def test_lattice_archive_roundtrip_and_truncation(tmp_path):
    lat = parse_lattice_text(LATTICE, "test")
    path = tmp_path / "lat.1.gz"
    assert write_lattice_archive(path, [("utt1", LATTICE), ("utt2", LATTICE.replace(" ", "\t"))]) == 2
    read = dict(read_lattice_archive(path))
    assert list(read) == ["utt1", "utt2"]
    for got in read.values():
        assert np.array_equal(got.olabel, lat.olabel) and np.allclose(got.acoustic, lat.acoustic)
    with gzip.open(tmp_path / "bad.gz", "wt") as f:
        f.write("utt1\n0 1 2 3 1,1\n")
    with pytest.raises(EsgdError, match="truncated"):
        list(read_lattice_archive(tmp_path / "bad.gz"))
    with gzip.open(tmp_path / "bad2.gz", "wt") as f:
        f.write("utt1\n0 1 2 3 x,1\n\n")
    with pytest.raises(EsgdError, match="malformed"):
        list(read_lattice_archive(tmp_path / "bad2.gz"))


def test_fst_arrays_roundtrip_keeps_paths():
    fst = kaldifst.compile(s="3 1 1 5 0.5\n1 2 2 6 0.25\n1 3 4 0 1\n2 0.75\n", acceptor=False,
                           keep_state_numbering=True)
    fa = fst_to_arrays(fst)
    assert fa.start == 3 and sorted(fa.ilabel.tolist()) == [1, 2, 4]
    back = arrays_to_fst(fa)
    ok, isyms, osyms, weight = kaldifst.get_linear_symbol_sequence(kaldifst.shortest_path(back))
    assert ok and isyms == [1, 2] and osyms == [5, 6] and weight.value == pytest.approx(1.5)


def test_graph_arrays_are_cached_beside_hclg_while_it_is_unchanged(tmp_path, monkeypatch):
    from esgd_asr.decode import hclg

    def graph(text):
        kaldifst.compile(s=text, acceptor=False, keep_state_numbering=True).write(str(tmp_path / "HCLG.fst"))
        return fst_to_arrays(hclg.read_hclg(tmp_path))

    def same(a, b):
        return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in vars(a))

    first = graph("0 1 3 7 0.5\n1 2 4 0 1.25\n2 0.75\n")
    assert same(hclg.read_hclg_arrays(tmp_path), first) and (tmp_path / "HCLG.arrays.npz").is_file()
    monkeypatch.setattr(hclg, "fst_to_arrays", lambda fst: pytest.fail("converted again"))
    assert same(hclg.read_hclg_arrays(tmp_path), first)   # from the cache
    monkeypatch.undo()
    second = graph("0 1 3 7 0.5\n1 2 5 8 2\n2 3 4 0 1\n3 0\n")
    assert same(hclg.read_hclg_arrays(tmp_path), second)  # HCLG.fst changed: converted and cached again
    (tmp_path / "HCLG.arrays.npz").write_bytes(b"truncated")
    assert same(hclg.read_hclg_arrays(tmp_path), second)
