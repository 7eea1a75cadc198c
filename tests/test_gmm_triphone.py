"""Triphone GMM-HMM systems on the tiny task of gmm_fixture: tree, transition model, converted alignments, EM,
decoding, LDA+MLLT and fMLLR, run in-process through the CLIs as steps/train_deltas.sh, train_lda_mllt.sh and
train_sat.sh run them (shortened schedules)."""
import kaldi_hmm_gmm as khg  # noqa: F401  (before kaldifst)
import shutil
import subprocess
from pathlib import Path

import kaldiio
import numpy as np
import pytest

from esgd_asr.cli import align as align_cli
from esgd_asr.cli import decode_gmm, fmllr, gmm_train, mkgraph, score, train_lda_mllt, train_tree
from esgd_asr.data.kaldi_dir import read_table
from esgd_asr.errors import EsgdError
from esgd_asr.features.affine_io import TransformTable
from esgd_asr.gmm.align import (TrainingGraphCompiler, ali_to_phones, read_alignment_dir, read_alignments,
                                read_graphs)
from esgd_asr.gmm.front_end import LdaFrontEnd
from esgd_asr.gmm.lang_dir import LangDir
from esgd_asr.gmm.model import GmmHmm, transition_model_from_tuples
from esgd_asr.gmm.tree import ContextTree
from esgd_asr.graph.lang import prepare_lang
from gmm_fixture import NJ, PHONES, make_lang, synth_data, train

LDA_OPTS = ["--dim=20", "--num-iters=6", "--mllt-iters=2"]


def em_passes(data, exp, first, last, realign=(), mix_up=0, extra=(), est_extra=()):
    """Passes first..last-1 of esgd-gmm-train (realigning before the passes in `realign`)."""
    for x in range(first, last):
        for job in range(1, NJ + 1):
            gmm_train.main(["acc", f"--nj={NJ}", f"--job={job}", f"--realign={x in realign}", *extra, str(data),
                            str(exp), str(x)])
        gmm_train.main(["est", f"--nj={NJ}", f"--first-iter={first}", f"--mix-up={mix_up}", *est_extra, str(exp),
                        str(x)])


def tree_system(data, lang, ali_dir, exp, leaves, front_end=(), transforms=None):
    """Tree statistics, tree, 1.mdl, converted alignments and training graphs (train_deltas.sh's first steps)."""
    extra = [f"--transforms={transforms}"] if transforms else []
    for job in range(1, NJ + 1):
        train_tree.main(["acc", f"--nj={NJ}", f"--job={job}", *front_end, *extra, str(data), str(lang),
                         str(ali_dir), str(exp)])
    train_tree.main(["build", f"--nj={NJ}", f"--num-leaves={leaves}", *front_end, str(lang), str(ali_dir), str(exp)])
    (exp / "num_jobs").write_text(f"{NJ}\n")
    for job in range(1, NJ + 1):
        train_tree.main(["convert-ali", f"--nj={NJ}", f"--job={job}", str(data), str(ali_dir), str(exp)])
        align_cli.main(["compile-graphs", f"--nj={NJ}", f"--job={job}", str(data), str(lang), str(exp / "1.mdl"),
                        str(exp)])


@pytest.fixture(scope="module")
def systems(tmp_path_factory):
    root = tmp_path_factory.mktemp("gmm_tri")
    lang, lang_test = make_lang(root)
    data = synth_data(root)
    mono = root / "exp" / "mono"
    train(data, lang, mono)
    (mono / "num_jobs").write_text(f"{NJ}\n")
    tri1 = root / "exp" / "tri1"
    tree_system(data, lang, mono, tri1, leaves=40)
    em_passes(data, tri1, 1, 6, realign=(3,), mix_up=80)
    shutil.copy(tri1 / "6.mdl", tri1 / "final.mdl")
    mkgraph.main([str(lang_test), str(tri1 / "final.mdl"), str(tri1 / "graph")])
    return {"root": root, "lang": lang, "lang_test": lang_test, "data": data, "mono": mono, "tri1": tri1}


def objf_rows(exp):
    rows = [line.split("\t") for line in (exp / "log" / "objf.tsv").read_text().splitlines()[1:]]
    return [(int(r[0]), r[1] == "1", float(r[2])) for r in rows]


def test_transition_model_from_tuples_equals_kaldis_constructor(systems):
    mono = GmmHmm.load(systems["mono"] / "final.mdl")
    tuples = [tuple(t.__getstate__()) for t in mono.trans_model.tuples]
    rebuilt = transition_model_from_tuples(mono.topology(), tuples, mono.num_pdfs)
    fresh = khg.TransitionModel(ctx_dep=mono.ctx_dep, hmm_topo=mono.topology())  # before any re-estimation
    a, b = fresh.__getstate__(), rebuilt.__getstate__()
    assert [t.__getstate__() for t in a[0]] == [t.__getstate__() for t in b[0]]
    assert a[2:6] == b[2:6]
    np.testing.assert_allclose(a[6], b[6], atol=1e-6)
    np.testing.assert_allclose(a[7], b[7], atol=1e-6)
    with pytest.raises(EsgdError, match="sorted and unique"):
        transition_model_from_tuples(mono.topology(), tuples[::-1], mono.num_pdfs)


