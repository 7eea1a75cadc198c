"""Hybrid decoding speed on the CPU: real-time factor of the network pass and of the lattice search, one thread, as
esgd-decode-nnet runs each job; the batched network pass (all frames of the utterances at once, esgd_asr.decode.
hybrid.HybridScorer) side by side with one forward pass per utterance.

Needs a trained model and its GMM system's graph (run.sh stage 12 / 13):
  python bench/bench_nnet_decode.py                                   # exp/dnn on data/test_fmllr, exp/tri3/graph
  python bench/bench_nnet_decode.py --model exp/blstm/final.pt --ivectors exp/ivectors_test
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kaldi_hmm_gmm  # noqa: E402,F401  (before kaldifst: import-order trap)
import torch  # noqa: E402

from esgd_asr.decode.hclg import read_hclg  # noqa: E402
from esgd_asr.decode.hybrid import HybridScorer  # noqa: E402
from esgd_asr.decode.lattice import DecodeOptions, LatticeDecoder  # noqa: E402
from esgd_asr.errors import EsgdError, cli_main  # noqa: E402
from esgd_asr.gmm.model import GmmHmm, tid_loglikes  # noqa: E402
from esgd_asr.hybrid.frames import FrameSet  # noqa: E402
from esgd_asr.hybrid.model_file import load_hybrid_model  # noqa: E402


def one_utterance(frames: FrameSet, u: int) -> FrameSet:
    start, end = int(frames.offsets[u]), int(frames.offsets[u + 1])
    return FrameSet(frames.features[start:end], frames.targets[start:end], torch.tensor([0, end - start]),
                    [frames.utterances[u]])


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="exp/dnn/final.pt")
    parser.add_argument("--trans-model", help="default: final.mdl beside --model")
    parser.add_argument("--graph", default="exp/tri3/graph")
    parser.add_argument("--data", default="data/test_fmllr")
    parser.add_argument("--ivectors", help="i-vector dir of --data (BiLSTM)")
    parser.add_argument("--utterances", type=int, default=40)
    parser.add_argument("--acwt", type=float, default=0.1)
    parser.add_argument("--beam", type=float, default=13.0)
    parser.add_argument("--lattice-beam", type=float, default=8.0)
    parser.add_argument("--max-active", type=int, default=7000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    trans_model = Path(args.trans_model or Path(args.model).parent / "final.mdl")
    for path in (Path(args.model), trans_model, Path(args.graph) / "HCLG.fst", Path(args.data) / "feats.scp"):
        if not path.is_file():
            raise EsgdError(f"{path}: no such file (train and decode a hybrid model first: run.sh --stage 12)")
    gmm = GmmHmm.load(trans_model)
    info = gmm.transitions()
    model = load_hybrid_model(args.model)
    scorer = HybridScorer(model, model.pdf_counts)
    utts = sorted(l.split()[0] for l in (Path(args.data) / "feats.scp").read_text().splitlines())[:args.utterances]
    frames = scorer.nnet_input.frames(args.data, None, args.ivectors, utts)
    audio = frames.num_frames * 0.01
    batched, per_utt = [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        loglikes = scorer.pseudo_loglikes(frames)
        batched.append(time.perf_counter() - start)
        start = time.perf_counter()
        for u in range(len(frames.utterances)):
            scorer.pseudo_loglikes(one_utterance(frames, u))
        per_utt.append(time.perf_counter() - start)
    decoder = LatticeDecoder(read_hclg(args.graph), DecodeOptions(args.beam, args.lattice_beam, args.acwt,
                                                                  args.max_active))
    decoder.decode(tid_loglikes(loglikes[:2], info, args.acwt))  # numba compiles (or loads its cache) untimed
    search = 0.0
    for u in range(len(frames.utterances)):
        search += decoder.decode(tid_loglikes(loglikes[frames.offsets[u]:frames.offsets[u + 1]], info,
                                              args.acwt)).seconds
    network = statistics.median(batched)
    print(f"{args.model} ({model.kind}), {len(utts)} utterances of {args.data}, {audio:.1f} s of audio, 1 thread")
    print(f"network pass batched     RTF {network / audio:.4f}")
    print(f"network pass per utt     RTF {statistics.median(per_utt) / audio:.4f}  "
          f"(batched is {statistics.median(per_utt) / network:.2f}x faster)")
    print(f"lattice search           RTF {search / audio:.4f}  (beam {args.beam}, max-active {args.max_active}, "
          f"lattice beam {args.lattice_beam})")
    print(f"total                    RTF {(network + search) / audio:.4f}")


if __name__ == "__main__":
    main()
