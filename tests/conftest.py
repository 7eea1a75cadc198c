"""Shared fixtures: a tiny synthesised corpus (made once per session) and the repository root."""
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

TINY_CORPUS = {"train-hours": "0.01", "dev-minutes": "0.3", "test-minutes": "0.3", "num-train-speakers": "3",
               "num-dev-speakers": "2", "num-test-speakers": "2", "heldout-minutes": "0.2", "num-heldout-speakers": "2",
               "max-eval-oov": "100", "seed": "7"}
TINY_CORPUS_OPTIONS = [f"--{name}={value}" for name, value in TINY_CORPUS.items()] + ["--nj=2"]


def pytest_configure(config):
    config.addinivalue_line("markers", "recipe: runs run.sh's 15 stages on a tiny corpus (most of the suite's time); "
                                       "-m 'not recipe' leaves them out")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A synthesised corpus of a few dozen utterances: (corpus_dir, manifest_dir, data_root)."""
    from esgd_asr.cli.make_synth_corpus import main

    root = tmp_path_factory.mktemp("tiny_corpus")
    main(TINY_CORPUS_OPTIONS + [str(root / "corpus"), str(root / "manifests"), str(root / "data")])
    return root / "corpus", root / "manifests", root / "data"


@pytest.fixture
def data_copy(tiny_corpus, tmp_path):
    """A private copy of the tiny corpus' train data dir, free to corrupt."""
    dst = tmp_path / "train"
    shutil.copytree(tiny_corpus[2] / "train", dst)
    return dst


def bash(command, cwd=REPO, env=None) -> subprocess.CompletedProcess:
    """Run `command` under bash with the project's venv first on PATH, in a session of its own: a test that stops
    (a failed assertion elsewhere, pytest-timeout) kills what it started, so no orphan keeps writing or locking."""
    full_env = dict(os.environ, PATH=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}", **(env or {}))
    with subprocess.Popen(["bash", "-c", command], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=full_env, start_new_session=True) as proc:
        try:
            out, err = proc.communicate()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
