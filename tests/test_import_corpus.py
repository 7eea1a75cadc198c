"""Bringing your own data: an existing Kaldi data dir and a LibriSpeech layout, both through lhotse."""
import numpy as np
import pytest
import soundfile as sf

from esgd_asr.cli.compute_plp import read_utterances
from esgd_asr.cli.import_corpus import main as import_corpus
from esgd_asr.data.kaldi_dir import DataDir, validate_data_dir
from esgd_asr.data.manifests import load_manifests


def write_kaldi_corpus(root, with_segments, heldout=False, piped=False):
    """Three data dirs (four with `heldout`); each recording holds two utterances when `with_segments`; with
    `piped`, wav.scp reads each recording through a sox pipe, as real recipes write it."""
    rng = np.random.default_rng(0)
    splits = [("train", ["alice", "bob"]), ("dev", ["carol"]), ("test", ["dave"])] + heldout * [("heldout", ["eve"])]
    for split, speakers in splits:
        d = root / split
        d.mkdir(parents=True)
        wav, text, utt2spk, segments = {}, {}, {}, {}
        for spk in speakers:
            reco = f"{spk}-rec1"
            path = root / "audio" / f"{reco}.wav"
            path.parent.mkdir(exist_ok=True)
            sf.write(path, rng.normal(0, 0.1, 32000).astype(np.float32), 16000)
            wav[reco] = f"sox {path} -t wav - |" if piped else str(path)
            for i, (start, end) in enumerate([(0.0, 0.9), (1.0, 1.9)] if with_segments else [(0.0, 2.0)]):
                utt = f"{reco}-{i}" if with_segments else reco
                text[utt] = f"HELLO WORLD {spk.upper()} {i}"
                utt2spk[utt] = spk
                segments[utt] = f"{reco} {start} {end}"
        DataDir(wav, text, utt2spk, segments if with_segments else None).write(d)


@pytest.mark.parametrize("with_segments,piped", [(False, False), (True, False), (True, True)])
def test_kaldi_data_dir_import_round_trip(tmp_path, with_segments, piped):
    write_kaldi_corpus(tmp_path / "src", with_segments, heldout=with_segments, piped=piped)
    import_corpus(["--corpus", f"kaldi:{tmp_path / 'src'}", str(tmp_path / "manifests"), str(tmp_path / "data")])
    assert (tmp_path / "data" / "heldout").is_dir() == with_segments  # a held-out dir is imported where present
    for split in ("train", "dev", "test") + with_segments * ("heldout",):
        original = DataDir.read(tmp_path / "src" / split)
        imported = validate_data_dir(tmp_path / "data" / split)
        assert imported.text == original.text
        assert imported.utt2spk == original.utt2spk
        assert imported.wav_scp == original.wav_scp
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
