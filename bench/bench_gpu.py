"""The issue-13 GPU figures in one run, side by side: the population engine against what a user would write.

References, all at the engine's precision: mu separate `nn.Linear` / `nn.LSTM` models trained one after another
with torch.optim (fused=True on CUDA, foreach on the CPU) under torch.autocast(bf16) (or in fp32 / tf32), on
batches of the same shapes. Every figure is printed as member-frames/s, as a ratio to its reference and as a
fraction of the measured bf16 matmul peak (FLOPs per frame: 6 x parameters for a training step, 2 x for a forward).
  python bench/bench_gpu.py --device cuda                       # everything at the papers' shapes
  python bench/bench_gpu.py --device cpu --tiny                 # a smoke run with small shapes
Parts: peak (bf16 8192^3 matmul), dnn (BN50, mu 100: SGD epoch and fitness), blstm (SWB300, mu 8 and 100), single
(one SWB300 BiLSTM), precision (the engine in bf16 and fp32 against fp32 torch.optim BN50 members), esgd (one
generation of the bn50 ESGD preset with the time split). --parts picks some.

Measured on one NVIDIA H200 (torch 2.11, bf16), engine against reference in member-frames/s. DNN (--parts
peak,dnn,precision --repeats 1, peak 750 TFLOP/s): BN50 mu 100 SGD 3.62 M vs 0.097 M (37.2x, 22.1 % of peak), Adam
2.63 M vs 0.085 M (31.0x), fitness 16.4 M vs 7.1 M (2.3x); against fp32 torch.optim members the validation CE differs
by at most 9.5e-7 (fp32) and 1.9e-5 (bf16). ESGD bn50 generation: 94.2 s the first (kernel compilation included),
64.8 s the second (SGD 61.1, fitness 3.6, offspring and selection 0.1), peak 39.8 GiB. BiLSTM (--repeats 2, peak
764 TFLOP/s, before the compiled optimizer step): SWB300 mu 8 SGD 1.11 M vs 0.294 M (3.77x, 26.1 %), fitness 1.01 M
vs 0.70 M (1.45x); mu 100 (64 chunks) SGD 0.84 M vs 0.078 M (10.8x), fitness 2.36 M vs 0.52 M (4.6x); single SWB300
BiLSTM 0.535 M vs 0.154 M frames/s (3.48x; tf32 0.373 M vs 0.221 M).
"""
import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from esgd_asr.models import build_model, load_model_config  # noqa: E402
from esgd_asr.population import esgd as esgd_module, sgd as sgd_module  # noqa: E402
from esgd_asr.population.config import load_esgd_config  # noqa: E402
from esgd_asr.population.data import gaussian_clusters  # noqa: E402
from esgd_asr.population.engine import Population  # noqa: E402
from esgd_asr.population.esgd import ESGD  # noqa: E402
from esgd_asr.population.optim_pool import HyperParams, OptimizerState  # noqa: E402
from esgd_asr.population.precision import precision_scope  # noqa: E402
from esgd_asr.population.sgd import epoch_orders, train_epochs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    times = []
    for index in range(repeats + 1):
        sync(device)
        start = time.perf_counter()
        function()
        sync(device)
        if index:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_tflops(device, size: int) -> float:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    seconds = timed(lambda: [torch.mm(a, b) for _ in range(10)], device, 3) / 10
    return 2 * size ** 3 / seconds / 1e12


def reference_context(device, precision):
    """What a user writes for the precision: autocast for bf16, plain fp32 tensors otherwise."""
    if device.type == "cuda" and precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def make_optimizer(module, device, adam: bool, lr: float):
    kind = {"fused": True} if device.type == "cuda" else {"foreach": True}
    if adam:
        return torch.optim.Adam(module.parameters(), lr=lr, **kind)
    return torch.optim.SGD(module.parameters(), lr=lr, **kind)


def loop_epoch(models, optimizers, data, batch: int, device, precision):
    """The reference: each member alone, its own batches (as the engine's gene isolation), its torch.optim."""
    features, targets = data
    with precision_scope(precision, device), reference_context(device, precision):
        for model, optimizer in zip(models, optimizers):
            order = torch.randperm(features.shape[0], device=features.device)
            for start in range(0, features.shape[0], batch):
                rows = order[start:start + batch]
                logits = model(features[rows])
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets[rows].reshape(-1))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()


@torch.no_grad()
def loop_fitness(models, data, chunk: int, device, precision):
    features, targets = data
    with precision_scope(precision, device), reference_context(device, precision):
        for model in models:
            for start in range(0, features.shape[0], chunk):
                logits = model(features[start:start + chunk])
                F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                targets[start:start + chunk].reshape(-1), reduction="sum")


