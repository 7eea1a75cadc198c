"""Generation throughput of the batched population engine vs a per-member Python loop, side by side.

One SGD epoch over the same synthetic data for the same mu members (one optimizer kind, one batch size), timed
for the batched engine (the direct batched-matmul path for Linear-chain models such as the DNN; vmap otherwise),
optionally for the generic vmap path, and for a loop of mu nn.Modules each with its own torch.optim optimizer
(foreach implementation) on the same batches. The engines are timed in interleaved rounds (batched, vmap, loop,
batched, ...) so that load from other processes hits all of them alike; prints the median s/epoch, member-samples/s
and the ratio loop / batched.
  python bench/bench_population.py --device cuda --preset bn50 --mu 100
  python bench/bench_population.py --device cuda --model blstm --preset swb300 --mu 8 --samples 256
With --esgd-preset it times whole ESGD generations instead (SGD step with back-off, offspring, fitness on the
whole validation set) on synthetic frames of the default corpus' size and shape (1.05 M training frames of
9 x 40 spliced features, 0.12 M validation frames, 1650 senones):
  python bench/bench_population.py --device cuda --tf32 --preset bn50 --esgd-preset bn50 --generations 3

Measured on one NVIDIA H200 (torch 2.11, fp32, --samples 8192, batch 256, mu 100, BN50 DNN of 7.66 M parameters):
batched 0.865 M member-frames/s against the loop's 0.146 M: 5.93x (SGD); Adam 0.616 M vs 0.114 M: 5.38x;
momentum 6.17x; with --tf32 (all engines) 2.80 M vs 0.150 M: 18.7x. SWB300 BiLSTM, mu 8, --samples 256:
stacked 0.197 M member-frames/s, vmap 0.153 M, loop 0.058 M: 3.39x.
Measured on the 2-core CPU host (torch 2.13, shared with other jobs): default DNN, mu 16: 30.5 k vs 14.2 k
member-frames/s, 2.15x; default BiLSTM, mu 8, --samples 512, one thread: 16.9 k vs 13.6 k, 1.24x.
Gene isolation (each member its own batches) against one shared shuffle, --shared-batches, one thread, the host
loaded by a recipe run (load average 5 on 2 cores): default DNN mu 8, --samples 8192, 9 rounds: SGD median 6.57
vs 7.03 s/epoch (1.07x, best rounds 4.68 vs 4.85 s), Adam 9.00 vs 9.41 s (1.04x); BiLSTM mu 4, --samples 256,
7 rounds: 1.78 vs 1.66 s (0.93x; best 1.49 vs 1.43 s, 0.95x). One fused SGD step of the DNN alone, 12 rounds:
157 vs 148 ms at best (0.94x), of which gathering the members' batches takes 2.6 ms.
ESGD generations of the papers' BN50 preset (--esgd-preset bn50: mu 100, lambda 400, whole epochs and whole
validation set; bn50 DNN with 1650 senones, 5.94 M parameters) on one H200 (torch 2.11, --tf32), synthetic frames
of the default corpus' size: 167.6, 162.5 and 164.2 s per generation (105 M SGD member-frames and 60-72 M
fitness member-frames each, about 1.0 M member-frames/s together), peak GPU memory 65.5 GiB.
"""
import argparse
import dataclasses
import statistics
import time

import torch

from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.models import build_model, load_model_config
from esgd_asr.population.config import load_esgd_config
from esgd_asr.population.data import gaussian_clusters
from esgd_asr.population.engine import Population
from esgd_asr.population.esgd import ESGD
from esgd_asr.population.optim_pool import HyperParams, OptimizerState, UpdateRule
from esgd_asr.population.sgd import train_epochs


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_optimizer(module, optimizer: str, lr: float):
    if optimizer == "adam":
        return torch.optim.Adam(module.parameters(), lr=lr, foreach=True)
    momentum = 0.9 if optimizer in ("momentum", "nesterov") else 0.0
    return torch.optim.SGD(module.parameters(), lr=lr, momentum=momentum, nesterov=optimizer == "nesterov",
                           foreach=True)


