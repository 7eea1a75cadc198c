"""Faults and bad inputs of the training steps and the shared command wrapper: a run that fails on its inputs keeps
the finished run's files, anchors with non-finite weights are refused, OS errors end in one line."""
import kaldi_hmm_gmm  # noqa: F401  (before kaldifst)
import os
import subprocess
from pathlib import Path

import pytest
import torch

from esgd_asr.cli import train_nnet
from esgd_asr.models import build_model
from esgd_asr.models.anchor import load_hybrid_model, save_hybrid_model
from hybrid_fixture import make_hybrid_task

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PATH=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished single-model run (final.pt, checkpoint.pt) on the tiny hybrid task: (task, its data args, exp dir)."""
    root = tmp_path_factory.mktemp("faults")
    task = make_hybrid_task(root)
    config = root / "dnn.yaml"
    config.write_text("type: dnn\ndefault: {splice: 5, hidden: [16], activations: [relu]}\n")
    data = [str(task["data"]), str(task["train_ali"]), str(task["data"]), str(task["valid_ali"])]
    options = ["--nnet-config", str(config), "--cmvn", "true", "--max-epochs", "1"]  # those of train_nnet.sh too
    train_nnet.main(options + ["--tensorboard", "false"] + data + [str(root / "exp")])
    return options, data, root / "exp"


def snapshot(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file() and p.name != ".lock"}


def train_nnet_sh(options, data, exp, *extra):
    return subprocess.run(["bash", str(REPO / "steps" / "train_nnet.sh"), *options, *extra, *data, str(exp)],
                          capture_output=True, text=True, cwd=REPO, env=ENV)


def test_anchor_with_non_finite_weights_is_refused_and_the_finished_run_kept(finished, tmp_path):
    options, data, exp = finished
    model = load_hybrid_model(exp / "final.pt")
    with torch.no_grad():
        next(model.module.parameters()).fill_(float("nan"))
    bad = save_hybrid_model(tmp_path / "nan.pt", model.module, model.config, model.nnet_input, model.pdf_counts)
    before = snapshot(exp)
    result = train_nnet_sh(options, data, exp, "--init-model", bad)
    assert result.returncode == 1
    assert f"esgd-train-nnet: error: {bad}: non-finite weights (NaN or inf) in hidden.0.weight" in result.stderr
    assert snapshot(exp) == before


def test_corrupt_checkpoint_is_refused_and_final_pt_kept(finished):
    options, data, exp = finished
    checkpoint = exp / "checkpoint.pt"
    good = checkpoint.read_bytes()
    try:
        checkpoint.write_bytes(good[: len(good) // 2])
        before = snapshot(exp)
        result = train_nnet_sh(options, data, exp, "--resume", "true")
        assert result.returncode == 1
        assert f"esgd-train-nnet: error: {checkpoint}: unreadable checkpoint" in result.stderr
        assert snapshot(exp) == before
    finally:
        checkpoint.write_bytes(good)
