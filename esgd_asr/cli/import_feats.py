"""Take a Kaldi data dir's own features for the data dir imported from it (run.sh --feats kaldi), instead of PLP.

Usage: esgd-import-feats <source-data-dir> <data-dir>

Every utterance of <data-dir> (imported from <source-data-dir> by esgd-import-corpus, which prefixes an utterance
id with its speaker id where it lacks it) must have a matrix in <source-data-dir>/feats.scp; each is read once
(compressed matrices too, through kaldiio) and all must have one width. <data-dir>/feats.scp gets the source's
entries under the data dir's ids, ark paths made absolute (a relative one is looked up from the current dir, then
from the Kaldi recipe dir two levels above the source dir, as Kaldi recipes write `mfcc/raw_mfcc_train.1.ark`);
the archives are not copied. <source-data-dir>/cmvn.scp, where present, gives every speaker's CMVN statistics
(dim + 1 columns), else <data-dir>/cmvn.scp is removed for steps/compute_cmvn_stats.sh to make. Nothing is
written unless all of it checks.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from esgd_asr.cli.options import KaldiArgumentParser
from esgd_asr.data.kaldi_dir import read_table, write_table
from esgd_asr.data.manifests import utterance_id
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.features.feature_io import ScpReader

log = logging.getLogger("esgd-import-feats")


def absolute_rxfile(rxfile: str, source: Path, where: str) -> str:
    """An scp entry with its ark path made absolute (pipes as they are)."""
    if rxfile.rstrip().endswith("|"):
        return rxfile
    ark, sep, offset = rxfile.rpartition(":")
    path = ark if sep and offset.isdigit() else rxfile
    if os.path.isabs(path):
        return rxfile
    for base in (Path.cwd(), source.resolve().parent.parent):
        if (base / path).is_file():
            return str(base / path) + (f":{offset}" if path == ark else "")
    raise EsgdError(f"{where}: no such ark file {path} (from the current dir or {source.resolve().parent.parent})")


def imported_table(source: Path, name: str, keys: dict[str, str], what: str) -> dict[str, str]:
    """`keys` (our id -> the source's) looked up in source/name, ark paths made absolute."""
    table = read_table(source / name)
    missing = [ours for ours, theirs in keys.items() if theirs not in table]
    if missing:
        raise EsgdError(f"{source / name}: no entry for {what} '{keys[missing[0]]}'"
                        + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    return {ours: absolute_rxfile(table[theirs], source, f"{source / name}: '{theirs}'")
            for ours, theirs in keys.items()}


def import_feats(source: Path, data: Path) -> tuple[int, int]:
    """Write data/feats.scp (and cmvn.scp) from the source dir's (see the module doc); returns (utterances,
    feature dim)."""
    if not (source / "feats.scp").is_file():
        raise EsgdError(f"{source / 'feats.scp'}: no such file (--feats kaldi needs the corpus' own features)")
    ours_of = {utterance_id(utt, spk): utt for utt, spk in read_table(source / "utt2spk").items()}
    utt2spk = read_table(data / "utt2spk")
    keys = {utt: ours_of.get(utt, utt) for utt in utt2spk}
    feats = imported_table(source, "feats.scp", keys, "utterance")
    dims = {}
    for utt, matrix in ScpReader(source / "feats.scp", feats):
        dims.setdefault(matrix.shape[1], utt)
    if len(dims) > 1:
        (a, first), (b, second) = list(dims.items())[:2]
        raise EsgdError(f"{source / 'feats.scp'}: features of dim {a} ('{keys[first]}') and {b} ('{keys[second]}')")
    dim = next(iter(dims))
    cmvn = None
    if (source / "cmvn.scp").is_file():
        speakers = sorted(set(utt2spk.values()))
        cmvn = imported_table(source, "cmvn.scp", {s: s for s in speakers}, "speaker")
        for spk, stats in ScpReader(source / "cmvn.scp", cmvn):
            if stats.shape != (2, dim + 1):
                raise EsgdError(f"{source / 'cmvn.scp'}: speaker '{spk}' has statistics of shape {stats.shape}, "
                                f"features of dim {dim} need (2, {dim + 1})")
    write_table(data / "feats.scp", feats)
    if cmvn is None:
        (data / "cmvn.scp").unlink(missing_ok=True)
    else:
        write_table(data / "cmvn.scp", cmvn)
    return len(feats), dim


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(prog="esgd-import-feats", description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("data", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    count, dim = import_feats(args.source, args.data)
    log.info("%s: features of %d utterances (dim %d) from %s%s", args.data, count, dim, args.source,
             ", CMVN statistics too" if (args.data / "cmvn.scp").is_file() else "")


if __name__ == "__main__":
    main()
