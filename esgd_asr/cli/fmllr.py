"""Per-speaker fMLLR transforms of a GMM-HMM system and the speaker-adapted features they give (Kaldi's
gmm-est-fmllr + compose-transforms, and transform-feats as steps/nnet/make_fmllr_feats.sh runs it).

Usage: esgd-fmllr est --nj N --job J [--alignments DIR | --lattices DIR [--lm-weight 12]] [--transforms prev.J.ark]
                      [--fmllr-update-type full] [--fmllr-min-count 500] [--fmllr-num-iters 40]
                      [--silence-weight 0.0 --silence-phones phones/silence.int] <data-dir> <model> <trans-out.J.ark>
       esgd-fmllr make-feats --nj N --job J [--transforms trans.J.ark] <data-dir> <model> <feats-dir>

est:        for each speaker of job J: frame posteriors on pdfs from --alignments (ali.*.ark of DIR) or from the
            best path of the lattices DIR/lat.J.gz at --lm-weight (decode_fmllr's first pass), silence frames
            weighted by --silence-weight; Gaussian posteriors within those pdfs under <model> on the features
            through the model's front end and the speaker's previous transform (--transforms); the fMLLR update;
            the result composed with the previous transform -> trans-out (ark keyed by speaker, written
            beside and renamed into place, so it may be the --transforms file).
make-feats: job J's features through the model's front end (LDA+MLLT, not spliced after it) and the speaker's
            transform -> <feats-dir>/feats.J.ark + feats.J.scp (kaldiio).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import kaldi_hmm_gmm  # noqa: F401  (before kaldifst: import-order trap)
import kaldiio
import numpy as np
import torch

from esgd_asr.cli.options import KaldiArgumentParser, run_job_command
from esgd_asr.decode.lattice import best_path_labels, read_lattice_archive
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.features.affine_io import compose_affine, identity_affine
from esgd_asr.features.feature_io import ArkScpWriter
from esgd_asr.features.fmllr import FmllrAccs, FmllrOptions
from esgd_asr.features.mllt import DiagGaussians
from esgd_asr.gmm.align import ali_to_pdf, read_alignment_dir
from esgd_asr.gmm.front_end import ModelFeatures
from esgd_asr.gmm.model import GmmHmm
from esgd_asr.gmm.questions import read_int_sets

log = logging.getLogger("esgd-fmllr")


def lattice_alignments(decode_dir: Path, job: int, lm_weight: float) -> dict[str, np.ndarray]:
    """Transition-ids of each lattice's best path (graph cost + acoustic cost / lm_weight)."""
    out = {}
    for utt, lat in read_lattice_archive(decode_dir / f"lat.{job}.gz"):
        tids = best_path_labels(lat, lm_weight, f"{decode_dir}: lattice '{utt}'")
        if tids:
            out[utt] = np.asarray(tids, dtype=np.int64)
    return out


