"""The single-model hybrid run: per-epoch checkpoints, exact resume after a kill, the epoch log, final.pt, and the
esgd-train-nnet / steps/train_nnet.sh interfaces."""
import kaldi_hmm_gmm  # noqa: F401  (before kaldifst)
import dataclasses
import subprocess
from pathlib import Path

import pytest
import torch

from esgd_asr.cli import show_results
from esgd_asr.cli import train_nnet as train_nnet_cli
from esgd_asr.errors import EsgdError
from esgd_asr.hybrid.model_file import load_hybrid_model
from esgd_asr.hybrid.prepare import prepare_hybrid_sets
from esgd_asr.models import BLSTMConfig, DNNConfig, build_model
from esgd_asr.population.newbob import NewBobConfig
from esgd_asr.train import nnet
from hybrid_fixture import make_hybrid_task

REPO = Path(__file__).resolve().parents[1]
DNN = DNNConfig(splice=5, hidden=[32, 32], activations=["relu", "sigmoid"])
SCHEDULE = NewBobConfig(lr=0.5, batch_size=64, max_epochs=5, min_lr=1e-3)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return make_hybrid_task(tmp_path_factory.mktemp("hybrid"))


@pytest.fixture(scope="module")
def dnn_sets(task):
    return prepare_hybrid_sets(DNN, task["data"], task["train_ali"], task["data"], task["valid_ali"], cmvn=True)


def fresh_model(sets, config=DNN):
    config = sets.fit_config(config)
    torch.manual_seed(0)
    return build_model(config), config


def run(sets, out, **kwargs):
    model, config = fresh_model(sets)
    return nnet.train_nnet(model, config, sets, SCHEDULE, out, seed=3, tensorboard=False, **kwargs)


def test_an_equal_budget_run_draws_epochs_of_epoch_frames_and_records_them(dnn_sets, tmp_path):
    model, config = fresh_model(dnn_sets)
    schedule = NewBobConfig(lr=0.5, batch_size=64, max_epochs=2, min_lr=0, epoch_frames=100)
    history = nnet.train_nnet(model, config, dnn_sets, schedule, tmp_path, seed=3, tensorboard=False, plot=False)
    assert [r["frames"] for r in history[1:]] == [100, 100]
    info = torch.load(tmp_path / "final.pt", weights_only=True)["info"]
    assert info["member_frames"] == 200 < 2 * int((dnn_sets.train[1] != -100).sum()) and "wall_seconds" not in info
    assert show_results.training_seconds(tmp_path) == pytest.approx(sum(r.get("seconds", 0) for r in history), abs=0.1)


def test_resume_after_a_kill_gives_the_uninterrupted_weights(dnn_sets, tmp_path, monkeypatch):
    history = run(dnn_sets, tmp_path / "whole")
    assert [r["epoch"] for r in history] == list(range(6)) and history[-1]["valid_ce"] < history[0]["valid_ce"]
    whole = load_hybrid_model(tmp_path / "whole" / "final.pt").module.state_dict()
    # killed in the middle of epoch 3: the checkpoint of epoch 2 survives, final.pt is not written
    real_epoch = nnet.newbob_epoch

    def dies_in_epoch_3(population, train, valid, config, generator, fitness, lr, epoch, chunk_size, samples):
        if epoch == 3:
            torch.randperm(10, generator=generator)  # it had started consuming the shuffling generator
            raise KeyboardInterrupt
        return real_epoch(population, train, valid, config, generator, fitness, lr, epoch, chunk_size, samples)

    monkeypatch.setattr(nnet, "newbob_epoch", dies_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        run(dnn_sets, tmp_path / "killed")
    monkeypatch.setattr(nnet, "newbob_epoch", real_epoch)
    assert not (tmp_path / "killed" / "final.pt").exists()
    assert torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)["history"][-1]["epoch"] == 2
    torch.manual_seed(123)  # the global RNG state is restored from the checkpoint as well
    resumed = run(dnn_sets, tmp_path / "killed", resume=True)
    def outcome(records):
        return [(r["epoch"], r["valid_ce"], r["valid_acc"], r["lr"], r["backed_off"]) for r in records]

    assert outcome(resumed) == outcome(history)
    weights = load_hybrid_model(tmp_path / "killed" / "final.pt").module.state_dict()
    assert all(torch.equal(weights[k], whole[k]) for k in whole)
    tsv = (tmp_path / "killed" / "history.tsv").read_text().splitlines()
    assert tsv[0].startswith("epoch\tvalid_ce\tvalid_acc") and len(tsv) == 7
    assert (tmp_path / "killed" / "training.png").stat().st_size > 0