def test_triphone_model_round_trip_and_tree(systems):
    model = GmmHmm.load(systems["tri1"] / "final.mdl")
    assert isinstance(model.ctx_dep, ContextTree) and (model.context_width, model.central_position) == (3, 1)
    tree = ContextTree.load(systems["tri1"] / "tree")
    assert tree.num_pdfs == model.num_pdfs > GmmHmm.load(systems["mono"] / "final.mdl").num_pdfs
    assert model.am.num_gauss > model.num_pdfs  # mixed up
    ids = LangDir.read(systems["lang"]).phones
    window = [ids["K_B"], ids["IY_E"], 0]
    assert model.pdf_of(window, 1) == tree.pdf_of(window, 1)
    assert model.pdfs_of(np.array([window, window]), np.array([0, 2])).tolist() == \
        [tree.pdf_of(window, 0), tree.pdf_of(window, 2)]


def test_converted_alignments_keep_frames_and_phones(systems):
    old_model, new_model = GmmHmm.load(systems["mono"] / "final.mdl"), GmmHmm.load(systems["tri1"] / "1.mdl")
    old_info, new_info = old_model.transitions(), new_model.transitions()
    old = read_alignment_dir(systems["mono"])
    work = systems["root"] / "convert"
    work.mkdir()
    shutil.copy(systems["tri1"] / "1.mdl", work / "1.mdl")
    for job in range(1, NJ + 1):
        train_tree.main(["convert-ali", f"--nj={NJ}", f"--job={job}", str(systems["data"]), str(systems["mono"]),
                         str(work)])
    converted = {u: a for job in range(1, NJ + 1) for u, a in read_alignments(work / f"ali.{job}.ark")}
    assert set(converted) == set(old)
    for utt, ali in converted.items():
        assert len(ali) == len(old[utt])
        assert ali_to_phones(ali, new_info) == ali_to_phones(old[utt], old_info)
        # the same HMM states and transitions: self-loops stay self-loops
        assert (new_info.is_loop[ali] == old_info.is_loop[old[utt]]).all()


def test_triphone_em_likelihood_never_decreases_within_a_pass(systems, tmp_path):
    rows = objf_rows(systems["tri1"])
    assert [r[0] for r in rows] == list(range(1, 6))
    # with the alignments fixed, no mixing up and no Gaussian removed for low occupancy, each pass may only raise
    # the log-likelihood per frame (EM's guarantee; removing a Gaussian, as Kaldi does by default, can lower it)
    for name in [f"ali.{j}.ark" for j in range(1, NJ + 1)]:
        shutil.copy(systems["tri1"] / name, tmp_path / name)
    shutil.copy(systems["tri1"] / "final.mdl", tmp_path / "0.mdl")
    em_passes(systems["data"], tmp_path, 0, 4, est_extra=["--remove-low-count-gaussians=false"])
    likes = [r[2] for r in objf_rows(tmp_path)]
    assert all(b >= a - 1e-6 for a, b in zip(likes, likes[1:])), likes
    assert rows[-1][2] > rows[0][2]


def test_tiny_triphone_system_decodes_its_training_utterances(systems):
    tri1, data = systems["tri1"], systems["data"]
    decode_dir = tri1 / "decode_train"
    decode_gmm.main(["--nj=1", "--job=1", str(tri1 / "graph"), str(data), str(tri1 / "final.mdl"), str(decode_dir)])
    score.main(["--min-lmwt=5", "--max-lmwt=9", str(data), str(tri1 / "graph"), str(decode_dir)])
    wer = float((decode_dir / "best_wer").read_text().split()[1])
    assert wer < 5.0
    # the lattices' best paths give one transition-id per frame (the first pass of steps/decode_fmllr.sh)
    num_frames = {u: m.shape[0] for u, m in kaldiio.load_scp(str(data / "feats.scp")).items()}
    alignments = fmllr.lattice_alignments(decode_dir, 1, 10.0)
    assert set(alignments) == set(num_frames)
    assert all(len(ali) == num_frames[u] for u, ali in alignments.items())
    # the HCLG's input labels are transition-ids of the triphone model, #-1 and disambiguation symbols removed
    model = GmmHmm.load(tri1 / "final.mdl")
    disambig = [int(x) for x in (tri1 / "graph" / "disambig_tid.int").read_text().split()]
    assert min(disambig) == model.trans_model.num_transition_ids + 1
    assert len(disambig) == len(LangDir.read(systems["lang"]).disambig) + 1


