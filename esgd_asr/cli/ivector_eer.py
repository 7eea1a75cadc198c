"""How well a data dir's i-vectors separate its speakers: cosine-scoring equal error rate over utterance pairs.

Usage: esgd-ivector-eer <data-dir> <ivector-dir>
Reads <ivector-dir>/ivector_online.scp (the last i-vector of each utterance, which has seen all its frames) and
<data-dir>/utt2spk; writes the EER to <ivector-dir>/eer. Chance is 50 %.
"""
from pathlib import Path

import torch

from esgd_asr.atomic import atomic_write_text
from esgd_asr.cli.options import KaldiArgumentParser
from esgd_asr.data.kaldi_dir import read_table
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.features.feature_io import ScpReader
from esgd_asr.features.speaker_eval import cosine_eer


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("ivector_dir", type=Path)
    args = parser.parse_args(argv)
    utt2spk = read_table(args.data_dir / "utt2spk")
    ivectors = ScpReader(args.ivector_dir / "ivector_online.scp")
    speakers = sorted(set(utt2spk.values()))
    if len(speakers) < 2:
        raise EsgdError(f"{args.data_dir / 'utt2spk'}: need at least two speakers to measure speaker separation")
    utts = sorted(utt2spk)
    matrix = torch.stack([torch.as_tensor(ivectors[u][-1], dtype=torch.float64) for u in utts])
    labels = torch.tensor([speakers.index(utt2spk[u]) for u in utts])
    eer = cosine_eer(matrix, labels)
    atomic_write_text(args.ivector_dir / "eer", f"{eer * 100:.2f}\n")
    print(f"{args.ivector_dir}: speaker EER {eer * 100:.2f}% by cosine scoring of {len(utts)} utterances of "
          f"{len(speakers)} speakers (chance 50%)")


if __name__ == "__main__":
    main()
