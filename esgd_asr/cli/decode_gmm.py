"""Lattice decoding with a GMM-HMM model, one job's share of a data dir (Kaldi's gmm-latgen-faster).

Usage: esgd-decode-gmm --nj N --job J [--beam 13] [--max-active 7000] [--lattice-beam 6] [--acwt 0.083333]
                       [--frame-shift 0.01] [--transforms trans.J.ark] <graph-dir> <data-dir> <model> <decode-dir>

Per utterance: the model's front end on feats.scp (+ cmvn.scp), then the speaker's transform from --transforms
(fMLLR) if given, all pdfs' GMM log-likelihoods in torch (float32, as Kaldi's BaseFloat), then the lattice-faster
search (esgd_asr.decode.beam_search) over <graph-dir>/HCLG.fst. Writes <decode-dir>/lat.J.gz (Kaldi text lattice
archive, acoustic costs unscaled; see esgd_asr.decode.lattice) and <decode-dir>/timing.J
(`frames seconds_likelihoods seconds_search`; esgd_asr.decode.job); the log reports the real-time factor.
"""
from __future__ import annotations

import logging

import kaldi_hmm_gmm  # noqa: F401  (before kaldifst: import-order trap)
import torch

from esgd_asr.cli.options import KaldiArgumentParser, add_dataclass_options, dataclass_from_args
from esgd_asr.decode.hclg import check_graph_model, read_hclg_arrays
from esgd_asr.decode.job import decode_job
from esgd_asr.decode.lattice import DecodeOptions, LatticeDecoder
from esgd_asr.errors import cli_main
from esgd_asr.gmm.front_end import ModelFeatures
from esgd_asr.gmm.model import GmmHmm, PdfScorer, tid_loglikes


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(prog="esgd-decode-gmm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nj", type=int, default=1)
    parser.add_argument("--job", type=int, default=1)
    parser.add_argument("--frame-shift", type=float, default=0.01, help="seconds per frame, for the RTF")
    parser.add_argument("--transforms", default=None, help="per-speaker feature transforms (fMLLR trans.J.ark)")
    add_dataclass_options(parser, DecodeOptions)
    for name in ("graph_dir", "data_dir", "model", "decode_dir"):
        parser.add_argument(name)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(1)  # one thread per job, as Kaldi's tools: parallelism comes from --nj
    opts = dataclass_from_args(DecodeOptions, args)
    model = GmmHmm.load(args.model)
    check_graph_model(args.graph_dir, model.num_pdfs)
    info = model.transitions()
    scorer = PdfScorer(model.am, dtype=torch.float32)
    decoder = LatticeDecoder(read_hclg_arrays(args.graph_dir), opts)
    source = ModelFeatures(args.data_dir, model.front_end, args.transforms).shard(args.nj, args.job)

    def scored():
        for utt in source.utts:
            feats = source.load(utt)
            model.check_dim(feats, f"{args.data_dir}: utterance '{utt}'")
            yield utt, tid_loglikes(scorer.pdf_loglikes(feats), info, opts.acwt)

    decode_job(decoder, scored(), args.decode_dir, args.job, args.data_dir, args.frame_shift)


if __name__ == "__main__":
    main()
