"""The ES-vs-SGD gradient correlation against the mini-batch size (Zhang, Clune & Stanley 2017): at a model's
weights, for each batch size, the Pearson correlation between OpenAI-ES's gradient estimate (antithetic pairs from
the shared noise table, esgd_asr.population.openai_es) and the exact SGD gradient of the same mini-batch.

Usage: esgd-es-correlation --model-config FILE [--preset NAME] [--model PATH] [--batch-sizes 1,10,100]
                           [--pairs N] [--sigma S] [--repeats R] [--seed N] <task.pt> <out-dir>

--model: a final.pt of esgd-train-task to measure at (default: a fresh initialisation from --seed). Each batch
size is measured on --repeats seeded mini-batches of the training set. Writes <out-dir>/correlation.tsv (batch
size, mean, std, each repeat) and <out-dir>/correlation.png (mean +- std against the batch size, log x axis).
"""
import io
import logging
import statistics
from pathlib import Path

import torch

from esgd_asr.atomic import atomic_write_bytes, atomic_write_text
from esgd_asr.cli.options import KaldiArgumentParser
from esgd_asr.cli.train_task import load_task_model
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.models.config import build_model, load_model_config
from esgd_asr.population.openai_es import OpenAIES, OpenAIESConfig, correlation, reconstruct_gradient, \
    sample_perturbations
from esgd_asr.train.task import Task

log = logging.getLogger("esgd-es-correlation")


def batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",")]
    except ValueError:
        raise EsgdError(f"--batch-sizes: expected comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise EsgdError("--batch-sizes: sizes must be positive")
    return sizes


def measure(es: OpenAIES, sizes: list[int], repeats: int, generator: torch.Generator) -> dict[int, list[float]]:
    """{batch size: correlations of `repeats` mini-batches}."""
    features, targets = es.train
    results = {}
    for size in sizes:
        results[size] = []
        for _ in range(repeats):
            batch = torch.randperm(len(targets), generator=generator)[:size].to(features.device)
            data = (features[batch], targets[batch])
            perturbations = sample_perturbations(es.config.pairs, es.bounds, es.config.noise_table_size, generator)
            rewards = es.rewards(perturbations, data)
            gradient = reconstruct_gradient(es.table, perturbations, rewards, es.config.sigma, es.bounds,
                                            es.num_params)
            results[size].append(correlation(-gradient, es.true_gradient(data)))
        log.info("batch %d: correlation %.4f", size, statistics.fmean(results[size]))
    return results


def plot_png(results: dict[int, list[float]], pairs: int) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(results)
    means = [statistics.fmean(results[s]) for s in sizes]
    stds = [statistics.pstdev(results[s]) for s in sizes]
    figure, axes = plt.subplots(figsize=(5, 3.5))
    axes.errorbar(sizes, means, yerr=stds, marker="o", capsize=3)
    axes.set_xscale("log")
    axes.set_xlabel("mini-batch size")
    axes.set_ylabel("corr(ES gradient, SGD gradient)")
    axes.set_title(f"OpenAI-ES ({2 * pairs} pseudo-offspring) vs SGD")
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(prog="esgd-es-correlation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-config", required=True)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--model", help="final.pt of esgd-train-task (default: a fresh initialisation)")
    parser.add_argument("--batch-sizes", type=batch_sizes, default=[1, 10, 100, 1000])
    parser.add_argument("--pairs", type=int, default=5000, help="antithetic pairs (the paper: 10,000 offspring)")
    parser.add_argument("--sigma", type=float, default=0.002)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-threads", type=int, default=0)
    parser.add_argument("task")
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    if args.repeats < 1:
        raise EsgdError("--repeats must be at least 1")
    task = Task.load(args.task)
    config = task.fit_config(load_model_config(args.model_config, args.preset))
    es = OpenAIES(OpenAIESConfig(pairs=args.pairs, sigma=args.sigma, seed=args.seed, noise_seed=args.seed + 123),
                  lambda: build_model(config), task.train, task.valid)
    if args.model:
        model_config, state, _ = load_task_model(args.model)
        if model_config != config:
            raise EsgdError(f"{args.model}: its architecture {model_config} differs from --model-config's {config}")
        with torch.no_grad():
            es.theta.copy_(torch.cat([state[name].flatten() for name in es.names]))
    too_big = [s for s in args.batch_sizes if s > len(task.train[1])]
    if too_big:
        raise EsgdError(f"--batch-sizes: {too_big[0]} is more than the {len(task.train[1])} training samples")
    results = measure(es, args.batch_sizes, args.repeats, torch.Generator().manual_seed(args.seed))
    lines = ["batch_size\tmean\tstd\tcorrelations"] + [
        f"{s}\t{statistics.fmean(v):.6f}\t{statistics.pstdev(v):.6f}\t{','.join(f'{c:.6f}' for c in v)}"
        for s, v in sorted(results.items())]
    atomic_write_text(args.out_dir / "correlation.tsv", "\n".join(lines) + "\n")
    atomic_write_bytes(args.out_dir / "correlation.png", plot_png(results, args.pairs))
    log.info("wrote %s/correlation.tsv and correlation.png", args.out_dir)


if __name__ == "__main__":
    main()
