"""Hybrid decoding: posteriors / priors over the GMM system's HCLG. A model that outputs the priors for every
frame gives zero acoustic scores, so the decoder returns the language model's best path; a trained DNN recognises
the tiny task; models of the wrong senone count are refused."""
import kaldi_hmm_gmm  # noqa: F401  (before kaldifst)
import gzip
import math
import shutil
import struct
import subprocess
from pathlib import Path

import kaldifst
import kaldiio
import numpy as np
import pytest
import torch

from esgd_asr.cli import decode_nnet, mkgraph, nnet_forward, score, train_nnet
from esgd_asr.data.kaldi_dir import read_table
from esgd_asr.decode.hybrid import BLOCKED_LOG_PRIOR, HybridScorer, log_priors
from esgd_asr.decode.lattice import best_paths, read_lattice_archive
from esgd_asr.errors import EsgdError
from esgd_asr.gmm.align import read_alignments
from esgd_asr.gmm.kaldi_model import load_transitions
from esgd_asr.gmm.lang_dir import LangDir
from esgd_asr.gmm.model import GmmHmm
from esgd_asr.hybrid.model_file import load_hybrid_model, save_hybrid_model
from esgd_asr.hybrid.prepare import prepare_hybrid_sets, read_senones
from esgd_asr.models import DNNConfig, build_model
from hybrid_fixture import IVECTOR_DIM, IVECTOR_PERIOD, make_hybrid_task
from nnet3_fixture import every_feature_text, matrix, vector

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


