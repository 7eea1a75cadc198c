"""Build the dictionary dir (data/local/dict) for the words of the given data dirs' transcripts.

Usage: esgd-prepare-dict <dict-dir> <data-dir> [<data-dir> ...]
CMUdict pronounces the words it knows; espeak-ng guesses the rest, each listed in <dict-dir>/g2p_oov.log.
"""
from pathlib import Path

from esgd_asr.cli.options import KaldiArgumentParser
from esgd_asr.data.kaldi_dir import read_table
from esgd_asr.errors import cli_main
from esgd_asr.graph.lexicon import build_lexicon, write_dict_dir


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dict_dir", type=Path)
    parser.add_argument("data_dirs", type=Path, nargs="+")
    args = parser.parse_args(argv)
    words = {w for d in args.data_dirs for t in read_table(d / "text", allow_empty_value=True).values()
             for w in t.split()}
    log = args.dict_dir / "g2p_oov.log"
    lexicon = build_lexicon(words, log_path=log)
    write_dict_dir(lexicon, args.dict_dir)
    guessed = sum(1 for line in log.read_text().splitlines() if "<no pronunciation" not in line)
    unpronounced = len(log.read_text().splitlines()) - guessed
    print(f"{args.dict_dir}: {len(words)} words, {len(lexicon)} pronunciations; "
          f"{guessed} words pronounced by espeak-ng G2P, {unpronounced} left without (see {log})")


if __name__ == "__main__":
    main()