def cmd_est(args) -> None:
    if bool(args.alignments) == bool(args.lattices):
        raise EsgdError("esgd-fmllr est: give exactly one of --alignments and --lattices")
    opts = FmllrOptions(args.fmllr_update_type, args.fmllr_min_count, args.fmllr_num_iters)
    model = GmmHmm.load(args.model)
    info = model.transitions()
    silence = np.zeros(len(info.phone), dtype=bool)
    if args.silence_weight != 1.0:
        if not args.silence_phones:
            raise EsgdError("--silence-weight other than 1 needs --silence-phones (phones/silence.int)")
        silence = np.isin(info.phone, [p for row in read_int_sets(args.silence_phones) for p in row])
    gaussians = DiagGaussians.from_am(model.am)
    source = ModelFeatures(args.data_dir, model.front_end, args.transforms).shard(args.nj, args.job)
    alignments = (read_alignment_dir(args.alignments) if args.alignments
                  else lattice_alignments(Path(args.lattices), args.job, args.lm_weight))
    transforms, impr, frames, missing = {}, 0.0, 0.0, 0
    for spk, utts in source.spk2utt().items():
        accs = FmllrAccs(model.dim)
        for utt in utts:
            if utt not in alignments:
                missing += 1
                continue
            feats = source.load(utt)
            ali = alignments[utt]
            where = f"{args.data_dir}: utterance '{utt}'"
            if len(ali) != feats.shape[0]:
                raise EsgdError(f"{where}: alignment of {len(ali)} frames, features of {feats.shape[0]}")
            weights = np.where(silence[ali], args.silence_weight, 1.0)
            accs.accumulate_gmm(feats, gaussians, torch.from_numpy(ali_to_pdf(ali, info)), weights, where)
        result = accs.update(opts, name=f"speaker '{spk}'")
        previous = source.transform_of(utts[0])
        previous = identity_affine(model.dim) if previous is None else torch.from_numpy(previous)
        transforms[spk] = compose_affine(result.matrix, previous).numpy()
        impr += result.objf_impr
        frames += result.count
    out = Path(args.trans_out)
    tmp = out.parent / f".{out.name}.tmp"  # written beside and renamed: the output may replace --transforms
    kaldiio.save_ark(str(tmp), {spk: transforms[spk].astype(np.float32) for spk in sorted(transforms, key=str.encode)})
    os.replace(tmp, out)
    log.info("job %d: fMLLR transforms of %d speakers over %.0f weighted frames, objective improvement %.4f per "
             "frame; %d utterances without alignment -> %s", args.job, len(transforms), frames,
             impr / max(frames, 1.0), missing, out)


def cmd_make_feats(args) -> None:
    model = GmmHmm.load(args.model)
    source = ModelFeatures(args.data_dir, model.front_end, args.transforms).shard(args.nj, args.job)
    out = Path(args.feats_dir)
    out.mkdir(parents=True, exist_ok=True)
    with ArkScpWriter(out / f"feats.{args.job}.ark", out / f"feats.{args.job}.scp") as writer:
        for utt in source.utts:
            writer.write(utt, source.load(utt).numpy().astype(np.float32))
    log.info("job %d: %d utterances of %d-dim speaker-adapted features -> %s", args.job, len(source.utts),
             model.dim, out / f"feats.{args.job}.scp")


def build_parser() -> KaldiArgumentParser:
    parser = KaldiArgumentParser(prog="esgd-fmllr", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("est", help="per-speaker fMLLR transforms of one job -> trans.J.ark")
    p.add_argument("--nj", type=int, required=True)
    p.add_argument("--job", type=int, required=True)
    p.add_argument("--alignments", default=None, help="alignment dir (ali.*.ark) giving the frames' pdfs")
    p.add_argument("--lattices", default=None, help="decode dir whose lat.J.gz best paths give the frames' pdfs")
    p.add_argument("--lm-weight", type=float, default=12.0, help="LM weight of the lattice best path")
    p.add_argument("--transforms", default=None, help="the speakers' current transforms (trans.J.ark / .scp)")
    p.add_argument("--silence-weight", type=float, default=0.0, help="weight of frames of silence phones")
    p.add_argument("--silence-phones", default=None, help="the silence phones (a lang's phones/silence.int)")
    defaults = FmllrOptions()
    p.add_argument("--fmllr-update-type", default=defaults.update_type, help="full|diag|offset|none")
    p.add_argument("--fmllr-min-count", type=float, default=defaults.min_count,
                   help="speakers with fewer frames keep their transform")
    p.add_argument("--fmllr-num-iters", type=int, default=defaults.num_iters, help="row sweeps of the update")
    for name in ("data_dir", "model", "trans_out"):
        p.add_argument(name)
    p.set_defaults(func=cmd_est)
    p = sub.add_parser("make-feats", help="speaker-adapted features of one job -> feats.J.ark / .scp")
    p.add_argument("--nj", type=int, required=True)
    p.add_argument("--job", type=int, required=True)
    p.add_argument("--transforms", default=None, help="the speakers' transforms (trans.J.ark / .scp)")
    for name in ("data_dir", "model", "feats_dir"):
        p.add_argument(name)
    p.set_defaults(func=cmd_make_feats)
    return parser


@cli_main
def main(argv=None):
    run_job_command(build_parser(), argv)


if __name__ == "__main__":
    main()
