"""A Kaldi user's models on the tiny hybrid task: a DNN of ours exported to nnet3 text reads back to the same
posteriors; bad anchors (chain, binary, wrong senone count, missing i-vectors, a TDNN) stop esgd-train-esgd in one
line before any data are prepared; an imported nnet3 DNN anchors an ESGD population on its own input."""
import kaldi_hmm_gmm  # noqa: F401  (before kaldifst)
import gzip
from pathlib import Path

import pytest
import torch

from esgd_asr.cli import decode_nnet, export_nnet3, train_esgd, train_nnet
from esgd_asr.data.kaldi_dir import read_table
from esgd_asr.decode.hybrid import HybridScorer
from esgd_asr.decode.lattice import read_lattice_archive
from esgd_asr.hybrid.model_file import load_hybrid_model
from esgd_asr.hybrid.prepare import network_input, prepare_hybrid_sets
from esgd_asr.models.dnn import FeedForwardDNN
from esgd_asr.models.kaldi_nnet3 import Nnet3Network
from esgd_asr.train.nnet import evaluate
from hybrid_fixture import CONFIGS, TINY, make_hybrid_task, options
from nnet3_fixture import every_feature_text

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return make_hybrid_task(tmp_path_factory.mktemp("kaldi_anchor"))


@pytest.fixture(scope="module")
def exported(task, tmp_path_factory):
    """A DNN trained here (global normalisation, no CMVN) and its nnet3 text export."""
    out = tmp_path_factory.mktemp("dnn")
    train_nnet.main(["--nnet-config", str(REPO / "conf/dnn.yaml"), "--model-opt", "splice=3", "--model-opt",
                     "hidden=[32]", "--model-opt", "activations=[relu]", "--lr", "0.5", "--max-epochs", "2",
                     "--tensorboard", "false", str(task["data"]), str(task["train_ali"]), str(task["data"]),
                     str(task["valid_ali"]), str(out)])
    export_nnet3.main([str(out / "final.pt"), str(out / "final.txt")])
    return out / "final.pt", out / "final.txt"


def test_exported_dnn_reads_back_to_the_same_posteriors(task, exported):
    ours, theirs = load_hybrid_model(exported[0]), load_hybrid_model(exported[1])
    assert isinstance(theirs.module, FeedForwardDNN) and theirs.config == ours.config
    assert theirs.nnet_input["global_stats"] != ours.nnet_input["global_stats"]  # folded into the first layer
    counts = torch.ones(ours.config.num_targets)
    posteriors = [HybridScorer(model, counts).log_posteriors(
        HybridScorer(model, counts).nnet_input.frames(task["data"])) for model in (ours, theirs)]
    assert (posteriors[0] - posteriors[1]).abs().max() < 1e-4


