"""Bringing your own data: an existing Kaldi data dir (with its own features too) and a LibriSpeech layout, both
through lhotse."""
import kaldiio
import numpy as np
import pytest
import soundfile as sf

from esgd_asr.cli.compute_plp import read_utterances
from esgd_asr.cli.import_corpus import main as import_corpus
from esgd_asr.cli.import_feats import main as import_feats
from esgd_asr.data.kaldi_dir import DataDir, read_table, validate_data_dir
from esgd_asr.data.manifests import load_manifests
from corpus_fixture import snapshot, write_kaldi_corpus


@pytest.mark.parametrize("with_segments,piped", [(False, False), (True, False), (True, True)])
def test_kaldi_data_dir_import_round_trip(tmp_path, with_segments, piped):
    write_kaldi_corpus(tmp_path / "src", with_segments, heldout=with_segments, piped=piped)
    (tmp_path / "src" / "train" / "reco2file_and_channel").write_text("alice-rec1 sw02001 A\nbob-rec1 sw02001 B\n")
    import_corpus(["--corpus", f"kaldi:{tmp_path / 'src'}", str(tmp_path / "manifests"), str(tmp_path / "data")])
    assert (tmp_path / "data" / "heldout").is_dir() == with_segments  # a held-out dir is imported where present
    for split in ("train", "dev", "test") + with_segments * ("heldout",):
        original = DataDir.read(tmp_path / "src" / split)
        imported = validate_data_dir(tmp_path / "data" / split)
        assert imported.text == original.text
        assert imported.utt2spk == original.utt2spk
        assert imported.wav_scp == original.wav_scp
        assert imported.reco2file_and_channel == original.reco2file_and_channel  # for CTM scoring; lhotse drops it
        assert (imported.segments is not None) == with_segments
        if with_segments:
            assert {u: [float(x) for x in v.split()[1:]] for u, v in imported.segments.items()} == \
                   {u: [float(x) for x in v.split()[1:]] for u, v in original.segments.items()}
        recordings, supervisions = load_manifests(tmp_path / "manifests", "kaldi", split)
        assert sorted(supervisions.ids) == sorted(original.text)
    if piped:  # the features stage reads each segment of the imported dir through its pipe
        utt, samples, rate = next(read_utterances(tmp_path / "data" / "train", ["alice-rec1-1"], -1))
        audio, _ = sf.read(tmp_path / "src" / "audio" / "alice-rec1.wav", dtype="float32")
        assert rate == 16000 and np.allclose(samples.numpy(), audio[16000:30400] * 32768, atol=1)


def test_kaldi_import_without_a_split_fails_clearly(tmp_path, capsys):
    write_kaldi_corpus(tmp_path / "src", False)
    import shutil
    shutil.rmtree(tmp_path / "src" / "dev")
    with pytest.raises(SystemExit) as exit_info:
        import_corpus(["--corpus", f"kaldi:{tmp_path / 'src'}", str(tmp_path / "m"), str(tmp_path / "data")])
    assert exit_info.value.code == 1
    assert "dev: not a Kaldi data dir" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_librispeech_layout_is_prepared_with_lhotse(tmp_path):
    rng = np.random.default_rng(1)
    for part, speaker in (("train-clean-5", "19"), ("dev-clean", "84"), ("test-clean", "61")):
        chapter = tmp_path / "LibriSpeech" / part / speaker / "100"
        chapter.mkdir(parents=True)
        lines = []
        for i in range(2):
            utt = f"{speaker}-100-{i:04d}"
            sf.write(chapter / f"{utt}.flac", rng.normal(0, 0.1, 16000).astype(np.float32), 16000)
            lines.append(f"{utt} SOME WORDS NUMBER {i}")
        (chapter / f"{speaker}-100.trans.txt").write_text("\n".join(lines) + "\n")
    import_corpus(["--corpus", "librispeech", "--corpus-dir", str(tmp_path / "LibriSpeech"),
                   str(tmp_path / "manifests"), str(tmp_path / "data")])
    train = validate_data_dir(tmp_path / "data" / "train")  # flac is read through a sox pipe
    assert train.text == {"19-100-0000": "SOME WORDS NUMBER 0", "19-100-0001": "SOME WORDS NUMBER 1"}
    assert train.wav_scp["19-100-0000"].startswith("sox ") and train.wav_scp["19-100-0000"].endswith("|")
    assert set(DataDir.read(tmp_path / "data" / "test").utt2spk.values()) == {"61"}


