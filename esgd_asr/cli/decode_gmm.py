"""Lattice decoding with a GMM-HMM model, one job's share of a data dir (Kaldi's gmm-latgen-faster).

Usage: esgd-decode-gmm --nj N --job J [--beam 13] [--lattice-beam 6] [--acwt 0.083333] [--frame-shift 0.01]
                       [--transforms trans.J.ark] <graph-dir> <data-dir> <model> <decode-dir>

Per utterance: the model's front end on feats.scp (+ cmvn.scp), then the speaker's transform from --transforms
(fMLLR) if given, all pdfs' GMM log-likelihoods in torch (float32, as Kaldi's BaseFloat), then
kaldi-decoder's LatticeSimpleDecoder over <graph-dir>/HCLG.fst. Writes <decode-dir>/lat.J.gz (Kaldi text lattice
archive, acoustic costs unscaled; see esgd_asr.decode.lattice) and <decode-dir>/timing.J
(`frames seconds_likelihoods seconds_search`); the log reports the real-time factor.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import kaldi_hmm_gmm  # noqa: F401  (before kaldifst: import-order trap)
import torch

from esgd_asr.cli.options import KaldiArgumentParser, add_dataclass_options, dataclass_from_args
from esgd_asr.data.kaldi_dir import atomic_write_text
from esgd_asr.decode.hclg import check_graph_model, read_hclg
from esgd_asr.decode.lattice import DecodeOptions, LatticeDecoder, write_lattice_archive
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.gmm.front_end import ModelFeatures
from esgd_asr.gmm.model import GmmHmm, PdfScorer, tid_loglikes

log = logging.getLogger("esgd-decode-gmm")


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
    check_graph_model(args.graph_dir, model)
    info = model.transitions()
    scorer = PdfScorer(model.am, dtype=torch.float32)
    decoder = LatticeDecoder(read_hclg(args.graph_dir), opts)
    source = ModelFeatures(args.data_dir, model.front_end, args.transforms).shard(args.nj, args.job)
    out = Path(args.decode_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames, like_seconds, search_seconds, partial = 0, 0.0, 0.0, []

    def lattices():
        nonlocal frames, like_seconds, search_seconds
        for utt in source.utts:
            start = time.perf_counter()
            feats = source.load(utt)
            model.check_dim(feats, f"{args.data_dir}: utterance '{utt}'")
            loglikes = tid_loglikes(scorer.pdf_loglikes(feats), info, opts.acwt)
            like_seconds += time.perf_counter() - start
            result = decoder.decode(loglikes)
            search_seconds += result.seconds
            frames += feats.shape[0]
            if not result.reached_final:
                partial.append(utt)
                log.warning("utterance '%s': no final state reached, partial lattice kept", utt)
            if not result.lattice_text:
                raise EsgdError(f"{args.data_dir}: utterance '{utt}': decoding produced an empty lattice")
            yield utt, result.lattice_text

    count = write_lattice_archive(out / f"lat.{args.job}.gz", lattices())
    atomic_write_text(out / f"timing.{args.job}", f"{frames} {like_seconds:.3f} {search_seconds:.3f}\n")
    audio = frames * args.frame_shift
    log.info("job %d: decoded %d utterances (%d partial), %.1f s of audio; likelihoods %.1f s, search %.1f s; "
             "real-time factor %.4f", args.job, count, len(partial), audio, like_seconds, search_seconds,
             (like_seconds + search_seconds) / max(audio, 1e-9))


if __name__ == "__main__":
    main()
