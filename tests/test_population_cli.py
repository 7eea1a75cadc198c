"""esgd-train-esgd on the tiny hybrid task: every algorithm writes a decodable final.pt with its validation CE,
anchored and iterated runs never end worse than their anchor, and bad input fails with one clear line."""
import kaldi_hmm_gmm  # noqa: F401  (before kaldifst)
import json
import shutil
from pathlib import Path

import pytest
import torch

from esgd_asr.cli import show_results, train_esgd
from esgd_asr.errors import EsgdError
from esgd_asr.gmm.align import read_alignments, write_alignments
from esgd_asr.hybrid.model_file import load_hybrid_model
from esgd_asr.hybrid.prepare import prepare_hybrid_sets
from esgd_asr.population.algorithms import load_settings
from esgd_asr.train.nnet import evaluate
from hybrid_fixture import CONFIGS, TINY, make_hybrid_task, options

REPO = Path(__file__).resolve().parents[1]
MODEL = ["--model-opt", "splice=5", "--model-opt", "hidden=[24,24]", "--model-opt", "activations=[relu,sigmoid]"]


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return make_hybrid_task(tmp_path_factory.mktemp("esgd_cli"))


def data_args(task) -> list[str]:
    return ["--cmvn", "true", str(task["data"]), str(task["train_ali"]), str(task["data"]), str(task["valid_ali"])]


def train(task, out: Path, algorithm: str, extra=(), values=None) -> dict:
    train_esgd.main(["--algorithm", algorithm, *CONFIGS, *MODEL, *options({**TINY, **(values or {})}),
                     "--tensorboard", "false", "--plot", "false", "--progress", "false", *extra, *data_args(task),
                     str(out)])
    return torch.load(out / "final.pt", weights_only=True)


@pytest.fixture(scope="module")
def single(task, tmp_path_factory):
    """A single model trained by the no-evolution run, reused as the anchor."""
    out = tmp_path_factory.mktemp("single")
    train(task, out, "no-evolution", values={"mu": 2, "generations": 3})
    return out / "final.pt"


@pytest.mark.parametrize("algorithm", ["esgd", "population", "popdescent", "openai-es"])
def test_each_algorithm_writes_a_hybrid_model_with_its_validation_ce(task, tmp_path, algorithm):
    values = {"popdescent": {"mu": 3, "elite": 1, "generations": 2, "local_steps": 2, "batch_size": 32},
              "openai-es": {"pairs": 8, "generations": 2, "updates_per_generation": 2, "batch_size": 64,
                            "noise_table_size": 100000, "bucket_size": 500}}.get(algorithm)
    if values is not None:
        train_esgd.main(["--algorithm", algorithm, *CONFIGS, *MODEL, *options(values), "--tensorboard", "false",
                         "--plot", "false", "--progress", "false", *data_args(task), str(tmp_path)])
        saved = torch.load(tmp_path / "final.pt", weights_only=True)
    else:
        saved = train(task, tmp_path, algorithm)
    assert saved["format"] == "esgd-hybrid-model" and saved["info"]["algorithm"] == algorithm
    model = load_hybrid_model(tmp_path / "final.pt")
    assert model.nnet_input["left_context"] == 2 and model.pdf_counts.sum() > 0
    assert (tmp_path / "history.tsv").read_text().count("\n") == 3   # header + 2 generations
    info = saved["info"]
    assert info["valid_ce"] > 0 and 0 <= info["valid_acc"] <= 1
    # the fitness that selected the model is the CE that Table 1 reports (the whole validation set)
    assert info["fitness_ce"] == pytest.approx(info["valid_ce"], rel=1e-4)
    assert info["top_valid_ce"][0] == info["valid_ce"]


def test_table1_budget_and_top_quarter_are_recorded(task, tmp_path):
    info = train(task, tmp_path, "esgd", values={"mu": 8, "fitness_frames": 300})["info"]
    top = info["top_valid_ce"]
    assert len(top) == 2 and (tmp_path / "top" / "rank2.pt").is_file()
    assert load_hybrid_model(tmp_path / "top" / "rank2.pt").config == load_hybrid_model(tmp_path / "final.pt").config
    assert info["fitness_ce"] != pytest.approx(info["valid_ce"], rel=1e-4)   # a subset: both are printed
    assert info["mu"] == 8 and info["sgd_frames"] == 8 * info["member_frames"]
    assert "wall_seconds" not in info and show_results.training_seconds(tmp_path) > 0   # the time is in the history
    train(task, tmp_path, "esgd", values={"mu": 4})   # a smaller population into the same dir: no stale rank2
    assert not (tmp_path / "top" / "rank2.pt").exists()