def report(name, work, seconds, reference_seconds, flops_per_frame, peak):
    rate = work / seconds
    ratio = f"{reference_seconds / seconds:6.2f}x the reference" if reference_seconds else ""
    print(f"  {name:44s} {seconds:8.3f} s  {rate / 1e6:8.3f} M member-frames/s  {ratio:22s} "
          f"{rate * flops_per_frame / (peak * 1e12) * 100:5.1f} % of bf16 peak", flush=True)


def population_part(kind, preset, mu, samples, batch, args, device, peak, optimizers=("sgd", "adam")):
    config = load_model_config(REPO / "conf" / f"{kind}.yaml", preset, **args.overrides.get(kind, {}))
    generator = torch.Generator().manual_seed(0)
    frames = config.chunk if kind == "blstm" else None
    data = tuple(t.to(device) for t in gaussian_clusters(samples, config.input_dim, config.num_targets, generator,
                                                         frames=frames))
    torch.manual_seed(0)
    models = [build_model(config).to(device) for _ in range(mu)]
    params = sum(p.numel() for p in models[0].parameters())
    work = mu * samples * (frames or 1)
    print(f"{kind} {preset}: {params / 1e6:.2f} M params/member, mu {mu}, {samples} samples x {frames or 1} frames, "
          f"batch {batch}, precision {args.precision}", flush=True)
    for optimizer in optimizers:
        population = Population.from_modules(models, device, precision=args.precision)
        hyper = HyperParams.plain_sgd(mu, lr=1e-3, batch_size=batch)
        if optimizer == "adam":
            hyper.kind[:] = 1
        state = OptimizerState.zeros_like(population.params)
        ours = timed(lambda state=state: train_epochs(population, state, hyper, data, 1, generator), device,
                     args.repeats)
        theirs = None
        if not args.no_loop:
            references = [build_model(config).to(device) for _ in range(mu)]
            opts = [make_optimizer(m, device, optimizer == "adam", 1e-3) for m in references]
            theirs = timed(lambda: loop_epoch(references, opts, data, batch, device, args.precision), device,
                           args.repeats)
            report(f"per-member loop, {optimizer}", work, theirs, None, 6 * params, peak)
            del references, opts
        report(f"engine, {optimizer} epoch", work, ours, theirs, 6 * params, peak)
        del population, state
    valid = tuple(t[: args.valid_samples] for t in data)
    population = Population.from_modules(models, device, precision=args.precision)
    chunk = args.fitness_chunk // (frames or 1)
    ours = timed(lambda: population.fitness(valid, chunk, args.fitness_members), device, args.repeats)
    theirs = None
    if not args.no_loop:
        theirs = timed(lambda: loop_fitness(models, valid, chunk, device, args.precision), device, args.repeats)
    fitness_work = mu * valid[0].shape[0] * (frames or 1)
    if theirs:
        report("per-member loop, fitness", fitness_work, theirs, None, 2 * params, peak)
    report(f"engine, fitness ({args.fitness_members} members x {chunk} samples)", fitness_work, ours, theirs,
           2 * params, peak)
    if device.type == "cuda":
        print(f"  peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB", flush=True)
        torch.cuda.reset_peak_memory_stats(device)


def single_part(args, device, peak):
    """One SWB300 BiLSTM: the engine's single-model path (what esgd-train-nnet runs) against nn.LSTM + torch.optim."""
    config = load_model_config(REPO / "conf/blstm.yaml", args.blstm_preset, **args.overrides.get("blstm", {}))
    generator = torch.Generator().manual_seed(0)
    data = tuple(t.to(device) for t in gaussian_clusters(args.single_samples, config.input_dim, config.num_targets,
                                                         generator, frames=config.chunk))
    torch.manual_seed(0)
    model = build_model(config).to(device)
    params = sum(p.numel() for p in model.parameters())
    work = args.single_samples * config.chunk
    print(f"single blstm {args.blstm_preset}: {params / 1e6:.2f} M params, batch {args.single_batch} chunks",
          flush=True)
    for precision in dict.fromkeys([args.precision, "tf32"]):
        population = Population.from_modules([model], device, precision=precision)
        hyper = HyperParams.plain_sgd(1, lr=1e-3, batch_size=args.single_batch)
        state = OptimizerState.zeros_like(population.params)
        ours = timed(lambda state=state: train_epochs(population, state, hyper, data, 1, generator), device,
                     args.repeats)
        reference = build_model(config).to(device)
        optimizer = make_optimizer(reference, device, False, 1e-3)
        theirs = timed(lambda: loop_epoch([reference], [optimizer], data, args.single_batch, device, precision),
                       device, args.repeats)
        report(f"nn.LSTM + torch.optim, {precision}", work, theirs, None, 6 * params, peak)
        report(f"engine single model, {precision}", work, ours, theirs, 6 * params, peak)