@pytest.fixture(scope="module")
def tri2(systems):
    data, lang, tri1 = systems["data"], systems["lang"], systems["tri1"]
    exp = systems["root"] / "exp" / "tri2"
    exp.mkdir(parents=True)
    for job in range(1, NJ + 1):
        train_lda_mllt.main(["acc-lda", *LDA_OPTS, f"--nj={NJ}", f"--job={job}", str(data), str(lang), str(tri1),
                             str(exp)])
    train_lda_mllt.main(["est-lda", *LDA_OPTS, f"--nj={NJ}", str(exp)])
    tree_system(data, lang, tri1, exp, leaves=40, front_end=[f"--lda-mat={exp / '0.mat'}"])
    em_passes(data, exp, 1, 2, mix_up=60)
    for job in range(1, NJ + 1):
        train_lda_mllt.main(["acc-mllt", *LDA_OPTS, f"--nj={NJ}", f"--job={job}", str(data), str(lang), str(exp),
                             "2"])
    train_lda_mllt.main(["est-mllt", *LDA_OPTS, f"--nj={NJ}", str(exp), "2"])
    em_passes(data, exp, 2, 4, realign=(3,), mix_up=80)
    shutil.copy(exp / "4.mdl", exp / "final.mdl")
    return exp


def test_lda_mllt_model_aligns(systems, tri2, tmp_path):
    model = GmmHmm.load(tri2 / "final.mdl")
    assert isinstance(model.front_end, LdaFrontEnd) and model.dim == 20
    assert model.front_end.matrix.shape == (20, 13 * 9 + 1)
    assert not np.allclose(model.front_end.matrix, kaldiio.load_mat(str(tri2 / "0.mat")))  # MLLT composed in
    text = read_table(systems["data"] / "text")
    num_frames = {u: m.shape[0] for u, m in kaldiio.load_scp(str(systems["data"] / "feats.scp")).items()}
    for job in range(1, NJ + 1):
        align_cli.main(["compile-graphs", f"--nj={NJ}", f"--job={job}", str(systems["data"]), str(systems["lang"]),
                        str(tri2 / "final.mdl"), str(tmp_path)])
        align_cli.main(["align", f"--nj={NJ}", f"--job={job}", str(systems["data"]), str(tri2 / "final.mdl"),
                        str(tmp_path)])
    aligned = {u: a for job in range(1, NJ + 1) for u, a in read_alignments(tmp_path / f"ali.{job}.ark")}
    assert set(aligned) == set(text)
    assert all(len(a) == num_frames[u] for u, a in aligned.items())
    rows = objf_rows(tri2)
    assert rows[-1][2] > rows[0][2]


def test_fmllr_transforms_and_adapted_features(systems, tri2, tmp_path):
    data = systems["data"]
    for job in range(1, NJ + 1):
        fmllr.main(["est", f"--nj={NJ}", f"--job={job}", f"--alignments={tri2}", "--silence-weight=1.0",
                    "--fmllr-min-count=50", str(data), str(tri2 / "final.mdl"), str(tmp_path / f"trans.{job}.ark")])
    speakers = set(read_table(data / "utt2spk").values())
    tables = [TransformTable(tmp_path / f"trans.{job}.ark") for job in range(1, NJ + 1)]
    assert sorted(k for t in tables for k in t.keys()) == sorted(speakers)
    assert all(t[k].shape == (20, 21) for t in tables for k in t.keys())
    # the aligned frames score better through the transforms, their log-determinants counted (fMLLR maximises that)
    utt2spk = read_table(data / "utt2spk")
    alignments = read_alignment_dir(tri2)
    log_det = sum(len(ali) * np.linalg.slogdet(t[utt2spk[u]][:, :-1])[1] for u, ali in alignments.items()
                  for t in tables if utt2spk[u] in t)
    frames = sum(len(ali) for ali in alignments.values())
    likes = {}
    for name, extra in (("si", []), ("sat", ["--transforms={trans}"])):
        exp = tmp_path / name
        exp.mkdir()
        for job in range(1, NJ + 1):
            shutil.copy(tri2 / f"ali.{job}.ark", exp / f"ali.{job}.ark")
        shutil.copy(tri2 / "final.mdl", exp / "0.mdl")
        for job in range(1, NJ + 1):
            opts = [o.format(trans=tmp_path / f"trans.{job}.ark") for o in extra]
            gmm_train.main(["acc", f"--nj={NJ}", f"--job={job}", *opts, str(data), str(exp), "0"])
        gmm_train.main(["est", f"--nj={NJ}", str(exp), "0"])
        likes[name] = objf_rows(exp)[0][2]
    assert likes["sat"] + log_det / frames > likes["si"] + 0.01
    # make-feats writes the adapted 20-dim features of every utterance
    for job in range(1, NJ + 1):
        fmllr.main(["make-feats", f"--nj={NJ}", f"--job={job}", f"--transforms={tmp_path / f'trans.{job}.ark'}",
                    str(data), str(tri2 / "final.mdl"), str(tmp_path / "feats")])
    feats = {u: m for job in range(1, NJ + 1) for u, m in kaldiio.load_scp(str(tmp_path / f"feats/feats.{job}.scp"))
             .items()}
    raw = kaldiio.load_scp(str(data / "feats.scp"))
    assert set(feats) == set(raw) and all(feats[u].shape == (raw[u].shape[0], 20) for u in raw)


