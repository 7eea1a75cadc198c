"""Monophone GMM-HMM training, alignment, HCLG, lattice decoding and scoring on the tiny synthetic task of
gmm_fixture (training runs the steps of steps/train_mono.sh in-process, which keeps the module under a few seconds
of CPU)."""
import kaldi_hmm_gmm  # noqa: F401  (before kaldifst)
import os
import re
import shutil
import subprocess
from pathlib import Path

import jiwer
import kaldiio
import numpy as np
import pytest
import torch

from esgd_asr.cli import align as align_cli
from esgd_asr.cli import decode_gmm, gmm_train, mkgraph, score
from esgd_asr.data.kaldi_dir import read_table
from esgd_asr.decode.hclg import read_hclg
from esgd_asr.decode.lattice import DecodeOptions, LatticeDecoder, best_paths
from esgd_asr.errors import EsgdError
from esgd_asr.features.feature_source import FeatureSource
from esgd_asr.gmm.align import (AlignOptions, GraphScorer, TrainingGraphCompiler, ali_to_phones, read_alignments,
                                read_graphs, viterbi_align)
from esgd_asr.decode.lattice_text import parse_lattice_text
from esgd_asr.gmm.fst_arrays import fst_to_arrays
from esgd_asr.gmm.lang_dir import LangDir
from esgd_asr.gmm.model import GmmHmm, PdfScorer
from esgd_asr.gmm.stats import EstimateOptions, GmmStats, estimate
from esgd_asr.graph.lang import prepare_lang
from gmm_fixture import LEXICON, NJ, NUM_ITERS, PHONES, make_lang, synth_data, train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    root = tmp_path_factory.mktemp("gmm")
    lang, lang_test = make_lang(root)
    data = synth_data(root)
    exp = root / "exp" / "mono"
    train(data, lang, exp)
    mkgraph.main([str(lang_test), str(exp / "final.mdl"), str(exp / "graph")])
    return {"root": root, "lang": lang, "lang_test": lang_test, "data": data, "exp": exp}


def objf(exp):
    rows = [line.split("\t") for line in (exp / "log" / "objf.tsv").read_text().splitlines()[1:]]
    return [(int(r[0]), r[1] == "1", float(r[2])) for r in rows]


def test_training_improves_and_logs_every_pass(system):
    rows = objf(system["exp"])
    assert [r[0] for r in rows] == list(range(NUM_ITERS))
    assert rows[-1][2] > rows[0][2] + 1.0
    model = GmmHmm.load(system["exp"] / "final.mdl")
    assert model.am.num_gauss > model.num_pdfs  # Gaussians were split
    assert model.front_end.cmvn and model.front_end.delta_order == 2 and model.dim == 39


def test_em_likelihood_never_decreases_between_realignments(system, tmp_path):
    """With the alignments fixed, each EM pass (no mixing up) may only raise the log-likelihood per frame."""
    exp = system["exp"]
    for name in ["final.mdl"] + [f"ali.{j}.ark" for j in range(1, NJ + 1)]:
        shutil.copy(exp / name, tmp_path / name)
    shutil.copy(exp / "final.mdl", tmp_path / "0.mdl")
    for x in range(4):
        for job in range(1, NJ + 1):
            gmm_train.main(["acc", f"--nj={NJ}", f"--job={job}", str(system["data"]), str(tmp_path), str(x)])
        gmm_train.main(["est", f"--nj={NJ}", str(tmp_path), str(x)])
    likes = [r[2] for r in objf(tmp_path)]
    assert all(b >= a - 1e-6 for a, b in zip(likes, likes[1:])), likes
    # the schedule of the real run obeys it too between its realignments
    rows = objf(exp)
    for (_, _, a), (_, realigned, b) in zip(rows, rows[1:]):
        if not realigned:
            assert b >= a - 1e-6, rows


