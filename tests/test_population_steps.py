"""steps/train_esgd.sh and steps/finetune.sh on the tiny hybrid task: a train_esgd.sh killed with SIGKILL resumes
to the uninterrupted result, fine-tuning never loses the model, and both fail loudly on bad input."""
import kaldi_hmm_gmm  # noqa: F401  (before kaldifst)
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from esgd_asr.cli import train_esgd, train_nnet
from esgd_asr.hybrid.model_file import load_hybrid_model
from hybrid_fixture import TINY, make_hybrid_task

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PATH=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}")


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return make_hybrid_task(tmp_path_factory.mktemp("esgd_steps"))


def script(name: str, *args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "steps" / name), *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, env=ENV, **kwargs)


def tiny_dnn_config(tmp_path: Path) -> Path:
    config = tmp_path / "dnn.yaml"
    config.write_text("type: dnn\ndefault: {splice: 5, hidden: [24, 24], activations: [relu, sigmoid]}\n")
    return config


def test_a_killed_train_esgd_sh_resumes_to_the_uninterrupted_result(task, tmp_path):
    values = {**TINY, "generations": 6, "finetune.max_epochs": 0}
    opts = " ".join(f"{k}={v}".replace(" ", "") for k, v in values.items())
    common = ["--algorithm", "esgd", "--esgd-opts", opts, "--cmvn", "true", "--nnet-config", tiny_dnn_config(tmp_path),
              "--num-threads", 1]  # tiny matrices: a second thread only waits (and spins on a loaded machine)
    data = [task["data"], task["train_ali"], task["data"], task["valid_ali"]]
    # the uninterrupted run in this process, with the options train_esgd.sh passes
    train_esgd.main(["--algorithm", "esgd", "--esgd-config", str(REPO / "conf/esgd.yaml"), "--nnet-config",
                     str(tiny_dnn_config(tmp_path)), "--cmvn", "true", "--progress", "false",
                     *[arg for item in opts.split() for arg in ("--esgd-opt", item)], *map(str, data),
                     str(tmp_path / "whole")])
    killed = subprocess.Popen(["bash", str(REPO / "steps/train_esgd.sh"), *map(str, common), *map(str, data),
                               str(tmp_path / "killed")], cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    while not checkpoint.exists() and killed.poll() is None:
        time.sleep(0.01)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    done = [r for r in torch.load(checkpoint, weights_only=False)["history"] if "generation" in r]
    assert 1 <= len(done) < 6 and not (tmp_path / "killed" / "final.pt").exists()
    resumed = script("train_esgd.sh", *common, "--resume", "true", *data, tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr
    assert "validation CE" in resumed.stdout and "after 6 generations" in resumed.stdout
    weights = [load_hybrid_model(tmp_path / d / "final.pt").module.state_dict() for d in ("whole", "killed")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    tables = [[line.split("\t") for line in (tmp_path / d / "history.tsv").read_text().splitlines()]
              for d in ("whole", "killed")]
    timing = tables[0][0].index("seconds")   # wall time: the one column no two runs share
    assert [[c for i, c in enumerate(row) if i != timing] for row in tables[0]] == \
        [[c for i, c in enumerate(row) if i != timing] for row in tables[1]]


def test_finetune_sh_never_loses_the_model_and_scripts_fail_loudly(task, tmp_path):
    config = tiny_dnn_config(tmp_path)
    data = [task["data"], task["train_ali"], task["data"], task["valid_ali"]]
    train_nnet.main(["--nnet-config", str(config), "--cmvn", "true", "--max-epochs", "1", "--lr", "0.2",
                     "--tensorboard", "false", *map(str, data), str(tmp_path / "single")])
    single = tmp_path / "single" / "final.pt"
    tuned = script("finetune.sh", "--epochs", 2, "--lr", 0.05, "--batch-size", 32, "--cmvn", "true", "--num-threads", 1,
                   "--nnet-config", config, single.parent, *data, tmp_path / "ft")
    assert tuned.returncode == 0, tuned.stderr
    before = torch.load(single, weights_only=True)["info"]["valid_ce"]
    after = torch.load(tmp_path / "ft" / "final.pt", weights_only=True)["info"]["valid_ce"]
    assert after <= before + 1e-6
    for name, count in (("train_esgd.sh", 5), ("finetune.sh", 6)):
        usage = script(name)
        assert usage.returncode != 0 and "Usage:" in usage.stderr
        missing = script(name, *[tmp_path / f"nothing{i}" for i in range(count)])
        assert missing.returncode != 0 and "no such file" in missing.stderr
    bad = script("train_esgd.sh", "--algorithm", "cmaes", *["x"] * 5)
    assert bad.returncode != 0 and "unknown algorithm 'cmaes'" in bad.stderr
    no_anchor = script("train_esgd.sh", "--algorithm", "iterated", *["x"] * 5)
    assert no_anchor.returncode != 0 and "needs --anchor" in no_anchor.stderr


def esgd_step_command(task, tmp_path: Path, *options) -> list[str]:
    """The esgd-train-esgd command line of a one-generation train_esgd.sh run into tmp_path/RUN (--cmd echo prints
    it), with TINY settings; RUN stands for the exp dir."""
    values = {**TINY, "generations": 1, "finetune.max_epochs": 0}
    opts = " ".join(f"{k}={v}".replace(" ", "") for k, v in values.items())
    data = [task["data"], task["train_ali"], task["data"], task["valid_ali"]]
    step = script("train_esgd.sh", "--cmd", "echo", "--esgd-opts", opts, "--cmvn", "true", "--nnet-config",
                  tiny_dnn_config(tmp_path), *options, *data, tmp_path / "RUN")
    assert step.returncode == 0, step.stderr
    return step.stdout.splitlines()[0].split()[2:] + ["--progress", "false", "--tensorboard", "false", "--plot",
                                                      "false", "--num-threads", "1"]


def test_train_esgd_sh_seed_repeats_a_run_exactly_and_another_seed_differs(task, tmp_path):
    command = esgd_step_command(task, tmp_path, "--seed", 7)
    assert "seed=7" in command
    weights = {}
    for run, extra in (("a", []), ("b", []), ("c", ["--esgd-opt", "seed=8"])):
        train_esgd.main([arg.replace(str(tmp_path / "RUN"), str(tmp_path / run)) for arg in command] + extra)
        weights[run] = load_hybrid_model(tmp_path / run / "final.pt").module.state_dict()
    assert all(torch.equal(weights["a"][k], weights["b"][k]) for k in weights["a"])
    assert not all(torch.equal(weights["a"][k], weights["c"][k]) for k in weights["a"])


def descendants(pid: int) -> list[int]:
    """The processes started, directly or not, by process `pid`."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:   # it has just ended
            pass
    return children + [d for child in children for d in descendants(child)]


def rank_of(pid: int) -> str | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    return next((v.decode()[len("RANK="):] for v in environ if v.startswith(b"RANK=")), None)


def test_train_esgd_sh_on_two_processes_names_a_killed_rank_and_resumes_on_one(task, tmp_path):
    values = {**TINY, "generations": 4, "finetune.max_epochs": 0}
    opts = " ".join(f"{k}={v}".replace(" ", "") for k, v in values.items())
    common = ["--algorithm", "esgd", "--esgd-opts", opts, "--cmvn", "true", "--nnet-config", tiny_dnn_config(tmp_path),
              "--num-threads", 1]
    data = [task["data"], task["train_ali"], task["data"], task["valid_ali"]]
    whole = script("train_esgd.sh", *common, *data, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    run = subprocess.Popen(["bash", str(REPO / "steps/train_esgd.sh"), *map(str, common), "--nproc", "2",
                            *map(str, data), str(tmp_path / "killed")], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    while not checkpoint.exists() and run.poll() is None:
        time.sleep(0.01)
    rank_one = [pid for pid in descendants(run.pid) if rank_of(pid) == "1"]
    assert len(rank_one) == 1, "rank 1 has ended already"
    os.kill(rank_one[0], signal.SIGKILL)
    _, stderr = run.communicate()
    assert run.returncode != 0
    done = torch.load(checkpoint, weights_only=False)["algorithm"]["generation"]
    assert 1 <= done < 4 and not (tmp_path / "killed" / "final.pt").exists()
    line = (f"rank 1 (pid {rank_one[0]}) was killed by SIGKILL; resume from {checkpoint} (generation {done}) with "
            "--resume true, on any number of processes")
    assert line in stderr and f"esgd-train-esgd: error: {line}" in (tmp_path / "killed/log/train.log").read_text()
    resumed = script("train_esgd.sh", *common, "--resume", "true", *data, tmp_path / "killed")   # on one process
    assert resumed.returncode == 0, resumed.stderr
    weights = [load_hybrid_model(tmp_path / d / "final.pt").module.state_dict() for d in ("whole", "killed")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