def test_unknown_corpus_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        import_corpus(["--corpus", "timit", str(tmp_path / "m"), str(tmp_path / "d")])
    assert "unknown corpus 'timit'" in capsys.readouterr().err


def append_line(path, line):
    path.write_text(path.read_text() + line + "\n")


def first_key(path):
    return path.read_text().split()[0]


def lines(path):
    return path.read_text().splitlines()


def set_line(path, index, line):
    text = lines(path)
    text[index] = line
    path.write_text("\n".join(text) + "\n")


def truncate_wav(src):
    wav = src / "audio" / "carol-rec1.wav"
    wav.write_bytes(wav.read_bytes()[:20000])
    return wav


# (what is wrong, how the source corpus is spoilt: returns the exact message)
BAD_SOURCES = {
    "duplicate utterance id": lambda src: (
        append_line(src / "test" / "text", f"{first_key(src / 'test' / 'text')} OTHER WORDS"),
        f"{src / 'test' / 'text'}:3: duplicate key 'dave-rec1-0' (first on line 1)")[1],
    "duplicate recording": lambda src: (
        append_line(src / "dev" / "wav.scp", lines(src / "dev" / "wav.scp")[0]),
        f"{src / 'dev' / 'wav.scp'}:2: duplicate key 'carol-rec1' (first on line 1)")[1],
    "segment ends before it starts": lambda src: (
        set_line(src / "dev" / "segments", 1, "carol-rec1-1 carol-rec1 1.0 0.5"),
        f"{src / 'dev' / 'segments'}:2: segment 'carol-rec1-1' has start 1 and end 0.5 (need 0 <= start < end)")[1],
    "segment past the recording": lambda src: (
        set_line(src / "test" / "segments", 1, "dave-rec1-1 dave-rec1 1.0 2.6"),
        f"{src / 'test' / 'segments'}:2: segment 'dave-rec1-1' ends at 2.6 s, past the end of recording "
        "'dave-rec1' (2 s) by more than 0.5 s")[1],
    "truncated wav": lambda src: (
        f"{src / 'dev' / 'wav.scp'}:1: recording 'carol-rec1': '{truncate_wav(src)}' is truncated: its header "
        "promises 64000 bytes of audio, the file holds 19956"),
    "random bytes wav": lambda src: (
        (src / "audio" / "dave-rec1.wav").write_bytes(np.random.default_rng(2).bytes(3000)),
        f"{src / 'test' / 'wav.scp'}:1: recording 'dave-rec1': cannot read audio '{src / 'audio' / 'dave-rec1.wav'}'"
        f": Error opening '{src / 'audio' / 'dave-rec1.wav'}': Format not recognised.")[1],
    "utterance missing from utt2spk": lambda src: (
        (src / "dev" / "utt2spk").write_text(lines(src / "dev" / "utt2spk")[0] + "\n"),
        f"{src / 'dev' / 'text'}:2: 'carol-rec1-1' is not in utt2spk")[1],
    "utt2spk entry without transcript": lambda src: (
        append_line(src / "dev" / "utt2spk", "carol-rec1-2 carol"),
        f"{src / 'dev' / 'utt2spk'}:3: 'carol-rec1-2' has no entry in text")[1],
    "empty transcript": lambda src: (
        set_line(src / "test" / "text", 1, "dave-rec1-1"),
        f"{src / 'test' / 'text'}:2: empty transcript for utterance 'dave-rec1-1'")[1],
    "blank line": lambda src: (
        append_line(src / "test" / "text", ""),
        f"{src / 'test' / 'text'}:3: empty line")[1],
    "reco2file_and_channel with a bad channel": lambda src: (
        (src / "dev" / "reco2file_and_channel").write_text("carol-rec1 sw02001 C\n"),
        f"{src / 'dev' / 'reco2file_and_channel'}:1: expected '<recording> <file> <channel A, B or 1>', got "
        "'carol-rec1 sw02001 C'")[1],
    "reco2file_and_channel without a recording": lambda src: (
        (src / "train" / "reco2file_and_channel").write_text("alice-rec1 sw02001 A\n"),
        f"{src / 'train' / 'wav.scp'}:2: 'bob-rec1' has no entry in reco2file_and_channel")[1],
    "text not UTF-8": lambda src: (
        (src / "test" / "text").write_bytes((src / "test" / "text").read_bytes() + b"dave-rec1-2 CAF\xe9\n"),
        f"{src / 'test' / 'text'}:3: not UTF-8 (byte 0xe9 at column 16)")[1],
}


