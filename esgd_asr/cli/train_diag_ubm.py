"""Train the diagonal UBM of the i-vector extractor on a data dir's features, like Kaldi's train_diag_ubm.sh.

Usage: esgd-train-diag-ubm [options] <data-dir> <exp-dir>
Reads <data-dir>/feats.scp (with utt2spk and cmvn.scp for --cmvn=true), keeps every --subsample'th frame (at
most --max-frames of them, a uniform random sample beyond that) in memory, and writes <exp-dir>/final.dubm,
which records the front end (CMVN, deltas) for the later i-vector stages. The model after the initialisation
(0.dubm) and after each EM pass N (N.dubm) is kept, the newest only: --stage N continues a stopped run from it,
ending with the model of an uninterrupted run.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from esgd_asr.cli.options import KaldiArgumentParser, add_device_option, add_dataclass_options, dataclass_from_args
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.features.feature_source import FeatureSource, FrontEnd
from esgd_asr.features.ubm import DiagGmm, NumberedModels, UbmOptions, train_diag_ubm

log = logging.getLogger(__name__)


def collect_frames(source: FeatureSource, subsample: int, max_frames: int, seed: int) -> np.ndarray:
    """Every `subsample`'th frame of every utterance; beyond `max_frames`, a uniform sample (reservoir)."""
    rng = np.random.default_rng(seed)
    chunks, buf, seen, dim = [], None, 0, None
    for utt, feats in tqdm(source, desc="reading features", unit="utt", leave=False):
        if dim is None:
            dim = feats.shape[1]
        elif feats.shape[1] != dim:
            raise EsgdError(f"{source.feats.scp}: utterance '{utt}' has dimension {feats.shape[1]}, "
                            f"earlier utterances {dim}")
        x = feats[::subsample].numpy()
        if buf is None:
            take = min(len(x), max_frames - seen)
            chunks.append(x[:take])
            seen += take
            x = x[take:]
            if seen < max_frames:
                continue
            buf = np.concatenate(chunks)
        counts = seen + np.arange(1, len(x) + 1)
        accept = rng.random(len(x)) < max_frames / counts
        buf[rng.integers(0, max_frames, int(accept.sum()))] = x[accept]
        seen += len(x)
    if dim is None:
        raise EsgdError(f"{source.feats.scp}: no utterances")
    log.info("kept %d of %d frames (subsample %d)", min(seen, max_frames), seen, subsample)
    return buf if buf is not None else np.concatenate(chunks)


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(prog="esgd-train-diag-ubm", description=__doc__.splitlines()[0])
    add_dataclass_options(parser, UbmOptions)
    add_dataclass_options(parser, FrontEnd)
    parser.add_argument("--subsample", type=int, default=2, help="keep every n'th frame (default: 2)")
    parser.add_argument("--max-frames", type=int, default=2000000, help="frames kept in memory (default: 2000000)")
    add_device_option(parser)
    parser.add_argument("--stage", type=int, default=-1,
                        help="-1: afresh; N >= 0: continue a stopped run from <exp-dir>/N.dubm (default: -1)")
    parser.add_argument("data_dir")
    parser.add_argument("exp_dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name in ("subsample", "max_frames", "num_gauss", "num_frames"):
        if getattr(args, name) < 1:
            raise EsgdError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.stage > args.num_iters:
        raise EsgdError(f"--stage {args.stage}: there are only --num-iters {args.num_iters} passes")
    device = torch.device(args.device)
    front_end, opts = dataclass_from_args(FrontEnd, args), dataclass_from_args(UbmOptions, args)
    exp_dir = Path(args.exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    models = NumberedModels(exp_dir, ".dubm", lambda model, path: model.save(path, front_end))
    start = None
    if args.stage < 0:
        models.clear()
    else:
        gmm, saved_front_end = DiagGmm.load(models.path(args.stage))
        if saved_front_end != front_end:
            raise EsgdError(f"--stage {args.stage}: {models.path(args.stage)} has another front end "
                            f"({saved_front_end}) than the options ({front_end})")
        start = (args.stage, gmm)
        log.info("continuing from %s", models.path(args.stage))
    if start is None or args.stage < opts.num_iters:
        source = FeatureSource(args.data_dir, front_end)
        frames = collect_frames(source, args.subsample, args.max_frames, opts.srand)
        log.info("training a %d-Gaussian UBM on %d frames of dimension %d", opts.num_gauss, *frames.shape)
        gmm = train_diag_ubm(torch.from_numpy(frames), opts, device, start=start, checkpoint=models)
    out = exp_dir / "final.dubm"
    gmm.save(out, front_end)
    log.info("wrote %s (%d Gaussians)", out, gmm.num_gauss)


if __name__ == "__main__":
    main()
