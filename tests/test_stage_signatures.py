"""run.sh's stage signatures: a stage is skipped only while every option, conf file and earlier stage's output it
reads is unchanged; a change reruns exactly the stages that read it, with a line saying why; wall times are kept."""
import fcntl
import os
import re
import shutil

import pytest

from conftest import REPO, bash

STUB = '#!/usr/bin/env bash\necho "$0 $*" >> calls.log\n'


@pytest.fixture
def stub_steps_recipe(tmp_path):
    """run.sh with every step it calls a stub that logs its call, and a private copy of conf/."""
    for name in ("run.sh", "cmd.sh", "path.sh"):
        (tmp_path / name).symlink_to(REPO / name)
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    scripts = [p.relative_to(REPO) for p in (*REPO.glob("steps/*.sh"), *REPO.glob("local/*.sh"))
               if p.name != "parse_options.sh"] + [".venv/bin/esgd-ivector-eer"]  # path.sh puts .venv/bin first
    for script in scripts:
        (tmp_path / script).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / script).write_text(STUB)
        (tmp_path / script).chmod(0o755)
    (tmp_path / "steps" / "parse_options.sh").symlink_to(REPO / "steps" / "parse_options.sh")
    return tmp_path


def run(recipe, options=""):
    """Run stages 1-13 (the hybrid stages with stubbed training); the numbers of the stages that ran."""
    result = bash(f"./run.sh --stop-stage 13 {options}", cwd=recipe)
    assert result.returncode == 0, result.stderr
    return [int(n) for n in re.findall(r"^== stage (\d+): \w+ \(", result.stdout, re.M)], result.stdout


def test_a_changed_option_or_conf_file_reruns_exactly_the_stages_that_read_it(stub_steps_recipe):
    recipe = stub_steps_recipe
    assert run(recipe)[0] == list(range(1, 14))
    assert run(recipe)[0] == []
    ran, out = run(recipe, "--tri1-leaves 3000")
    assert ran == [9, 10, 11, 12, 13]  # tri2 reads tri1's alignments, tri3 tri2's, the hybrids tri3's
    assert "stage 9 (tri1): --tri1-leaves changed, re-running" in out
    assert "stage 10 (tri2): stage 9 (tri1) reran, re-running" in out
    assert run(recipe, "--tri1-leaves 3000")[0] == []
    ran, out = run(recipe)  # back to the default: tri1 differs again from what it was last built with
    assert ran == [9, 10, 11, 12, 13] and "stage 9 (tri1): --tri1-leaves changed, re-running" in out
    with open(recipe / "conf" / "lda.conf", "a") as conf:
        conf.write("--dim=30\n")
    ran, out = run(recipe)
    assert ran == [10, 11, 12, 13] and "stage 10 (tri2): conf/lda.conf changed, re-running" in out
    with open(recipe / "conf" / "ivector.conf", "a") as conf:
        conf.write("--ivector-period=5\n")
    ran, out = run(recipe)
    assert ran == [7, 13] and "stage 7 (ivector): conf/ivector.conf changed, re-running" in out
    ran, out = run(recipe, "--seed 1")  # the i-vectors' draws too
    assert ran == [7, 8, 9, 10, 11, 12, 13] and "stage 7 (ivector): --seed changed, re-running" in out
    assert run(recipe, "--mono-gauss 500 --seed 1")[0] == [8, 9, 10, 11, 12, 13]
    # the hybrids on the monophone system: they now read stage 8, and the BiLSTM's Table 1 config is its own
    ran, out = run(recipe, "--mono-gauss 500 --seed 1 --nnet-gmm mono")
    assert ran == [12, 13] and "stage 12 (dnn): --nnet-gmm changed; it now reads stage 8 (mono), re-running" in out
    (recipe / "conf" / "decode_tri3.conf").write_text("beam=11.0\n")  # tri3's own decoding beams from now on
    assert run(recipe, "--mono-gauss 500 --seed 1 --nnet-gmm mono")[0] == [11]
    # the options of how a stage runs are no inputs
    assert run(recipe, "--mono-gauss 500 --seed 1 --nnet-gmm mono --nj 1 --device cuda --esgd-jobs 3")[0] == []


def test_force_reruns_the_stage_and_then_the_stages_reading_it(stub_steps_recipe):
    recipe = stub_steps_recipe
    run(recipe, "--stop-stage 9")
    assert run(recipe, "--stage 5 --stop-stage 5 --force")[0] == [5]
    ran, out = run(recipe, "--stop-stage 9")
    assert ran == [8, 9] and "stage 8 (mono): stage 5 (lm) reran, re-running" in out
    # a stage whose input stage stopped without finishing reruns too
    (recipe / "exp" / ".stages" / "8.mono").unlink()
    ran, out = run(recipe, "--stage 9 --stop-stage 9")
    assert ran == [9] and "stage 9 (tri1): stage 8 (mono) has not finished, re-running" in out


def test_markers_record_the_inputs_and_the_wall_time(stub_steps_recipe):
    recipe = stub_steps_recipe
    run(recipe, "--stop-stage 9")
    lines = (recipe / "exp" / ".stages" / "9.tri1").read_text().splitlines()
    keys = [line.split("=")[0] for line in lines]
    assert keys == ["--tri1-leaves", "--tri1-gauss", "--seed", "conf/tri1.conf", "conf/tree.conf",
                    "conf/decode.conf", "stage 4 (lang)", "stage 5 (lm)", "stage 6 (plp)", "stage 8 (mono)",
                    "command", "wall_seconds", "finished"]
    assert float(lines[-2].split("=")[1]) >= 0
    # a marker of an older recipe, which recorded no inputs, does not count as finished
    (recipe / "exp" / ".stages" / "9.tri1").write_text("corpus=synth stage_tri1\n")
    ran, out = run(recipe, "--stop-stage 9")
    assert ran == [9] and "stage 9 (tri1): its marker does not record its inputs, re-running" in out


