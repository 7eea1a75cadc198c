"""Train a total-variability i-vector extractor on a data dir, like Kaldi's train_ivector_extractor.sh.

Usage: esgd-train-ivector-extractor [options] <data-dir> <ubm-dir|final.dubm> <exp-dir>
Computes the Baum-Welch stats of every utterance of <data-dir>/feats.scp once under the UBM, through the front
end recorded in final.dubm (memory-mapped in <exp-dir>/stats.tmp/, deleted at the end); runs --num-iters EM
passes logging the objective of each; writes <exp-dir>/final.ie (embedding UBM, front end, posterior options).
The model before EM pass N is kept as <exp-dir>/N.ie (the newest only; 0.ie is the initial one): --stage N
continues a stopped run from it (with the stopped run's stats when they were complete), ending with the model of
an uninterrupted run.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from esgd_asr.cli.options import KaldiArgumentParser, add_device_option, add_dataclass_options, dataclass_from_args
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.features.ivector import (IvectorExtractor, IvectorTrainOptions, PosteriorOptions, TrainingStats,
                                       train_extractor, utterance_stats)
from esgd_asr.features.feature_source import FeatureSource
from esgd_asr.features.ubm import DiagGmm, NumberedModels

log = logging.getLogger(__name__)


def model_path(path: str, name: str) -> Path:
    """`path` itself if it is a file, else `path`/`name` (an exp dir)."""
    path = Path(path)
    return path / name if path.is_dir() else path


def compute_training_stats(source: FeatureSource, ubm: DiagGmm, opts: PosteriorOptions, ubm_file: Path,
                           stats_dir: Path) -> TrainingStats:
    """Per-utterance stats into memory-mapped .npy files under `stats_dir`, and the total second order; a
    `complete` file marks them done."""
    stats_dir.mkdir(parents=True, exist_ok=True)
    (stats_dir / "complete").unlink(missing_ok=True)
    gamma = np.lib.format.open_memmap(stats_dir / "gamma.npy", mode="w+", dtype=np.float32,
                                      shape=(len(source), ubm.num_gauss))
    first = np.lib.format.open_memmap(stats_dir / "first.npy", mode="w+", dtype=np.float32,
                                      shape=(len(source), ubm.num_gauss, ubm.dim))
    second_total = torch.zeros(ubm.num_gauss, ubm.dim, dtype=torch.float64, device=ubm.means.device)
    for i, (utt, feats) in enumerate(tqdm(source, desc="Baum-Welch stats", unit="utt", leave=False)):
        where = f"{source.feats.scp}: utterance '{utt}' vs {ubm_file}"
        g, f, s = utterance_stats(ubm, feats, opts, where)
        gamma[i], first[i] = g.cpu().numpy(), f.cpu().numpy()
        second_total += s
    gamma.flush()
    first.flush()
    np.save(stats_dir / "second.npy", second_total.cpu().numpy())
    (stats_dir / "complete").touch()
    log.info("stats of %d utterances, %.1f (scaled) frames", len(source), float(gamma.sum(dtype=np.float64)))
    return TrainingStats(gamma, first, second_total)


def load_training_stats(stats_dir: Path, num_utts: int, device) -> TrainingStats | None:
    """The stats a stopped run left complete in `stats_dir` for `num_utts` utterances, else None."""
    if not (stats_dir / "complete").is_file():
        return None
    gamma = np.load(stats_dir / "gamma.npy", mmap_mode="c")
    if len(gamma) != num_utts:
        return None
    log.info("using the stats of the stopped run in %s", stats_dir)
    return TrainingStats(gamma, np.load(stats_dir / "first.npy", mmap_mode="c"),
                         torch.from_numpy(np.load(stats_dir / "second.npy")).to(device))


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(prog="esgd-train-ivector-extractor", description=__doc__.splitlines()[0])
    add_dataclass_options(parser, IvectorTrainOptions)
    add_dataclass_options(parser, PosteriorOptions)
    add_device_option(parser)
    parser.add_argument("--stage", type=int, default=-1,
                        help="-1: afresh; N >= 0: continue a stopped run from <exp-dir>/N.ie (default: -1)")
    parser.add_argument("data_dir")
    parser.add_argument("ubm")
    parser.add_argument("exp_dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    opts, post_opts = dataclass_from_args(IvectorTrainOptions, args), dataclass_from_args(PosteriorOptions, args)
    if opts.ivector_dim < 2 or opts.utts_per_batch < 1 or post_opts.num_gselect < 1:
        raise EsgdError("--ivector-dim must be at least 2, --utts-per-batch and --num-gselect at least 1")
    if args.stage > opts.num_iters:
        raise EsgdError(f"--stage {args.stage}: there are only --num-iters {opts.num_iters} passes")
    device = torch.device(args.device)
    ubm_file = model_path(args.ubm, "final.dubm")
    ubm, front_end = DiagGmm.load(ubm_file)
    ubm = ubm.to(device=device)
    source = FeatureSource(args.data_dir, front_end)
    if len(source) == 0:
        raise EsgdError(f"{source.feats.scp}: no utterances")
    exp_dir = Path(args.exp_dir)
    stats_dir = exp_dir / "stats.tmp"
    models = NumberedModels(exp_dir, ".ie", IvectorExtractor.save)
    if args.stage < 0:
        models.clear()
        ie = IvectorExtractor.initialize(ubm, front_end, opts.ivector_dim, post_opts, opts.srand)
        models(0, ie)
    else:
        ie = IvectorExtractor.load(models.path(args.stage)).to(device)
        if not all(torch.equal(getattr(ie.ubm, k).cpu(), getattr(ubm, k).float().cpu())
                   for k in ("weights", "means", "variances")):
            raise EsgdError(f"--stage {args.stage}: {models.path(args.stage)} was trained on another UBM than "
                            f"{ubm_file}; start afresh (--stage -1)")
        log.info("continuing from %s", models.path(args.stage))
    first = max(args.stage, 0)
    if first < opts.num_iters:
        stats = (load_training_stats(stats_dir, len(source), device) if args.stage >= 0 else None) \
            or compute_training_stats(source, ubm, post_opts, ubm_file, stats_dir)
        log.info("training a %d-dim extractor: %d Gaussians, feature dim %d, iterations %d..%d",
                 opts.ivector_dim, ie.num_gauss, ie.feat_dim, first, opts.num_iters - 1)
        ie = train_extractor(ie, stats, opts, first_iter=first, checkpoint=models)
        del stats
    ie.save(exp_dir / "final.ie")
    log.info("wrote %s", exp_dir / "final.ie")
    shutil.rmtree(stats_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
