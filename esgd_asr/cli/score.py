"""Score a decode dir: best paths of its lattices over a grid of LM weights and word insertion penalties, WER
of each against the data dir's transcripts (kaldialign), Kaldi's file layout (steps/score_kaldi.sh).

Usage: esgd-score [--min-lmwt 7] [--max-lmwt 17] [--word-ins-penalty 0.0,0.5,1.0] [--nj 1] <data-dir>
                  <graph-or-lang-dir> <decode-dir>

Reads <decode-dir>/lat.*.gz and <graph-or-lang-dir>/words.txt; writes <decode-dir>/scoring/ref.txt and
scoring/<lmwt>_<wip>.txt (hypotheses), wer_<lmwt>_<wip> (compute-wer's report) and best_wer (the lowest
`%WER ...` line followed by the path of its wer file). The lattice archives are searched by --nj processes.
"""
from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import kaldi_hmm_gmm  # noqa: F401  (before kaldifst: import-order trap)
import torch

from esgd_asr.atomic import atomic_write_text
from esgd_asr.cli.options import KaldiArgumentParser
from esgd_asr.data.kaldi_dir import read_table, write_table
from esgd_asr.decode.lattice import best_paths, read_lattice_archive
from esgd_asr.decode.scoring import compute_wer
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.gmm.lang_dir import read_symbols

log = logging.getLogger("esgd-score")


def penalty_list(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    try:
        [float(v) for v in items]
    except ValueError:
        raise EsgdError(f"--word-ins-penalty: expected comma-separated numbers, got '{value}'") from None
    if not items:
        raise EsgdError("--word-ins-penalty: no value given")
    return items


def archive_best_paths(archive: Path, lmwts: list[float], penalties: list[float]) -> dict[str, dict]:
    """{utterance: {(lmwt, wip): word ids of the best path}} of one lattice archive."""
    torch.set_num_threads(1)  # one thread per process, as Kaldi's tools: parallelism comes from --nj
    return {utt: best_paths(lattice, lmwts, penalties, f"{archive}: lattice '{utt}'")
            for utt, lattice in read_lattice_archive(archive)}


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(prog="esgd-score", description=__doc__.split("\n\n")[0])
    parser.add_argument("--min-lmwt", type=int, default=7)
    parser.add_argument("--max-lmwt", type=int, default=17)
    parser.add_argument("--word-ins-penalty", type=penalty_list, default=["0.0", "0.5", "1.0"])
    parser.add_argument("--nj", type=int, default=1, help="processes searching the lattice archives")
    parser.add_argument("data_dir")
    parser.add_argument("lang_or_graph_dir")
    parser.add_argument("decode_dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.nj < 1:
        raise EsgdError(f"--nj {args.nj}: need at least 1")
    if not 1 <= args.min_lmwt <= args.max_lmwt:
        raise EsgdError(f"--min-lmwt {args.min_lmwt} / --max-lmwt {args.max_lmwt}: need 1 <= min <= max")
    decode_dir, data_dir = Path(args.decode_dir), Path(args.data_dir)
    words = {i: w for w, i in read_symbols(Path(args.lang_or_graph_dir) / "words.txt").items()}
    refs = {utt: text.split() for utt, text in read_table(data_dir / "text", allow_empty_value=True).items()}
    archives = sorted(decode_dir.glob("lat.*.gz"), key=lambda p: int(p.name.split(".")[1]))
    if not archives:
        raise EsgdError(f"{decode_dir}: no lat.*.gz lattices (run steps/decode.sh first)")
    lmwts = list(range(args.min_lmwt, args.max_lmwt + 1))
    grid = [(lmwt, wip) for lmwt in lmwts for wip in args.word_ins_penalty]
    hyps: dict[tuple[int, str], dict[str, list[str]]] = {combo: {} for combo in grid}
    lmwt_values, penalty_values = [float(x) for x in lmwts], [float(x) for x in args.word_ins_penalty]
    with ProcessPoolExecutor(min(args.nj, len(archives))) as pool:
        results = pool.map(archive_best_paths, archives, [lmwt_values] * len(archives),
                           [penalty_values] * len(archives))
        for archive, paths_of in zip(archives, results):
            for utt, paths in paths_of.items():
                if utt not in refs:
                    raise EsgdError(f"{archive}: utterance '{utt}' is not in {data_dir / 'text'}")
                for lmwt, wip in grid:
                    try:
                        hyps[lmwt, wip][utt] = [words[w] for w in paths[float(lmwt), float(wip)]]
                    except KeyError as err:
                        raise EsgdError(f"{archive}: lattice '{utt}' has word id {err} missing from words.txt") \
                            from None
    scoring = decode_dir / "scoring"
    write_table(scoring / "ref.txt", {u: " ".join(r) for u, r in refs.items()})
    best = None
    for lmwt, wip in grid:
        write_table(scoring / f"{lmwt}_{wip}.txt", {u: " ".join(h) for u, h in hyps[lmwt, wip].items()})
        stats = compute_wer(refs, hyps[lmwt, wip])
        wer_file = decode_dir / f"wer_{lmwt}_{wip}"
        atomic_write_text(wer_file, stats.report())
        if best is None or stats.errors < best[0].errors:
            best = (stats, wer_file)
    atomic_write_text(decode_dir / "best_wer", f"{best[0].wer_line()} {best[1]}\n")
    log.info("%s %s", best[0].wer_line(), best[1])


if __name__ == "__main__":
    main()
