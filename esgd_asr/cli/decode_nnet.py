"""Lattice decoding with a hybrid DNN / BiLSTM, one job's share of a data dir (Kaldi's nnet-latgen-faster).

Usage: esgd-decode-nnet --nj N --job J [--beam 13] [--max-active 7000] [--lattice-beam 6] [--acwt 0.2]
                        [--ivectors DIR] [--pdf-counts FILE] [--batch-size 4096] [--device cpu] [--frame-shift 0.01]
                        <graph-dir> <data-dir> <nnet-model> <trans-model> <decode-dir>

<nnet-model> is a hybrid model file (final.pt of esgd-train-nnet, a TorchScript module carrying its nnet input
description, or a Kaldi nnet3 text model with the input it declares: raw features of the data dir, i-vectors
from --ivectors at that dir's period, as Kaldi's --online-ivector-period; its priors from --pdf-counts);
<trans-model> the final.mdl whose transition model and tree the graph was built with: a GMM system's of ours, or a
Kaldi final.mdl (binary or text) with a Kaldi graph dir.
The job's utterances (speakers dealt out as Kaldi's split_data.sh) go through the model's nnet input (front end,
i-vectors from --ivectors, normalisation), one batched network pass gives log posteriors, minus the log senone
priors (the model's training pdf counts, or --pdf-counts), scaled by --acwt; then the lattice-faster search
(esgd_asr.decode.beam_search) over <graph-dir>/HCLG.fst writes <decode-dir>/lat.J.gz and timing.J
(esgd_asr.decode.job).
"""
from __future__ import annotations

import logging
import time

import kaldi_hmm_gmm  # noqa: F401  (before kaldifst: import-order trap)
import torch

from esgd_asr.cli.options import KaldiArgumentParser, add_device_option, add_dataclass_options, dataclass_from_args
from esgd_asr.decode.hclg import check_graph_model, read_hclg_arrays
from esgd_asr.decode.hybrid import HYBRID_ACWT, HybridScorer
from esgd_asr.decode.job import decode_job
from esgd_asr.decode.lattice import DecodeOptions, LatticeDecoder
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.features.feature_source import FeatureSource, FrontEnd
from esgd_asr.gmm.kaldi_model import load_transitions
from esgd_asr.gmm.model import tid_loglikes
from esgd_asr.hybrid.model_file import load_hybrid_model
from esgd_asr.hybrid.prepare import read_ivector_period, read_pdf_counts

log = logging.getLogger("esgd-decode-nnet")


def build_parser() -> KaldiArgumentParser:
    parser = KaldiArgumentParser(prog="esgd-decode-nnet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nj", type=int, default=1)
    parser.add_argument("--job", type=int, default=1)
    parser.add_argument("--frame-shift", type=float, default=0.01, help="seconds per frame, for the RTF")
    parser.add_argument("--ivectors", help="i-vector dir of the data (ivector_online.scp), for i-vector models")
    parser.add_argument("--pdf-counts", help="senone counts for the priors (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=4096, help="frames per network forward pass")
    add_device_option(parser)
    parser.add_argument("--num-threads", type=int, default=1, help="torch threads (parallelism comes from --nj)")
    add_dataclass_options(parser, DecodeOptions)
    parser.set_defaults(acwt=HYBRID_ACWT)
    for name in ("graph_dir", "data_dir", "nnet_model", "trans_model", "decode_dir"):
        parser.add_argument(name)
    return parser


def load_scorer(args, num_pdfs: int | None = None, pdfs_of: str = "") -> HybridScorer:
    """The HybridScorer of args.nnet_model (i-vectors at args.ivectors' period for a Kaldi import) with the priors
    of args.pdf_counts or the model's own, checked against `num_pdfs` (`pdfs_of` names whose)."""
    model = load_hybrid_model(args.nnet_model)
    if args.ivectors:
        model.take_ivector_period(read_ivector_period(args.ivectors))
    counts = read_pdf_counts(args.pdf_counts, num_pdfs) if args.pdf_counts else model.pdf_counts
    if counts is None:
        raise EsgdError(f"{args.nnet_model}: the model carries no pdf counts; give --pdf-counts")
    if num_pdfs is not None and len(counts) != num_pdfs:
        raise EsgdError(f"{args.nnet_model}: {len(counts)} senone counts, but {pdfs_of} {num_pdfs} pdfs")
    return HybridScorer(model, counts, args.batch_size, args.device)


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(max(1, args.num_threads))
    opts = dataclass_from_args(DecodeOptions, args)
    info, num_pdfs = load_transitions(args.trans_model)
    check_graph_model(args.graph_dir, num_pdfs)
    scorer = load_scorer(args, num_pdfs, f"{args.trans_model} has")
    decoder = LatticeDecoder(read_hclg_arrays(args.graph_dir), opts)
    utterances = FeatureSource(args.data_dir, FrontEnd(cmvn=False)).shard(args.nj, args.job).utts
    start = time.perf_counter()
    frames = scorer.nnet_input.frames(args.data_dir, None, args.ivectors, utterances)
    loglikes = scorer.pseudo_loglikes(frames)
    network_seconds = time.perf_counter() - start

    def scored():
        for u, utt in enumerate(frames.utterances):
            yield utt, tid_loglikes(loglikes[frames.offsets[u]:frames.offsets[u + 1]], info, opts.acwt)

    decode_job(decoder, scored(), args.decode_dir, args.job, args.data_dir, args.frame_shift, network_seconds)


if __name__ == "__main__":
    main()
