"""Train an image classifier or a language model of a prepared task (esgd-prepare-images, esgd-prepare-lm-text)
with the single-model new-bob trainer or a population algorithm of the ASR recipe.

Usage: esgd-train-task --algorithm single|esgd|no-evolution|population|anchored|iterated|inserted|popdescent|openai-es
                       --model-config FILE [--preset NAME] [--model-opt key=value ...]
                       [--esgd-config FILE] [--esgd-preset NAME] [--esgd-opt key=value ...]
                       [--anchor exp/single/final.pt] [--seed N] [--device cpu|cuda] [--num-threads N]
                       <task.pt> <exp-dir>

single trains one model with new-bob (the model config's `train` section); the others are
esgd_asr.population.algorithms with their settings from --esgd-config (anchored / iterated / inserted take
--anchor: the anchor, or the baseline always inserted). Writes <exp-dir>/final.pt: the best model, its config and
info: validation and test CE with error rate % (vision) or perplexity (lm), the validation CE range of the top
quarter (population rows), the budget (member_samples: training samples, or tokens, behind the final model;
total_samples: over all members, or ES pseudo-offspring evaluations; OpenAI-ES also es_budget: pseudo-offspring an
update, updates, samples an update) and wall_seconds. Population runs also write
checkpoint.pt, history.tsv / history.jsonl and fitness.png.
"""
import dataclasses
import logging
import math
import time
from pathlib import Path

import torch

from esgd_asr.atomic import atomic_torch_save, load_tagged
from esgd_asr.cli.options import KaldiArgumentParser, add_device_option, override_option, parse_bool
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.models.config import MODEL_TYPES, build_model, load_model_config, model_config_from_dict
from esgd_asr.population.algorithms import ALGORITHMS, build_algorithm, check_anchor, load_settings
from esgd_asr.population.driver import run_algorithm
from esgd_asr.population.esgd import ESGD
from esgd_asr.population.newbob import load_newbob_config, train_single_model
from esgd_asr.population.openai_es import OpenAIES
from esgd_asr.population.popdescent import PopulationDescent
from esgd_asr.train.nnet import evaluate
from esgd_asr.train.task import Task

log = logging.getLogger("esgd-train-task")
MODEL_FORMAT = "esgd-task-model"
EVAL_CHUNK = 256   # samples per evaluation pass (LM rows: 256 x bptt x vocab logits)


def config_kind(config) -> str:
    return next(kind for kind, (config_class, _) in MODEL_TYPES.items() if isinstance(config, config_class))


def save_task_model(path: Path, module, config, info: dict) -> None:
    atomic_torch_save({"format": MODEL_FORMAT, "type": config_kind(config), "config": dataclasses.asdict(config),
                       "state": module.state_dict(), "info": info}, path)


def load_task_model(path: str | Path) -> tuple[object, dict, dict]:
    """(config, state dict, info) of a model written by esgd-train-task."""
    saved = load_tagged(path, MODEL_FORMAT, "model file")
    return model_config_from_dict(saved["type"], saved["config"], str(path)), saved["state"], saved["info"]


def scores(kind: str, module, data) -> dict:
    """CE and the task's metric: error rate % (vision) or perplexity (lm)."""
    ce, accuracy = evaluate(module, data, EVAL_CHUNK)
    return {"ce": ce, "error": 100 * (1 - accuracy)} if kind == "vision" else {"ce": ce, "ppl": math.exp(ce)}


def budget(trained, train) -> dict:
    """Training samples (tokens for an LM) behind the final model and over all members (ES: forward passes)."""
    per_row = float((train[1] != -100).sum()) / train[1].shape[0]
    if isinstance(trained, ESGD):
        values = trained.budget()
        return {"member_samples": values["member_frames"], "total_samples": values["sgd_frames"]}
    if isinstance(trained, PopulationDescent):
        member = trained.generation * trained.config.local_steps * trained.config.batch_size
        return {"member_samples": round(member * per_row), "total_samples": round(member * trained.config.mu
                                                                                   * per_row)}
    if isinstance(trained, OpenAIES):
        member = trained.updates * trained.config.batch_size
        return {"member_samples": round(member * per_row),
                "total_samples": round(member * 2 * trained.config.pairs * per_row),
                "es_budget": {"pseudo_offspring": 2 * trained.config.pairs, "updates": trained.updates,
                              "batch_size": trained.config.batch_size}}
    raise EsgdError(f"no budget for {type(trained).__name__}")