@pytest.mark.parametrize("case", BAD_SOURCES)
def test_bad_kaldi_source_is_named_and_the_earlier_import_kept(tmp_path, capsys, case):
    src, manifests, data = tmp_path / "src", tmp_path / "manifests", tmp_path / "data"
    write_kaldi_corpus(src, with_segments=True)
    import_corpus(["--corpus", f"kaldi:{src}", str(manifests), str(data)])
    before = snapshot(manifests, data)
    capsys.readouterr()
    message = BAD_SOURCES[case](src)
    with pytest.raises(SystemExit) as exit_info:
        import_corpus(["--corpus", f"kaldi:{src}", str(manifests), str(data)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith(f": error: {message}\n"), err
    assert snapshot(manifests, data) == before
    assert sorted(p.name for p in data.iterdir()) == ["dev", "test", "train"]  # no temporary dir left behind


def test_segment_just_past_the_recording_is_cut_there(tmp_path):
    write_kaldi_corpus(tmp_path / "src", with_segments=True)
    set_line(tmp_path / "src" / "test" / "segments", 1, "dave-rec1-1 dave-rec1 1.0 2.4")  # within Kaldi's 0.5 s
    import_corpus(["--corpus", f"kaldi:{tmp_path / 'src'}", str(tmp_path / "m"), str(tmp_path / "data")])
    assert DataDir.read(tmp_path / "data" / "test").segments["dave-rec1-1"] == "dave-rec1 1.000 2.000"


def test_corpus_is_swapped_in_only_when_every_split_is_valid(tmp_path):
    import dataclasses

    from lhotse import SupervisionSet

    from esgd_asr.data.manifests import import_kaldi_corpus, write_corpus
    from esgd_asr.errors import EsgdError

    write_kaldi_corpus(tmp_path / "src", with_segments=False)
    splits = import_kaldi_corpus(tmp_path / "src", 16000)
    write_corpus(splits, "kaldi", tmp_path / "m", tmp_path / "data")
    before = snapshot(tmp_path / "m", tmp_path / "data")
    recordings, supervisions = splits["test"]
    splits["test"] = recordings, SupervisionSet.from_segments(dataclasses.replace(s, text="") for s in supervisions)
    with pytest.raises(EsgdError, match="empty transcript for utterance 'dave-rec1'"):
        write_corpus(splits, "kaldi", tmp_path / "m", tmp_path / "data")
    assert snapshot(tmp_path / "m", tmp_path / "data") == before
    assert not [p for p in (tmp_path / "data").iterdir() if p.name.startswith(".")]


def test_a_corpus_at_another_rate_stops_at_import_or_is_resampled(tmp_path, capsys):
    """8 kHz recordings read through pipes, with segments: refused at --sample-rate 16000 naming the recording,
    imported with --resample true (a sox stage in wav.scp) into 16 kHz segments of the same duration."""
    write_kaldi_corpus(tmp_path / "src", with_segments=True, piped=True, rate=8000)
    args = ["--corpus", f"kaldi:{tmp_path / 'src'}", str(tmp_path / "manifests"), str(tmp_path / "data")]
    with pytest.raises(SystemExit):
        import_corpus(args)
    assert "train/wav.scp: recording 'alice-rec1' is sampled at 8000 Hz, not at --sample-rate 16000" in \
        capsys.readouterr().err
    assert not (tmp_path / "data").exists()
    import_corpus(["--resample", "true"] + args)
    train = validate_data_dir(tmp_path / "data" / "train")
    assert train.wav_scp["alice-rec1"].endswith("- | sox -t wav - -t wav -r 16000 - |")
    utt, samples, rate = next(read_utterances(tmp_path / "data" / "train", ["alice-rec1-1"], -1))
    assert rate == 16000 and abs(len(samples) - 0.9 * 16000) <= 1


def write_kaldi_feats(root, split, dim=5, cmvn=True, drop=None):
    """<root>/<split>/feats.scp of compressed matrices in <root>/../mfcc (relative paths, as Kaldi recipes write
    them from the recipe dir two levels above the data dir), cmvn.scp with `cmvn`; `drop`: an utterance left out."""
    source, rng = root / split, np.random.default_rng(1)
    (root.parent / "mfcc").mkdir(exist_ok=True)
    utts = [u for u in DataDir.read(source).utt2spk if u != drop]
    ark = root.parent / "mfcc" / f"raw_{split}.ark"
    kaldiio.save_ark(str(ark), {u: rng.normal(0, 1, (30, dim)).astype(np.float32) for u in utts},
                     scp=str(source / "feats.scp"), compression_method=2)
    (source / "feats.scp").write_text((source / "feats.scp").read_text().replace(str(ark), f"mfcc/{ark.name}"))
    if cmvn:
        stats = {s: np.ones((2, dim + 1)) for s in set(DataDir.read(source).utt2spk.values())}
        kaldiio.save_ark(str(root.parent / "mfcc" / f"cmvn_{split}.ark"), stats, scp=str(source / "cmvn.scp"))


def test_a_kaldi_dir_s_own_features_are_used_as_they_are(tmp_path, capsys):
    """--feats kaldi: the imported data dir reads the source's compressed matrices (by absolute path) and its CMVN
    stats; a missing utterance or statistics of another dim stop in one line, the earlier tables kept."""
    write_kaldi_corpus(tmp_path / "src", True)
    import_corpus(["--corpus", f"kaldi:{tmp_path / 'src'}", str(tmp_path / "manifests"), str(tmp_path / "data")])
    write_kaldi_feats(tmp_path / "src", "train")
    write_kaldi_feats(tmp_path / "src", "dev", cmvn=False)
    for split in ("train", "dev"):
        import_feats([str(tmp_path / "src" / split), str(tmp_path / "data" / split)])
    feats = read_table(tmp_path / "data" / "train" / "feats.scp")
    source = read_table(tmp_path / "src" / "train" / "feats.scp")
    assert feats.keys() == DataDir.read(tmp_path / "data" / "train").utt2spk.keys() == source.keys()
    for utt, rxfile in feats.items():
        assert rxfile.startswith(str(tmp_path / "mfcc")) and source[utt].startswith("mfcc/")
        assert np.array_equal(kaldiio.load_mat(rxfile), kaldiio.load_mat(str(tmp_path / source[utt])))
    assert read_table(tmp_path / "data" / "train" / "cmvn.scp").keys() == {"alice", "bob"}
    assert not (tmp_path / "data" / "dev" / "cmvn.scp").exists()  # steps/compute_cmvn_stats.sh makes it
    before = (tmp_path / "data" / "train" / "feats.scp").read_text()
    for kwargs, message in [({"drop": "bob-rec1-1"}, "src/train/feats.scp: no entry for utterance 'bob-rec1-1'"),
                            ({"dim": 4, "cmvn": False},  # the dim-5 statistics of before
                             "src/train/cmvn.scp: speaker 'alice' has statistics of shape (2, 6), features of dim 4 "
                             "need (2, 5)")]:
        write_kaldi_feats(tmp_path / "src", "train", **kwargs)
        with pytest.raises(SystemExit):
            import_feats([str(tmp_path / "src" / "train"), str(tmp_path / "data" / "train")])
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and message in error[0], error
        assert (tmp_path / "data" / "train" / "feats.scp").read_text() == before