def test_mixing_up_is_repeated_exactly_from_its_seed(system, tmp_path):
    """Re-estimation with mixing up on the same statistics gives the same model (Kaldi's own split perturbs the
    means from an unseeded generator); another seed, other split means."""
    exp = system["exp"]
    models = []
    for run, seed in (("a", 0), ("b", 0), ("c", 1)):
        out = tmp_path / run
        out.mkdir()
        shutil.copy(exp / "final.mdl", out / "0.mdl")
        for job in range(1, NJ + 1):
            shutil.copy(exp / f"ali.{job}.ark", out / f"ali.{job}.ark")
            gmm_train.main(["acc", f"--nj={NJ}", f"--job={job}", str(system["data"]), str(out), "0"])
        mix_up = GmmHmm.load(exp / "final.mdl").am.num_gauss + 20
        gmm_train.main(["est", f"--nj={NJ}", f"--mix-up={mix_up}", f"--seed={seed}", str(out), "0"])
        models.append((out / "1.mdl").read_bytes())
    assert GmmHmm.load(tmp_path / "a" / "1.mdl").am.num_gauss == mix_up
    assert models[0] == models[1] != models[2]


def test_alignments_have_frame_counts_and_transcript_phones(system):
    exp, data = system["exp"], system["data"]
    model = GmmHmm.load(exp / "final.mdl")
    info = model.transitions()
    lang = LangDir.read(system["lang"])
    id2phone = lang.id2phone()
    num_frames = {u: m.shape[0] for u, m in kaldiio.load_scp(str(data / "feats.scp")).items()}
    text = read_table(data / "text")
    aligned = 0
    for job in range(1, NJ + 1):
        for utt, ali in read_alignments(exp / f"ali.{job}.ark"):
            assert len(ali) == num_frames[utt]
            phones = [id2phone[p] for p, _ in ali_to_phones(ali, info)]
            assert sum(n for _, n in ali_to_phones(ali, info)) == len(ali)
            # word boundaries from the position-dependent phones give back the lexicon's pronunciations
            words, current = [], []
            for phone in phones:
                if phone.startswith("SIL"):
                    assert not current
                    continue
                base, pos = phone.rsplit("_", 1)
                current.append(base)
                if pos in ("E", "S"):
                    words.append(" ".join(current))
                    current = []
            assert words == [LEXICON[w] for w in text[utt].split()], utt
            aligned += 1
    assert aligned == len(text)


def test_decoding_training_utterance_with_its_training_graph(system):
    exp, data = system["exp"], system["data"]
    model = GmmHmm.load(exp / "final.mdl")
    words = {i: w for w, i in LangDir.read(system["lang"]).words.items()}
    source = FeatureSource(data, model.front_end)
    scorer = GraphScorer(model, AlignOptions())
    text = read_table(data / "text")
    for utt, graph in list(read_graphs(exp / "fsts.1.ark"))[:5]:
        loglikes = scorer(source.load(utt), graph)
        decoder = LatticeDecoder(graph.fst, DecodeOptions(beam=13, lattice_beam=4, acwt=0.1))
        result = decoder.decode(loglikes)
        assert result.reached_final and result.lattice_text
        best_words = best_paths(parse_lattice_text(result.lattice_text, utt), [1 / 0.1], [0.0])[1 / 0.1, 0.0]
        hyp = [words[w] for w in best_words]
        assert hyp == text[utt].split()
        ali, _ = viterbi_align(graph, loglikes, AlignOptions())
        assert ali is not None and len(ali) == len(loglikes)