def make_hyper(mu: int, optimizer: str, lr: float, batch_size: int) -> HyperParams:
    hyper = HyperParams.plain_sgd(mu, lr=lr, batch_size=batch_size)
    if optimizer == "adam":
        hyper.kind[:] = 1
    elif optimizer in ("momentum", "nesterov"):
        hyper.momentum[:] = 0.9
        hyper.nesterov[:] = optimizer == "nesterov"
    return hyper


def loop_epoch(modules, optimizers, data, batch_size: int, generator: torch.Generator) -> None:
    """The reference: each member trained alone with its torch.optim optimizer, on the batches the engine sees."""
    features, targets = data
    order = torch.randperm(features.shape[0], generator=generator).to(features.device)
    for start in range(0, features.shape[0], batch_size):
        batch = order[start:start + batch_size]
        inputs, labels = features[batch], targets[batch].reshape(-1)
        for module, optimizer in zip(modules, optimizers):
            optimizer.zero_grad(set_to_none=True)
            logits = module(inputs)
            torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels).backward()
            optimizer.step()


def shared_batch_epoch(population: Population, state: OptimizerState, hyper: HyperParams, data,
                       generator: torch.Generator) -> None:
    """The engine's epoch before gene isolation (issue 12): one shuffle, every member on the same batches."""
    features, targets = data
    rule = UpdateRule(hyper, state.steps.device)
    order = torch.randperm(features.shape[0], generator=generator).to(features.device)
    batch_size = int(hyper.batch_size[0])
    for start in range(0, features.shape[0], batch_size):
        batch = order[start:start + batch_size]
        if rule.plain_sgd and population.fast:
            population.sgd_step(population.params, population.buffers, features[batch], targets[batch], rule.sgd_lr)
        else:
            grads, _ = population.loss_and_grads(population.params, population.buffers, features[batch],
                                                 targets[batch], reuse_buffers=True)
            rule.apply(population.params, grads, state)