def test_unalignable_utterance_is_skipped_and_counted(systems, tmp_path, caplog):
    """An utterance whose transcript is far too long for its frames fails to align: left out and counted."""
    data = tmp_path / "data"
    shutil.copytree(systems["data"], data)
    text = read_table(data / "text")
    victim = sorted(text)[0]
    text[victim] = " ".join(["SKI"] * 40)
    (data / "text").write_text("".join(f"{u} {t}\n" for u, t in sorted(text.items())))
    exp = tmp_path / "exp"
    for job in range(1, NJ + 1):
        align_cli.main(["compile-graphs", f"--nj={NJ}", f"--job={job}", str(data), str(systems["lang"]),
                        str(systems["tri1"] / "final.mdl"), str(exp)])
    with caplog.at_level("INFO"):
        for job in range(1, NJ + 1):
            align_cli.main(["align", f"--nj={NJ}", f"--job={job}", "--retry-beam=20", str(data),
                            str(systems["tri1"] / "final.mdl"), str(exp)])
    aligned = {u for job in range(1, NJ + 1) for u, _ in read_alignments(exp / f"ali.{job}.ark")}
    assert aligned == set(text) - {victim}
    assert f"utterance '{victim}'" in caplog.text and "1 failed and are skipped" in caplog.text


def test_triphone_model_and_other_phone_set_stop(systems, tmp_path):
    other_dict = tmp_path / "dict"
    shutil.copytree(systems["root"] / "dict", other_dict)
    (other_dict / "nonsilence_phones.txt").write_text("".join(p + "\n" for p in PHONES + ["ZH"]))
    prepare_lang(other_dict, "<unk>", tmp_path / "lang")
    model = GmmHmm.load(systems["tri1"] / "final.mdl")
    with pytest.raises(EsgdError, match="phone set does not match"):
        TrainingGraphCompiler(model, LangDir.read(tmp_path / "lang"))
    with pytest.raises(SystemExit):
        train_tree.main(["acc", f"--nj={NJ}", "--job=1", str(systems["data"]), str(tmp_path / "lang"),
                         str(systems["mono"]), str(tmp_path / "exp")])


@pytest.mark.parametrize("script,args", [("train_deltas.sh", 6), ("train_lda_mllt.sh", 6), ("train_sat.sh", 6),
                                         ("align_fmllr.sh", 4), ("decode_fmllr.sh", 3), ("make_fmllr_feats.sh", 5)])
def test_triphone_steps_scripts_fail_loudly(script, args, tmp_path):
    path = str(Path(__file__).resolve().parents[1] / "steps" / script)
    usage = subprocess.run(["bash", path], capture_output=True, text=True)
    assert usage.returncode != 0 and "Usage:" in usage.stderr
    missing = subprocess.run(["bash", path] + ["7"] * (args - 4 if args == 6 else 0)
                             + [str(tmp_path / f"nothing{i}") for i in range(args if args != 6 else 4)],
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "no such file" in missing.stderr and str(tmp_path) in missing.stderr


def test_alignment_dirs_reuse_training_graphs_of_the_same_model_only(systems, tmp_path, caplog):
    data, lang, tri1 = systems["data"], systems["lang"], systems["tri1"]
    with caplog.at_level("INFO"):
        align_cli.main(["compile-graphs", f"--nj={NJ}", "--job=1", f"--reuse-from={tri1}", str(data), str(lang),
                        str(tri1 / "final.mdl"), str(tmp_path / "same")])
        align_cli.main(["compile-graphs", f"--nj={NJ}", "--job=1", f"--reuse-from={systems['mono']}", str(data),
                        str(lang), str(tri1 / "final.mdl"), str(tmp_path / "other")])
    assert caplog.text.count("copied from") == 1
    assert (tmp_path / "same" / "fsts.1.ark").read_bytes() == (tri1 / "fsts.1.ark").read_bytes()
    same = dict(read_graphs(tmp_path / "same" / "fsts.1.ark"))
    other = dict(read_graphs(tmp_path / "other" / "fsts.1.ark"))
    assert same.keys() == other.keys()
    assert all((same[u].tids == other[u].tids).all() for u in same)  # recompiled, the same graphs
