"""Estimate an n-gram LM (modified Kneser-Ney) on training transcripts; report perplexity on dev transcripts.

Usage: esgd-train-lm [--order 3] <train-data-dir> <dev-data-dir> <lm-dir>
Writes <lm-dir>/lm.arpa and <lm-dir>/ppl_dev.txt.
"""
import json
from pathlib import Path

from esgd_asr.atomic import atomic_write_text
from esgd_asr.cli.options import KaldiArgumentParser
from esgd_asr.data.kaldi_dir import read_table
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.graph.lm import perplexity, train_arpa


def transcripts(data_dir: Path) -> list[str]:
    return [t for t in read_table(data_dir / "text", allow_empty_value=True).values() if t.strip()]


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order", type=int, default=3, help="n-gram order (1-5)")
    parser.add_argument("train_dir", type=Path)
    parser.add_argument("dev_dir", type=Path)
    parser.add_argument("lm_dir", type=Path)
    args = parser.parse_args(argv)
    if not 1 <= args.order <= 5:
        raise EsgdError(f"--order must be between 1 and 5, got {args.order}")
    args.lm_dir.mkdir(parents=True, exist_ok=True)
    arpa = args.lm_dir / "lm.arpa"
    train_arpa(transcripts(args.train_dir), args.order, arpa)
    report = perplexity(arpa, transcripts(args.dev_dir))
    atomic_write_text(args.lm_dir / "ppl_dev.txt", json.dumps(report, indent=1) + "\n")
    scored = report["num_sentences"] - report["num_zeroprobs"]
    print(f"{arpa}: {args.order}-gram; dev: {report['num_sentences']} sentences, {report['num_words']} words, "
          f"{report['num_oov']} OOV words; perplexity {report['ppl']:.1f} over the {scored} sentences "
          f"without OOVs")


if __name__ == "__main__":
    main()