def test_anchored_and_iterated_never_end_worse_than_their_anchor(task, single, tmp_path):
    anchor = load_hybrid_model(single)
    sets = prepare_hybrid_sets(anchor.config, task["data"], task["train_ali"], task["data"], task["valid_ali"],
                               cmvn=True)
    anchor_ce, _ = evaluate(anchor.module, sets.valid)
    for algorithm in ("anchored", "iterated"):
        saved = train(task, tmp_path / algorithm, algorithm, ["--anchor", str(single)])
        assert saved["info"]["valid_ce"] <= anchor_ce + 1e-6
        history = (tmp_path / algorithm / "history.tsv").read_text().splitlines()
        assert len(history) == 1 + (4 if algorithm == "iterated" else 2)   # iterated: 2 rounds of 2
    with pytest.raises(SystemExit):
        train(task, tmp_path / "none", "anchored")


def test_prepared_tensors_are_cached_until_an_input_changes(task, tmp_path, caplog):
    egs = ["--egs", str(tmp_path / "egs" / "egs.pt")]
    first = train(task, tmp_path / "a", "esgd", egs, values={"generations": 1})
    with caplog.at_level("INFO"):
        second = train(task, tmp_path / "b", "esgd", egs, values={"generations": 1})
    assert "the prepared tensors of an earlier run" in caplog.text
    assert all(torch.equal(first["state_dict"][k], second["state_dict"][k]) for k in first["state_dict"])
    caplog.clear()
    (task["valid_ali"] / "final.mdl").touch()
    with caplog.at_level("INFO"):
        train(task, tmp_path / "c", "esgd", egs, values={"generations": 1})
    assert "older than its inputs" in caplog.text


def test_resume_refuses_other_settings_and_bad_options_fail_clearly(task, tmp_path, capsys):
    train(task, tmp_path, "esgd", values={"generations": 1})
    with pytest.raises(SystemExit):
        train(task, tmp_path, "esgd", ["--resume", "true"], values={"generations": 1, "mu": 6})
    assert "checkpoint.pt: made with other settings (settings)" in capsys.readouterr().err
    realigned = tmp_path / "realigned"
    shutil.copytree(task["valid_ali"], realigned)
    alignments = dict(read_alignments(realigned / "ali.1.ark"))
    first = sorted(alignments)[0]
    alignments[first] = alignments[first][::-1].copy()   # the same frames, other targets
    write_alignments(realigned / "ali.1.ark", alignments)
    args = data_args(task)
    args[-1] = str(realigned)
    with pytest.raises(SystemExit):
        train_esgd.main(["--algorithm", "esgd", *CONFIGS, *MODEL, *options({**TINY, "generations": 1}), "--resume",
                         "true", "--tensorboard", "false", "--plot", "false", "--progress", "false", *args,
                         str(tmp_path)])
    assert "made with other settings (valid)" in capsys.readouterr().err
    for bad, message in [(["--algorithm", "cmaes"], "unknown algorithm 'cmaes'"),
                         (["--algorithm", "esgd", "--anchor", "x.pt"], "--anchor is used by"),
                         (["--algorithm", "esgd", "--esgd-opt", "muu=3"], "unknown option 'muu'")]:
        with pytest.raises(SystemExit):
            train_esgd.main(bad + data_args(task) + [str(tmp_path / "bad")])
        assert message in capsys.readouterr().err
    with pytest.raises(EsgdError, match="iterated needs rounds >= 2"):
        load_settings("iterated", str(REPO / "conf/esgd.yaml"), "anchors")


def test_two_processes_train_what_one_process_trains(task, tmp_path, capsys):
    threads = torch.get_num_threads()   # the ranks run one thread each: so does the one-process run
    try:
        one = train(task, tmp_path / "one", "esgd", ["--num-threads", "1"])
    finally:
        torch.set_num_threads(threads)
    two = train(task, tmp_path / "two", "esgd", ["--num-threads", "1", "--nproc", "2"])
    assert one["info"] == two["info"] and one["state_dict"].keys() == two["state_dict"].keys()
    assert all(torch.equal(one["state_dict"][k], two["state_dict"][k]) for k in one["state_dict"])
    histories = [[{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in
                  (tmp_path / run / "history.jsonl").read_text().splitlines()] for run in ("one", "two")]
    assert histories[0] == histories[1] and len(histories[0]) == 3   # 2 generations and the fine-tune
    with pytest.raises(SystemExit):
        train(task, tmp_path / "bad", "esgd", ["--nproc", "6"])
    assert "6 processes for mu 5 and lambda 8: each process needs at least one member" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_esgd.main(["--algorithm", "popdescent", *CONFIGS, *options({"mu": 3}), "--nproc", "2", *data_args(task),
                         str(tmp_path / "bad")])
    assert "--algorithm popdescent runs in one process only" in capsys.readouterr().err
