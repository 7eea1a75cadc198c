"""The two LSTM paths of a BiLSTM population on the CPU, side by side (esgd_asr.population.stacked): oneDNN's LSTM
member after member ("fused") against the recurrence of all members batched per time step ("batched"), for
fitness passes (no gradients) of 128 and 4096 chunks and for training steps (forward and backward) at the pool's
mini-batch sizes; one thread, interleaved rounds, median member-frames/s. The population picks fused for fitness
passes and for mini-batches of up to stacked.FUSED_CPU_MAX_BATCH chunks.
  python bench/bench_blstm_cpu.py                 # the default BiLSTM of conf/blstm.yaml, 8 members
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from esgd_asr.errors import cli_main  # noqa: E402
from esgd_asr.models import build_model, load_model_config  # noqa: E402
from esgd_asr.population import stacked  # noqa: E402
from esgd_asr.population.engine import Population  # noqa: E402

PATHS = {"fused": stacked.fused_lstm, "batched": stacked.batched_lstm}


def run(lstm, params, layers: int, features: torch.Tensor, shared: bool, train: bool) -> None:
    if train:
        leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
        lstm(leaves, layers, features, shared).square().mean().backward()
    else:
        with torch.no_grad():
            lstm(params, layers, features, shared)


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="default", help="preset of conf/blstm.yaml")
    parser.add_argument("--mu", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = load_model_config("conf/blstm.yaml", args.preset)
    generator = torch.Generator().manual_seed(0)
    population = Population.from_factory(lambda: build_model(config), args.mu, generator)
    params, layers = population.params, config.num_layers
    steps = config.chunk + config.chunk_left_context + config.chunk_right_context
    cases = [("fitness", chunks, False, True) for chunks in (128, 4096)] + \
        [("training", batch, True, False) for batch in (8, 16, 32, 64)]
    print(f"BiLSTM {args.preset}: {layers} x {config.cells} cells, chunks of {steps} frames, mu {args.mu}, one "
          f"thread, {args.rounds} rounds; member-frames/s (labelled and context frames)")
    for kind, chunks, train, shared in cases:
        shape = (chunks, steps, config.input_dim) if shared else (args.mu, chunks, steps, config.input_dim)
        features = torch.randn(*shape, generator=generator)
        rates = {name: [] for name in PATHS}
        for _ in range(args.rounds + 1):  # the first round warms up
            for name, lstm in PATHS.items():
                start = time.perf_counter()
                run(lstm, params, layers, features, shared, train)
                rates[name].append(args.mu * chunks * steps / (time.perf_counter() - start))
        fused, batched = (statistics.median(rates[name][1:]) for name in PATHS)
        print(f"{kind:8s} {chunks:5d} chunks  fused {fused / 1e3:7.1f} k  batched {batched / 1e3:7.1f} k  "
              f"fused / batched {fused / batched:.2f}")


if __name__ == "__main__":
    main()
