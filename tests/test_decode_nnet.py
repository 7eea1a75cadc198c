"""Hybrid decoding: posteriors / priors over the GMM system's HCLG. A model that outputs the priors for every
frame gives zero acoustic scores, so the decoder returns the language model's best path; a trained DNN recognises
the tiny task; models of the wrong senone count are refused."""
import kaldi_hmm_gmm  # noqa: F401  (before kaldifst)
import math
import shutil
import subprocess
from pathlib import Path

import kaldifst
import numpy as np
import pytest
import torch

from esgd_asr.cli import decode_nnet, mkgraph, score, train_nnet
from esgd_asr.data.hybrid import prepare_hybrid_sets, read_senones
from esgd_asr.data.kaldi_dir import read_table
from esgd_asr.decode.hybrid import BLOCKED_LOG_PRIOR, log_priors
from esgd_asr.decode.lattice import best_paths, read_lattice_archive
from esgd_asr.gmm.lang_dir import LangDir
from esgd_asr.models import DNNConfig, build_model
from esgd_asr.models.anchor import save_hybrid_model
from hybrid_fixture import make_hybrid_task

REPO = Path(__file__).resolve().parents[1]
# one word per sentence; the LM prefers SEA clearly, then KID, the others are unlikely
WORD_COSTS = {"SEA": 0.2, "KID": 2.5, "BAD": 6.0, "TAB": 6.0, "SKI": 6.0}


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    task = make_hybrid_task(tmp_path_factory.mktemp("hybrid"))
    lang = task["root"] / "lang_one_word"
    shutil.copytree(task["lang"], lang)
    words = LangDir.read(lang).words
    g = "".join(f"0 1 {words[w]} {words[w]} {c}\n" for w, c in WORD_COSTS.items()) + "1 0\n"
    kaldifst.compile(s=g, acceptor=False).write(str(lang / "G.fst"))
    mkgraph.main([str(lang), str(task["exp"] / "final.mdl"), str(task["root"] / "graph_one_word")])
    task["graph_one_word"] = task["root"] / "graph_one_word"
    return task


def nnet_input(task, config):
    return prepare_hybrid_sets(config, task["data"], task["train_ali"], task["data"], task["valid_ali"], cmvn=True)


def test_log_priors_block_unseen_senones():
    assert torch.allclose(log_priors([1, 0, 3]), torch.tensor([math.log(0.25), BLOCKED_LOG_PRIOR, math.log(0.75)]))


def test_a_model_that_outputs_the_priors_decodes_the_lm_best_path(task, tmp_path):
    config = DNNConfig(splice=3, hidden=[4], activations=["relu"])
    sets = nnet_input(task, config)
    config = sets.fit_config(config)
    counts = sets.pdf_counts.double()
    model = build_model(config)
    with torch.no_grad():  # logits = log priors whatever the input: the posteriors are the priors
        model.output.weight.zero_()
        model.output.bias.copy_(torch.where(counts > 0, torch.log(counts / counts.sum()), -30.0))
    path = save_hybrid_model(tmp_path / "priors.pt", model, config, sets.nnet_input, sets.pdf_counts)
    decode_nnet.main(["--beam=30", "--lattice-beam=10", str(task["graph_one_word"]), str(task["data"]), str(path),
                      str(task["exp"] / "final.mdl"), str(tmp_path / "decode")])
    words = {i: w for w, i in LangDir.read(task["lang"]).words.items()}
    lattices = dict(read_lattice_archive(tmp_path / "decode" / "lat.1.gz"))
    assert len(lattices) == len(read_table(task["data"] / "text"))
    for utt, lat in lattices.items():
        assert np.abs(lat.acoustic).max() < 1e-2, utt  # posteriors / priors = 1: no acoustic evidence at all
        for lmwt in (1.0, 10.0):
            assert [words[w] for w in best_paths(lat, [lmwt], [0.0])[lmwt, 0.0]] == ["SEA"], utt


def test_trained_dnn_recognises_the_task_through_the_cli(task, tmp_path):
    exp = tmp_path / "dnn"
    train_nnet.main(["--nnet-config", str(REPO / "conf/dnn.yaml"), "--model-opt", "splice=5",
                     "--model-opt", "hidden=[64]", "--model-opt", "activations=[relu]", "--lr", "0.5",
                     "--max-epochs", "6", "--cmvn", "true", "--tensorboard", "false", str(task["data"]),
                     str(task["train_ali"]), str(task["data"]), str(task["valid_ali"]), str(exp)])
    shutil.copy(task["exp"] / "final.mdl", exp / "final.mdl")
    for job in (1, 2):
        decode_nnet.main(["--nj=2", f"--job={job}", str(task["graph"]), str(task["data"]), str(exp / "final.pt"),
                          str(exp / "final.mdl"), str(exp / "decode")])
    assert {u for j in (1, 2) for u, _ in read_lattice_archive(exp / "decode" / f"lat.{j}.gz")} == set(
        read_table(task["data"] / "text"))
    score.main(["--min-lmwt=4", "--max-lmwt=12", str(task["data"]), str(task["graph"]), str(exp / "decode")])
    wer = float((exp / "decode" / "best_wer").read_text().split()[1])
    assert wer < 10.0
    assert len((exp / "decode" / "timing.1").read_text().split()) == 3


def test_a_model_of_another_senone_count_is_refused(task, tmp_path, capsys):
    config = DNNConfig(splice=3, hidden=[4], activations=["relu"])
    sets = nnet_input(task, config)
    wrong = DNNConfig(**{**sets.fit_config(config).__dict__, "num_targets": 500})
    path = save_hybrid_model(tmp_path / "wrong.pt", build_model(wrong), wrong, sets.nnet_input, torch.ones(500))
    with pytest.raises(SystemExit):
        decode_nnet.main([str(task["graph"]), str(task["data"]), str(path), str(task["exp"] / "final.mdl"),
                          str(tmp_path / "decode")])
    err = capsys.readouterr().err
    assert "wrong.pt: 500 senone counts, but" in err and f"has {read_senones(task['exp']).num_pdfs} pdfs" in err
    with pytest.raises(SystemExit):
        decode_nnet.main(["--pdf-counts", str(task["train_ali"] / "nothing"), str(task["graph"]), str(task["data"]),
                          str(path), str(task["exp"] / "final.mdl"), str(tmp_path / "decode")])
    capsys.readouterr()
    (tmp_path / "counts").write_text("[ " + " ".join(["1"] * read_senones(task["exp"]).num_pdfs) + " ]\n")
    with pytest.raises(SystemExit):
        decode_nnet.main(["--pdf-counts", str(tmp_path / "counts"), str(task["graph"]), str(task["data"]), str(path),
                          str(task["exp"] / "final.mdl"), str(tmp_path / "decode")])
    assert "wrong.pt: the model has 500 outputs but the tree has" in capsys.readouterr().err
    assert not (tmp_path / "decode" / "lat.1.gz").exists()


def test_decode_nnet_sh_fails_loudly(tmp_path):
    script = str(REPO / "steps" / "decode_nnet.sh")
    usage = subprocess.run(["bash", script], capture_output=True, text=True)
    assert usage.returncode != 0 and "Usage:" in usage.stderr
    missing = subprocess.run(["bash", script] + [str(tmp_path / f"nothing{i}") for i in range(3)],
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "no such file" in missing.stderr and str(tmp_path) in missing.stderr
