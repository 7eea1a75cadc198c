"""Extract i-vectors for a data dir (Kaldi's extract_ivectors_online.sh / extract_ivectors.sh).

Usage: esgd-extract-ivectors [options] <data-dir> <extractor-dir|final.ie> <ivector-dir>
Features of <data-dir>/feats.scp go through the front end recorded in final.ie. Outputs in <ivector-dir>, with a
`.JOB` infix when --nj > 1 (job --job of --nj, speakers split in contiguous blocks):
  ivector_online.{ark,scp}  per utterance, a matrix with an i-vector every --ivector-period frames, each from the
                            utterance's frames so far (--online=true; also writes `ivector_period`)
  ivectors_utt.{ark,scp}    one i-vector per utterance (--per-utt=true)
  ivectors_spk.{ark,scp}    one i-vector per speaker from its pooled stats (--per-spk=true)
A job that fails leaves no ark and no scp behind.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from esgd_asr.atomic import atomic_write_text
from esgd_asr.cli.options import KaldiArgumentParser, add_device_option, add_dataclass_options, dataclass_from_args
from esgd_asr.cli.train_ivector_extractor import model_path
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.features.feature_io import ArkScpWriter
from esgd_asr.features.feature_source import FeatureSource
from esgd_asr.features.ivector import IvectorExtractor

log = logging.getLogger(__name__)


@dataclass
class ExtractOptions:
    """Options of extract_ivectors.py (sharding, online period, which outputs)."""

    nj: int = 1
    job: int = 1
    ivector_period: int = 10
    max_count: float = 0.0
    online: bool = True
    per_utt: bool = False
    per_spk: bool = False


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(prog="esgd-extract-ivectors", description=__doc__.splitlines()[0])
    add_dataclass_options(parser, ExtractOptions)
    add_device_option(parser)
    parser.add_argument("data_dir")
    parser.add_argument("extractor")
    parser.add_argument("ivector_dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    opts = dataclass_from_args(ExtractOptions, args)
    if not (opts.online or opts.per_utt or opts.per_spk):
        raise EsgdError("nothing to do: --online, --per-utt and --per-spk are all false")
    if opts.ivector_period < 1 or opts.nj < 1:
        raise EsgdError("--ivector-period and --nj must be positive")
    device = torch.device(args.device)
    ie_file = model_path(args.extractor, "final.ie")
    ie = IvectorExtractor.load(ie_file).to(device)
    source = FeatureSource(args.data_dir, ie.front_end).shard(opts.nj, opts.job)
    out_dir = Path(args.ivector_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    infix = f".{opts.job}" if opts.nj > 1 else ""
    names = [n for n, on in (("ivector_online", opts.online), ("ivectors_utt", opts.per_utt),
                             ("ivectors_spk", opts.per_spk)) if on]
    with contextlib.ExitStack() as stack:
        # the scp names the arks as --ivector-dir was given (relative in a recipe, as Kaldi's), so exp/ can move
        writers = {n: stack.enter_context(ArkScpWriter(out_dir / f"{n}{infix}.ark", out_dir / f"{n}{infix}.scp"))
                   for n in names}
        spk_stats: dict[str, list[torch.Tensor]] = {}
        for utt, feats in tqdm(source, desc="extracting i-vectors", unit="utt", leave=False):
            where = f"{source.feats.scp}: utterance '{utt}' vs {ie_file}"
            x = feats.to(device)
            if opts.online:
                online = ie.extract_online(x, opts.ivector_period, opts.max_count, where)
                writers["ivector_online"].write(utt, online.float().cpu().numpy())
            if opts.per_utt or opts.per_spk:
                gamma, first, _ = ie.stats(x, where)
                if opts.per_utt:
                    ivector = ie.ivectors_from_stats(gamma[None], first[None], opts.max_count)[0]
                    writers["ivectors_utt"].write(utt, ivector.float().cpu().numpy())
                if opts.per_spk:
                    acc = spk_stats.setdefault(source.utt2spk[utt], [torch.zeros_like(gamma), torch.zeros_like(first)])
                    acc[0] += gamma
                    acc[1] += first
        for spk in sorted(spk_stats, key=str.encode):
            gamma, first = spk_stats[spk]
            ivector = ie.ivectors_from_stats(gamma[None], first[None], opts.max_count)[0]
            writers["ivectors_spk"].write(spk, ivector.float().cpu().numpy())
    if opts.online:
        atomic_write_text(out_dir / "ivector_period", f"{opts.ivector_period}\n")
    log.info("job %d/%d: %d utterances, %d speakers -> %s", opts.job, opts.nj, len(source),
             len(source.spk2utt()), ", ".join(f"{n}{infix}.scp" for n in names))


if __name__ == "__main__":
    main()
