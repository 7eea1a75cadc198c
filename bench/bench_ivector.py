"""I-vector extraction speed in x real time (100 frames = 1 s) on one CPU thread, default sizes.

Usage: python bench/bench_ivector.py [--feat-dim 40] [--num-gauss 256] [--ivector-dim 100] [--device cpu]
Times online extraction (an i-vector every 10 frames) and per-utterance extraction of 10-s utterances with a
UBM initialised on random frames and a randomly initialised extractor (speed does not depend on training).
"""
import argparse
import time

import torch

from esgd_asr.features.feature_source import FrontEnd
from esgd_asr.features.ivector import IvectorExtractor, PosteriorOptions
from esgd_asr.features.ubm import init_from_frames

FRAMES_PER_SECOND = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feat-dim", type=int, default=40)
    parser.add_argument("--num-gauss", type=int, default=256)
    parser.add_argument("--ivector-dim", type=int, default=100)
    parser.add_argument("--num-utts", type=int, default=30)
    parser.add_argument("--utt-seconds", type=float, default=10.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    frames = torch.randn(20 * args.num_gauss, args.feat_dim, generator=gen)
    ubm = init_from_frames(frames, args.num_gauss, args.num_gauss, 2, 0.001, 1e-4, gen).to(args.device)
    ie = IvectorExtractor.initialize(ubm, FrontEnd(cmvn=False), args.ivector_dim, PosteriorOptions())
    num_frames = int(args.utt_seconds * FRAMES_PER_SECOND)
    utts = [torch.randn(num_frames, args.feat_dim, generator=gen).to(args.device) for _ in range(args.num_utts)]
    audio_s = args.num_utts * num_frames / FRAMES_PER_SECOND
    for name, fn in (("online (period 10)", lambda x: ie.extract_online(x, 10)),
                     ("per utterance", ie.extract)):
        fn(utts[0])  # warm-up
        start = time.perf_counter()
        for x in utts:
            fn(x)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        print(f"{name}: {audio_s / elapsed:.0f}x real time ({audio_s:.0f} s of audio in {elapsed:.2f} s, "
              f"{args.num_gauss} Gaussians, {args.ivector_dim}-dim i-vectors, {args.feat_dim}-dim features, "
              f"{args.threads} thread(s), {args.device})")


if __name__ == "__main__":
    main()
