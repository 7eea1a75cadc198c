"""Train a hybrid DNN or BiLSTM with a population algorithm: ESGD, ESGD with (iterated) anchors, the papers'
baselines, Population Descent or OpenAI-ES.

Usage: esgd-train-esgd --algorithm esgd|anchored|iterated|population|no-evolution|popdescent|openai-es
                       [--esgd-config conf/esgd.yaml] [--esgd-preset NAME] [--esgd-opt key=value ...]
                       [--nnet-config conf/dnn.yaml] [--model-type dnn|blstm] [--preset default]
                       [--model-opt key=value ...] [--anchor PATH] [--cmvn true|false]
                       [--train-ivectors DIR --valid-ivectors DIR] [--egs FILE] [--device cpu|cuda]
                       [--num-threads N] [--resume true|false]
                       [--nproc N [--nnodes M --rdzv-endpoint HOST:PORT --rdzv-id ID]]
                       <train-data> <train-ali> <valid-data> <valid-ali> <exp-dir>

The data are read as by esgd-train-nnet (esgd_asr.hybrid.prepare.prepare_hybrid_sets), the model shape from
--nnet-config, the algorithm's settings from --esgd-config (esgd_asr.population.algorithms: a preset per
algorithm, then --esgd-opt dotted keys such as pool.lr_decay=0.8). --anchor (anchored, iterated) is a model file
of ours, a bare state dict or a TorchScript module of the same architecture (esgd_asr.hybrid.model_file.load_anchor), or
a Kaldi nnet3 text model: the population then takes its architecture (a DNN, or a TDNN / TDNN-F as an
esgd_asr.models.nnet3_architecture.Nnet3Config) and its declared input, checked before any data are prepared.
Writes <exp-dir>/checkpoint.pt after every generation (--resume true continues exactly), history.tsv,
history.jsonl, tensorboard/, fitness.png, and at the end final.pt: the best model as a hybrid model file whose
info holds what Table 1 prints: its cross-entropy and frame accuracy on the whole validation set (valid_ce,
valid_acc), its fitness (fitness_ce: the CE selection used, on the fitness subset when one is configured), the
whole-set CE of the top quarter of the population (top_valid_ce, best first; the papers give the top 15 of 100),
the budget (member_frames: SGD frames each member saw; sgd_frames: over all members; eval_frames: fitness
evaluations; mu); no wall time, so that two runs on the same inputs write the same bytes (history.jsonl has the
seconds of every generation). The other top-quarter models are written as top/rank<r>.pt (r >= 2).

--nproc N (--nnodes M) runs esgd, no-evolution or population with the members sharded over N processes per node
(esgd_asr.population.distributed; NCCL on --device cuda, one GPU each, gloo on the CPU), started through
torch.distributed's launcher as torchrun would; the run, its files and its checkpoint are those of one process
with the same seed, so it resumes on any number of processes. Started by torchrun itself (WORLD_SIZE set), the
command is one of its ranks.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
from contextlib import nullcontext
from pathlib import Path

import kaldi_hmm_gmm  # noqa: F401  (before kaldifst: import-order trap)
import torch

from esgd_asr.cli.options import KaldiArgumentParser, add_device_option, override_option, parse_bool
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.hybrid.model_file import config_kind, config_to_dict, load_anchor, save_hybrid_model
from esgd_asr.hybrid.prepare import NnetInput, network_input, prepare_hybrid_sets
from esgd_asr.hybrid.sets import HybridSets
from esgd_asr.models.config import build_model, load_model_config
from esgd_asr.population.algorithms import ALGORITHMS, build_algorithm, check_anchor, load_settings
from esgd_asr.population.checkpoint import CHECKPOINT_NAME
from esgd_asr.population.data import data_digest
from esgd_asr.population.distributed import build_sharded, check_distributable
from esgd_asr.population.driver import run_algorithm
from esgd_asr.population.launch import launch
from esgd_asr.population.ranks import PeerLost, Ranks
from esgd_asr.population.esgd import ESGD
from esgd_asr.train.nnet import evaluate

log = logging.getLogger("esgd-train-esgd")


def build_parser() -> KaldiArgumentParser:
    parser = KaldiArgumentParser(prog="esgd-train-esgd", description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithm", required=True, help=f"one of {', '.join(ALGORITHMS)}")
    parser.add_argument("--esgd-config", default="conf/esgd.yaml")
    parser.add_argument("--esgd-preset", help="preset(s) of --esgd-config, comma-separated, merged in order "
                                              "(default: anchors for anchored, iterated "
                                              "for iterated, else default)")
    parser.add_argument("--esgd-opt", type=override_option, action="append", default=[],
                        help="override a setting, e.g. --esgd-opt mu=20 --esgd-opt pool.lr_decay=0.8")
    parser.add_argument("--nnet-config", help="model YAML (default: conf/<model-type>.yaml)")
    parser.add_argument("--model-type", choices=["dnn", "blstm"], help="must match the config's type")
    parser.add_argument("--preset", default="default", help="model preset of --nnet-config")
    parser.add_argument("--model-opt", type=override_option, action="append", default=[],
                        help="override a model config field, e.g. --model-opt hidden=[512,512]")
    parser.add_argument("--anchor", help="anchor model (anchored, iterated): ours, a state dict or TorchScript")
    parser.add_argument("--cmvn", type=parse_bool, default=False, help="per-speaker CMVN from cmvn.scp")
    parser.add_argument("--norm-vars", type=parse_bool, default=False)
    parser.add_argument("--delta-order", type=int, default=0)
    parser.add_argument("--train-ivectors", help="i-vector dir of the training set (ivector_online.scp)")
    parser.add_argument("--valid-ivectors", help="i-vector dir of the validation set")
    parser.add_argument("--egs", help="cache of the prepared tensors, shared by runs on the same data: read when "
                                      "newer than the data, alignments and i-vectors and made for the same "
                                      "network input, else prepared and written")
    add_device_option(parser)
    parser.add_argument("--num-threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--resume", type=parse_bool, default=False, help="continue from <exp-dir>/checkpoint.pt")
    parser.add_argument("--nproc", type=int, default=1, help="processes per node, the members sharded over them "
                                                               "(esgd, no-evolution, population; one GPU each)")
    parser.add_argument("--nnodes", type=int, default=1, help="nodes of a multi-node run (each runs --nproc)")
    parser.add_argument("--rdzv-endpoint", help="HOST:PORT where the nodes meet (default under Slurm: the job's "
                                                "first node, port 29500)")
    parser.add_argument("--rdzv-id", help="id of the run at the rendezvous (default: $SLURM_JOB_ID, else esgd)")
    parser.add_argument("--tensorboard", type=parse_bool, default=True)
    parser.add_argument("--plot", type=parse_bool, default=True, help="fitness.png")
    parser.add_argument("--progress", type=parse_bool, default=True, help="tqdm progress bar on stderr")
    for name in ("train_data", "train_ali", "valid_data", "valid_ali", "exp_dir"):
        parser.add_argument(name)
    return parser


def hybrid_sets(args, config, nnet_input: NnetInput) -> HybridSets:
    """The training and validation tensors: the --egs cache when it is newer than every input and was made for
    `nnet_input` (normalisation statistics aside, unless it brings its own), else prepare_hybrid_sets (then cached
    in --egs)."""
    egs = Path(args.egs) if args.egs else None
    if egs is not None and egs.is_file():
        inputs = [Path(d) / name for d in (args.train_data, args.valid_data) for name in ("feats.scp", "cmvn.scp")]
        inputs += [p for d in (args.train_ali, args.valid_ali) for p in Path(d).glob("ali.*.ark")]
        inputs += [Path(d) / "final.mdl" for d in (args.train_ali, args.valid_ali)]
        inputs += [Path(d) / "ivector_online.scp" for d in (args.train_ivectors, args.valid_ivectors) if d]
        if all(egs.stat().st_mtime > p.stat().st_mtime for p in inputs if p.exists()):
            sets = HybridSets.load(egs)
            cached = NnetInput.from_dict(sets.nnet_input, str(egs))
            if cached == dataclasses.replace(nnet_input, global_stats=nnet_input.global_stats or cached.global_stats):
                log.info("%s: the prepared tensors of an earlier run", egs)
                return sets
        log.info("%s: older than its inputs or made for another network input: prepared again", egs)
    sets = prepare_hybrid_sets(config, args.train_data, args.train_ali, args.valid_data, args.valid_ali,
                               args.train_ivectors, args.valid_ivectors, nnet_input=nnet_input)
    if egs is not None:
        sets.save(egs)
    return sets


def top_quarter(settings) -> int:
    """Members in the top-quarter range of Table 1: mu / 4, at least 1."""
    return max(1, settings.mu // 4)


def start_processes(args, settings, argv: list[str]) -> None:
    """The launcher's side of --nproc / --nnodes: check the run can be sharded, then start the ranks of this node."""
    check_distributable(args.algorithm, settings, args.nproc * args.nnodes)
    program = Path(sys.executable).parent / "esgd-train-esgd"
    command = [sys.executable, *([str(program)] if program.is_file() else ["-m", __name__])]
    launch(command + argv, args.nproc, Path(args.exp_dir) / CHECKPOINT_NAME, args.nnodes, args.rdzv_endpoint,
           args.rdzv_id)


