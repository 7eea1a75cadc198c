"""PLP extraction speed in x real time on one CPU thread, Kaldi default options, synthetic 16 kHz audio.

Usage: python bench/bench_plp.py [--num-utts 40] [--utt-seconds 4] [--batch 10] [--dither 1.0] [--repeats 3]
Times Plp.batch over batches of utterances (as esgd-compute-plp runs it) and one utterance at a time; prints the
best of --repeats runs of each. The target is at least 300x real time.
"""
import argparse
import time

import torch

from esgd_asr.features.framing import FrameOptions
from esgd_asr.features.plp import Plp, PlpOptions

RATE = 16000
TARGET = 300.0


def synthetic_audio(num_utts: int, seconds: float) -> list[torch.Tensor]:
    """Harmonic tones with a drifting pitch plus noise, in 16-bit scale."""
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(int(seconds * RATE)) / RATE
    waves = []
    for i in range(num_utts):
        f0 = 100 + 10 * i + 20 * torch.sin(2 * torch.pi * 0.5 * t)
        phase = 2 * torch.pi * torch.cumsum(f0, 0) / RATE
        voiced = sum(torch.sin(k * phase) / k for k in range(1, 8))
        waves.append(3000 * voiced + 300 * torch.randn(len(t), generator=gen))
    return waves


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-utts", type=int, default=40)
    parser.add_argument("--utt-seconds", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=10, help="utterances per Plp.batch call")
    parser.add_argument("--dither", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    waves = synthetic_audio(args.num_utts, args.utt_seconds)
    names = [f"utt{i:04d}" for i in range(len(waves))]
    plp = Plp(PlpOptions(frame=FrameOptions(dither=args.dither)))
    audio_s = args.num_utts * args.utt_seconds

    def batched():
        for i in range(0, len(waves), args.batch):
            plp.batch(waves[i:i + args.batch], RATE, names[i:i + args.batch])

    def single():
        for wave, name in zip(waves, names):
            plp(wave, RATE, name)

    print(f"PLP, {audio_s:g} s of 16 kHz audio, 1 thread, dither {args.dither:g}")
    for label, fn in ((f"batches of {args.batch} utterances", batched), ("one utterance at a time", single)):
        seconds = best_time(fn, args.repeats)
        speed = audio_s / seconds
        print(f"  {label}: {speed:.0f}x real time ({seconds * 1000:.0f} ms; target >= {TARGET:.0f}x: "
              f"{'met' if speed >= TARGET else 'NOT met'})")


if __name__ == "__main__":
    main()