def esgd_part(args, device, peak):
    """One generation of an ESGD preset on synthetic frames of the recipe's size, with the time split."""
    config = load_model_config(REPO / "conf/dnn.yaml", args.dnn_preset, **args.overrides.get("dnn", {}))
    settings = load_esgd_config(REPO / "conf/esgd.yaml", args.esgd_preset, {"precision": args.precision})
    generator = torch.Generator().manual_seed(0)
    count = args.train_frames + args.valid_frames
    features, targets = gaussian_clusters(count, config.input_dim, config.num_targets, generator)
    train = features[:args.train_frames], targets[:args.train_frames]
    valid = features[args.train_frames:], targets[args.train_frames:]
    spent = {"SGD": 0.0, "fitness": 0.0, "offspring": 0.0}

    def clocked(function, key):
        def wrapper(*a, **k):
            sync(device)
            start = time.perf_counter()
            result = function(*a, **k)
            sync(device)
            spent[key] += time.perf_counter() - start
            if args.trace:
                print(f"    {key} {time.perf_counter() - start:.2f} s", flush=True)
            return result
        return wrapper

    originals = sgd_module.train_epochs, esgd_module.make_offspring, Population.fitness
    sgd_module.train_epochs = clocked(sgd_module.train_epochs, "SGD")
    esgd_module.make_offspring = clocked(esgd_module.make_offspring, "offspring")
    Population.fitness = clocked(Population.fitness, "fitness")
    try:
        start = time.perf_counter()
        algorithm = ESGD(settings, lambda: build_model(config), train, valid, device)
        print(f"  set-up {time.perf_counter() - start:.1f} s", flush=True)
        params = algorithm.population.num_parameters()
        print(f"ESGD preset {args.esgd_preset}: mu {settings.mu}, lambda {settings.offspring}, {params / 1e6:.2f} M "
              f"params/member ({config.num_targets} senones), {args.train_frames} training and {args.valid_frames} "
              f"validation frames, batch sizes {settings.pool.batch_sizes}, precision {args.precision}", flush=True)
        for _ in range(args.generations):
            for key in spent:
                spent[key] = 0.0
            before = algorithm.budget()
            sync(device)
            start = time.perf_counter()
            algorithm.step()
            sync(device)
            seconds = time.perf_counter() - start
            after = algorithm.budget()
            sgd, evaluated = after["sgd_frames"] - before["sgd_frames"], after["eval_frames"] - before["eval_frames"]
            rest = seconds - sum(spent.values())
            print(f"  generation {algorithm.generation}: {seconds:.1f} s = SGD {spent['SGD']:.1f} s "
                  f"({sgd / spent['SGD'] / 1e6:.2f} M member-frames/s) + fitness {spent['fitness']:.1f} s "
                  f"({evaluated / spent['fitness'] / 1e6:.2f} M member-frames/s) + offspring {spent['offspring']:.1f} s"
                  f" + selection, back-off snapshots and the rest {rest:.1f} s; best fitness "
                  f"{float(algorithm.fitness.min()):.4f}; "
                  f"{(6 * sgd + 2 * evaluated) * params / seconds / (peak * 1e12) * 100:.1f} % of bf16 peak overall",
                  flush=True)
    finally:
        sgd_module.train_epochs, esgd_module.make_offspring, Population.fitness = originals
    if device.type == "cuda":
        print(f"  peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB", flush=True)