def test_bad_anchors_stop_before_the_data_are_prepared(task, exported, tmp_path, capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the data were prepared")

    monkeypatch.setattr(train_esgd, "prepare_hybrid_sets", never)
    (tmp_path / "chain.txt").write_bytes(gzip.decompress(
        (REPO / "tests/data/kaldi_nnet3/swbd_tdnn_7q/final.txt.gz").read_bytes()))
    (tmp_path / "final.raw").write_bytes(b"\0B<Nnet3> " + bytes(100))
    (tmp_path / "tdnn.txt").write_text(every_feature_text())
    (tmp_path / "tdnn4x31.txt").write_text(every_feature_text(num_targets=31))
    cases = [("chain.txt", [], "does not end in a softmax or log-softmax (a chain model"),
             ("final.raw", [], "convert it to text first: nnet3-copy --binary=false"),
             ("tdnn.txt", [], "has an i-vector input, but no i-vector dir was given"),
             ("tdnn4x31.txt", ["--train-ivectors", str(task["ivectors"]), "--valid-ivectors", str(task["ivectors"])],
              "the model takes inputs of dim 63 but the features give 144"),  # 9 frames of 13 + 3, the model 4 + 3
             ("missing.pt", [], "missing.pt: no such model file")]
    ivectors = ["--train-ivectors", str(task["ivectors"]), "--valid-ivectors", str(task["ivectors"])]
    (tmp_path / "tdnn13.txt").write_text(every_feature_text(feat_dim=13))
    (tmp_path / "tdnn31.txt").write_text(every_feature_text(feat_dim=13, num_targets=31))
    cases += [("tdnn13.txt", ivectors, "the model has 7 outputs but the tree has 31 senones"),
              (str(exported[1]), ["--nnet-config", str(REPO / "conf/blstm.yaml")],
               "a feed-forward network, but the model config describes a BLSTMConfig"),
              (str(exported[1]), ivectors, "the model has no i-vector input, but got"),
              ("tdnn31.txt", ["--nnet-config", str(REPO / "conf/blstm.yaml"), *ivectors],
               "a feed-forward network, but the model config describes a BLSTMConfig")]
    for name, extra, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            train_esgd.main(["--algorithm", "anchored", *CONFIGS, "--anchor", str(tmp_path / name), *extra,
                             "--progress", "false", str(task["data"]), str(task["train_ali"]), str(task["data"]),
                             str(task["valid_ali"]), str(tmp_path / "exp")])
        error = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 1 and message in error[-1], (name, error)


def test_a_kaldi_dnn_anchors_a_population_on_its_own_input(task, exported, tmp_path):
    """The population takes the imported model's architecture (splice 3, not the --model-opt's 5) and input (no
    normalisation of ours on top), and ends no worse than its anchor."""
    anchor = load_hybrid_model(exported[1])
    config, nnet_input = network_input(anchor.config, task["data"], task["train_ali"], model=exported[1])
    sets = prepare_hybrid_sets(config, task["data"], task["train_ali"], task["data"], task["valid_ali"],
                               nnet_input=nnet_input)
    anchor_ce, _ = evaluate(anchor.module, sets.valid)
    train_esgd.main(["--algorithm", "anchored", *CONFIGS, "--model-opt", "splice=5", *options(TINY),
                     "--anchor", str(exported[1]), "--tensorboard", "false", "--plot", "false", "--progress",
                     "false", str(task["data"]), str(task["train_ali"]), str(task["data"]), str(task["valid_ali"]),
                     str(tmp_path)])
    result = load_hybrid_model(tmp_path / "final.pt")
    assert result.config == anchor.config and result.nnet_input["global_stats"] == anchor.nnet_input["global_stats"]
    assert torch.load(tmp_path / "final.pt", weights_only=True)["info"]["valid_ce"] <= anchor_ce + 1e-6


def test_a_kaldi_tdnn_anchors_a_population_of_its_architecture(task, tmp_path, monkeypatch):
    """An imported TDNN (LDA as FixedAffine, BatchNorm, TdnnComponent, Linear, Sum/Scale bypass, i-vectors through
    ReplaceIndex, IfDefined) anchors ESGD: members of its architecture on its own input, the anchor's fitness never
    rises and bounds the best member's, the fixed parts stay the anchor's, a resumed run ends as an uninterrupted
    one, and the evolved model decodes and exports to nnet3 text that reads back to the same outputs."""
    (tmp_path / "tdnn.txt").write_text(every_feature_text(feat_dim=13, num_targets=31))
    anchor = load_hybrid_model(tmp_path / "tdnn.txt")
    ivectors = ["--train-ivectors", str(task["ivectors"]), "--valid-ivectors", str(task["ivectors"])]
    small = {**TINY, "mu": 3, "offspring": 4, "pool.batch_sizes": [256, 512]}

    def run(out, *extra):
        train_esgd.main(["--algorithm", "anchored", *CONFIGS, *options(small), "--anchor", str(tmp_path / "tdnn.txt"),
                         *ivectors, "--tensorboard", "false", "--plot", "false", "--progress", "false", *extra,
                         str(task["data"]), str(task["train_ali"]), str(task["data"]), str(task["valid_ali"]),
                         str(out)])
        return torch.load(out / "final.pt", weights_only=True)

    whole = run(tmp_path / "whole")
    history = [r for r in torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)["history"]
               if "generation" in r]
    anchors = [r["anchor"] for r in history]
    assert len(history) == 2 and anchors == sorted(anchors, reverse=True)
    assert all(r["anchor"] <= r["best"] + 1e-6 for r in history)
    result = load_hybrid_model(tmp_path / "whole" / "final.pt")
    assert isinstance(result.module, Nnet3Network) and result.config == anchor.config
    assert result.nnet_input["global_stats"] == anchor.nnet_input["global_stats"]  # no normalisation of ours
    fixed = {k: v for k, v in anchor.module.state_dict().items() if k in dict(anchor.module.named_buffers())}
    assert fixed and all(torch.equal(result.module.state_dict()[k], v) for k, v in fixed.items())
    assert any(not torch.equal(result.module.state_dict()[k], v) for k, v in anchor.module.state_dict().items())
    # the evolved model anchors a run in turn (as stage 14's anchored_esgd row anchors on the ESGD model)
    again = run(tmp_path / "again", "--anchor", str(tmp_path / "whole" / "final.pt"), "--esgd-opt", "generations=1")
    assert load_hybrid_model(tmp_path / "again" / "final.pt").config == anchor.config
    assert again["info"]["valid_ce"] <= whole["info"]["valid_ce"] + 1e-6
    # split after generation 1 and resumed: the same final model
    original = train_esgd.run_algorithm
    monkeypatch.setattr(train_esgd, "run_algorithm", lambda *a, **k: original(*a, stop_after=1, **k))
    with pytest.raises(FileNotFoundError):  # stopped after generation 1: no final.pt yet
        run(tmp_path / "split")
    monkeypatch.setattr(train_esgd, "run_algorithm", original)
    resumed = run(tmp_path / "split", "--resume", "true")
    assert all(torch.equal(resumed["state_dict"][k], v) for k, v in whole["state_dict"].items())
    # decodes with its declared input; exported, it reads back to the same posteriors
    decode_nnet.main(["--ivectors", str(task["ivectors"]), str(task["graph"]), str(task["data"]),
                      str(tmp_path / "whole" / "final.pt"), str(task["exp"] / "final.mdl"), str(tmp_path / "decode")])
    assert len(dict(read_lattice_archive(tmp_path / "decode" / "lat.1.gz"))) == len(read_table(task["data"] / "text"))
    export_nnet3.main([str(tmp_path / "whole" / "final.pt"), str(tmp_path / "evolved.txt")])
    exported = load_hybrid_model(tmp_path / "evolved.txt")
    counts = torch.ones(31)
    posteriors = []
    for model in (result, exported):
        model.take_ivector_period(result.nnet_input["ivector_period"])
        scorer = HybridScorer(model, counts)
        posteriors.append(scorer.log_posteriors(scorer.nnet_input.frames(task["data"], None, task["ivectors"])))
    assert torch.isfinite(posteriors[0]).all() and (posteriors[0] - posteriors[1]).abs().max() < 1e-4