def test_hclg_labels_and_stochasticity(system):
    exp = system["exp"]
    model = GmmHmm.load(exp / "final.mdl")
    hclg = fst_to_arrays(read_hclg(exp / "graph"))
    num_tids = model.trans_model.num_transition_ids
    assert hclg.ilabel.max() <= num_tids and hclg.ilabel.min() >= 0  # disambiguation labels are gone
    assert set(np.unique(hclg.olabel)) <= {0} | {LangDir.read(system["lang"]).words[w] for w in LEXICON}
    # with both scales 1 the graph is stochastic-ish: the probabilities leaving a state (final included) sum to at
    # most about 1 and mostly to 1; states that fan out through epsilon arcs (split for self-loops) are left out
    mkgraph.main(["--self-loop-scale=1.0", str(system["lang_test"]), str(exp / "final.mdl"),
                  str(system["root"] / "graph_s1")])
    g = fst_to_arrays(read_hclg(system["root"] / "graph_s1"))
    mass = np.zeros(g.num_states)
    np.add.at(mass, g.src, np.exp(-g.weight))
    np.add.at(mass, g.final_state, np.exp(-g.final_weight))
    fans_out = np.zeros(g.num_states, dtype=bool)
    fans_out[g.src[g.ilabel == 0]] = True
    log_mass = np.log(mass[(mass > 0) & ~fans_out])
    assert np.median(np.abs(log_mass)) < 0.05
    assert (log_mass < 1e-3).all()


def test_decode_and_score_cli(system):
    exp, data = system["exp"], system["data"]
    decode_dir = exp / "decode_train"
    for job in ("1", "2"):
        decode_gmm.main(["--nj=2", f"--job={job}", str(exp / "graph"), str(data), str(exp / "final.mdl"),
                         str(decode_dir)])
        assert (decode_dir / f"lat.{job}.gz").is_file() and (decode_dir / f"timing.{job}").is_file()
    serial_dir = exp / "decode_train_serial"
    serial_dir.mkdir()
    for job in ("1", "2"):
        shutil.copy(decode_dir / f"lat.{job}.gz", serial_dir)
    for nj, out in (("2", decode_dir), ("1", serial_dir)):
        score.main([f"--nj={nj}", "--min-lmwt=5", "--max-lmwt=9", "--word-ins-penalty=0.0,1.0", str(data),
                    str(exp / "graph"), str(out)])
    best = (decode_dir / "best_wer").read_text()
    # the archives searched by two processes score as by one
    serial_best = (serial_dir / "best_wer").read_text()
    assert best.replace(str(decode_dir), "") == serial_best.replace(str(serial_dir), "")
    for hyp in (decode_dir / "scoring").glob("*.txt"):
        assert hyp.read_text() == (serial_dir / "scoring" / hyp.name).read_text()
    match = re.match(r"^%WER (\S+) \[ (\d+) / (\d+), (\d+) ins, (\d+) del, (\d+) sub \] (\S+)$", best.strip())
    assert match, best
    wer_file = match.group(7)
    lmwt, wip = wer_file.rsplit("/", 1)[1][len("wer_"):].split("_")
    hyps = read_table(decode_dir / "scoring" / f"{lmwt}_{wip}.txt", allow_empty_value=True)
    refs = read_table(data / "text")
    expected = jiwer.wer([refs[u] for u in refs], [hyps.get(u, "") for u in refs])
    assert float(match.group(1)) == pytest.approx(100 * expected, abs=0.006)
    assert float(match.group(1)) < 5.0  # the synthetic task is easy
    assert len(list(decode_dir.glob("wer_*"))) == 10
    assert open(wer_file).readline().strip() == best.strip().rsplit(" ", 1)[0]


def test_lexicon_phone_set_mismatch_stops(system, tmp_path):
    """A model from one lang dir cannot compile graphs with a lang dir of another phone set."""
    other_dict = tmp_path / "dict"
    shutil.copytree(system["root"] / "dict", other_dict)
    (other_dict / "nonsilence_phones.txt").write_text("".join(p + "\n" for p in PHONES + ["ZH"]))
    prepare_lang(other_dict, "<unk>", tmp_path / "lang")
    with pytest.raises(SystemExit):
        align_cli.main(["compile-graphs", "--nj=1", "--job=1", str(system["data"]), str(tmp_path / "lang"),
                        str(system["exp"] / "final.mdl"), str(tmp_path / "out")])
    model = GmmHmm.load(system["exp"] / "final.mdl")
    with pytest.raises(EsgdError, match="phone set does not match"):
        TrainingGraphCompiler(model, LangDir.read(tmp_path / "lang"))


