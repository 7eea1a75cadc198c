"""Training throughput (frames/s) of the single-model hybrid baseline, DNN and BiLSTM, side by side with a plain
torch loop (nn.Module + torch.optim.SGD) on the same batches.

One new-bob epoch step of esgd_asr.train.nnet (plain SGD on the population engine with one member: the fused
batched-matmul path for the DNN, one torch.lstm call (cuDNN / oneDNN) for the BiLSTM) is timed against a reference epoch over
the same synthetic frames, in interleaved rounds so that load from other processes hits both alike; prints the
median frames/s of each and their ratio (reference time / ours: above 1, ours is faster). Synthetic data have the
shapes of the recipe's input (9 x 40 LDA for the DNN, 21-frame chunks of 40 + 100 with 10 + 10 context frames for
the BiLSTM) and --num-targets senones. Needs only torch (runs where Kaldi packages are absent, e.g. on a GPU host):
  python bench/bench_nnet_train.py                        # CPU, the scaled-down default models
  python bench/bench_nnet_train.py --device cuda --dnn-preset bn50 --blstm-preset swb300 --num-targets 5000

Measured on one NVIDIA H200 (torch 2.11, fp32, batch 128, 5000 senones): BN50 DNN (7.66 M parameters) 98.5 k
frames/s against 70.1 k for the torch loop (1.41x); SWB300 BiLSTM (23.1 M) 30.9 k against 26.0 k (1.19x).
On the 2-core CPU host the recipe's own logs give the CPU figure (one thread, default models, 1646 senones,
the other core busy): run.sh stage 12 trained the DNN at 17.9-19.7 k frames/s, stage 13 the BiLSTM at 12-15 k
labelled frames/s (exp/{dnn,blstm}/log/train.log); this benchmark's side-by-side CPU ratio needs an otherwise
idle machine (under the load of a recipe run, the same command measured 3.2 k against 4.6 k frames/s for the
DNN and 4.1 k against 3.6 k for the BiLSTM, at 2 threads each).
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from esgd_asr.models import build_model, load_model_config  # noqa: E402
from esgd_asr.population.data import gaussian_clusters  # noqa: E402
from esgd_asr.population.engine import Population  # noqa: E402
from esgd_asr.population.newbob import NewBobConfig, newbob_epoch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference_epoch(module, data, batch_size: int, lr: float, generator: torch.Generator) -> None:
    features, targets = data
    optimizer = torch.optim.SGD(module.parameters(), lr=lr)
    order = torch.randperm(features.shape[0], generator=generator).to(features.device)
    for start in range(0, features.shape[0], batch_size):
        batch = order[start:start + batch_size]
        optimizer.zero_grad(set_to_none=True)
        logits = module(features[batch])
        torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets[batch].reshape(-1)).backward()
        optimizer.step()


def bench(kind: str, preset: str, args, device: torch.device) -> None:
    overrides = {"num_targets": args.num_targets}
    if kind == "dnn":
        overrides["feat_dim"] = args.feat_dim
    else:
        overrides["input_dim"] = args.feat_dim + args.ivector_dim
    config = load_model_config(REPO / "conf" / f"{kind}.yaml", preset, **overrides)
    generator = torch.Generator().manual_seed(0)
    if kind == "dnn":
        data = gaussian_clusters(args.frames, config.input_dim, config.num_targets, generator)
    else:  # windows of chunk + context frames, the context carrying no targets (as the recipe's chunks)
        left, window = config.chunk_left_context, config.chunk_left_context + config.chunk + config.chunk_right_context
        features, targets = gaussian_clusters(args.frames // config.chunk, config.input_dim, config.num_targets,
                                              generator, frames=window)
        targets[:, :left] = -100
        targets[:, left + config.chunk:] = -100
        data = (features, targets)
    train = tuple(t.to(device) for t in data)
    valid = tuple(t[: max(1, len(t) // 10)] for t in train)
    frames = int((train[1] != -100).sum())  # labelled frames per epoch
    torch.manual_seed(0)
    model = build_model(config).to(device)
    population = Population.from_modules([model], device)
    schedule = NewBobConfig(lr=args.lr, batch_size=args.batch_size)
    fitness, lr = population.fitness(valid).cpu(), torch.full((1,), args.lr)
    ours, theirs = [], []
    for round_ in range(args.rounds + 1):  # round 0 warms up
        synchronize(device)
        start = time.perf_counter()
        fitness, lr, _ = newbob_epoch(population, train, valid, schedule, generator, fitness, lr, 1)
        synchronize(device)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        reference_epoch(model, train, args.batch_size, args.lr, generator)
        synchronize(device)
        theirs.append(time.perf_counter() - start)
    ours, theirs = statistics.median(ours[1:]), statistics.median(theirs[1:])
    params = sum(p.numel() for p in model.parameters())
    print(f"{kind:<6} {preset:<8} {params / 1e6:6.2f} M params  {device.type:<4} batch {args.batch_size:<4} "
          f"new-bob epoch {frames / ours:10.0f} frames/s (incl. validation)  torch loop {frames / theirs:10.0f} "
          f"frames/s  ratio {theirs / ours:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dnn-preset", default="default")
    parser.add_argument("--blstm-preset", default="default")
    parser.add_argument("--models", default="dnn,blstm")
    parser.add_argument("--num-targets", type=int, default=2000)
    parser.add_argument("--feat-dim", type=int, default=40)
    parser.add_argument("--ivector-dim", type=int, default=100)
    parser.add_argument("--frames", type=int, default=64 * 1024, help="training frames per epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""))
    for kind in args.models.split(","):
        bench(kind, args.dnn_preset if kind == "dnn" else args.blstm_preset, args, device)


if __name__ == "__main__":
    main()
