"""Faults and bad inputs of the training steps and the shared command wrapper: a run that fails on its inputs keeps
the finished run's files, anchors with non-finite weights are refused, OS errors end in one line."""
import kaldi_hmm_gmm  # noqa: F401  (before kaldifst)
import os
import subprocess
from pathlib import Path

import pytest
import torch

from esgd_asr.cli import train_esgd, train_nnet
from esgd_asr.hybrid.model_file import load_hybrid_model, save_hybrid_model
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


def refused(main, argv, capsys) -> str:
    """The one line a command refusing its input prints (exit status 1)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    return err


def test_resume_checkpoint_with_non_finite_weights_is_refused_and_the_finished_run_kept(finished, capsys):
    options, data, exp = finished
    checkpoint = exp / "checkpoint.pt"
    good = checkpoint.read_bytes()
    try:
        saved = torch.load(checkpoint, weights_only=False)
        saved["state"]["hidden.0.bias"][3] = float("inf")
        torch.save(saved, checkpoint)
        before = snapshot(exp)
        err = refused(train_nnet.main, options + ["--resume", "true", "--tensorboard", "false"] + data + [str(exp)],
                      capsys)
        assert err.endswith(f"error: {checkpoint}: non-finite weights (NaN or inf) in hidden.0.bias")
        assert snapshot(exp) == before
    finally:
        checkpoint.write_bytes(good)


def test_esgd_checkpoint_with_non_finite_weights_of_a_live_member_is_refused(finished, tmp_path, capsys):
    options, data, _ = finished
    argv = ["--algorithm", "esgd", "--esgd-config", str(REPO / "conf/esgd.yaml"), *options[:4], "--progress", "false",
            "--tensorboard", "false", "--plot", "false", "--esgd-opt", "mu=3", "--esgd-opt", "offspring=4",
            "--esgd-opt", "generations=1", "--esgd-opt", "finetune.max_epochs=0", *data, str(tmp_path / "esgd")]
    train_esgd.main(argv)
    checkpoint = tmp_path / "esgd" / "checkpoint.pt"
    saved = torch.load(checkpoint, weights_only=False)
    member = int(torch.isfinite(saved["algorithm"]["fitness"]).nonzero()[-1])
    saved["algorithm"]["params"]["hidden.0.weight"][member, 0, 0] = float("nan")
    torch.save(saved, checkpoint)
    before = snapshot(tmp_path / "esgd")
    err = refused(train_esgd.main, argv + ["--resume", "true"], capsys)
    assert err.endswith(f"error: {checkpoint}: non-finite weights (NaN or inf) in hidden.0.weight of member {member}")
    assert snapshot(tmp_path / "esgd") == before