@cli_main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    check_anchor(args.algorithm, bool(args.anchor))
    settings = load_settings(args.algorithm, args.esgd_config, args.esgd_preset, dict(args.esgd_opt))
    nnet_config = args.nnet_config or f"conf/{args.model_type or 'dnn'}.yaml"
    config = load_model_config(nnet_config, args.preset, **dict(args.model_opt))
    if args.model_type and config_kind(config) != args.model_type:
        raise EsgdError(f"--model-type {args.model_type}, but {nnet_config} describes a {config_kind(config)}")
    ranks = Ranks.from_environment(args.device) if int(os.environ.get("WORLD_SIZE", 1)) > 1 else None
    if ranks is None and args.nproc * args.nnodes > 1:
        return start_processes(args, settings, argv)
    if ranks is not None and not ranks.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    elif int(os.environ.get("LOCAL_WORLD_SIZE", 1)) > 1:   # the node's cores shared out among its processes
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["LOCAL_WORLD_SIZE"])))
    config, nnet_input = network_input(config, args.train_data, args.train_ali, args.train_ivectors, args.cmvn,
                                       args.norm_vars, args.delta_order, args.anchor)
    with ranks.main_first() if ranks is not None and args.egs else nullcontext():   # rank 0 writes the cache
        sets = hybrid_sets(args, config, nnet_input)
    config = sets.fit_config(config)
    anchor = load_anchor(args.anchor, config, sets.nnet_input) if args.anchor else None
    if ranks is None:
        algorithm = build_algorithm(args.algorithm, settings, lambda: build_model(config), sets.train, sets.valid,
                                    anchor, args.device)
    else:
        algorithm = build_sharded(args.algorithm, settings, lambda: build_model(config), sets.train, sets.valid,
                                  ranks, ranks.device)
    log.info("%s on a %s of %d parameters (%s); %s", args.algorithm, config_kind(config),
             sum(p.numel() for p in build_model(config).parameters()), config, settings)
    fingerprint = {"algorithm": args.algorithm, "settings": dataclasses.asdict(settings),
                   "model": config_to_dict(config), "train": data_digest(sets.train), "valid": data_digest(sets.valid),
                   "anchor": str(args.anchor) if args.anchor else None}

    def save_final(trained, history: list[dict], path: Path) -> None:
        ranked = trained.ranked_states(top_quarter(settings)) if isinstance(trained, ESGD) else [
            (trained.best_state(), float(trained.fitness[torch.isfinite(trained.fitness)].min()))]
        modules, whole = [], []
        for state, _ in ranked:
            modules.append(build_model(config))
            modules[-1].load_state_dict(state)
            whole.append(evaluate(modules[-1], sets.valid))
        budget = trained.budget() if isinstance(trained, ESGD) else {}
        info = dict(valid_ce=whole[0][0], valid_acc=whole[0][1], fitness_ce=ranked[0][1],
                    fitness_frames=getattr(settings, "fitness_frames", None), top_valid_ce=[ce for ce, _ in whole],
                    mu=getattr(trained, "trainable_size", 1), algorithm=args.algorithm, generations=trained.generation,
                    **budget)
        top = path.parent / "top"
        for stale in top.glob("rank*.pt"):   # of an earlier run with a larger population
            if stale.stem[len("rank"):] not in {str(rank) for rank in range(2, len(modules) + 1)}:
                stale.unlink()
        for rank, module in enumerate(modules[1:], start=2):
            save_hybrid_model(top / f"rank{rank}.pt", module, config, sets.nnet_input, sets.pdf_counts,
                              **{**info, "valid_ce": whole[rank - 1][0], "valid_acc": whole[rank - 1][1],
                                 "fitness_ce": ranked[rank - 1][1]})
        save_hybrid_model(path, modules[0], config, sets.nnet_input, sets.pdf_counts, **info)
        log.info("wrote %s: validation CE %.4f, frame accuracy %.2f %% (whole validation set; fitness %.4f); "
                 "top quarter CE %s; %s", path, info["valid_ce"], 100 * info["valid_acc"], info["fitness_ce"],
                 ", ".join(f"{ce:.4f}" for ce in info["top_valid_ce"]), budget)

    try:
        history = run_algorithm(algorithm, args.exp_dir, args.resume, progress=args.progress,
                                tensorboard=args.tensorboard, plot=args.plot, fingerprint=fingerprint,
                                save_model=save_final)
    except PeerLost as err:   # not the cause: the launcher's line names the rank that stopped the run
        log.warning("%s; stopping", err)
        sys.exit(err.status)
    last = [r for r in history if "generation" in r][-1]
    log.info("%s: %d generations, best fitness %.4f%s", args.exp_dir, last["generation"], last["best"],
             "".join(f", after the fine-tune {r['best']:.4f}" for r in history if "finish" in r))

if __name__ == "__main__":
    main()
