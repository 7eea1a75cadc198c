"""The LDA and MLLT steps of steps/train_lda_mllt.sh (Kaldi's acc-lda + est-lda, gmm-acc-mllt + est-mllt +
gmm-transform-means + compose-transforms).

Usage: esgd-train-lda-mllt acc-lda --nj N --job J [--config conf/lda.conf] <data-dir> <lang-dir> <ali-dir> <dir>
(the options of conf/lda.conf, LdaMlltOptions, are accepted by every subcommand)
       esgd-train-lda-mllt est-lda --nj N [--config conf/lda.conf] <dir>
       esgd-train-lda-mllt acc-mllt --nj N --job J [--config conf/lda.conf] <data-dir> <lang-dir> <dir> <iter>
       esgd-train-lda-mllt est-mllt --nj N [--config conf/lda.conf] <dir> <iter>

acc-lda:  LDA statistics of job J's CMVN'd feats spliced +-context frames, classes = the pdfs (senones) of the
          previous system's alignments (<ali-dir>/ali.*.ark, <ali-dir>/final.mdl); frames of silence phones weighted
          by --silence-weight -> <dir>/lda.J.acc.
est-lda:  sums them, estimates the --dim LDA transform -> <dir>/0.mat (Kaldi binary matrix).
acc-mllt: MLLT statistics of job J's frames under <dir>/<iter>.mdl (its front end, its alignments ali.J.ark;
          Gaussian posteriors within the aligned pdf) -> <dir>/mllt.J.acc.
est-mllt: sums them, estimates the square MLLT transform A, and rewrites <dir>/<iter>.mdl with the front end's
          matrix A . final.mat and means A mu (variances are re-estimated by the next pass) -> <iter>.mat.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import kaldi_hmm_gmm  # noqa: F401  (before kaldifst: import-order trap)
import numpy as np
import torch

from esgd_asr.cli.options import KaldiArgumentParser, add_dataclass_options, dataclass_from_args, run_job_command
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.features.affine_io import write_matrix
from esgd_asr.features.feature_source import FeatureSource, FrontEnd
from esgd_asr.features.lda import LdaAccs, LdaMlltOptions
from esgd_asr.features.mllt import DiagGaussians, MlltAccs, compose_mllt
from esgd_asr.features.transforms import splice
from esgd_asr.gmm.align import ali_to_pdf, read_alignment_dir, read_alignments
from esgd_asr.gmm.front_end import LdaFrontEnd, ModelFeatures
from esgd_asr.gmm.lang_dir import LangDir
from esgd_asr.gmm.model import GmmHmm, transform_means
from esgd_asr.option_file import expand_option_files

log = logging.getLogger("esgd-train-lda-mllt")


def frame_weights(ali: np.ndarray, info, silence: set[int], silence_weight: float) -> np.ndarray:
    """Kaldi's weight-silence-post on an alignment: `silence_weight` on frames of silence phones, else 1."""
    return np.where(np.isin(info.phone[ali], list(silence)), silence_weight, 1.0)


def cmd_acc_lda(args) -> None:
    opts = dataclass_from_args(LdaMlltOptions, args)
    lang = LangDir.read(args.lang_dir)
    old = GmmHmm.load(Path(args.ali_dir) / "final.mdl")
    info = old.transitions()
    cmvn = getattr(old.front_end, "cmvn", True)
    source = FeatureSource(args.data_dir, FrontEnd(cmvn=cmvn)).shard(args.nj, args.job)
    alignments = read_alignment_dir(args.ali_dir)
    accs = None
    used = 0
    for utt in source.utts:
        if utt not in alignments:
            continue
        x = splice(source.load(utt), opts.left_context, opts.right_context)
        ali = alignments[utt]
        where = f"{args.data_dir}: utterance '{utt}'"
        if accs is None:
            accs = LdaAccs(old.num_pdfs, x.shape[1])
        accs.accumulate(x, torch.from_numpy(ali_to_pdf(ali, info)),
                        frame_weights(ali, info, set(lang.silence), opts.silence_weight), where)
        used += 1
    if accs is None:
        raise EsgdError(f"{args.ali_dir}: no alignment for any utterance of job {args.job}")
    accs.save(Path(args.dir) / f"lda.{args.job}.acc")
    log.info("job %d: LDA statistics of %d utterances, %.0f weighted frames", args.job, used, accs.count)