def build_parser() -> KaldiArgumentParser:
    parser = KaldiArgumentParser(prog="esgd-train-task", description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithm", required=True, help=f"single or one of {', '.join(ALGORITHMS)}")
    parser.add_argument("--model-config", required=True, help="model YAML (type, default, presets, train)")
    parser.add_argument("--preset", default="default", help="model preset of --model-config")
    parser.add_argument("--model-opt", type=override_option, action="append", default=[])
    parser.add_argument("--esgd-config", help="population settings (conf/esgd.yaml layout)")
    parser.add_argument("--esgd-preset", help="preset(s) of --esgd-config, comma-separated")
    parser.add_argument("--esgd-opt", type=override_option, action="append", default=[])
    parser.add_argument("--anchor", help="anchored / iterated: the anchor; inserted: the baseline (a final.pt)")
    parser.add_argument("--seed", type=int, default=0, help="single: initialisation and shuffling")
    add_device_option(parser)
    parser.add_argument("--num-threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--progress", type=parse_bool, default=False, help="tqdm progress bar on stderr")
    parser.add_argument("task")
    parser.add_argument("exp_dir", type=Path)
    return parser


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    single = args.algorithm == "single"
    if not single:
        check_anchor(args.algorithm, bool(args.anchor))
        if not args.esgd_config:
            raise EsgdError(f"--algorithm {args.algorithm} needs --esgd-config")
    task = Task.load(args.task)
    config = task.fit_config(load_model_config(args.model_config, args.preset, **dict(args.model_opt)))
    anchor = None
    if args.anchor:
        anchor_config, state, _ = load_task_model(args.anchor)
        if anchor_config != config:
            raise EsgdError(f"{args.anchor}: its architecture {anchor_config} differs from the population's {config}")
        anchor = build_model(config)
        anchor.load_state_dict(state)
    log.info("%s on %s: a %s of %d parameters %s", args.algorithm, task.info["dataset"], config_kind(config),
             sum(p.numel() for p in build_model(config).parameters()), config)
    start = time.perf_counter()
    if single:
        schedule = load_newbob_config(args.model_config, args.preset)
        torch.manual_seed(args.seed)
        module, result = train_single_model(build_model(config), task.train, task.valid, schedule, args.seed,
                                            args.device, EVAL_CHUNK)
        samples = sum(epoch["frames"] for epoch in result.epochs)
        info = {"member_samples": samples, "total_samples": samples, "mu": 1, "top_valid_ce": [],
                "epochs": len(result.epochs), "wall_seconds": round(time.perf_counter() - start, 1)}
        finish(task, module.cpu(), config, args, info)
        return
    settings = load_settings(args.algorithm, args.esgd_config, args.esgd_preset, dict(args.esgd_opt))
    algorithm = build_algorithm(args.algorithm, settings, lambda: build_model(config), task.train, task.valid,
                                anchor, args.device)

    def save_final(trained, history: list[dict], path: Path) -> None:
        count = max(1, trained.config.mu // 4) if isinstance(trained, ESGD) else 1
        ranked = trained.ranked_states(count) if isinstance(trained, ESGD) else [(trained.best_state(), None)]
        tops = []
        for state, _ in ranked:
            module = build_model(config)
            module.load_state_dict({k: v.cpu() for k, v in state.items()})
            tops.append(module)
        info = {**budget(trained, task.train), "mu": getattr(trained.config, "mu", 1),
                "generations": trained.generation,
                "top_valid_ce": [evaluate(m, task.valid, EVAL_CHUNK)[0] for m in tops] if count > 1 else [],
                "wall_seconds": round(time.perf_counter() - start, 1)}
        finish(task, tops[0], config, args, info, path)

    fingerprint = {"algorithm": args.algorithm, "settings": dataclasses.asdict(settings),
                   "model": dataclasses.asdict(config), "task": str(args.task), "anchor": args.anchor}
    run_algorithm(algorithm, args.exp_dir, progress=args.progress, tensorboard=False, fingerprint=fingerprint,
                  save_model=save_final)


def finish(task: Task, module, config, args, info: dict, path: Path | None = None) -> None:
    """Score the final model on the validation and test sets and write it with its info."""
    valid, test = scores(task.kind, module, task.valid), scores(task.kind, module, task.test)
    info = {"kind": task.kind, "algorithm": args.algorithm, "dataset": task.info["dataset"],
            **{f"valid_{k}": v for k, v in valid.items()}, **{f"test_{k}": v for k, v in test.items()}, **info}
    path = path or args.exp_dir / "final.pt"
    save_task_model(path, module, config, info)
    metric = "error" if task.kind == "vision" else "ppl"
    log.info("wrote %s: valid CE %.4f, %s %.2f; test %s %.2f; %d samples per member, %d in all, %.1f s", path,
             valid["ce"], metric, valid[metric], metric, test[metric], info["member_samples"],
             info["total_samples"], info["wall_seconds"])


if __name__ == "__main__":
    main()
