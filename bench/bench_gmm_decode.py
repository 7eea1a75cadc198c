"""GMM-HMM lattice decoding speed (real-time factor) on one CPU thread.

Usage: python bench/bench_gmm_decode.py <graph-dir> <data-dir> <model> [--num-utts 30] [--beams 13,11,9]
                                        [--max-active 7000,2000] [--lattice-beam 4] [--acwt 0.083333]
e.g.:  python bench/bench_gmm_decode.py exp/tri2/graph data/heldout exp/tri2/final.mdl

For each beam, decodes the first --num-utts utterances as esgd-decode-gmm does and prints the real-time factor of
the GMM likelihoods (torch) and of the lattice search, assuming 10 ms frames: kaldi-decoder's LatticeSimpleDecoder
(the lattice decoder a user of the Python Kaldi packages has; no max-active), ours without max-active (the same
search: the best paths must agree) and ours at each --max-active, with the agreement of their best paths at LM
weight 1/acwt and the speed-up over LatticeSimpleDecoder measured in the same run.
"""
import argparse
import dataclasses
import time

import kaldi_hmm_gmm  # noqa: F401  (before kaldifst: import-order trap)
import kaldi_decoder
import kaldifst
import torch

from esgd_asr.decode.hclg import read_hclg
from esgd_asr.decode.lattice import DecodeOptions, LatticeDecoder, best_paths
from esgd_asr.decode.lattice_text import parse_lattice_text
from esgd_asr.gmm.front_end import ModelFeatures
from esgd_asr.gmm.model import GmmHmm, PdfScorer, tid_loglikes


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("graph_dir")
    parser.add_argument("data_dir")
    parser.add_argument("model")
    parser.add_argument("--num-utts", type=int, default=30)
    parser.add_argument("--beams", default="13,11,9")
    parser.add_argument("--max-active", default="7000,2000")
    parser.add_argument("--lattice-beam", type=float, default=4.0)
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
    lmwt = 1.0 / args.acwt
    ours = LatticeDecoder(hclg, DecodeOptions(lattice_beam=args.lattice_beam, acwt=args.acwt))
    ours.decode(loglikes[0][:2])  # numba compiles (or loads its cache) outside the timing

    def best(texts):
        return [best_paths(parse_lattice_text(t, "bench"), [lmwt], [0.0])[lmwt, 0.0] for t in texts]

    for beam in (float(b) for b in args.beams.split(",")):
        simple = kaldi_decoder.LatticeSimpleDecoder(
            hclg, kaldi_decoder.LatticeSimpleDecoderConfig(beam=beam, lattice_beam=args.lattice_beam))
        start, ref = time.perf_counter(), []
        for ll in loglikes:
            simple.decode(kaldi_decoder.DecodableCtc(ll))
            _, lat = simple.get_raw_lattice(use_final_probs=True)
            kaldifst.scale_lattice(scale=kaldifst.lattice_scale(lmwt=1.0, acwt=lmwt), in_out=lat)
            ref.append(lat.to_str())
        simple_rtf = (time.perf_counter() - start) / audio
        ref_best = best(ref)
        print(f"beam {beam:g}, lattice beam {args.lattice_beam:g}: kaldi-decoder LatticeSimpleDecoder search RTF "
              f"{simple_rtf:.4f}")
        for max_active in [10**9] + [int(m) for m in args.max_active.split(",")]:
            ours.search_opts = dataclasses.replace(ours.search_opts, beam=beam, max_active=max_active)
            results = [ours.decode(ll) for ll in loglikes]
            search = sum(r.seconds for r in results) / audio
            same = sum(a == b for a, b in zip(best([r.lattice_text for r in results]), ref_best))
            print(f"  lattice-faster, max-active {'none' if max_active == 10**9 else max_active}: search RTF "
                  f"{search:.4f} ({simple_rtf / search:.2f} x faster), total RTF {search + like_rtf:.4f}, best path "
                  f"as LatticeSimpleDecoder's on {same}/{len(results)} utterances")

if __name__ == "__main__":
    main()
