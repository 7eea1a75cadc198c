"""GMM-HMM lattice decoding speed (real-time factor) on one CPU thread.

Usage: python bench/bench_gmm_decode.py <graph-dir> <data-dir> <model> [--num-utts 30] [--beams 13,10,8]
                                        [--lattice-beam 6] [--acwt 0.083333]
e.g.:  python bench/bench_gmm_decode.py exp/tri2/graph data/test exp/tri2/final.mdl --beams 13,10,8

For each beam, decodes the first --num-utts utterances as esgd-decode-gmm does and prints the real-time factor of
the GMM likelihoods (torch) and of the lattice search (kaldi-decoder), assuming 10 ms frames.
"""
import argparse
import time

import kaldi_hmm_gmm  # noqa: F401  (before kaldifst: import-order trap)
import torch

from esgd_asr.decode.hclg import read_hclg
from esgd_asr.decode.lattice import DecodeOptions, LatticeDecoder
from esgd_asr.gmm.front_end import ModelFeatures
from esgd_asr.gmm.model import GmmHmm, PdfScorer, tid_loglikes


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("graph_dir")
    parser.add_argument("data_dir")
    parser.add_argument("model")
    parser.add_argument("--num-utts", type=int, default=30)
    parser.add_argument("--beams", default="13,10,8")
    parser.add_argument("--lattice-beam", type=float, default=6.0)
    parser.add_argument("--acwt", type=float, default=0.083333)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = GmmHmm.load(args.model)
    info = model.transitions()
    source = ModelFeatures(args.data_dir, model.front_end)
    feats = [source.load(utt) for utt in source.utts[: args.num_utts]]
    audio = sum(f.shape[0] for f in feats) * 0.01
    hclg = read_hclg(args.graph_dir)
    start = time.perf_counter()
    scorer = PdfScorer(model.am, dtype=torch.float32)  # as esgd-decode-gmm
    loglikes = [tid_loglikes(scorer.pdf_loglikes(f), info, args.acwt) for f in feats]
    like_rtf = (time.perf_counter() - start) / audio
    print(f"{len(feats)} utterances, {audio:.1f} s of audio, {model.am.num_gauss} Gaussians, "
          f"HCLG {hclg.num_states} states; GMM likelihoods RTF {like_rtf:.4f}")
    for beam in (float(b) for b in args.beams.split(",")):
        decoder = LatticeDecoder(hclg, DecodeOptions(beam=beam, lattice_beam=args.lattice_beam, acwt=args.acwt))
        results = [decoder.decode(ll) for ll in loglikes]
        search = sum(r.seconds for r in results)
        size = sum(r.lattice_text.count("\n") for r in results) / len(results)
        print(f"beam {beam:g}, lattice beam {args.lattice_beam:g}: search RTF {search / audio:.4f}, total RTF "
              f"{search / audio + like_rtf:.4f}, {size:.0f} lattice lines per utterance")


if __name__ == "__main__":
    main()