def timed(function, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


def time_generations(args, config, device: torch.device) -> None:
    """Seconds per ESGD generation of a preset on synthetic data of the recipe's shape (`--esgd-preset`)."""
    settings = load_esgd_config("conf/esgd.yaml", args.esgd_preset)
    generator = torch.Generator().manual_seed(0)
    frames = config.chunk if args.model == "blstm" else None
    count = args.train_frames + args.valid_frames
    features, targets = gaussian_clusters(count, config.input_dim, config.num_targets, generator, frames=frames)
    train, valid = (features[:args.train_frames], targets[:args.train_frames]), (features[args.train_frames:],
                                                                                  targets[args.train_frames:])
    start = time.perf_counter()
    algorithm = ESGD(settings, lambda: build_model(config), train, valid, device)
    synchronize(device)
    print(f"ESGD preset {args.esgd_preset}: mu={settings.mu} lambda={settings.offspring} rho={settings.rho} "
          f"Ks={settings.sgd_epochs} epoch_frames={settings.epoch_frames} fitness_frames={settings.fitness_frames}; "
          f"model {args.model}/{args.preset} with {algorithm.population.num_parameters()} parameters, "
          f"{args.train_frames} training and {args.valid_frames} validation samples of {config.input_dim} dims; "
          f"device={device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}) "
          f"torch={torch.__version__} tf32={args.tf32}; set-up {time.perf_counter() - start:.1f} s", flush=True)
    for _ in range(args.generations):
        before = algorithm.budget()
        seconds = timed(algorithm.step, device)
        after = algorithm.budget()
        sgd, evaluated = after["sgd_frames"] - before["sgd_frames"], after["eval_frames"] - before["eval_frames"]
        print(f"generation {algorithm.generation}: {seconds:.1f} s, best {float(algorithm.fitness.min()):.4f}; "
              f"SGD {sgd / 1e6:.1f} M member-frames, fitness {evaluated / 1e6:.1f} M member-frames "
              f"({(sgd + evaluated) / seconds / 1e6:.2f} M member-frames/s together)", flush=True)
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["dnn", "blstm"], default="dnn")
    parser.add_argument("--preset", default="default", help="preset of conf/<model>.yaml (bn50, swb300, default)")
    parser.add_argument("--mu", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4096, help="training samples (frames or chunks) per epoch")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--optimizer", choices=["sgd", "momentum", "nesterov", "adam"], default="sgd")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (after one warm-up round)")
    parser.add_argument("--vmap", action="store_true", help="also time the generic vmap path")
    parser.add_argument("--no-loop", action="store_true", help="skip the per-member loop")
    parser.add_argument("--shared-batches", action="store_true",
                        help="also time the engine with one shuffle shared by all members (before gene isolation)")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on the GPU (all engines alike)")
    parser.add_argument("--profile", action="store_true", help="print the top ops of one batched-engine epoch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--esgd-preset", help="time ESGD generations of this conf/esgd.yaml preset instead")
    parser.add_argument("--generations", type=int, default=3, help="ESGD generations to time (--esgd-preset)")
    parser.add_argument("--train-frames", type=int, default=1_050_000, help="training samples (--esgd-preset)")
    parser.add_argument("--valid-frames", type=int, default=120_000, help="validation samples (--esgd-preset)")
    parser.add_argument("--num-targets", type=int, default=1650, help="senones (--esgd-preset)")
    args = parser.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise EsgdError("--device cuda: no CUDA device is available")
    device = torch.device(args.device)
    config = load_model_config(f"conf/{args.model}.yaml", args.preset)
    if args.esgd_preset:
        return time_generations(args, dataclasses.replace(config, num_targets=args.num_targets), device)
    generator = torch.Generator().manual_seed(0)
    frames = config.chunk if args.model == "blstm" else None
    data = tuple(t.to(device) for t in gaussian_clusters(args.samples, config.input_dim, config.num_targets,
                                                         generator, frames=frames))
    torch.manual_seed(0)
    modules = [build_model(config).to(device) for _ in range(args.mu)]
    lr = 1e-3
    engines = {}
    population = Population.from_modules(modules, device)
    hyper = make_hyper(args.mu, args.optimizer, lr, args.batch_size)
    state = OptimizerState.zeros_like(population.params)
    path = "batched-matmul" if population.fast else "stacked BiLSTM" if population.stacked else "vmap"
    engines[f"batched engine ({path})"] = lambda: train_epochs(population, state, hyper, data, 1, generator)
    if args.vmap and population.fast:   # vmap cannot batch the BiLSTM's nn.LSTM
        generic = Population.from_modules(modules, device, fast=False)
        generic_state = OptimizerState.zeros_like(generic.params)
        engines["generic vmap path"] = lambda: train_epochs(generic, generic_state, hyper, data, 1, generator)
    if args.shared_batches:
        shared = Population.from_modules(modules, device)
        shared_state = OptimizerState.zeros_like(shared.params)
        engines["shared batches (no gene isolation)"] = lambda: shared_batch_epoch(shared, shared_state, hyper, data,
                                                                                   generator)
    if not args.no_loop:
        optimizers = [make_optimizer(m, args.optimizer, lr) for m in modules]
        engines["per-member loop"] = lambda: loop_epoch(modules, optimizers, data, args.batch_size, generator)
    times = {name: [] for name in engines}
    for round_index in range(args.repeats + 1):
        for name, function in engines.items():
            seconds = timed(function, device)
            if round_index > 0:  # round 0 warms up (allocator, kernels, caches)
                times[name].append(seconds)
    work = args.mu * args.samples * (frames or 1)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}"
    print(f"model={args.model} preset={args.preset} params/member={population.num_parameters()} mu={args.mu} "
          f"samples={args.samples} frames/sample={frames or 1} batch={args.batch_size} optimizer={args.optimizer} "
          f"device={device} ({device_name}) torch={torch.__version__} repeats={args.repeats} tf32={args.tf32}")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, seconds in medians.items():
        spread = ", ".join(f"{t:.3f}" for t in times[name])
        print(f"{name:32s}: {seconds:8.3f} s/epoch (median of {spread})  {work / seconds:14.0f} member-frames/s")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
    batched = medians[next(iter(engines))]
    if args.profile:
        from torch.profiler import ProfilerActivity, profile
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as profiler:
            timed(next(iter(engines.values())), device)
        sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(profiler.key_averages().table(sort_by=sort, row_limit=15, max_name_column_width=50))
    for name, seconds in medians.items():
        if name != next(iter(engines)):
            print(f"speed-up of the batched engine over the {name} ({name} time / batched time): "
                  f"{seconds / batched:.2f}x")


if __name__ == "__main__":
    main()
