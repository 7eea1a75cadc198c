"""Kaldi-style option handling: `--config FILE` holding `--name=value` lines (esgd_asr.option_file), overridden by
the command line."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

import yaml

from esgd_asr.errors import EsgdError
from esgd_asr.option_file import expand_option_files


class KaldiArgumentParser(argparse.ArgumentParser):
    """argparse with `--config FILE` expansion and one-line errors that name the bad option."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument("--config", action="append", default=[], help="Kaldi-style config file(s)")

    def parse_args(self, argv=None, namespace=None):
        return super().parse_args(expand_option_files(list(sys.argv[1:] if argv is None else argv)), namespace)

    def error(self, message):
        raise EsgdError(message)


def add_dataclass_options(parser: argparse.ArgumentParser, cls, exclude: tuple[str, ...] = ()) -> None:
    """One `--field-name` option per field of a dataclass (but `exclude`), typed by its default."""
    for field in dataclasses.fields(cls):
        if field.name in exclude:
            continue
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        name = "--" + field.name.replace("_", "-")
        if isinstance(default, tuple):
            parser.add_argument(name, type=lambda s: tuple(s.split(",")), default=default,
                                help=f"comma-separated (default: {','.join(default)})")
        elif isinstance(default, bool):
            parser.add_argument(name, type=parse_bool, default=default, help=f"(default: {default})")
        else:
            parser.add_argument(name, type=type(default), default=default, help=f"(default: {default})")


def dataclass_from_args(cls, args: argparse.Namespace, **given):
    """The dataclass built from parsed options; fields in `given` are taken from there instead."""
    return cls(**{f.name: given[f.name] if f.name in given else getattr(args, f.name) for f in dataclasses.fields(cls)})


def override_option(text: str) -> tuple[str, object]:
    """One `key=value` of --model-opt / --esgd-opt: a dotted key (pool.lr_decay) and a value read as YAML, merged
    over the config file's settings (esgd_asr.yaml_config)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got '{text}'")
    return key, yaml.safe_load(value)


def parse_bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{value}'")


def device_name(value: str) -> str:
    """A --device value checked to name a torch device that exists here (cpu, cuda, cuda:1, ...)."""
    import torch

    try:
        device = torch.device(value)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a torch device (cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"'{value}': no CUDA device is available")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"'{value}': there are {torch.cuda.device_count()} CUDA device(s)")
    if device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"'{value}': only cpu and cuda devices are supported")
    return value


def add_device_option(parser: argparse.ArgumentParser, default: str = "cpu") -> None:
    """--device, the same for every command: checked when parsed, so a bad one stops before any work."""
    parser.add_argument("--device", type=device_name, default=default,
                        help=f"torch device: cpu, cuda or cuda:N (default: {default})")


def run_job_command(parser: argparse.ArgumentParser, argv: list[str] | None,
                    at_least_one: tuple[str, ...] = ("nj",)) -> None:
    """The entry of a subcommand-style job tool (esgd-align, esgd-gmm-train, ...): parse `argv`, log to stderr,
    one torch thread (parallelism comes from --nj, as with Kaldi's tools), refuse options of `at_least_one` below
    1, and run the chosen subcommand's `func`."""
    import torch  # here: the option helpers above serve tools that need no torch

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    for name in at_least_one:
        if getattr(args, name, 1) < 1:
            raise EsgdError(f"--{name.replace('_', '-')} must be at least 1")
    args.func(args)