def test_a_second_run_in_the_same_recipe_dir_stops_naming_the_first(stub_steps_recipe):
    recipe = stub_steps_recipe
    (recipe / "exp").mkdir()
    with open(recipe / "exp" / ".run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write("4242\n")
        lock.flush()
        result = bash("./run.sh --stop-stage 2", cwd=recipe)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == "./run.sh: exp/ is being written by another run (pid 4242); wait for it or stop it\n"
    assert not (recipe / "calls.log").exists() and not (recipe / "exp" / ".stages").exists()
    assert run(recipe, "--stop-stage 2")[0] == [1, 2]   # free again once the holder is gone


def test_feats_kaldi_takes_the_corpus_features_and_reruns_when_they_change(stub_steps_recipe):
    """--feats kaldi: stage 6 imports the kaldi: corpus' feats.scp instead of making PLP, and reads those tables
    (by content) instead of conf/plp.conf."""
    recipe, source = stub_steps_recipe, stub_steps_recipe / "kaldi"
    for split in ("train", "dev", "test"):
        (source / split).mkdir(parents=True)
        (source / split / "feats.scp").write_text(f"{split}-utt1 mfcc/raw_{split}.ark:14\n")
    options = f"--corpus kaldi:{source} --feats kaldi"
    assert run(recipe, options)[0] == list(range(1, 14))
    calls = (recipe / "calls.log").read_text()
    assert f"steps/import_feats.sh --cmd esgd-queue --backend local {source}/dev data/dev" in calls
    assert "steps/make_plp.sh" not in calls
    with open(recipe / "conf" / "plp.conf", "a") as conf:
        conf.write("--dither=0\n")
    assert run(recipe, options)[0] == []
    (source / "dev" / "feats.scp").write_text("dev-utt1 mfcc/raw_dev.ark:99\n")
    ran, out = run(recipe, options)
    assert ran == list(range(6, 14)) and f"stage 6 (plp): {source}/dev/feats.scp changed, re-running" in out


def stop_in(recipe, marker):
    """Leave the finished stage of `marker` as a run stopped in it would: its .running signature, no marker."""
    lines = (recipe / "exp" / ".stages" / marker).read_text().splitlines()
    (recipe / "exp" / ".stages" / f"{marker}.running").write_text("\n".join(lines[:-2]) + "\n")
    (recipe / "exp" / ".stages" / marker).unlink()


def test_a_stopped_stage_continues_its_trainers_and_decodings(stub_steps_recipe):
    """Continuing a stopped stage: the i-vector trainers from their newest models (the extractor only when begun on
    the final UBM), the decodings not finished after the model (scored only when their lattices are complete),
    the graph made again only when older than the model."""
    recipe = stub_steps_recipe
    run(recipe, "--stop-stage 8")
    exp = recipe / "exp"

    def make(path, age):  # a file `age` seconds old
        (exp / path).parent.mkdir(parents=True, exist_ok=True)
        (exp / path).write_text("x\n")
        os.utime(exp / path, (1e9 - age, 1e9 - age))

    calls = recipe / "calls.log"
    # stage 8: the model, then a newer graph, a scored dev, complete test lattices
    make("mono/final.mdl", 100)
    make("mono/graph/HCLG.fst", 50)
    make("mono/decode_dev/best_wer", 40)
    make("mono/decode_test/num_jobs", 30)
    stop_in(recipe, "8.mono")
    calls.write_text("")
    ran, _ = run(recipe, "--stage 8 --stop-stage 8")
    steps = calls.read_text()
    assert ran == [8] and "mkgraph.sh" not in steps and "decode_dev" not in steps
    assert re.search(r"decode\.sh .*--stage 1 .*decode_test", steps)
    # a fresh (not stopped) run of the stage decodes everything again
    calls.write_text("")
    run(recipe, "--stage 8 --stop-stage 8 --force")
    assert "mkgraph.sh" in calls.read_text() and "--stage 1" not in calls.read_text()

    # stage 7: the UBM finished and the extractor begun on it continue from their newest models
    make("diag_ubm/4.dubm", 100)
    make("diag_ubm/final.dubm", 90)
    make("ivector_extractor/3.ie", 80)
    stop_in(recipe, "7.ivector")
    calls.write_text("")
    run(recipe, "--stage 7 --stop-stage 7")
    steps = calls.read_text()
    assert "train_diag_ubm.sh" not in steps and re.search(r"train_ivector_extractor\.sh .*--stage 3", steps)
    # an extractor model older than the final UBM is of another run: the UBM is finished from 4.dubm, the
    # extractor starts afresh
    make("ivector_extractor/3.ie", 95)
    stop_in(recipe, "7.ivector")
    calls.write_text("")
    run(recipe, "--stage 7 --stop-stage 7")
    steps = calls.read_text()
    assert re.search(r"train_diag_ubm\.sh .*--stage 4", steps)
    assert re.search(r"train_ivector_extractor\.sh .*--stage -1", steps)
