"""Members sharded over processes (gloo, 2 CPU processes through the launcher): the run equals one process's with
the same seed, and a run whose rank is killed stops with one line naming it and resumes to the same result, on 2
processes or on 1."""
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import distributed_fixture
from distributed_fixture import data, factory, settings
from esgd_asr.errors import EsgdError
from esgd_asr.population.checkpoint import CHECKPOINT_NAME
from esgd_asr.population.distributed import ShardedESGD, build_sharded
from esgd_asr.population.driver import run_algorithm
from esgd_asr.population.esgd import ESGD
from esgd_asr.population.launch import launch
from esgd_asr.population.ranks import Ranks
from esgd_asr.population.shard import Shard
from untimed import untimed

WORKER = [sys.executable, distributed_fixture.__file__]


@contextmanager
def one_thread():
    """Intra-op threads as each rank runs (1): another count splits the CPU's reductions otherwise."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The one-process run: its directory and the algorithm at its end."""
    out = tmp_path_factory.mktemp("single")
    algorithm = ESGD(settings(), factory, *data())
    with one_thread():
        run_algorithm(algorithm, out, progress=False, tensorboard=False, plot=False)
    return out, algorithm


def assert_same_run(out: Path, single) -> None:
    reference_dir, reference = single
    saved = torch.load(out / CHECKPOINT_NAME, weights_only=False)
    expected = torch.load(reference_dir / CHECKPOINT_NAME, weights_only=False)
    assert untimed(saved["history"]) == untimed(expected["history"])
    assert [r["generation"] for r in saved["history"] if "generation" in r] == [1, 2]
    for name, stack in reference.population.params.items():
        assert torch.equal(saved["algorithm"]["params"][name], stack), name
    assert torch.equal(saved["algorithm"]["fitness"], reference.fitness)
    assert saved["algorithm"]["member_frames"] == reference.member_frames
    assert saved["algorithm"]["sgd_frames"] == reference.sgd_frames
    final, expected_final = torch.load(out / "final.pt"), torch.load(reference_dir / "final.pt")
    assert all(torch.equal(final[k], expected_final[k]) for k in expected_final)


def test_two_processes_run_the_one_process_run(tmp_path, single):
    launch([*WORKER, str(tmp_path)], 2, tmp_path / CHECKPOINT_NAME)
    assert_same_run(tmp_path, single)


@pytest.mark.parametrize("killed", [1, 0])
def test_a_killed_rank_stops_the_run_and_it_resumes_exactly(tmp_path, single, killed):
    out = tmp_path / "run"
    with pytest.raises(EsgdError, match=rf"^rank {killed} \(pid \d+\) was killed by SIGKILL; resume from "
                                        rf"{out / CHECKPOINT_NAME} \(generation 1\) with --resume true"):
        launch([*WORKER, str(out), str(killed)], 2, out / CHECKPOINT_NAME)
    assert torch.load(out / CHECKPOINT_NAME, weights_only=False)["algorithm"]["generation"] == 1
    assert not (out / "final.pt").exists()
    shutil.copytree(out, tmp_path / "one")
    launch([*WORKER, str(out)], 2, out / CHECKPOINT_NAME)   # on 2 processes again
    assert_same_run(out, single)
    resumed = ESGD(settings(), factory, *data())              # on 1 process
    with one_thread():
        run_algorithm(resumed, tmp_path / "one", resume=True, progress=False, tensorboard=False, plot=False)
    assert_same_run(tmp_path / "one", single)


def test_a_run_that_fails_before_a_checkpoint_says_so(tmp_path):
    with pytest.raises(EsgdError, match=r"^rank 1 \(pid \d+\) exited with status 1; no checkpoint was written yet"):
        launch([sys.executable, "-c", "import os, sys; sys.exit(int(os.environ['RANK']))"], 2,
               tmp_path / CHECKPOINT_NAME)


def test_shards_and_refusals():
    assert [Shard.of(7, rank, 3) for rank in range(3)] == [Shard(0, 3, 7), Shard(3, 5, 7), Shard(5, 7, 7)]
    with pytest.raises(EsgdError, match="cannot deal 2 members over 3 processes"):
        Shard.of(2, 0, 3)
    ranks = Ranks(0, 6, torch.device("cpu"))
    with pytest.raises(EsgdError, match="6 processes for mu 5 and lambda 7"):
        ShardedESGD(settings(), factory, *data(), "cpu", ranks)
    with pytest.raises(EsgdError, match="--algorithm anchored runs in one process only"):
        build_sharded("anchored", settings(), factory, *data(), ranks)
