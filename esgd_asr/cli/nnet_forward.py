"""Pseudo log-likelihoods of a hybrid model for a data dir, written as a Kaldi archive: the input of Kaldi's
latgen-faster-mapped (Kaldi's nnet-forward / nnet3-compute with priors subtracted).

Usage: esgd-nnet-forward [--nj N --job J] [--ivectors DIR] [--pdf-counts FILE] [--batch-size 4096] [--device cpu]
                         <data-dir> <nnet-model> <out-ark>

Each utterance of the job's share of <data-dir> goes through <nnet-model>'s input as in esgd-decode-nnet; its
(frames, pdfs) log posteriors minus the log priors (the model's pdf counts, or --pdf-counts) are written to
<out-ark> (binary float matrices), e.g. for
`latgen-faster-mapped --acoustic-scale=0.1 final.mdl HCLG.fst ark:<out-ark> ark:|gzip -c >lat.1.gz`.
"""
from __future__ import annotations

import logging

import kaldi_hmm_gmm  # noqa: F401  (before kaldifst: import-order trap)
import kaldiio
import torch

from esgd_asr.atomic import atomic_path
from esgd_asr.cli.decode_nnet import load_scorer
from esgd_asr.cli.options import KaldiArgumentParser, add_device_option
from esgd_asr.errors import cli_main
from esgd_asr.features.feature_source import FeatureSource, FrontEnd

log = logging.getLogger("esgd-nnet-forward")


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(prog="esgd-nnet-forward", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nj", type=int, default=1)
    parser.add_argument("--job", type=int, default=1)
    parser.add_argument("--ivectors", help="i-vector dir of the data (ivector_online.scp), for i-vector models")
    parser.add_argument("--pdf-counts", help="senone counts for the priors (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=4096, help="frames per network forward pass")
    add_device_option(parser)
    for name in ("data_dir", "nnet_model", "out_ark"):
        parser.add_argument(name)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    scorer = load_scorer(args)
    utterances = FeatureSource(args.data_dir, FrontEnd(cmvn=False)).shard(args.nj, args.job).utts
    frames = scorer.nnet_input.frames(args.data_dir, None, args.ivectors, utterances)
    loglikes = scorer.pseudo_loglikes(frames)
    with atomic_path(args.out_ark) as tmp, kaldiio.WriteHelper(f"ark:{tmp}") as writer:
        for u, utt in enumerate(frames.utterances):
            writer(utt, loglikes[frames.offsets[u]:frames.offsets[u + 1]].to(torch.float32).numpy())
    log.info("wrote %s: %d utterances, %d frames of %d pdfs", args.out_ark, len(frames.utterances),
             frames.num_frames, loglikes.shape[1])


if __name__ == "__main__":
    main()