def test_an_imported_kaldi_tdnn_decodes_with_its_declared_input(task, tmp_path, capsys):
    """A Kaldi nnet3 text model with an i-vector input (ReplaceIndex) and spliced layers, whose output is the
    log priors whatever its input: decoded through its own input (raw features + i-vectors), the LM's best path."""
    sets = nnet_input(task, DNNConfig(splice=3, hidden=[4], activations=["relu"]))
    counts = sets.pdf_counts.double()
    priors = torch.where(counts > 0, torch.log(counts / counts.sum()), -30.0)
    rng = np.random.default_rng(0)
    dim, senones = sets.frame_dim, len(counts)
    text = (f"<Nnet3> \ninput-node name=ivector dim={IVECTOR_DIM}\ninput-node name=input dim={dim}\n"
            "component-node name=tdnn1 component=tdnn1 input=Append(Offset(input, -2), input, Offset(input, 2), "
            "ReplaceIndex(ivector, t, 0))\ncomponent-node name=relu1 component=relu1 input=tdnn1\n"
            "component-node name=tdnn2 component=tdnn2 input=Append(Offset(relu1, -1), relu1)\n"
            "component-node name=prob component=prob input=tdnn2\noutput-node name=output input=prob\n\n"
            f"<NumComponents> 4 \n<ComponentName> tdnn1 <NaturalGradientAffineComponent> <LinearParams>  "
            f"{matrix(rng, 6, 3 * dim + IVECTOR_DIM)}\n<BiasParams>  {vector(np.zeros(6))}\n"
            f"</NaturalGradientAffineComponent>\n<ComponentName> relu1 <RectifiedLinearComponent> <Dim> 6 "
            f"</RectifiedLinearComponent>\n<ComponentName> tdnn2 <AffineComponent> <LinearParams>  [\n"
            + "\n".join(" ".join(["0"] * 12) for _ in range(senones)) + f" ]\n<BiasParams>  {vector(priors)}\n"
            f"</AffineComponent>\n<ComponentName> prob <SoftmaxComponent> <Dim> {senones} </SoftmaxComponent>\n"
            "</Nnet3> \n")
    (tmp_path / "final.txt").write_text(text)
    (tmp_path / "counts").write_text("[ " + " ".join(str(int(c)) for c in counts) + " ]\n")
    args = ["--beam=30", "--lattice-beam=10", "--pdf-counts", str(tmp_path / "counts"), str(task["graph_one_word"]),
            str(task["data"]), str(tmp_path / "final.txt"), str(task["exp"] / "final.mdl"), str(tmp_path / "decode")]
    with pytest.raises(SystemExit):
        decode_nnet.main(args)
    assert "the network input needs i-vectors, but no i-vector dir was given" in capsys.readouterr().err
    decode_nnet.main(["--ivectors", str(task["ivectors"])] + args)
    model = load_hybrid_model(tmp_path / "final.txt")  # its input: raw features, no normalisation of ours
    model.nnet_input["ivector_period"] = IVECTOR_PERIOD
    scorer = HybridScorer(model, counts)
    frames = scorer.nnet_input.frames(task["data"], None, task["ivectors"])
    first = kaldiio.load_mat(read_table(task["data"] / "feats.scp")[frames.utterances[0]])
    assert torch.equal(frames.features[:len(first), :dim], torch.tensor(first))
    # a TDNN scored over chunks of frames, one pass each: what its spliced frames give one by one (the i-vector
    # of each frame made its utterance's first, as one per chunk is read)
    (tmp_path / "tdnn.txt").write_text(every_feature_text(feat_dim=dim, num_targets=senones).replace(
        "IfDefined(Offset(relu1, -4))", "Offset(relu1, -4)"))
    tdnn = load_hybrid_model(tmp_path / "tdnn.txt")
    tdnn.take_ivector_period(IVECTOR_PERIOD)
    scorer = HybridScorer(tdnn, counts)
    for u in range(len(frames.utterances)):
        frames.features[frames.offsets[u]:frames.offsets[u + 1], dim:] = frames.features[frames.offsets[u], dim:]
    windows, _ = scorer.nnet_input.utterance_inputs(frames)
    with torch.no_grad():
        chunked, one_by_one = scorer.log_posteriors(frames), torch.log_softmax(tdnn.module(windows), -1)
    assert (chunked - one_by_one).abs().max() < 2e-6 * one_by_one.abs().max()  # float32 (log-posteriors to -110)
    # the same scores as a Kaldi archive for latgen-faster-mapped
    nnet_forward.main(["--ivectors", str(task["ivectors"]), "--pdf-counts", str(tmp_path / "counts"),
                       str(task["data"]), str(tmp_path / "tdnn.txt"), str(tmp_path / "loglikes.ark")])
    written = dict(kaldiio.load_ark(str(tmp_path / "loglikes.ark")))
    expected = scorer.pseudo_loglikes(scorer.nnet_input.frames(task["data"], None, task["ivectors"]))
    assert list(written) == frames.utterances
    assert np.allclose(np.concatenate([written[u] for u in frames.utterances]), expected.numpy(), atol=1e-5)
    words = {i: w for w, i in LangDir.read(task["lang"]).words.items()}
    lattices = dict(read_lattice_archive(tmp_path / "decode" / "lat.1.gz"))
    assert len(lattices) == len(read_table(task["data"] / "text"))
    for utt, lat in lattices.items():
        assert np.abs(lat.acoustic).max() < 1e-2, utt  # posteriors / priors = 1
        assert [words[w] for w in best_paths(lat, [10.0], [0.0])[10.0, 0.0]] == ["SEA"], utt


