"""Answers that run.sh and the steps need from the library, one per subcommand, printed on stdout.

Usage: esgd-recipe-query budget [--esgd-config conf/esgd.yaml] <preset>
       esgd-recipe-query better-anchor <exp-dir>...
       esgd-recipe-query error-line <log>
       esgd-recipe-query lda-context <lda-config>

budget: the per-member SGD budget of the single-model runs of Table 1 under an ESGD preset (comma-separated presets
merge in order): `epochs epoch_frames finetune_lr finetune_batch_size`, with epochs = K x Ks + Kf and epoch_frames 0
for whole epochs. better-anchor: the final.pt of the finished ESGD run whose best model has the lowest fitness.
error-line: the line of a failed job's log that says what went wrong, as esgd-queue reports it.
lda-context: `left right`, the splicing context of LDA options (conf/lda.conf) as esgd-train-lda-mllt reads them.
"""
from pathlib import Path

import torch

from esgd_asr.cli.options import KaldiArgumentParser, add_dataclass_options, dataclass_from_args
from esgd_asr.cli.queue import first_error_line
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.features.lda import LdaMlltOptions
from esgd_asr.option_file import read_option_file
from esgd_asr.population.config import load_esgd_config


def budget(args) -> str:
    config = load_esgd_config(args.esgd_config, args.preset)
    tune = config.finetune
    return (f"{config.generations * config.sgd_epochs + tune.max_epochs} {config.epoch_frames or 0} {tune.lr} "
            f"{tune.batch_size}")


def better_anchor(args) -> str:
    def fitness(exp_dir: Path) -> float:
        try:
            return torch.load(exp_dir / "final.pt", weights_only=True)["info"]["fitness_ce"]
        except (OSError, RuntimeError, KeyError, TypeError) as err:
            raise EsgdError(f"{exp_dir / 'final.pt'}: no fitness of a finished ESGD run ({err})") from None
    return str(min(args.exp_dirs, key=fitness) / "final.pt")


def error_line(args) -> str:
    return first_error_line(args.log)


def lda_context(args) -> str:
    parser = KaldiArgumentParser(add_help=False)
    add_dataclass_options(parser, LdaMlltOptions)
    lines = read_option_file(args.lda_config)
    try:
        options = dataclass_from_args(LdaMlltOptions, parser.parse_args(lines))
    except EsgdError as err:
        raise EsgdError(f"{args.lda_config}: {err}") from None
    return f"{options.left_context} {options.right_context}"


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(prog="esgd-recipe-query", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sub = commands.add_parser("budget")
    sub.add_argument("--esgd-config", type=Path, default=Path("conf/esgd.yaml"))
    sub.add_argument("preset")
    sub.set_defaults(func=budget)
    sub = commands.add_parser("better-anchor")
    sub.add_argument("exp_dirs", type=Path, nargs="+")
    sub.set_defaults(func=better_anchor)
    sub = commands.add_parser("error-line")
    sub.add_argument("log", type=Path)
    sub.set_defaults(func=error_line)
    sub = commands.add_parser("lda-context")
    sub.add_argument("lda_config", type=Path)
    sub.set_defaults(func=lda_context)
    args = parser.parse_args(argv)
    print(args.func(args))


if __name__ == "__main__":
    main()
