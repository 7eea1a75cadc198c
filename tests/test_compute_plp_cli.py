"""esgd-compute-plp and esgd-compute-cmvn-stats on a small data dir made on the fly."""
import os
import subprocess
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch

from esgd_asr.cli import compute_cmvn_stats, compute_plp
from esgd_asr.data.kaldi_dir import read_table, split_share, utt2spk_to_spk2utt, write_table
from esgd_asr.features.framing import FrameOptions
from esgd_asr.features.plp import Plp, PlpOptions

REPO = Path(__file__).resolve().parents[1]
RATE = 16000


def tone(seconds, freq, seed, rate=RATE):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def make_data_dir(root: Path, durations, rate=RATE, segments=None):
    """Recordings rec<i> as 16-bit wavs (odd ones read through a 'cat ... |' command), two speakers."""
    data, wav_dir = root / "data" / "train", root / "wav"
    data.mkdir(parents=True)
    wav_dir.mkdir()
    wav_scp, audio = {}, {}
    for i, seconds in enumerate(durations):
        rec = f"spk{i % 2}-rec{i}"
        path = wav_dir / f"{rec}.wav"
        audio[rec] = tone(seconds, 200 + 150 * i, i, rate)
        sf.write(path, audio[rec], rate, subtype="PCM_16")
        audio[rec] = sf.read(path, dtype="float32")[0]  # what 16-bit quantisation left
        wav_scp[rec] = f"cat {path} |" if i % 2 else str(path)
    write_table(data / "wav.scp", wav_scp)
    utts = list(segments) if segments else list(wav_scp)
    if segments:
        write_table(data / "segments", {u: " ".join(map(str, v)) for u, v in segments.items()})
    utt2spk = {u: u.split("-")[0] for u in utts}
    write_table(data / "utt2spk", utt2spk)
    write_table(data / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    write_table(data / "text", {u: "hello" for u in utts})
    return data, audio


def run_plp(data, plp_dir, nj, extra=()):
    for job in range(1, nj + 1):
        compute_plp.main(["--config", str(REPO / "conf/plp.conf"), "--dither=0", *extra, "--nj", str(nj),
                          "--job", str(job), str(data), str(plp_dir)])
    compute_plp.main(["--merge", "--nj", str(nj), str(data), str(plp_dir)])


def expected_plp(wave):
    return Plp(PlpOptions(frame=FrameOptions(dither=0.0)))(torch.from_numpy(wave * 32768.0), RATE).numpy()


def test_split_share_is_kaldi_split_scp():
    keys = [f"u{i:02d}" for i in range(10)]
    shares = [split_share(keys, 3, j) for j in (1, 2, 3)]
    assert [len(s) for s in shares] == [4, 3, 3] and sum(shares, []) == keys
    assert split_share(keys[:2], 3, 3) == []


def test_plp_jobs_merge_and_cmvn_stats(tmp_path):
    data, audio = make_data_dir(tmp_path, [0.5, 0.73, 0.61, 0.42, 0.9])
    plp_dir = tmp_path / "plp"
    run_plp(data, plp_dir, nj=2)
    assert sorted(p.name for p in plp_dir.iterdir()) == [
        "plp_train.1.ark", "plp_train.1.scp", "plp_train.2.ark", "plp_train.2.scp",
        "utt2num_frames_train.1", "utt2num_frames_train.2"]
    lines = (data / "feats.scp").read_text().splitlines()
    assert [line.split()[0] for line in lines] == sorted(audio)
    feats = kaldiio.load_scp(str(data / "feats.scp"))
    num_frames = read_table(data / "utt2num_frames")
    for rec, wave in audio.items():
        assert feats[rec].dtype == np.float32
        assert int(num_frames[rec]) == feats[rec].shape[0] == 1 + (len(wave) - 400) // 160
        np.testing.assert_allclose(feats[rec], expected_plp(wave), rtol=1e-5, atol=1e-4)

    compute_cmvn_stats.main([str(data), str(tmp_path / "cmvn")])
    assert (tmp_path / "cmvn" / "cmvn_train.ark").is_file()
    cmvn = kaldiio.load_scp(str(data / "cmvn.scp"))
    assert sorted(cmvn) == ["spk0", "spk1"]
    for spk, utts in read_table(data / "spk2utt").items():
        x = np.concatenate([feats[u] for u in utts.split()]).astype(np.float64)
        stats = cmvn[spk]
        assert stats.dtype == np.float64 and stats.shape == (2, 14)
        np.testing.assert_allclose(stats[0], np.r_[x.sum(0), len(x)], rtol=1e-6)
        np.testing.assert_allclose(stats[1], np.r_[(x ** 2).sum(0), 0], rtol=1e-6)


def test_segments_cut_the_recordings(tmp_path):
    segments = {"spk0-a": ("spk0-rec0", 0.0, 0.4), "spk0-b": ("spk0-rec0", 0.35, -1),
                "spk1-c": ("spk1-rec1", 0.1, 1.0)}  # 0.4 s past its recording's end: cut there (Kaldi's 0.5 s)
    data, audio = make_data_dir(tmp_path, [1.0, 0.6], segments=segments)
    run_plp(data, tmp_path / "plp", nj=3)
    feats = kaldiio.load_scp(str(data / "feats.scp"))
    assert sorted(feats) == sorted(segments)
    for utt, (rec, start, end) in segments.items():
        first, last = int(start * RATE + 0.5), (len(audio[rec]) if end == -1 else int(end * RATE + 0.5))
        np.testing.assert_allclose(feats[utt], expected_plp(audio[rec][first:last]), rtol=1e-5, atol=1e-4)


def test_segment_far_past_its_recording_is_refused(tmp_path, capsys):
    segments = {"spk0-a": ("spk0-rec0", 0.0, 0.4), "spk1-c": ("spk1-rec1", 0.1, 5.0)}
    data, _ = make_data_dir(tmp_path, [1.0, 0.6], segments=segments)
    with pytest.raises(SystemExit) as exit_info:
        compute_plp.main(["--dither=0", str(data), str(tmp_path / "plp")])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.endswith(
        f": error: {data / 'segments'}: utterance 'spk1-c': segment 0.1 - 5.0 s is past the end of "
        f"recording 'spk1-rec1' (0.600 s; Kaldi's tolerance 0.5 s)\n")
    assert not list((tmp_path / "plp").glob("*.ark"))


def test_sample_rate_mismatch_names_the_utterance(tmp_path, capsys):
    data, _ = make_data_dir(tmp_path, [0.5, 0.5], rate=8000)
    with pytest.raises(SystemExit) as exit_info:
        compute_plp.main(["--dither=0", str(data), str(tmp_path / "plp")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "utterance 'spk0-rec0'" in err and "8000" in err and "--sample-frequency=16000" in err
    assert not list((tmp_path / "plp").glob("*.scp")) and not list((tmp_path / "plp").glob("*.ark"))


def test_merge_needs_every_job(tmp_path, capsys):
    data, _ = make_data_dir(tmp_path, [0.5, 0.5, 0.5])
    compute_plp.main(["--dither=0", "--nj", "2", "--job", "1", str(data), str(tmp_path / "plp")])
    with pytest.raises(SystemExit):
        compute_plp.main(["--merge", "--nj", "2", str(data), str(tmp_path / "plp")])
    assert "plp_train.2.scp: missing" in capsys.readouterr().err
    assert not (data / "feats.scp").exists()


def test_truncated_ark_names_the_utterance(tmp_path, capsys):
    data, _ = make_data_dir(tmp_path, [0.5, 0.6, 0.7])
    run_plp(data, tmp_path / "plp", nj=1)
    last = (data / "feats.scp").read_text().splitlines()[-1].split()[0]
    ark = tmp_path / "plp" / "plp_train.1.ark"
    with open(ark, "r+b") as f:
        f.truncate(ark.stat().st_size - 200)
    with pytest.raises(SystemExit):
        compute_cmvn_stats.main([str(data), str(tmp_path / "cmvn")])
    err = capsys.readouterr().err
    assert f"'{last}'" in err and "truncated" in err
    assert not (data / "cmvn.scp").exists() and not (tmp_path / "cmvn" / "cmvn_train.scp").exists()
    with open(ark, "r+b") as f:
        f.truncate(10)
    with pytest.raises(SystemExit):
        compute_cmvn_stats.main([str(data), str(tmp_path / "cmvn")])
    assert "past the end of the ark" in capsys.readouterr().err


def test_a_failed_make_plp_leaves_the_features_in_use_intact(tmp_path):
    data, _ = make_data_dir(tmp_path, [0.5, 0.6, 0.7, 0.4])
    env = dict(os.environ, PATH=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}")

    def make_plp():
        return subprocess.run([str(REPO / "steps/make_plp.sh"), "--cmd", "esgd-queue", "--nj", "2",
                               "--plp-config", str(REPO / "conf/plp.conf"), str(data), str(tmp_path / "log"),
                               str(tmp_path / "plp")], cwd=tmp_path, capture_output=True, text=True, env=env)

    assert make_plp().returncode == 0
    write_table(data / "cmvn.scp", {"spk0": "cmvn.ark:5", "spk1": "cmvn.ark:99"})
    before = {p: p.read_bytes() for p in [*data.iterdir(), *(tmp_path / "plp").iterdir()] if p.is_file()}
    wav = tmp_path / "wav" / "spk1-rec3.wav"   # the last utterance of job 2: job 1 finishes, job 2 fails
    wav.write_bytes(wav.read_bytes()[:30])
    failed = make_plp()
    assert failed.returncode != 0 and "spk1-rec3" in failed.stderr
    assert {p: p.read_bytes() for p in before} == before   # feats.scp, cmvn.scp, utt2num_frames and arks as they were
    assert kaldiio.load_scp(str(data / "feats.scp"))["spk1-rec3"].shape[1] == 13
    sf.write(wav, tone(0.4, 650, 3), RATE, subtype="PCM_16")
    assert make_plp().returncode == 0
    assert not (data / "cmvn.scp").exists() and not (tmp_path / "plp" / ".new_train").exists()
    assert sorted(kaldiio.load_scp(str(data / "feats.scp"))) == sorted(read_table(data / "utt2spk"))
