"""Compute PLP features of a Kaldi data dir, one job's share (compute-plp-feats inside steps/make_plp.sh).

Usage: esgd-compute-plp [--config conf/plp.conf] [options] --nj N --job J <data-dir> <plp-dir>
       esgd-compute-plp --merge --nj N <data-dir> <plp-dir>

A job takes its contiguous share of the sorted utterances (as Kaldi's split_scp.pl), reads their audio from
wav.scp (a file, or a command ending in '|'), cut by `segments` when present, and writes
<plp-dir>/.new_<name>/plp_<name>.J.ark/.scp (float32) and utt2num_frames_<name>.J there. --merge joins the parts
of all jobs into <data-dir>/feats.scp and <data-dir>/utt2num_frames (sorted) once every utterance has features and
moves the parts to <plp-dir>: a failed job leaves the features in use as they were.
Audio is scaled to 16-bit sample values as Kaldi reads it. <name> defaults to the data dir's basename.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from esgd_asr.cli.options import KaldiArgumentParser, add_dataclass_options, dataclass_from_args
from esgd_asr.data.kaldi_dir import MAX_OVERSHOOT, read_table, read_wav_entry, split_share, write_table
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.features.feature_io import ArkScpWriter, merge_tables
from esgd_asr.features.framing import FrameOptions, MelOptions, check_waveform
from esgd_asr.features.plp import Plp, PlpOptions

log = logging.getLogger(__name__)

INT16_SCALE = 32768.0
BATCH_SAMPLES = 1_600_000  # audio computed in one batch (100 s at 16 kHz)


def utterance_table(data_dir: Path) -> tuple[dict[str, tuple[str, float, float]], dict[str, str]]:
    """utt -> (recording, start s, end s or -1) from `segments` (or whole recordings), and wav.scp."""
    wav_scp = read_table(data_dir / "wav.scp")
    if not (data_dir / "segments").is_file():
        return {rec: (rec, 0.0, -1.0) for rec in wav_scp}, wav_scp
    utts = {}
    for utt, value in read_table(data_dir / "segments").items():
        fields = value.split()
        try:
            rec, start, end = fields[0], float(fields[1]), float(fields[2])
        except (IndexError, ValueError):
            raise EsgdError(f"{data_dir / 'segments'}: utterance '{utt}': expected '<recording> <start> <end>'") \
                from None
        if rec not in wav_scp:
            raise EsgdError(f"{data_dir / 'segments'}: utterance '{utt}': recording '{rec}' is not in wav.scp")
        if start < 0 or (end != -1 and end <= start):
            raise EsgdError(f"{data_dir / 'segments'}: utterance '{utt}': bad times {start} {end}")
        utts[utt] = (rec, start, end)
    return utts, wav_scp


def read_utterances(data_dir: Path, utts: list[str], channel: int) -> Iterator[tuple[str, torch.Tensor, int]]:
    """(utt, waveform in 16-bit scale, sample rate) for each of `utts`, reading a recording once for a run of its
    segments."""
    table, wav_scp = utterance_table(data_dir)
    cached: tuple[str, np.ndarray, int] | None = None
    for utt in utts:
        rec, start, end = table[utt]
        if cached is None or cached[0] != rec:
            audio, rate = read_wav_entry(wav_scp[rec], f"{data_dir / 'wav.scp'}: recording '{rec}'")
            if channel >= audio.shape[1]:
                raise EsgdError(f"{data_dir / 'wav.scp'}: recording '{rec}' has {audio.shape[1]} channel(s), "
                                f"--channel={channel}")
            if channel < 0 and audio.shape[1] > 1:
                log.warning("recording '%s' has %d channels; using channel 0", rec, audio.shape[1])
            cached = (rec, audio[:, max(channel, 0)], rate)
        samples, rate = cached[1], cached[2]
        first = int(start * rate + 0.5)
        last = len(samples) if end == -1 else min(int(end * rate + 0.5), len(samples))
        if first >= len(samples) or (end != -1 and end > len(samples) / rate + MAX_OVERSHOOT):
            raise EsgdError(f"{data_dir / 'segments'}: utterance '{utt}': segment {start} - {end} s is past the end "
                            f"of recording '{rec}' ({len(samples) / rate:.3f} s; Kaldi's tolerance {MAX_OVERSHOOT} s)")
        yield utt, torch.from_numpy(samples[first:last] * INT16_SCALE), rate


def part_paths(plp_dir: Path, name: str, job: int) -> tuple[Path, Path, Path]:
    return (plp_dir / f"plp_{name}.{job}.ark", plp_dir / f"plp_{name}.{job}.scp",
            plp_dir / f"utt2num_frames_{name}.{job}")


def staging_dir(plp_dir: Path, name: str) -> Path:
    """Where the jobs write their parts: the features in use stay intact until --merge moves every part in."""
    return plp_dir / f".new_{name}"


def compute_job(data_dir: Path, plp_dir: Path, name: str, nj: int, job: int, plp: Plp, channel: int = -1) -> int:
    """PLP features of one job's utterances written as its ark/scp and utt2num_frames part into the staging dir (the
    scp naming the ark's final place); returns their count."""
    share = split_share(sorted(utterance_table(data_dir)[0], key=str.encode), nj, job)
    ark, scp, frames_part = part_paths(staging_dir(plp_dir, name), name, job)
    frames_part.unlink(missing_ok=True)
    rate = plp.opts.frame.sample_frequency
    num_frames: dict[str, int] = {}
    with ArkScpWriter(ark, scp, scp_ark=part_paths(plp_dir, name, job)[0]) as writer, \
            tqdm(total=len(share), desc=f"plp {name} {job}/{nj}", unit="utt", disable=None) as bar:
        def flush(batch: list[tuple[str, torch.Tensor]]) -> None:
            feats = plp.batch([wave for _, wave in batch], rate, [utt for utt, _ in batch])
            for (utt, _), matrix in zip(batch, feats):
                writer.write(utt, matrix.numpy())
                num_frames[utt] = matrix.shape[0]
            bar.update(len(batch))

        batch, pending = [], 0
        for utt, wave, wave_rate in read_utterances(data_dir, share, channel):
            batch.append((utt, check_waveform(wave, wave_rate, plp.opts.frame, utt)))
            pending += len(wave)
            if pending >= BATCH_SAMPLES:
                flush(batch)
                batch, pending = [], 0
        if batch:
            flush(batch)
    write_table(frames_part, num_frames)
    return len(share)


