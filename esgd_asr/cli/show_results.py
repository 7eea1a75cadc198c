"""Print the recipe's results: corpus summary, LM perplexity, and each system's best WER per decoded set.

Usage: esgd-show-results [<data-root>] [<exp-dir>]
"""
import json
from pathlib import Path

from esgd_asr.cli.options import KaldiArgumentParser
from esgd_asr.data.corpus_summary import print_summary
from esgd_asr.data.kaldi_dir import DataDir
from esgd_asr.errors import cli_main


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_root", type=Path, nargs="?", default=Path("data"))
    parser.add_argument("exp_dir", type=Path, nargs="?", default=Path("exp"))
    args = parser.parse_args(argv)
    print("\n== Results ==")
    splits = {s: DataDir.read(args.data_root / s) for s in ("train", "dev", "test")
              if (args.data_root / s / "utt2spk").is_file()}
    if splits:
        print_summary(splits)
    ppl_file = args.data_root / "local" / "lm" / "ppl_dev.txt"
    if ppl_file.is_file():
        ppl = json.loads(ppl_file.read_text())
        print(f"\nLM (data/local/lm/lm.arpa): dev perplexity {ppl['ppl']:.1f} "
              f"({ppl['num_words']} words, {ppl['num_oov']} OOV words)")
    for eer in sorted(args.exp_dir.glob("ivectors_*/eer")):
        print(f"i-vectors ({eer.parent}): speaker EER {float(eer.read_text()):.2f}% (chance 50%)")
    rows = sorted(args.exp_dir.glob("*/decode_*/best_wer"))
    print(f"\n{'system':<24}{'set':<10}{'WER%':>8}")
    for best in rows:
        fields = best.read_text().split()
        print(f"{best.parent.parent.name:<24}{best.parent.name[len('decode_'):]:<10}{fields[1]:>8}")
    if not rows:
        print("(no decoded system yet)")


if __name__ == "__main__":
    main()