def cmd_est_lda(args) -> None:
    opts = dataclass_from_args(LdaMlltOptions, args)
    out = Path(args.dir)
    parts = [out / f"lda.{job}.acc" for job in range(1, args.nj + 1)]
    accs = LdaAccs.load(parts[0])
    for path in parts[1:]:
        accs += LdaAccs.load(path)
    result = accs.estimate(opts.dim, opts.remove_offset, opts.allow_large_dim)
    write_matrix(out / "0.mat", result.matrix)
    for path in parts:
        path.unlink()
    log.info("LDA: %d -> %d dims over %.0f frames; kept %.1f%% of the between-class variance -> %s",
             accs.dim, opts.dim, result.count, 100 * float(result.eigenvalues[:opts.dim].sum()
                                                            / result.eigenvalues.sum()), out / "0.mat")


def cmd_acc_mllt(args) -> None:
    opts = dataclass_from_args(LdaMlltOptions, args)
    exp = Path(args.dir)
    lang = LangDir.read(args.lang_dir)
    model = GmmHmm.load(exp / f"{args.iter}.mdl")
    info = model.transitions()
    gaussians = DiagGaussians.from_am(model.am)
    source = ModelFeatures(args.data_dir, model.front_end).shard(args.nj, args.job)
    alignments = dict(read_alignments(exp / f"ali.{args.job}.ark"))
    accs = MlltAccs(model.dim)
    loglike, used = 0.0, 0
    for utt in source.utts:
        if utt not in alignments:
            continue
        ali = alignments[utt]
        feats = source.load(utt)
        where = f"{args.data_dir}: utterance '{utt}'"
        loglike += accs.accumulate_gmm(feats, gaussians, torch.from_numpy(ali_to_pdf(ali, info)),
                                       frame_weights(ali, info, set(lang.silence), opts.silence_weight), where)
        used += 1
    accs.save(exp / f"mllt.{args.job}.acc")
    log.info("iteration %d job %d: MLLT statistics of %d utterances, %.0f frames, log-likelihood per frame %.4f",
             args.iter, args.job, used, accs.beta, loglike / max(accs.beta, 1.0))


def cmd_est_mllt(args) -> None:
    opts = dataclass_from_args(LdaMlltOptions, args)
    exp = Path(args.dir)
    parts = [exp / f"mllt.{job}.acc" for job in range(1, args.nj + 1)]
    accs = MlltAccs.load(parts[0])
    for path in parts[1:]:
        accs += MlltAccs.load(path)
    model_path = exp / f"{args.iter}.mdl"
    model = GmmHmm.load(model_path)
    if not isinstance(model.front_end, LdaFrontEnd):
        raise EsgdError(f"{model_path}: MLLT needs a model with an LDA front end")
    result = accs.update(num_iters=opts.mllt_update_iters)
    matrix = compose_mllt(result.matrix, model.front_end.matrix)
    model.front_end = model.front_end.with_matrix(matrix)
    transform_means(model.am, result.matrix)
    write_matrix(exp / f"{args.iter}.mat", matrix)
    model.save(model_path)
    for path in parts:
        path.unlink()
    log.info("iteration %d: MLLT objective improvement %.4f per frame over %.0f frames -> %s, %s", args.iter,
             result.objf_impr_per_frame, result.count, exp / f"{args.iter}.mat", model_path)


def build_parser() -> KaldiArgumentParser:
    parser = KaldiArgumentParser(prog="esgd-train-lda-mllt", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, positional, job in (
            ("acc-lda", cmd_acc_lda, ("data_dir", "lang_dir", "ali_dir", "dir"), True),
            ("est-lda", cmd_est_lda, ("dir",), False),
            ("acc-mllt", cmd_acc_mllt, ("data_dir", "lang_dir", "dir", "iter"), True),
            ("est-mllt", cmd_est_mllt, ("dir", "iter"), False)):
        p = sub.add_parser(name)
        p.add_argument("--nj", type=int, required=True)
        if job:
            p.add_argument("--job", type=int, required=True)
        add_dataclass_options(p, LdaMlltOptions)
        for arg in positional:
            p.add_argument(arg, type=int if arg == "iter" else str)
        p.set_defaults(func=func)
    return parser


@cli_main
def main(argv=None):
    # --config FILE's options right after the subcommand, where its parser sees them
    run_job_command(build_parser(), expand_option_files(list(sys.argv[1:] if argv is None else argv), after=1))


if __name__ == "__main__":
    main()
