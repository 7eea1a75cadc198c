"""Synthesise the default corpus and write its lhotse manifests and Kaldi data dirs.

Usage: esgd-make-synth-corpus [--config conf/synth.conf] [--nj N] <corpus-dir> <manifest-dir> <data-root>
"""
import os
from pathlib import Path

from esgd_asr.cli.options import KaldiArgumentParser, add_dataclass_options, dataclass_from_args
from esgd_asr.data.corpus_summary import print_summary
from esgd_asr.data.manifests import write_corpus
from esgd_asr.data.synth.corpus import SynthConfig, make_synth_corpus
from esgd_asr.errors import cli_main


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nj", type=int, default=os.cpu_count(), help="parallel synthesis processes")
    add_dataclass_options(parser, SynthConfig)
    parser.add_argument("corpus_dir", type=Path, help="where the wav files go")
    parser.add_argument("manifest_dir", type=Path, help="where the lhotse manifests go")
    parser.add_argument("data_root", type=Path, help="parent of the train/dev/test Kaldi data dirs")
    args = parser.parse_args(argv)
    cfg = dataclass_from_args(SynthConfig, args)
    splits = make_synth_corpus(cfg, args.corpus_dir, max(1, args.nj))
    print_summary(write_corpus(splits, "synth", args.manifest_dir, args.data_root, check_audio=True))


if __name__ == "__main__":
    main()
