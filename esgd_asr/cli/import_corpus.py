"""Prepare a locally present corpus through lhotse: manifests plus Kaldi data dirs train/dev/test.

Usage: esgd-import-corpus --corpus kaldi:<dir>|librispeech|switchboard [--corpus-dir DIR] [--sample-rate 16000]
                          [--resample false] <manifest-dir> <data-root>

A kaldi: corpus whose audio is at another rate than --sample-rate stops here, or with --resample true gets a sox
resampling stage in each wav.scp entry. Its reco2file_and_channel (CTM scoring), where present, is checked as Kaldi's
validate_data_dir.sh does and carried over.
"""
from pathlib import Path

from esgd_asr.cli.options import KaldiArgumentParser, parse_bool
from esgd_asr.data.corpus_summary import print_summary
from esgd_asr.data.manifests import (import_kaldi_corpus, prepare_librispeech_corpus, prepare_switchboard_corpus,
                                     write_corpus)
from esgd_asr.errors import EsgdError, cli_main


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="kaldi:<dir with train/dev/test>, librispeech or switchboard")
    parser.add_argument("--corpus-dir", type=Path, help="root of the LibriSpeech / Switchboard corpus")
    parser.add_argument("--sample-rate", type=int, default=16000, help="sampling rate of a kaldi: corpus")
    parser.add_argument("--resample", type=parse_bool, default=False,
                        help="resample a kaldi: corpus at another rate to --sample-rate")
    parser.add_argument("--nj", type=int, default=1)
    parser.add_argument("manifest_dir", type=Path)
    parser.add_argument("data_root", type=Path)
    args = parser.parse_args(argv)
    if args.corpus.startswith("kaldi:"):
        name, splits = "kaldi", import_kaldi_corpus(Path(args.corpus[len("kaldi:"):]), args.sample_rate,
                                                    args.resample)
    elif args.corpus in ("librispeech", "switchboard"):
        if args.corpus_dir is None or not args.corpus_dir.is_dir():
            raise EsgdError(f"--corpus {args.corpus} needs --corpus-dir pointing at the corpus (got {args.corpus_dir})")
        prepare = prepare_librispeech_corpus if args.corpus == "librispeech" else prepare_switchboard_corpus
        name, splits = args.corpus, prepare(args.corpus_dir, args.manifest_dir, args.nj)
    else:
        raise EsgdError(f"--corpus: unknown corpus '{args.corpus}' (synth, kaldi:<dir>, librispeech, switchboard)")
    source_root = Path(args.corpus[len("kaldi:"):]) if name == "kaldi" else None
    print_summary(write_corpus(splits, name, args.manifest_dir, args.data_root, source_root=source_root))


if __name__ == "__main__":
    main()
