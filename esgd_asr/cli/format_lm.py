"""Make a test lang dir: a copy of the lang dir with G.fst from an ARPA LM (as Kaldi's utils/format_lm.sh).

Usage: esgd-format-lm <lang-dir> <lm.arpa> <lang-test-dir>
"""
import shutil
from pathlib import Path

from esgd_asr.atomic import replace_dir
from esgd_asr.cli.options import KaldiArgumentParser
from esgd_asr.data.kaldi_dir import read_table
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.graph.lm import arpa_to_g_fst, arpa_vocabulary


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lang_dir", type=Path)
    parser.add_argument("arpa", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    if not args.arpa.is_file():
        raise EsgdError(f"{args.arpa}: no such file")
    words = read_table(args.lang_dir / "words.txt")
    missing = sorted(arpa_vocabulary(args.arpa) - set(words) - {"<s>", "</s>"})
    if missing:
        raise EsgdError(f"{args.arpa}: {len(missing)} LM words are not in {args.lang_dir / 'words.txt'} "
                        f"(e.g. {' '.join(missing[:5])}); build the lexicon from the LM text too")
    tmp = args.out_dir.parent / f".{args.out_dir.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(args.lang_dir, tmp)
    arpa_to_g_fst(args.arpa, args.lang_dir / "words.txt", tmp / "G.fst")
    replace_dir(tmp, args.out_dir)
    print(f"{args.out_dir}: G.fst written from {args.arpa}")


if __name__ == "__main__":
    main()
