"""Scoring speed on the CPU: reading a decode dir's lattice archives with the compiled text reader against the
line-by-line Python parser (same lattices, checked equal), and the best paths over steps/score.sh's 33 (LM weight,
penalty) pairs, one thread, in interleaved rounds.

Needs a decode dir (run.sh stage 8 or later):
  python bench/bench_scoring.py exp/esgd_dnn_esgd/decode_test
"""
import argparse
import gzip
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kaldi_hmm_gmm  # noqa: E402,F401  (before kaldifst: import-order trap)
import numpy as np  # noqa: E402

from esgd_asr.decode.lattice import best_paths  # noqa: E402
from esgd_asr.errors import EsgdError, cli_main  # noqa: E402
from esgd_asr.decode.lattice_text import _parse_lattice_rows, parse_lattice_text  # noqa: E402


def lattice_texts(decode_dir: Path) -> list[tuple[str, bytes]]:
    """(utt, lattice text) of every archive of a decode dir, decompressed once (untimed)."""
    texts = []
    for archive in sorted(decode_dir.glob("lat.*.gz")):
        for entry in gzip.decompress(archive.read_bytes()).split(b"\n\n"):
            if entry.strip():
                key, _, body = entry.lstrip(b"\n").partition(b"\n")
                texts.append((key.decode(), body))
    if not texts:
        raise EsgdError(f"{decode_dir}: no lattices in lat.*.gz")
    return texts


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("decode_dir", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    texts = lattice_texts(args.decode_dir)
    compiled = [parse_lattice_text(body, utt) for utt, body in texts]  # compiles (or loads numba's cache) untimed
    python = [_parse_lattice_rows(body.decode(), utt) for utt, body in texts]
    for (utt, _), a, b in zip(texts, compiled, python):
        if not all(np.array_equal(np.atleast_1d(getattr(a, f)), np.atleast_1d(getattr(b, f))) for f in vars(a)):
            raise EsgdError(f"lattice '{utt}': the two parsers disagree")
    times = {"compiled": [], "python": [], "best paths": []}
    lmwts, penalties = [float(w) for w in range(7, 18)], [0.0, 0.5, 1.0]
    for _ in range(args.rounds):
        start = time.perf_counter()
        for utt, body in texts:
            parse_lattice_text(body, utt)
        times["compiled"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for utt, body in texts:
            _parse_lattice_rows(body.decode(), utt)
        times["python"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for (utt, _), lattice in zip(texts, compiled):
            best_paths(lattice, lmwts, penalties, utt)
        times["best paths"].append(time.perf_counter() - start)
    arcs = sum(len(lat.src) for lat in compiled)
    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.decode_dir}: {len(texts)} lattices, {arcs} arcs, {args.rounds} rounds (median)")
    print(f"parse, compiled reader   {median['compiled']:.2f} s")
    print(f"parse, Python lines      {median['python']:.2f} s  ({median['python'] / median['compiled']:.1f} x)")
    print(f"best paths, 33 pairs     {median['best paths']:.2f} s")


if __name__ == "__main__":
    main()