def test_bad_inputs_name_the_culprit(system, tmp_path, capsys):
    exp, data = system["exp"], system["data"]
    # an alignment whose length disagrees with the features
    shutil.copy(exp / "final.mdl", tmp_path / "0.mdl")
    utt, ali = next(read_alignments(exp / "ali.1.ark"))
    kaldiio.save_ark(str(tmp_path / "ali.1.ark"), {utt: ali[:-3].astype(np.int32)})
    with pytest.raises(SystemExit):
        gmm_train.main(["acc", "--nj=2", "--job=1", str(data), str(tmp_path), "0"])
    assert f"utterance '{utt}'" in capsys.readouterr().err
    # a model file that is not one
    (tmp_path / "junk.mdl").write_bytes(b"not a model")
    with pytest.raises(EsgdError, match="junk.mdl"):
        GmmHmm.load(tmp_path / "junk.mdl")
    # features of the wrong dimension
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("text", "utt2spk", "spk2utt", "cmvn.scp"):
        shutil.copy(data / name, bad / name)
    kaldiio.save_ark(str(bad / "f.ark"), {u: np.zeros((50, 20), np.float32) for u in read_table(data / "text")},
                     scp=str(bad / "feats.scp"))
    with pytest.raises(SystemExit):
        decode_gmm.main([str(exp / "graph"), str(bad), str(exp / "final.mdl"), str(tmp_path / "dec")])
    err = capsys.readouterr().err
    assert "utterance 'spk0-000'" in err and "dim 20" in err
    # scoring a dir without lattices
    with pytest.raises(SystemExit):
        score.main([str(data), str(exp / "graph"), str(tmp_path / "empty")])
    assert "lat.*.gz" in capsys.readouterr().err


def test_estimate_rejects_stats_of_another_model(system):
    model = GmmHmm.load(system["exp"] / "final.mdl")
    stats = GmmStats.zeros(3, model.dim, model.trans_model.num_transition_ids)
    with pytest.raises(EsgdError, match="Gaussians"):
        estimate(model, stats, EstimateOptions())


