"""Check a Kaldi data dir: sorted files, matching keys, readable audio, non-empty transcripts.

Usage: esgd-validate-data-dir [--no-audio] [--no-wav] [--allow-empty-text] <data-dir>
"""
from pathlib import Path

from esgd_asr.cli.options import KaldiArgumentParser
from esgd_asr.data.kaldi_dir import validate_data_dir
from esgd_asr.errors import cli_main


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-audio", action="store_true", help="skip reading every recording")
    parser.add_argument("--no-wav", action="store_true", help="a dir of features: wav.scp is not needed or checked")
    parser.add_argument("--allow-empty-text", action="store_true")
    parser.add_argument("data_dir", type=Path)
    args = parser.parse_args(argv)
    data = validate_data_dir(args.data_dir, check_audio=not args.no_audio, allow_empty_text=args.allow_empty_text,
                             wav=not args.no_wav)
    print(f"{args.data_dir}: OK ({len(data.utt2spk)} utterances, {len(set(data.utt2spk.values()))} speakers)")


if __name__ == "__main__":
    main()
