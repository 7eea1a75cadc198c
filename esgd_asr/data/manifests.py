"""lhotse manifests <-> Kaldi data dirs, and corpus import through lhotse (Kaldi dirs, LibriSpeech, Switchboard).

Every corpus enters as lhotse (RecordingSet, SupervisionSet) per split; the Kaldi data dir is written from
those same manifests, so the two always agree.
"""
from __future__ import annotations

from pathlib import Path

from lhotse import CutSet, RecordingSet, SupervisionSet
from lhotse.kaldi import load_kaldi_data_dir

from esgd_asr.atomic import atomic_outputs
from esgd_asr.data.kaldi_dir import (DataDir, check_segment_ends, check_source_dir, read_table, read_wav_entry,
                                     validate_data_dir)
from esgd_asr.errors import EsgdError

SPLITS = ("train", "dev", "test")


def manifest_paths(manifest_dir: Path, corpus: str, split: str) -> dict[str, Path]:
    """Where the recordings, supervisions and cuts of one split live."""
    return {kind: Path(manifest_dir) / f"{corpus}_{kind}_{split}.jsonl.gz"
            for kind in ("recordings", "supervisions", "cuts")}


def write_manifests(recordings: RecordingSet, supervisions: SupervisionSet, manifest_dir: Path,
                    corpus: str, split: str, stage) -> CutSet:
    """Save the split's RecordingSet, SupervisionSet and the CutSet made of them through `stage`
    (esgd_asr.atomic.atomic_outputs: moved in together with the other staged outputs)."""
    cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
    for kind, manifest in (("recordings", recordings), ("supervisions", supervisions), ("cuts", cuts)):
        manifest.to_file(stage(manifest_paths(manifest_dir, corpus, split)[kind], ".jsonl.gz"))
    return cuts


def load_manifests(manifest_dir: Path, corpus: str, split: str) -> tuple[RecordingSet, SupervisionSet]:
    paths = manifest_paths(manifest_dir, corpus, split)
    for path in paths.values():
        if not path.is_file():
            raise EsgdError(f"{path}: missing manifest")
    return (RecordingSet.from_file(paths["recordings"]).to_eager(),
            SupervisionSet.from_file(paths["supervisions"]).to_eager())


def wav_scp_entry(recording, channel: int) -> str:
    """Kaldi rxfilename for one channel of a recording: a wav path, or a pipe that yields a mono wav (resampled
    by sox to the recording's rate where it was resampled, `Recording.resample`)."""
    if len(recording.sources) != 1:
        raise EsgdError(f"recording '{recording.id}': recordings made of several audio sources are not supported")
    source = recording.sources[0]
    resample = f" sox -t wav - -t wav -r {recording.sampling_rate} - |" if recording.transforms else ""
    if source.type == "command":
        if recording.num_channels != 1:
            raise EsgdError(f"recording '{recording.id}': multi-channel command sources are not supported")
        return f"{source.source.rstrip()} |{resample}"
    if source.type != "file":
        raise EsgdError(f"recording '{recording.id}': audio source type '{source.type}' cannot go into wav.scp")
    path = source.source
    if path.endswith(".wav") and recording.num_channels == 1 and not resample:
        return path
    if path.endswith(".sph"):
        return f"sph2pipe -f wav -p -c {channel + 1} {path} |{resample}"
    return f"sox {path} -t wav -r {recording.sampling_rate} - remix {channel + 1} |"


def _wav_key(recording, channel: int) -> str:
    return recording.id if recording.num_channels == 1 else f"{recording.id}-{channel}"


def utterance_id(utt: str, speaker: str) -> str:
    """The data dir's id of an utterance: prefixed with its speaker id where it lacks it (Kaldi's sorting rule)."""
    return utt if utt.startswith(speaker) else f"{speaker}-{utt}"


