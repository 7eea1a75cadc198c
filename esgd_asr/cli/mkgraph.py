"""Decoding graph of a GMM-HMM system (Kaldi's utils/mkgraph.sh).

Usage: esgd-mkgraph [--transition-scale 1.0] [--self-loop-scale 0.1] <lang-test-dir> <model> <graph-dir>

Writes <graph-dir>/HCLG.fst (input labels transition-ids, output labels words), words.txt, phones.txt,
phones/, disambig_tid.int and num_pdfs; the lang dir must hold G.fst and L_disambig.fst.
"""
from __future__ import annotations

import logging
import time

import kaldi_hmm_gmm  # noqa: F401  (before kaldifst: import-order trap)

from esgd_asr.cli.options import KaldiArgumentParser
from esgd_asr.decode.hclg import make_hclg, write_graph_dir
from esgd_asr.errors import cli_main
from esgd_asr.gmm.lang_dir import LangDir
from esgd_asr.gmm.model import GmmHmm

log = logging.getLogger("esgd-mkgraph")


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(prog="esgd-mkgraph", description=__doc__.split("\n\n")[0])
    parser.add_argument("--transition-scale", type=float, default=1.0)
    parser.add_argument("--self-loop-scale", type=float, default=0.1)
    parser.add_argument("lang_dir")
    parser.add_argument("model")
    parser.add_argument("graph_dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    start = time.perf_counter()
    lang = LangDir.read(args.lang_dir)
    model = GmmHmm.load(args.model)
    hclg = make_hclg(lang, model, args.transition_scale, args.self_loop_scale)
    write_graph_dir(args.graph_dir, hclg, lang, model)
    log.info("%s/HCLG.fst: %d states, %d arcs, made in %.1f s", args.graph_dir, hclg.num_states,
             sum(hclg.num_arcs(s) for s in range(hclg.num_states)), time.perf_counter() - start)


if __name__ == "__main__":
    main()