def test_decode_nnet_sh_fails_loudly(tmp_path):
    script = str(REPO / "steps" / "decode_nnet.sh")
    usage = subprocess.run(["bash", script], capture_output=True, text=True)
    assert usage.returncode != 0 and "Usage:" in usage.stderr
    missing = subprocess.run(["bash", script] + [str(tmp_path / f"nothing{i}") for i in range(3)],
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "no such file" in missing.stderr and str(tmp_path) in missing.stderr


def kaldi_text_model(model) -> str:
    """A Kaldi text final.mdl's transition model (TransitionModel::Write, text) of a GMM-HMM of ours."""
    info = model.transitions()
    tuples = "".join(f"{p} {s} {f} {loop} \n" for p, s, f, loop in info.tuples)
    log_probs = " ".join(f"{v:.7g}" for v in info.log_prob[1:])
    return (f"<TransitionModel> \n{model.topo_text.strip()} \n<Tuples> {len(info.tuples)} \n{tuples}</Tuples> \n"
            f"<LogProbs> \n [ {log_probs} ]\n</LogProbs> \n</TransitionModel> \n<DIMENSION> 13 <NUMPDFS> "
            f"{model.num_pdfs} \n")


def test_kaldi_alignment_and_graph_dirs_work_as_ours(task, tmp_path):
    """A Kaldi alignment dir (text final.mdl, gzipped binary ali.1.gz, num_jobs) gives the senone targets of ours;
    a Kaldi graph dir (HCLG as a const FST) with that final.mdl decodes as ours."""
    gmm = GmmHmm.load(task["exp"] / "final.mdl")
    for name in ("train_ali", "valid_ali"):
        kaldi = tmp_path / name
        kaldi.mkdir()
        (kaldi / "final.mdl").write_text(kaldi_text_model(gmm))
        (kaldi / "num_jobs").write_text("1\n")
        kaldiio.save_ark(str(kaldi / "ali.1"), {u: a.astype(np.int32) for u, a in
                                                read_alignments(task[name] / "ali.1.ark")})
        (kaldi / "ali.1.gz").write_bytes(gzip.compress((kaldi / "ali.1").read_bytes()))
        (kaldi / "ali.1").unlink()
        ours, theirs = read_senones(task[name]), read_senones(kaldi)
        assert (theirs.num_pdfs, theirs.num_transition_ids) == (ours.num_pdfs, ours.num_transition_ids)
        assert theirs.targets.keys() == ours.targets.keys()
        assert all(np.array_equal(theirs.targets[u], ours.targets[u]) for u in ours.targets)
    graph = tmp_path / "graph"
    shutil.copytree(task["graph_one_word"], graph)
    kaldifst.StdConstFst(kaldifst.StdVectorFst.read(str(graph / "HCLG.fst"))).write(str(graph / "HCLG.fst"))
    config = DNNConfig(splice=3, hidden=[4], activations=["relu"])
    sets = prepare_hybrid_sets(config, task["data"], tmp_path / "train_ali", task["data"], tmp_path / "valid_ali",
                               cmvn=True)
    config = sets.fit_config(config)
    counts = sets.pdf_counts.double()
    model = build_model(config)
    with torch.no_grad():  # the posteriors are the priors: the LM's best path
        model.output.weight.zero_()
        model.output.bias.copy_(torch.where(counts > 0, torch.log(counts / counts.sum()), -30.0))
    path = save_hybrid_model(tmp_path / "priors.pt", model, config, sets.nnet_input, sets.pdf_counts)
    decode_nnet.main(["--beam=30", "--lattice-beam=10", str(graph), str(task["data"]), str(path),
                      str(tmp_path / "train_ali" / "final.mdl"), str(tmp_path / "decode")])
    words = {i: w for w, i in LangDir.read(task["lang"]).words.items()}
    for utt, lat in read_lattice_archive(tmp_path / "decode" / "lat.1.gz"):
        assert [words[w] for w in best_paths(lat, [10.0], [0.0])[10.0, 0.0]] == ["SEA"], utt


def test_binary_transition_model_of_a_real_kaldi_final_mdl(tmp_path):
    """The binary TransitionModel at the head of a Kaldi swbd final.mdl (tests/data/kaldi_nnet3/README.md): its
    pdfs are the network's 5736 outputs and its transition-ids the <LogProbs> entries that follow (Kaldi's count)."""
    data = gzip.decompress((REPO / "tests/data/kaldi_nnet3/swbd_tdnn_7q/transitions.mdl.gz").read_bytes())
    (tmp_path / "final.mdl").write_bytes(data)
    info, num_pdfs = load_transitions(tmp_path / "final.mdl")
    at = data.index(b"<LogProbs> FV ") + len(b"<LogProbs> FV ")
    assert num_pdfs == 5736 and len(info.pdf) == struct.unpack_from("<i", data, at + 1)[0]
    loops = info.loop_tid[1:]
    assert np.array_equal(info.pdf[loops], [t[3] for t in info.tuples])  # self-loops: the self-loop pdf class
    (tmp_path / "bad.mdl").write_bytes(data[:5000])
    with pytest.raises(EsgdError, match="bad.mdl: not a Kaldi binary transition model"):
        load_transitions(tmp_path / "bad.mdl")