def data_dir_from_manifests(recordings: RecordingSet, supervisions: SupervisionSet) -> DataDir:
    """The Kaldi data dir of a split. Multi-channel recordings become one wav.scp entry per channel;
    utterance ids get their speaker id as prefix where they lack it (Kaldi's sorting rule); `segments` is
    written unless every supervision is a whole single-channel recording of the same id."""
    by_id = {r.id: r for r in recordings}
    wav_scp = {_wav_key(r, ch): wav_scp_entry(r, ch) for r in recordings for ch in r.sources[0].channels}
    text, utt2spk, segments, utt2dur, spk2gender = {}, {}, {}, {}, {}
    whole = True
    for s in supervisions:
        if not s.speaker:
            raise EsgdError(f"supervision '{s.id}': no speaker")
        recording = by_id[s.recording_id]
        channel = s.channel[0] if isinstance(s.channel, list) else s.channel
        utt = utterance_id(s.id, s.speaker)
        key = _wav_key(recording, channel or 0)
        whole &= utt == key and s.start == 0 and abs(s.duration - recording.duration) < 1e-3
        text[utt] = " ".join((s.text or "").split())
        utt2spk[utt] = s.speaker
        end = min(s.end, recording.duration)  # past the end by at most MAX_OVERSHOOT: cut there, as Kaldi does
        segments[utt] = f"{key} {s.start:.3f} {end:.3f}"
        utt2dur[utt] = end - s.start
        if s.gender:
            spk2gender[s.speaker] = s.gender.lower()[0]
    return DataDir(wav_scp=wav_scp, text=text, utt2spk=utt2spk, segments=None if whole else segments,
                   spk2gender=spk2gender, utt2dur=utt2dur)


def import_kaldi_data_dir(path: Path, sample_rate: int, resample: bool = False
                          ) -> tuple[RecordingSet, SupervisionSet]:
    """Read an existing Kaldi data dir through lhotse, once its tables and audio headers are checked
    (esgd_asr.data.kaldi_dir.check_source_dir) and before any segment ends past its recording. Its first
    recording must be at `sample_rate`, or with `resample` every recording is resampled to it (a sox stage in
    its wav.scp entry)."""
    if not (Path(path) / "wav.scp").is_file():
        raise EsgdError(f"{path}: not a Kaldi data dir (no wav.scp)")
    segments = check_source_dir(path)
    reco, rx = next(iter(read_table(Path(path) / "wav.scp").items()))
    rate = read_wav_entry(rx, f"{Path(path) / 'wav.scp'}: recording '{reco}'")[1]
    if rate != sample_rate and not resample:
        raise EsgdError(f"{Path(path) / 'wav.scp'}: recording '{reco}' is sampled at {rate} Hz, not at "
                        f"--sample-rate {sample_rate}: give --sample-rate {rate}, or --resample true to convert it")
    try:
        recordings, supervisions, _ = load_kaldi_data_dir(path, sampling_rate=rate)
    except Exception as err:  # lhotse raises many kinds; name the dir
        raise EsgdError(f"{path}: cannot import Kaldi data dir: {err}") from None
    if supervisions is None:
        raise EsgdError(f"{path}: no text/utt2spk to import")
    if segments is not None:
        check_segment_ends(Path(path) / "segments", segments, {r.id: r.duration for r in recordings})
    return (recordings if rate == sample_rate else recordings.resample(sample_rate)), supervisions


def import_kaldi_corpus(root: Path, sample_rate: int, resample: bool = False
                        ) -> dict[str, tuple[RecordingSet, SupervisionSet]]:
    """`--corpus kaldi:<root>`: <root>/{train,dev,test} are Kaldi data dirs; <root>/heldout, where present, is
    decoded as the held-out set too."""
    splits = SPLITS + (("heldout",) if (Path(root) / "heldout" / "wav.scp").is_file() else ())
    return {split: import_kaldi_data_dir(Path(root) / split, sample_rate, resample) for split in splits}


