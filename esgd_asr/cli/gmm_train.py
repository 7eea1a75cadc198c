"""One EM pass of any GMM-HMM system, as the training scripts run it (Kaldi's gmm-align-compiled +
gmm-acc-stats-ali, gmm-est, gmm-info).

Usage: esgd-gmm-train acc --nj N --job J [--realign B] [--beam 10] [--retry-beam 40] [--transforms trans.J.ark]
                          <data-dir> <exp-dir> <iter>
       esgd-gmm-train est --nj N [--mix-up G] [--power P] [--min-gaussian-occupancy C] [--realigned B]
                          <exp-dir> <iter>
       esgd-gmm-train info <model>

acc:  (with --realign true, first re-aligns job J's utterances with <iter>.mdl and the training graphs
      <exp-dir>/fsts.J.ark into ali.J.ark, in the same process) statistics of job J's utterances under <iter>.mdl
      and ali.J.ark -> <iter>.J.acc. Features: the model's front end, then the speaker transforms of --transforms
      (SAT) if given.
est:  sums the jobs' statistics, re-estimates transitions and GMMs, mixes up to G Gaussians -> <iter+1>.mdl;
      appends `iter realigned loglike_per_frame frames num_gauss` to <exp-dir>/log/objf.tsv.
info: sizes of a model, one `name value` per line (as gmm-info).
"""
from __future__ import annotations

import logging
from pathlib import Path

import kaldi_hmm_gmm  # noqa: F401  (before kaldifst: import-order trap)

from esgd_asr.atomic import atomic_write_text
from esgd_asr.cli.options import (
    KaldiArgumentParser, add_dataclass_options, dataclass_from_args, parse_bool, run_job_command)
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.gmm.align import AlignOptions, ali_to_pdf, align_job, read_alignments
from esgd_asr.gmm.front_end import ModelFeatures
from esgd_asr.gmm.model import GmmHmm, PdfScorer
from esgd_asr.gmm.stats import EstimateOptions, GmmStats, estimate

log = logging.getLogger("esgd-gmm-train")


def accumulate(model: GmmHmm, source: ModelFeatures, alignments: dict) -> tuple[GmmStats, int]:
    """gmm-acc-stats-ali over the source's utterances that have an alignment; also the number without one."""
    info = model.transitions()
    scorer = PdfScorer(model.am)
    stats = GmmStats.zeros(scorer.num_gauss, model.dim, model.trans_model.num_transition_ids)
    missing = 0
    for utt in source.utts:
        if utt not in alignments:
            missing += 1
            continue
        feats = source.load(utt)
        where = f"{source.data_dir}: utterance '{utt}'"
        model.check_dim(feats, where)
        ali = alignments[utt]
        if len(ali) != feats.shape[0]:
            raise EsgdError(f"{where}: alignment has {len(ali)} frames, features {feats.shape[0]}")
        stats.add_utterance(scorer, feats, ali_to_pdf(ali, info), ali)
    return stats, missing


def cmd_acc(args) -> None:
    exp = Path(args.exp_dir)
    model = GmmHmm.load(exp / f"{args.iter}.mdl")
    source = ModelFeatures(args.data_dir, model.front_end, args.transforms).shard(args.nj, args.job)
    if args.realign:
        alignments = align_job(model, source, exp, args.job, dataclass_from_args(AlignOptions, args))
    else:
        alignments = dict(read_alignments(exp / f"ali.{args.job}.ark"))
    stats, missing = accumulate(model, source, alignments)
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
                           power=args.power, min_variance=args.min_variance,
                           remove_low_count_gaussians=args.remove_low_count_gaussians, seed=args.seed + args.iter)
    figures = estimate(model, stats, opts)
    objf = exp / "log" / "objf.tsv"  # before the model: a pass stopped in between is repeated whole
    header = "iter\trealigned\tloglike_per_frame\tframes\tnum_gauss\n"
    previous = header
    if objf.is_file() and args.iter > args.first_iter:  # the earlier passes' rows (a repeated pass replaces its own)
        previous += "".join(line for line in objf.read_text().splitlines(keepends=True)[1:]
                            if int(line.split("\t", 1)[0]) < args.iter)
    atomic_write_text(objf, previous + f"{args.iter}\t{int(args.realigned)}\t{figures['loglike_per_frame']:.6f}\t"
                                       f"{figures['frames']}\t{figures['num_gauss']}\n")
    model.save(exp / f"{args.iter + 1}.mdl")
    for path in paths:
        path.unlink()
    log.info("iteration %d: log-likelihood per frame %.4f over %d frames; GMM update %.4f / frame, transitions "
             "%.4f / frame; %d Gaussians -> %s", args.iter, figures["loglike_per_frame"], figures["frames"],
             figures["gmm_impr_per_frame"], figures["transition_impr_per_frame"], figures["num_gauss"],
             exp / f"{args.iter + 1}.mdl")


def cmd_info(args) -> None:
    model = GmmHmm.load(args.model)
    print(f"number-of-phones {len(model.phones())}\nnumber-of-pdfs {model.num_pdfs}\n"
          f"number-of-transition-ids {model.trans_model.num_transition_ids}\n"
          f"number-of-gaussians {model.am.num_gauss}\nfeature-dimension {model.dim}\n"
          f"context-width {model.context_width}\ncentral-position {model.central_position}")


def build_parser() -> KaldiArgumentParser:
    parser = KaldiArgumentParser(prog="esgd-gmm-train", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("acc", help="accumulate statistics of one job (realigning first if asked)")
    p.add_argument("--nj", type=int, required=True)
    p.add_argument("--job", type=int, required=True)
    p.add_argument("--realign", type=parse_bool, default=False, help="re-align the job with <iter>.mdl first")
    p.add_argument("--transforms", default=None, help="per-speaker feature transforms (fMLLR trans.J.ark / .scp)")
    add_dataclass_options(p, AlignOptions)
    p.add_argument("data_dir")
    p.add_argument("exp_dir")
    p.add_argument("iter", type=int)
    p.set_defaults(func=cmd_acc)
    p = sub.add_parser("est", help="re-estimate from the jobs' statistics")
    p.add_argument("--nj", type=int, required=True)
    p.add_argument("--mix-up", type=int, default=0, help="target number of Gaussians (0: no mixing up)")
    p.add_argument("--power", type=float, default=0.25, help="exponent of occupancy when allotting Gaussians")
    p.add_argument("--min-gaussian-occupancy", type=float, default=10.0)
    p.add_argument("--remove-low-count-gaussians", type=parse_bool, default=True,
                   help="drop Gaussians below --min-gaussian-occupancy (Kaldi's default)")
    p.add_argument("--min-variance", type=float, default=EstimateOptions.min_variance,
                   help="variance floor of the GMM update")
    p.add_argument("--realigned", type=parse_bool, default=False, help="alignments were redone before this pass")
    p.add_argument("--first-iter", type=int, default=0, help="the system's first pass: objf.tsv starts anew there")
    p.add_argument("--seed", type=int, default=0, help="seed of the mixing-up perturbations (plus the pass number)")
    p.add_argument("exp_dir")
    p.add_argument("iter", type=int)
    p.set_defaults(func=cmd_est)
    p = sub.add_parser("info", help="print the sizes of a model")
    p.add_argument("model")
    p.set_defaults(func=cmd_info)
    return parser


@cli_main
def main(argv=None):
    run_job_command(build_parser(), argv)


if __name__ == "__main__":
    main()