def test_backed_off_epochs_keep_the_previous_model_and_halve(dnn_sets, tmp_path):
    model, config = fresh_model(dnn_sets)
    history = nnet.train_nnet(model, config, dnn_sets, NewBobConfig(lr=40.0, batch_size=64, max_epochs=4),
                              tmp_path, tensorboard=False)
    for before, after in zip(history, history[1:]):
        rose = not after["tried_ce"] <= before["valid_ce"]
        assert after["backed_off"] == rose
        assert after["lr"] == (before["lr"] / 2 if rose else before["lr"])
        assert after["valid_ce"] == pytest.approx(before["valid_ce"] if rose else after["tried_ce"], rel=1e-5)
    assert any(r["backed_off"] for r in history[1:])


def test_resume_refuses_a_checkpoint_of_other_settings(dnn_sets, tmp_path):
    run(dnn_sets, tmp_path, stop_after=1)
    model, config = fresh_model(dnn_sets)
    with pytest.raises(EsgdError, match="checkpoint.pt: made with other settings \\(newbob\\)"):
        nnet.train_nnet(model, config, dnn_sets, NewBobConfig(lr=0.1, max_epochs=3), tmp_path, seed=3,
                        resume=True, tensorboard=False)
    # re-aligned targets of the same shapes: the ESGD runs' data digest refuses them too
    features, targets = dnn_sets.train
    realigned = dataclasses.replace(dnn_sets, train=(features, targets.roll(1)))
    with pytest.raises(EsgdError, match="checkpoint.pt: made with other settings \\(train\\)"):
        run(realigned, tmp_path, resume=True)


def test_cli_trains_a_blstm_with_ivectors(task, tmp_path):
    args = ["--nnet-config", str(REPO / "conf/blstm.yaml"), "--model-type", "blstm", "--model-opt", "num_layers=1",
            "--model-opt", "cells=8", "--model-opt", "bottleneck=4", "--model-opt", "chunk=10", "--max-epochs", "2",
            "--cmvn", "true", "--train-ivectors", str(task["ivectors"]), "--valid-ivectors", str(task["ivectors"]),
            "--tensorboard", "false", str(task["data"]), str(task["train_ali"]), str(task["data"]),
            str(task["valid_ali"]), str(tmp_path / "blstm")]
    train_nnet_cli.main(args)
    model = load_hybrid_model(tmp_path / "blstm" / "final.pt")
    assert isinstance(model.config, BLSTMConfig) and model.config.input_dim == 13 + 3 and model.config.chunk == 10
    assert model.nnet_input["ivector_period"] == 5 and model.pdf_counts.sum() > 0
    with pytest.raises(SystemExit):
        train_nnet_cli.main(args[:2] + ["--model-type", "dnn"] + args[4:])


def test_train_nnet_sh_fails_loudly(tmp_path):
    script = str(REPO / "steps" / "train_nnet.sh")
    usage = subprocess.run(["bash", script], capture_output=True, text=True)
    assert usage.returncode != 0 and "Usage:" in usage.stderr
    missing = subprocess.run(["bash", script] + [str(tmp_path / f"nothing{i}") for i in range(5)],
                             capture_output=True, text=True, cwd=REPO)
    assert missing.returncode != 0 and "no such file" in missing.stderr and str(tmp_path) in missing.stderr
    bad = subprocess.run(["bash", script, "--model-type", "cnn"] + ["x"] * 5, capture_output=True, text=True)
    assert bad.returncode != 0 and "--model-type must be dnn or blstm" in bad.stderr