def test_aligned_statistics_equal_a_direct_computation(system):
    """gmm-acc-stats-ali: per frame, posteriors over the Gaussians of its aligned pdf, weighted sums of x and x^2;
    computed here in numpy from the AmDiagGmm's own parameters."""
    model = GmmHmm.load(system["exp"] / "final.mdl")
    scorer = PdfScorer(model.am)
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(40, model.dim))
    tids = rng.integers(1, model.trans_model.num_transition_ids + 1, size=40)
    pdfs = model.transitions().pdf[tids]
    stats = GmmStats.zeros(scorer.num_gauss, model.dim, model.trans_model.num_transition_ids)
    utt_ll = stats.add_utterance(scorer, torch.from_numpy(feats), pdfs, tids)
    occ, first, total = np.zeros(scorer.num_gauss), np.zeros((scorer.num_gauss, model.dim)), 0.0
    second = np.zeros_like(first)
    offsets = np.cumsum([0] + [model.am.num_gauss_in_pdf(p) for p in range(model.num_pdfs)])
    for x, pdf in zip(feats, pdfs):
        gmm = model.am.get_pdf(int(pdf))
        ll = (np.asarray(gmm.gconsts) + np.asarray(gmm.means_invvars, dtype=np.float64) @ x
              - 0.5 * np.asarray(gmm.inv_vars, dtype=np.float64) @ (x * x))
        frame_ll = np.logaddexp.reduce(ll)
        post = np.exp(ll - frame_ll)
        g = slice(offsets[pdf], offsets[pdf + 1])
        occ[g] += post
        first[g] += post[:, None] * x
        second[g] += post[:, None] * x * x
        total += frame_ll
    assert utt_ll == pytest.approx(total, rel=1e-9) and stats.loglike == utt_ll and stats.frames == 40
    np.testing.assert_allclose(stats.occ, occ, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stats.x, first, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(stats.x2, second, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(stats.trans, np.bincount(tids, minlength=len(stats.trans)))


@pytest.mark.parametrize("script,args", [("train_mono.sh", 3), ("align_si.sh", 4), ("mkgraph.sh", 3),
                                         ("decode.sh", 3), ("score.sh", 3)])
def test_steps_scripts_fail_loudly(script, args, tmp_path):
    path = str(REPO / "steps" / script)
    usage = subprocess.run(["bash", path], capture_output=True, text=True)
    assert usage.returncode != 0 and "Usage:" in usage.stderr
    missing = subprocess.run(["bash", path] + [str(tmp_path / f"nothing{i}") for i in range(args)],
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "no such file" in missing.stderr and str(tmp_path) in missing.stderr


def test_a_failed_decoding_leaves_the_earlier_lattices_and_scores(system, tmp_path):
    exp, data = system["exp"], system["data"]
    env = dict(os.environ, PATH=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}")

    def decode(data_dir, *options):
        return subprocess.run([str(REPO / "steps" / "decode.sh"), "--nj", "2", "--cmd", "esgd-queue", "--model",
                               str(exp / "final.mdl"), *options, str(exp / "graph"), str(data_dir),
                               str(tmp_path / "decode")], cwd=REPO, capture_output=True, text=True, env=env)

    # --stage 1 before any decoding: refused, naming what is missing
    early = decode(data, "--stage", "1")
    assert early.returncode == 1 and "--stage 1: no decoding in" in early.stderr
    assert decode(data).returncode == 0
    kept = sorted(p.name for p in (tmp_path / "decode").iterdir())
    assert {"lat.1.gz", "lat.2.gz", "timing.1", "num_jobs", "best_wer", "scoring"} <= set(kept)
    before = {p: p.read_bytes() for p in (tmp_path / "decode").iterdir() if p.is_file() and p.name != ".lock"}
    # --stage 1 scores the lattices there again without decoding: the same best_wer, lattices and decoding logs
    decode_logs = {p: p.read_bytes() for p in (tmp_path / "decode" / "log").glob("decode.*.log")}
    (tmp_path / "decode" / "best_wer").unlink()
    rescored = decode(data, "--stage", "1")
    assert rescored.returncode == 0, rescored.stderr
    assert {p: p.read_bytes() for p in before} == before
    assert decode_logs and {p: p.read_bytes() for p in decode_logs} == decode_logs
    bad = tmp_path / "bad"   # features of another dimension: every job fails
    shutil.copytree(data, bad)
    kaldiio.save_ark(str(bad / "f.ark"), {u: np.zeros((50, 20), np.float32) for u in read_table(data / "text")},
                     scp=str(bad / "feats.scp"))
    failed = decode(bad)
    assert failed.returncode != 0 and "dim 20" in failed.stderr
    assert sorted(p.name for p in (tmp_path / "decode").iterdir() if p.name != ".new") == kept
    assert {p: p.read_bytes() for p in before} == before


def test_a_trainer_refused_its_data_keeps_the_finished_system(system, tmp_path):
    exp = tmp_path / "mono"
    shutil.copytree(system["exp"], exp, ignore=shutil.ignore_patterns("graph", "decode*"))
    before = {p: p.read_bytes() for p in exp.iterdir() if p.is_file()}
    bad = tmp_path / "bad"   # a transcript line of an utterance that is not in utt2spk
    shutil.copytree(system["data"], bad)
    text = (bad / "text").read_text().splitlines()
    (bad / "text").write_text("\n".join(text + ["spk9-999 A"]) + "\n")
    env = dict(os.environ, PATH=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}")
    result = subprocess.run([str(REPO / "steps" / "train_mono.sh"), "--nj", "2", "--cmd", "esgd-queue", str(bad),
                             str(system["lang"]), str(exp)], cwd=REPO, capture_output=True, text=True, env=env)
    assert result.returncode != 0 and f"{bad / 'text'}:{len(text) + 1}" in result.stderr
    assert {p: p.read_bytes() for p in exp.iterdir() if p.is_file()} == before
