"""Build a Kaldi lang dir from a dict dir (as Kaldi's utils/prepare_lang.sh).

Usage: esgd-prepare-lang [--sil-prob 0.5] <dict-dir> <oov-word> <lang-dir>
"""
from pathlib import Path

from esgd_asr.cli.options import KaldiArgumentParser
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.graph.lang import prepare_lang


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sil-prob", type=float, default=0.5, help="optional-silence probability between words")
    parser.add_argument("dict_dir", type=Path)
    parser.add_argument("oov_word")
    parser.add_argument("lang_dir", type=Path)
    args = parser.parse_args(argv)
    if not 0 <= args.sil_prob < 1:
        raise EsgdError(f"--sil-prob must be in [0, 1), got {args.sil_prob}")
    prepare_lang(args.dict_dir, args.oov_word, args.lang_dir, args.sil_prob)
    print(f"{args.lang_dir}: lang dir written")


if __name__ == "__main__":
    main()
