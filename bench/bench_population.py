"""Generation throughput of the batched population engine vs a per-member Python loop, side by side.

One SGD epoch over the same synthetic data for the same mu members (plain SGD, one batch size), timed for the
vmap engine and for a loop of mu nn.Modules with torch.optim.SGD; prints member-samples/s of both and the ratio.
  python bench/bench_population.py --device cuda --preset bn50 --mu 100
"""
import argparse
import time

import torch

from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.models import build_model, load_model_config
from esgd_asr.population.engine import Population
from esgd_asr.population.optim_pool import HyperParams, OptimizerState
from esgd_asr.population.sgd import train_epochs
from esgd_asr.train.data import gaussian_clusters


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loop_epoch(modules, data, batch_size: int, lr: float, generator: torch.Generator) -> None:
    """The reference: each member trained alone, one after the other, on the same batches."""
    features, targets = data
    order = torch.randperm(features.shape[0], generator=generator).to(features.device)
    optimizers = [torch.optim.SGD(m.parameters(), lr=lr) for m in modules]
    for start in range(0, features.shape[0], batch_size):
        batch = order[start:start + batch_size]
        for module, optimizer in zip(modules, optimizers):
            optimizer.zero_grad(set_to_none=True)
            logits = module(features[batch])
            torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets[batch].reshape(-1)).backward()
            optimizer.step()


def timed(function, device: torch.device, repeats: int) -> float:
    function()  # warm-up
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    synchronize(device)
    return (time.perf_counter() - start) / repeats


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["dnn", "blstm"], default="dnn")
    parser.add_argument("--preset", default="default", help="preset of conf/<model>.yaml (bn50, swb300, default)")
    parser.add_argument("--mu", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4096, help="training samples (frames or chunks) per epoch")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise EsgdError("--device cuda: no CUDA device is available")
    device = torch.device(args.device)
    config = load_model_config(f"conf/{args.model}.yaml", args.preset)
    generator = torch.Generator().manual_seed(0)
    input_dim = config.input_dim
    frames = config.chunk if args.model == "blstm" else None
    data = tuple(t.to(device) for t in gaussian_clusters(args.samples, input_dim, config.num_targets, generator,
                                                         frames=frames))
    torch.manual_seed(0)
    modules = [build_model(config).to(device) for _ in range(args.mu)]
    population = Population.from_modules(modules, device)
    hyper = HyperParams.plain_sgd(args.mu, lr=1e-3, batch_size=args.batch_size)
    state = OptimizerState.zeros_like(population.params)

    batched = timed(lambda: train_epochs(population, state, hyper, data, 1, generator), device, args.repeats)
    looped = timed(lambda: loop_epoch(modules, data, args.batch_size, 1e-3, generator), device, args.repeats)
    work = args.mu * args.samples * (frames or 1)
    print(f"model={args.model} preset={args.preset} params/member={population.num_parameters()} mu={args.mu} "
          f"samples={args.samples} frames/sample={frames or 1} batch={args.batch_size} device={device}")
    print(f"batched engine : {batched:8.3f} s/epoch  {work / batched:14.0f} member-frames/s")
    print(f"per-member loop: {looped:8.3f} s/epoch  {work / looped:14.0f} member-frames/s")
    print(f"speed-up (loop time / batched time): {looped / batched:.2f}x")


if __name__ == "__main__":
    main()
