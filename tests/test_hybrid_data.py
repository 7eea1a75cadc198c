"""Hybrid training sets: senone targets from alignments, spliced DNN frames, BiLSTM chunks with i-vectors,
global normalisation fitted on train, saved and loaded with torch alone."""
import kaldi_hmm_gmm  # noqa: F401  (before kaldifst)
import shutil

import numpy as np
import pytest
import torch

from esgd_asr.errors import EsgdError
from esgd_asr.gmm.align import ali_to_pdf, read_alignments
from esgd_asr.gmm.model import GmmHmm
from esgd_asr.hybrid.frames import IGNORE
from esgd_asr.hybrid.prepare import NnetInput, prepare_hybrid_sets, read_pdf_counts, read_senones
from esgd_asr.hybrid.sets import HybridSets
from esgd_asr.models import BLSTMConfig, DNNConfig, build_model
from hybrid_fixture import IVECTOR_DIM, make_hybrid_task


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return make_hybrid_task(tmp_path_factory.mktemp("hybrid"))


def test_senone_targets_are_the_pdfs_of_the_alignment(task):
    senones = read_senones(task["valid_ali"])
    info = GmmHmm.load(task["exp"] / "final.mdl").transitions()
    utt, ali = next(read_alignments(task["valid_ali"] / "ali.1.ark"))
    assert utt.startswith("spk3") and all(u.startswith("spk3") for u in senones.targets)
    assert np.array_equal(senones.targets[utt], ali_to_pdf(ali, info))
    assert senones.counts.sum() == sum(len(t) for t in senones.targets.values())


def test_dnn_sets_are_spliced_normalised_frames_with_senone_targets(task):
    config = DNNConfig(splice=5, hidden=[8], activations=["relu"])
    sets = prepare_hybrid_sets(config, task["data"], task["train_ali"], task["data"], task["valid_ali"], cmvn=True)
    train_targets = read_senones(task["train_ali"]).targets
    assert sets.train[0].shape == (sum(map(len, train_targets.values())), 5 * 13)
    assert sets.frame_dim == 13 and sets.num_targets == read_senones(task["exp"]).num_pdfs
    centre = sets.train[0][:, 2 * 13:3 * 13]  # the middle frame of the splice is the frame itself
    assert torch.allclose(centre.mean(0), torch.zeros(13), atol=1e-4)
    assert torch.allclose(centre.std(0), torch.ones(13), atol=1e-2)
    first = sorted(train_targets)[0]
    assert sets.train[1][:len(train_targets[first])].tolist() == train_targets[first].tolist()
    model = build_model(sets.fit_config(config))
    assert model(sets.valid[0]).shape == (len(sets.valid[1]), sets.num_targets)


def test_blstm_sets_are_chunks_with_ivectors(task):
    config = BLSTMConfig(num_layers=1, cells=4, bottleneck=3, chunk=7, chunk_left_context=0, chunk_right_context=0)
    sets = prepare_hybrid_sets(config, task["data"], task["train_ali"], task["data"], task["valid_ali"],
                               task["ivectors"], task["ivectors"], cmvn=True)
    x, y = sets.valid
    assert x.shape[1:] == (7, 13 + IVECTOR_DIM) and y.shape == x.shape[:2]
    assert int((y != IGNORE).sum()) == sum(map(len, read_senones(task["valid_ali"]).targets.values()))
    assert torch.all(x[y == IGNORE] == 0)  # padding of each utterance's last chunk
    # the i-vector columns carry the speaker code (3 for spk3) after normalisation: all rows the same sign
    stats = torch.tensor(NnetInput.from_dict(sets.nnet_input).global_stats, dtype=torch.float64)
    mean = stats[0, 13:-1] / stats[0, -1]
    assert torch.all(mean < 3.0) and torch.all(x[y != IGNORE][:, 13:] > 0)
    assert build_model(sets.fit_config(config))(x[:2]).shape == (2, 7, sets.num_targets)
    with_context = BLSTMConfig(num_layers=1, cells=4, bottleneck=3, chunk=7, chunk_left_context=3,
                               chunk_right_context=2)
    wide = prepare_hybrid_sets(with_context, task["data"], task["train_ali"], task["data"], task["valid_ali"],
                               task["ivectors"], task["ivectors"], cmvn=True)
    assert wide.valid[0].shape == (len(x), 3 + 7 + 2, 13 + IVECTOR_DIM)
    assert torch.equal(wide.valid[1][wide.valid[1] != IGNORE], y[y != IGNORE])  # the same targets, in order
    with pytest.raises(EsgdError, match="unrolls 7 frames with context 0/0, the data chunks 7 with 3/2"):
        wide.fit_config(config)


def test_saved_sets_load_back(task, tmp_path):
    config = DNNConfig(splice=3, hidden=[8], activations=["relu"])
    sets = prepare_hybrid_sets(config, task["data"], task["train_ali"], task["data"], task["valid_ali"])
    loaded = HybridSets.load(sets.save(tmp_path / "egs.pt"))
    assert torch.equal(loaded.train[0], sets.train[0]) and torch.equal(loaded.valid[1], sets.valid[1])
    assert loaded.nnet_input == sets.nnet_input and NnetInput.from_dict(loaded.nnet_input).frame_dim == 13
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(EsgdError, match="junk.pt: unreadable"):
        HybridSets.load(tmp_path / "junk.pt")


def test_inconsistent_inputs_are_refused(task, tmp_path):
    config = DNNConfig(splice=3, hidden=[8], activations=["relu"])
    with pytest.raises(EsgdError, match="i-vectors must be given for both"):
        prepare_hybrid_sets(config, task["data"], task["train_ali"], task["data"], task["valid_ali"],
                            train_ivectors=task["ivectors"])
    (tmp_path / "ali").mkdir()
    shutil.copy(task["exp"] / "final.mdl", tmp_path / "ali" / "final.mdl")
    with pytest.raises(EsgdError, match="ali: no alignments"):
        read_senones(tmp_path / "ali")
    (tmp_path / "pdf_counts").write_text("[ 1 2 3 ]\n")
    with pytest.raises(EsgdError, match="3 non-negative counts expected 31"):
        read_pdf_counts(tmp_path / "pdf_counts", 31)
    sets = prepare_hybrid_sets(config, task["data"], task["train_ali"], task["data"], task["valid_ali"])
    with pytest.raises(EsgdError, match="splices 9 frames, the data 3"):
        sets.fit_config(DNNConfig())
    with pytest.raises(EsgdError, match="BLSTMConfig cannot read dnn data"):
        sets.fit_config(BLSTMConfig())
