"""Per-speaker CMVN statistics of a data dir's features (compute-cmvn-stats inside steps/compute_cmvn_stats.sh).

Usage: esgd-compute-cmvn-stats [--name NAME] <data-dir> <cmvn-dir>

Reads <data-dir>/feats.scp and spk2utt, writes one Kaldi stats matrix per speaker (float64, 2 x (dim+1): sums
then the count, sums of squares then 0) to <cmvn-dir>/cmvn_<name>.ark/.scp, and the scp to <data-dir>/cmvn.scp.
"""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from esgd_asr.cli.options import KaldiArgumentParser
from esgd_asr.data.kaldi_dir import read_table, write_table
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.features.cmvn import add_cmvn_stats
from esgd_asr.features.feature_io import ArkScpWriter, ScpReader


def compute_speaker_stats(data_dir: Path, cmvn_dir: Path, name: str) -> int:
    """Write per-speaker stats to <cmvn-dir>/cmvn_<name>.ark/.scp and <data-dir>/cmvn.scp; returns the speakers."""
    feats = ScpReader(data_dir / "feats.scp")
    spk2utt = {spk: utts.split() for spk, utts in read_table(data_dir / "spk2utt").items()}
    ark, scp = cmvn_dir / f"cmvn_{name}.ark", cmvn_dir / f"cmvn_{name}.scp"
    (data_dir / "cmvn.scp").unlink(missing_ok=True)
    with ArkScpWriter(ark, scp) as writer, tqdm(total=sum(map(len, spk2utt.values())), unit="utt",
                                                desc=f"cmvn {name}", disable=None) as bar:
        for spk, utts in spk2utt.items():
            stats = None
            for utt in utts:
                if utt not in feats:
                    raise EsgdError(f"{data_dir / 'feats.scp'}: no features for utterance '{utt}' of speaker "
                                    f"'{spk}'")
                stats = add_cmvn_stats(stats, feats[utt], f"{data_dir / 'feats.scp'}: utterance '{utt}'")
                bar.update()
            writer.write(spk, stats.numpy())
    write_table(data_dir / "cmvn.scp", read_table(scp))
    return len(spk2utt)


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default=None, help="file name stem (default: basename of the data dir)")
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("cmvn_dir", type=Path)
    args = parser.parse_args(argv)
    name = args.name or args.data_dir.resolve().name
    count = compute_speaker_stats(args.data_dir, args.cmvn_dir, name)
    print(f"{args.data_dir / 'cmvn.scp'}: stats of {count} speakers")


if __name__ == "__main__":
    main()
