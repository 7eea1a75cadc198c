"""Flat start of monophone GMM-HMM training (Kaldi's gmm-init-mono); steps/train_mono.sh runs the EM passes
(`esgd-gmm-train acc / est`) and alignments (`esgd-align`).

Usage: esgd-train-mono init [--num-utts-init N] [--delta-order 2] <data-dir> <lang-dir> <exp-dir>

init: monophone ContextDependency (pdfs shared within phones/sets.int) and TransitionModel from the lang's topo,
      every pdf one Gaussian at the global mean / variance of (a spread of up to N) utterances' features
      (per-speaker CMVN from cmvn.scp when the data dir has one, then deltas + delta-deltas) -> 0.mdl, tree.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import kaldi_hmm_gmm as khg  # before anything that loads kaldifst (import-order trap)
import torch

from esgd_asr.cli.options import KaldiArgumentParser, run_job_command
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.features.feature_source import FeatureSource, FrontEnd
from esgd_asr.gmm.lang_dir import LangDir
from esgd_asr.gmm.model import init_flat_model

log = logging.getLogger("esgd-train-mono")


def cmd_init(args) -> None:
    data, exp = Path(args.data_dir), Path(args.exp_dir)
    lang = LangDir.read(args.lang_dir)
    topo = khg.HmmTopology()
    try:
        topo.read(lang.topo_text)
    except RuntimeError as err:
        raise EsgdError(f"{lang.path / 'topo'}: cannot parse the topology ({err})") from None
    lang.check_phones(list(topo.phones), str(lang.path / "topo"))
    front_end = FrontEnd(cmvn=(data / "cmvn.scp").is_file(), norm_vars=False, delta_order=args.delta_order)
    source = FeatureSource(data, front_end)
    if not len(source):
        raise EsgdError(f"{data / 'feats.scp'}: no utterances")
    step = max(1, len(source) // args.num_utts_init)
    total = None
    for utt in source.utts[::step][: args.num_utts_init]:
        x = source.load(utt).double()
        moments = torch.stack([torch.full((x.shape[1],), float(x.shape[0]), dtype=torch.float64),
                               x.sum(0), (x * x).sum(0)])
        total = moments if total is None else total + moments
    mean = total[1] / total[0]
    var = (total[2] / total[0] - mean * mean).clamp_min(1e-6)
    model = init_flat_model(lang.topo_text, lang.phone_sets, mean.numpy(), var.numpy(), front_end)
    exp.mkdir(parents=True, exist_ok=True)
    model.save(exp / "0.mdl")
    model.ctx_dep.write(binary=True, filename=str(exp / "tree"))
    shutil.copy(lang.path / "phones.txt", exp / "phones.txt")
    log.info("initialised %s: %d pdfs, %d Gaussians, feature dim %d, CMVN %s, from %d frames", exp / "0.mdl",
             model.num_pdfs, model.am.num_gauss, model.dim, "on" if front_end.cmvn else "off", int(total[0, 0]))


def build_parser() -> KaldiArgumentParser:
    parser = KaldiArgumentParser(prog="esgd-train-mono", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("init", help="flat-start monophone model -> 0.mdl")
    p.add_argument("--num-utts-init", type=int, default=500, help="utterances for the global mean / variance")
    p.add_argument("--delta-order", type=int, default=2, help="delta order of the front end")
    for name in ("data_dir", "lang_dir", "exp_dir"):
        p.add_argument(name)
    p.set_defaults(func=cmd_init)
    return parser


@cli_main
def main(argv=None):
    run_job_command(build_parser(), argv, at_least_one=("nj", "num_utts_init"))


if __name__ == "__main__":
    main()