def precision_part(args, device):
    """bf16 and fp32 against what a user would write: 16 BN50 members (optimizers and batch sizes drawn from the bn50
    pool) trained one epoch by the engine in each precision and as separate fp32 nn.Linear models with torch.optim on
    the same per-member batches (sgd.epoch_orders), their validation CE compared member by member."""
    config = load_model_config(REPO / "conf/dnn.yaml", args.dnn_preset, **args.overrides.get("dnn", {}))
    settings = load_esgd_config(REPO / "conf/esgd.yaml", args.esgd_preset, {})
    generator = torch.Generator().manual_seed(0)
    count = args.dnn_samples * 4
    features, targets = (t.to(device) for t in gaussian_clusters(count + args.valid_samples, config.input_dim,
                                                                  config.num_targets, generator))
    train, valid = (features[:count], targets[:count]), (features[count:], targets[count:])
    torch.manual_seed(0)
    models = [build_model(config).to(device) for _ in range(16)]
    hyper = settings.pool.sample(len(models), 1, generator)
    before = Population.from_modules(models, device, precision="fp32").fitness(valid)
    order = epoch_orders(torch.Generator().manual_seed(1), 1, len(models), count, None, device)[0]
    with precision_scope("fp32", device):
        for member, model in enumerate(models):
            described = hyper.describe(member)
            if described["optimizer"] == "adam":
                optimizer = torch.optim.Adam(model.parameters(), lr=described["lr"])
            else:
                optimizer = torch.optim.SGD(model.parameters(), lr=described["lr"], momentum=described["momentum"],
                                            nesterov=described["nesterov"])
            for start in range(0, count, described["batch_size"]):
                rows = order[member, start:start + described["batch_size"]]
                loss = F.cross_entropy(model(features[rows]), targets[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    reference = Population.from_modules(models, device, precision="fp32").fitness(valid)
    print(f"engine against fp32 torch.optim members, {args.dnn_preset}, 16 members, one epoch of {count} frames, "
          f"batch sizes {settings.pool.batch_sizes}, SGD / momentum / Nesterov / Adam: validation CE "
          f"{float(before.mean()):.4f} -> {float(reference.mean()):.4f} (mean of the reference)", flush=True)
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        population = Population.from_modules([build_model(config) for _ in range(16)], device, precision=precision)
        train_epochs(population, OptimizerState.zeros_like(population.params), hyper, train, 1,
                     torch.Generator().manual_seed(1))
        after = population.fitness(valid)
        population.precision = "fp32"
        scored = population.fitness(valid)
        print(f"  engine {precision}: largest |CE - reference| {float((after - reference).abs().max()):.2e} "
              f"(scored in fp32: {float((scored - reference).abs().max()):.2e}), ranking "
              f"{'the same' if torch.equal(after.argsort(), reference.argsort()) else 'differs'}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--parts", default="peak,dnn,blstm,single,precision,esgd")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "tf32", "fp32"])
    parser.add_argument("--tiny", action="store_true", help="small shapes (a smoke run on the CPU)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-loop", action="store_true", help="skip the per-member references")
    parser.add_argument("--dnn-preset", default="bn50")
    parser.add_argument("--dnn-mu", type=int, default=100)
    parser.add_argument("--dnn-samples", type=int, default=8192)
    parser.add_argument("--blstm-preset", default="swb300")
    parser.add_argument("--blstm-mu", type=int, nargs="+", default=[8, 100], help="population sizes, one part each")
    parser.add_argument("--blstm-samples", type=int, default=1024, help="chunks per epoch")
    parser.add_argument("--blstm-batch", type=int, nargs="+", default=[256, 64],
                        help="chunks per mini-batch, one per --blstm-mu (mu 100 x 256 chunks does not fit on an H200)")
    parser.add_argument("--single-samples", type=int, default=4096)
    parser.add_argument("--single-batch", type=int, default=128)
    parser.add_argument("--valid-samples", type=int, default=16384)
    parser.add_argument("--fitness-chunk", type=int, default=4096, help="frames per fitness pass")
    parser.add_argument("--fitness-members", type=int, default=64)
    parser.add_argument("--esgd-preset", default="bn50")
    parser.add_argument("--generations", type=int, default=1)
    parser.add_argument("--trace", action="store_true", help="print every timed call of the ESGD generation")
    parser.add_argument("--train-frames", type=int, default=1_050_000)
    parser.add_argument("--valid-frames", type=int, default=120_000)
    args = parser.parse_args()
    args.overrides = {}
    if args.tiny:
        args.dnn_preset = args.blstm_preset = "default"
        args.dnn_mu, args.dnn_samples, args.blstm_mu, args.blstm_samples, args.blstm_batch = 4, 512, [2], 32, [16]
        args.single_samples, args.single_batch, args.valid_samples, args.repeats = 32, 16, 256, 1
        args.train_frames, args.valid_frames, args.fitness_chunk = 4096, 1024, 256
        args.overrides = {"dnn": {"num_targets": 50}, "blstm": {"num_targets": 50}}
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}"
    print(f"torch {torch.__version__}, {name}, precision {args.precision}", flush=True)
    parts = args.parts.split(",")
    peak = peak_tflops(device, 8192 if not args.tiny else 512)
    print(f"measured {'bf16' if device.type == 'cuda' else 'fp32'} matmul peak: {peak:.0f} TFLOP/s", flush=True)
    if "dnn" in parts:
        population_part("dnn", args.dnn_preset, args.dnn_mu, args.dnn_samples, 256, args, device, peak)
    if "blstm" in parts:
        for mu, batch in zip(args.blstm_mu, args.blstm_batch, strict=True):
            population_part("blstm", args.blstm_preset, mu, args.blstm_samples, batch, args, device, peak,
                            optimizers=("sgd",))
    if "single" in parts:
        single_part(args, device, peak)
    if "precision" in parts:
        precision_part(args, device)
    if "esgd" in parts:
        esgd_part(args, device, peak)


if __name__ == "__main__":
    main()