def prepare_librispeech_corpus(corpus_dir: Path, manifest_dir: Path, nj: int
                               ) -> dict[str, tuple[RecordingSet, SupervisionSet]]:
    """LibriSpeech with lhotse's recipe: train = all train-* parts present, dev = dev-clean, test = test-clean."""
    from lhotse.recipes import prepare_librispeech

    parts = prepare_librispeech(corpus_dir, output_dir=manifest_dir / "librispeech_lhotse", num_jobs=nj)
    train = [name for name in sorted(parts) if name.startswith("train")]
    for needed in ("dev-clean", "test-clean"):
        if needed not in parts:
            raise EsgdError(f"{corpus_dir}: LibriSpeech part '{needed}' not found")
    if not train:
        raise EsgdError(f"{corpus_dir}: no LibriSpeech train-* part found")

    def combined(names: list[str]) -> tuple[RecordingSet, SupervisionSet]:
        recordings = RecordingSet.from_recordings(r for n in names for r in parts[n]["recordings"])
        supervisions = SupervisionSet.from_segments(s for n in names for s in parts[n]["supervisions"])
        return recordings, supervisions

    return {"train": combined(train), "dev": combined(["dev-clean"]), "test": combined(["test-clean"])}


def prepare_switchboard_corpus(corpus_dir: Path, manifest_dir: Path, nj: int, dev_conversations: int = 50
                               ) -> dict[str, tuple[RecordingSet, SupervisionSet]]:
    """Switchboard-1 with lhotse's recipes: <dir>/swb1 for training (the last conversations held out as dev),
    <dir>/eval2000 as test."""
    from lhotse.recipes import prepare_eval2000, prepare_switchboard

    swb = prepare_switchboard(Path(corpus_dir) / "swb1", output_dir=manifest_dir / "swbd_lhotse",
                              absolute_paths=True)
    evaluation = prepare_eval2000(Path(corpus_dir) / "eval2000", output_dir=manifest_dir / "eval2000_lhotse",
                                  absolute_paths=True, num_jobs=nj)
    recording_ids = sorted(swb["recordings"].ids)
    dev_ids = set(recording_ids[-dev_conversations:])

    def subset(manifests, keep) -> tuple[RecordingSet, SupervisionSet]:
        return (manifests["recordings"].filter(lambda r: keep(r.id)),
                manifests["supervisions"].filter(lambda s: keep(s.recording_id)))

    return {"train": subset(swb, lambda rid: rid not in dev_ids), "dev": subset(swb, lambda rid: rid in dev_ids),
            "test": (evaluation["recordings"], evaluation["supervisions"])}


def write_corpus(splits: dict[str, tuple[RecordingSet, SupervisionSet]], corpus: str, manifest_dir: Path,
                 data_root: Path, check_audio: bool = False, source_root: Path | None = None) -> dict[str, DataDir]:
    """Write each split's manifests and its Kaldi data dir `data_root/<split>`: all are written beside their
    destinations and checked (validate_data_dir, reading every recording with `check_audio`), and only then moved
    in, so that a failure leaves the earlier corpus whole. `source_root`: the Kaldi data dirs imported, whose
    reco2file_and_channel (which lhotse does not read) is carried over."""
    written = {split: data_dir_from_manifests(recordings, supervisions)
               for split, (recordings, supervisions) in splits.items()}
    for split, data in written.items():
        if source_root is not None and (Path(source_root) / split / "reco2file_and_channel").is_file():
            data.reco2file_and_channel = read_table(Path(source_root) / split / "reco2file_and_channel")
    with atomic_outputs() as stage:
        for split, (recordings, supervisions) in splits.items():
            write_manifests(recordings, supervisions, manifest_dir, corpus, split, stage)
            staged = stage(Path(data_root) / split, directory=True)
            written[split].write_into(staged)
            validate_data_dir(staged, check_audio=check_audio)
    return written
