"""The synthesised corpus: Kaldi data dirs agree with lhotse manifests; bad data dirs fail clearly."""
import numpy as np
import pytest
import soundfile as sf

from esgd_asr.data.kaldi_dir import DataDir, read_table, validate_data_dir
from esgd_asr.data.manifests import load_manifests
from esgd_asr.errors import EsgdError


def test_data_dirs_and_manifests_agree(tiny_corpus):
    _, manifest_dir, data_root = tiny_corpus
    for split in ("train", "dev", "test"):
        data = validate_data_dir(data_root / split)
        recordings, supervisions = load_manifests(manifest_dir, "synth", split)
        assert set(data.utt2spk) == set(supervisions.ids) == set(recordings.ids)
        for sup in supervisions:
            assert data.text[sup.id] == sup.text
            assert data.utt2spk[sup.id] == sup.speaker
            assert data.spk2gender[sup.speaker] == sup.gender
            assert data.utt2dur[sup.id] == pytest.approx(sup.duration, abs=1e-3)
            rec = recordings[sup.recording_id]
            assert data.wav_scp[sup.id] == rec.sources[0].source
            samples, rate = sf.read(data.wav_scp[sup.id])
            assert rate == rec.sampling_rate == 16000
            assert len(samples) == rec.num_samples


def test_splits_have_disjoint_speakers_and_sentences(tiny_corpus):
    data = {s: DataDir.read(tiny_corpus[2] / s) for s in ("train", "dev", "test")}
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert not set(data[a].utt2spk.values()) & set(data[b].utt2spk.values())
        assert not set(data[a].text.values()) & set(data[b].text.values())


def test_audio_is_speech_not_silence(tiny_corpus):
    data = DataDir.read(tiny_corpus[2] / "train")
    for path in list(data.wav_scp.values())[:5]:
        samples, _ = sf.read(path)
        assert np.sqrt(np.mean(samples**2)) > 1e-3
        assert np.abs(samples).max() <= 1.0


def test_corrupt_wav_is_named(data_copy):
    utt, path = next(iter(read_table(data_copy / "wav.scp").items()))
    bad = data_copy / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    text = (data_copy / "wav.scp").read_text().replace(path, str(bad))
    (data_copy / "wav.scp").write_text(text)
    with pytest.raises(EsgdError, match=f"recording '{utt}'.*bad.wav"):
        validate_data_dir(data_copy)


def test_missing_audio_file_is_named(data_copy):
    utt, path = next(iter(read_table(data_copy / "wav.scp").items()))
    (data_copy / "wav.scp").write_text((data_copy / "wav.scp").read_text().replace(path, "/nonexistent/x.wav"))
    with pytest.raises(EsgdError, match="/nonexistent/x.wav"):
        validate_data_dir(data_copy)


def test_missing_table_is_named(data_copy):
    (data_copy / "text").unlink()
    with pytest.raises(EsgdError, match="text: missing"):
        validate_data_dir(data_copy, check_audio=False)


def test_a_features_only_dir_is_checked_without_wav_scp(data_copy):
    utts = sorted(read_table(data_copy / "utt2spk"), key=str.encode)
    (data_copy / "feats.scp").write_text("".join(f"{u} feats.ark:{i}\n" for i, u in enumerate(utts)))
    (data_copy / "wav.scp").unlink()
    with pytest.raises(EsgdError, match="wav.scp: missing"):
        validate_data_dir(data_copy, check_audio=False)
    assert sorted(validate_data_dir(data_copy, wav=False).utt2spk) == utts   # Kaldi's --no-wav
    (data_copy / "feats.scp").write_text("".join(f"{u} feats.ark:{i}\n" for i, u in enumerate(utts[1:])))
    with pytest.raises(EsgdError, match=f"utt2spk:1: '{utts[0]}' has no entry in feats.scp"):
        validate_data_dir(data_copy, wav=False)


def test_empty_transcript_is_named(data_copy):
    lines = (data_copy / "text").read_text().splitlines()
    utt = lines[1].split()[0]
    lines[1] = utt
    (data_copy / "text").write_text("\n".join(lines) + "\n")
    with pytest.raises(EsgdError, match=f"text:2: empty transcript for utterance '{utt}'"):
        validate_data_dir(data_copy, check_audio=False)


def test_unsorted_file_is_named(data_copy):
    lines = (data_copy / "utt2spk").read_text().splitlines()
    lines[0], lines[1] = lines[1], lines[0]
    (data_copy / "utt2spk").write_text("\n".join(lines) + "\n")
    with pytest.raises(EsgdError, match="utt2spk:2: not sorted"):
        validate_data_dir(data_copy, check_audio=False)


def test_spk2utt_mismatch_is_named(data_copy):
    lines = (data_copy / "spk2utt").read_text().splitlines()
    (data_copy / "spk2utt").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(EsgdError, match="spk2utt"):
        validate_data_dir(data_copy, check_audio=False)


def test_truncated_wav_is_named(data_copy):
    reco, path = next(iter(read_table(data_copy / "wav.scp").items()))
    bad = data_copy / "short.wav"
    bad.write_bytes(open(path, "rb").read()[:1000])
    (data_copy / "wav.scp").write_text((data_copy / "wav.scp").read_text().replace(path, str(bad)))
    with pytest.raises(EsgdError, match=f"wav.scp:1: recording '{reco}': '{bad}' is truncated: its header promises"):
        validate_data_dir(data_copy)