def merge_jobs(data_dir: Path, plp_dir: Path, name: str, nj: int) -> int:
    """Join the parts of `nj` jobs into <data-dir>/feats.scp and utt2num_frames once every utterance has features,
    then move the parts from the staging dir into <plp-dir>; the old cmvn.scp, of the old features, goes."""
    staged = [part_paths(staging_dir(plp_dir, name), name, job) for job in range(1, nj + 1)]
    for _, scp, frames_part in staged:
        for path in (scp, frames_part):
            if not path.is_file():
                raise EsgdError(f"{path}: missing; did every job of --nj={nj} finish?")
    utts, _ = utterance_table(data_dir)
    feats_tmp, frames_tmp = data_dir / ".feats.scp.merge", data_dir / ".utt2num_frames.merge"
    try:
        feats = merge_tables([scp for _, scp, _ in staged], feats_tmp)
        merge_tables([frames for _, _, frames in staged], frames_tmp)
        missing = sorted(set(utts) - set(feats), key=str.encode)
        if missing:
            raise EsgdError(f"{plp_dir}: no features for {len(missing)} of {len(utts)} utterances, "
                            f"e.g. '{missing[0]}'")
        # from here the data dir claims no features until the new ones are in place
        for stale in ("feats.scp", "utt2num_frames", "cmvn.scp"):
            (data_dir / stale).unlink(missing_ok=True)
        for job, paths in enumerate(staged, start=1):
            for path, final in zip(paths, part_paths(plp_dir, name, job)):
                path.replace(final)
        shutil.rmtree(staging_dir(plp_dir, name))   # with any part of an earlier run of more jobs
        feats_tmp.replace(data_dir / "feats.scp")
        frames_tmp.replace(data_dir / "utt2num_frames")
    finally:
        feats_tmp.unlink(missing_ok=True)
        frames_tmp.unlink(missing_ok=True)
    return len(feats)


def add_plp_options(parser) -> None:
    """Kaldi compute-plp-feats options (--sample-frequency, --num-ceps, ...)."""
    add_dataclass_options(parser, FrameOptions)
    add_dataclass_options(parser, MelOptions)
    add_dataclass_options(parser, PlpOptions, exclude=("frame", "mel"))


def plp_options_from_args(args) -> PlpOptions:
    return dataclass_from_args(PlpOptions, args, frame=dataclass_from_args(FrameOptions, args),
                               mel=dataclass_from_args(MelOptions, args))


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(description=__doc__.splitlines()[0])
    add_plp_options(parser)
    parser.add_argument("--nj", type=int, default=1, help="number of jobs")
    parser.add_argument("--job", type=int, default=1, help="this job, 1..nj")
    parser.add_argument("--merge", action="store_true", help="merge the parts of all jobs into the data dir")
    parser.add_argument("--name", default=None, help="file name stem (default: basename of the data dir)")
    parser.add_argument("--channel", type=int, default=-1, help="channel of multi-channel audio (-1: first)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-utterance dither")
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("plp_dir", type=Path)
    args = parser.parse_args(argv)
    name = args.name or args.data_dir.resolve().name
    if args.merge:
        count = merge_jobs(args.data_dir, args.plp_dir, name, args.nj)
        print(f"{args.data_dir / 'feats.scp'}: {count} utterances from {args.nj} job(s)")
        return
    torch.set_num_threads(1)
    plp = Plp(plp_options_from_args(args), seed=args.seed)
    count = compute_job(args.data_dir, args.plp_dir, name, args.nj, args.job, plp, args.channel)
    print(f"{part_paths(args.plp_dir, name, args.job)[1]}: {count} utterances")


if __name__ == "__main__":
    main()
