"""Monophone GMM-HMM training steps behind steps/train_mono.sh (Kaldi's gmm-init-mono, gmm-acc-stats-ali,
gmm-est); steps/train_mono.sh runs the iterations, alignment is `esgd-align`.

Usage: esgd-train-mono init [--num-utts-init N] <data-dir> <lang-dir> <exp-dir>
       esgd-train-mono acc --nj N --job J <data-dir> <exp-dir> <iter>
       esgd-train-mono est --nj N [--mix-up G] [--power P] [--min-gaussian-occupancy C] [--realigned B]
                           <exp-dir> <iter>
       esgd-train-mono info <model>

init: monophone ContextDependency (pdfs shared within phones/sets.int) and TransitionModel from the lang's topo,
      every pdf one Gaussian at the global mean / variance of (a spread of up to N) utterances' features
      (per-speaker CMVN from cmvn.scp when the data dir has one, then deltas + delta-deltas) -> 0.mdl, tree.
acc:  statistics of job J's utterances under <iter>.mdl and ali.J.ark -> <iter>.J.acc.
est:  sums the jobs' statistics, re-estimates transitions and GMMs, mixes up to G Gaussians -> <iter+1>.mdl;
      appends `iter realigned loglike_per_frame frames num_gauss` to <exp-dir>/log/objf.tsv.
info: sizes of a model, one `name value` per line (as gmm-info).
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import kaldi_hmm_gmm as khg  # before anything that loads kaldifst (import-order trap)
import torch

from esgd_asr.cli.options import KaldiArgumentParser, parse_bool
from esgd_asr.data.kaldi_dir import atomic_write_text
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.features.ubm import FeatureSource, FrontEnd
from esgd_asr.gmm.align import ali_to_pdf, read_alignments
from esgd_asr.gmm.lang_dir import LangDir
from esgd_asr.gmm.model import GmmHmm, PdfScorer, init_flat_model
from esgd_asr.gmm.stats import EstimateOptions, GmmStats, estimate

log = logging.getLogger("esgd-train-mono")


def check_dim(model: GmmHmm, feats: torch.Tensor, where: str) -> None:
    if feats.shape[1] != model.dim:
        raise EsgdError(f"{where}: feature dimension {feats.shape[1]} does not match the model's {model.dim}")


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


def cmd_acc(args) -> None:
    exp = Path(args.exp_dir)
    model = GmmHmm.load(exp / f"{args.iter}.mdl")
    info = model.transitions()
    source = FeatureSource(args.data_dir, model.front_end).shard(args.nj, args.job)
    alignments = dict(read_alignments(exp / f"ali.{args.job}.ark"))
    scorer = PdfScorer(model.am)
    stats = GmmStats.zeros(scorer.num_gauss, model.dim, model.trans_model.num_transition_ids)
    missing = 0
    for utt in source.utts:
        if utt not in alignments:
            missing += 1
            continue
        feats = source.load(utt)
        where = f"{args.data_dir}: utterance '{utt}'"
        check_dim(model, feats, where)
        ali = alignments[utt]
        if len(ali) != feats.shape[0]:
            raise EsgdError(f"{where}: alignment has {len(ali)} frames, features {feats.shape[0]}")
        stats.add_utterance(scorer, feats, ali_to_pdf(ali, info), ali)
    stats.save(exp / f"{args.iter}.{args.job}.acc")
    log.info("iteration %d job %d: %d utterances, %d without alignment, log-likelihood per frame %.4f over %d "
             "frames", args.iter, args.job, len(source.utts) - missing, missing,
             stats.loglike / max(stats.frames, 1), stats.frames)


def cmd_est(args) -> None:
    exp = Path(args.exp_dir)
    model = GmmHmm.load(exp / f"{args.iter}.mdl")
    paths = [exp / f"{args.iter}.{job}.acc" for job in range(1, args.nj + 1)]
    stats = GmmStats.load(paths[0])
    for path in paths[1:]:
        stats += GmmStats.load(path)
    if stats.frames == 0:
        raise EsgdError(f"{exp}: iteration {args.iter} has no aligned frames (every utterance failed to align?)")
    opts = EstimateOptions(min_gaussian_occupancy=args.min_gaussian_occupancy, mix_up=args.mix_up,
                           power=args.power)
    figures = estimate(model, stats, opts)
    model.save(exp / f"{args.iter + 1}.mdl")
    for path in paths:
        path.unlink()
    objf = exp / "log" / "objf.tsv"
    previous = objf.read_text() if objf.is_file() and args.iter > 0 else "iter\trealigned\tloglike_per_frame\t" \
                                                                         "frames\tnum_gauss\n"
    atomic_write_text(objf, previous + f"{args.iter}\t{int(args.realigned)}\t{figures['loglike_per_frame']:.6f}\t"
                                       f"{figures['frames']}\t{figures['num_gauss']}\n")
    log.info("iteration %d: log-likelihood per frame %.4f over %d frames; GMM update %.4f / frame, transitions "
             "%.4f / frame; %d Gaussians -> %s", args.iter, figures["loglike_per_frame"], figures["frames"],
             figures["gmm_impr_per_frame"], figures["transition_impr_per_frame"], figures["num_gauss"],
             exp / f"{args.iter + 1}.mdl")


def cmd_info(args) -> None:
    model = GmmHmm.load(args.model)
    print(f"number-of-phones {len(model.phones())}\nnumber-of-pdfs {model.num_pdfs}\n"
          f"number-of-transition-ids {model.trans_model.num_transition_ids}\n"
          f"number-of-gaussians {model.am.num_gauss}\nfeature-dimension {model.dim}")


def build_parser() -> KaldiArgumentParser:
    parser = KaldiArgumentParser(prog="esgd-train-mono", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("init", help="flat-start monophone model -> 0.mdl")
    p.add_argument("--num-utts-init", type=int, default=500, help="utterances for the global mean / variance")
    p.add_argument("--delta-order", type=int, default=2, help="delta order of the front end")
    for name in ("data_dir", "lang_dir", "exp_dir"):
        p.add_argument(name)
    p.set_defaults(func=cmd_init)
    p = sub.add_parser("acc", help="accumulate statistics of one job")
    p.add_argument("--nj", type=int, required=True)
    p.add_argument("--job", type=int, required=True)
    p.add_argument("data_dir")
    p.add_argument("exp_dir")
    p.add_argument("iter", type=int)
    p.set_defaults(func=cmd_acc)
    p = sub.add_parser("est", help="re-estimate from the jobs' statistics")
    p.add_argument("--nj", type=int, required=True)
    p.add_argument("--mix-up", type=int, default=0, help="target number of Gaussians (0: no mixing up)")
    p.add_argument("--power", type=float, default=0.25, help="exponent of occupancy when allotting Gaussians")
    p.add_argument("--min-gaussian-occupancy", type=float, default=10.0)
    p.add_argument("--realigned", type=parse_bool, default=False, help="alignments were redone before this pass")
    p.add_argument("exp_dir")
    p.add_argument("iter", type=int)
    p.set_defaults(func=cmd_est)
    p = sub.add_parser("info", help="print the sizes of a model")
    p.add_argument("model")
    p.set_defaults(func=cmd_info)
    return parser


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(1)  # one thread per job, as Kaldi's tools: parallelism comes from --nj
    for name in ("nj", "num_utts_init"):
        if getattr(args, name, 1) < 1:
            raise EsgdError(f"--{name.replace('_', '-')} must be at least 1")
    args.func(args)


if __name__ == "__main__":
    main()
