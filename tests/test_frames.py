"""Frame-level data of the hybrid models: splicing within utterances, i-vectors per frame, chunks, targets."""
import numpy as np
import pytest
import torch

from esgd_asr.data.kaldi_dir import DataDir
from esgd_asr.errors import EsgdError
from esgd_asr.features.feature_io import ArkScpWriter
from esgd_asr.features.transforms import splice
from esgd_asr.hybrid.frames import IGNORE, all_spliced, chunks, frame_batches, load_frame_set, spliced

LENGTHS = {"spkA-1": 7, "spkA-2": 3, "spkB-1": 12}


def identity(utt, spk, feats):
    return feats


@pytest.fixture
def data_dir(tmp_path):
    rng = np.random.default_rng(0)
    utts = sorted(LENGTHS)
    DataDir({u: "/dev/null" for u in utts}, {u: "A" for u in utts}, {u: u.split("-")[0] for u in utts}).write(
        tmp_path / "d")
    with ArkScpWriter(tmp_path / "feats.ark", tmp_path / "d" / "feats.scp") as writer:
        for utt in utts:
            writer.write(utt, rng.normal(size=(LENGTHS[utt], 4)).astype(np.float32))
    with ArkScpWriter(tmp_path / "iv.ark", tmp_path / "iv.scp") as writer:
        for utt in utts:  # online i-vectors every 5 frames: row r holds the value r + 100 * utterance number
            rows = -(-LENGTHS[utt] // 5)
            writer.write(utt, np.repeat(np.arange(rows, dtype=np.float32)[:, None] + 100 * utts.index(utt), 2, 1))
    return tmp_path


def test_splicing_stays_inside_each_utterance(data_dir):
    frames = load_frame_set(data_dir / "d", identity)
    assert frames.utterances == sorted(LENGTHS) and frames.num_frames == sum(LENGTHS.values())
    everything = spliced(frames, torch.arange(frames.num_frames), 2, 3)
    for u, utt in enumerate(frames.utterances):
        start, end = int(frames.offsets[u]), int(frames.offsets[u + 1])
        assert torch.equal(everything[start:end], splice(frames.features[start:end], 2, 3))


def test_online_ivectors_are_repeated_over_their_frames(data_dir):
    frames = load_frame_set(data_dir / "d", identity, ivector_scp=data_dir / "iv.scp", ivector_period=5)
    assert frames.dim == 6
    u = frames.utterances.index("spkB-1")
    block = frames.features[int(frames.offsets[u]):int(frames.offsets[u + 1]), 4]
    assert block.tolist() == [200.0 + t // 5 for t in range(12)]


def test_ivectors_that_do_not_cover_the_frames_are_refused(data_dir):
    with pytest.raises(EsgdError, match="do not cover"):
        load_frame_set(data_dir / "d", identity, ivector_scp=data_dir / "iv.scp", ivector_period=2)


def test_targets_must_match_frame_counts_and_unaligned_utterances_are_skipped(data_dir):
    targets = {"spkA-1": np.arange(7), "spkB-1": np.arange(12) % 3}
    frames = load_frame_set(data_dir / "d", identity, targets)
    assert frames.utterances == ["spkA-1", "spkB-1"] and frames.targets.tolist()[:7] == list(range(7))
    with pytest.raises(EsgdError, match="utterance 'spkA-1': 6 targets for 7 frames"):
        load_frame_set(data_dir / "d", identity, {"spkA-1": np.arange(6)})


def test_batches_cover_every_aligned_frame_once(data_dir):
    targets = {u: np.full(n, i) for i, (u, n) in enumerate(sorted(LENGTHS.items()))}
    frames = load_frame_set(data_dir / "d", identity, targets)
    seen = [y for _, ys in frame_batches(frames, 4, 1, 1, torch.Generator().manual_seed(0)) for y in ys.tolist()]
    assert sorted(seen) == sorted(frames.targets.tolist())
    features, labels = all_spliced(frames, 1, 1)
    assert features.shape == (frames.num_frames, 12) and torch.equal(labels, frames.targets)


def test_chunks_pad_the_last_piece_of_each_utterance(data_dir):
    targets = {u: np.arange(n) for u, n in LENGTHS.items()}
    frames = load_frame_set(data_dir / "d", identity, targets)
    x, y = chunks(frames, 5)
    assert x.shape == (2 + 1 + 3, 5, 4)
    assert y[1].tolist() == [5, 6, IGNORE, IGNORE, IGNORE]
    assert (y != IGNORE).sum() == frames.num_frames


def test_chunk_context_frames_carry_no_targets(data_dir):
    targets = {u: np.arange(n) for u, n in LENGTHS.items()}
    frames = load_frame_set(data_dir / "d", identity, targets)
    x, y = chunks(frames, 5, left=2, right=3)
    assert x.shape == (2 + 1 + 3, 10, 4)
    first = int(frames.offsets[frames.utterances.index("spkB-1")])  # 12 frames: its chunks are rows 3, 4, 5
    assert y[3].tolist() == [0, 1, 2, 3, 4, IGNORE, IGNORE, IGNORE] + [IGNORE] * 2  # no left context at the start
    assert torch.equal(x[3, :8], frames.features[first:first + 8]) and torch.all(x[3, 8:] == 0)
    assert y[4].tolist() == [IGNORE, IGNORE, 5, 6, 7, 8, 9, IGNORE, IGNORE, IGNORE]
    assert torch.equal(x[4, :9], frames.features[first + 3:first + 12]) and torch.all(x[4, 9] == 0)
    assert y[5].tolist() == [IGNORE, IGNORE, 10, 11] + [IGNORE] * 6  # context cut at the utterance's end
    assert (y != IGNORE).sum() == frames.num_frames
