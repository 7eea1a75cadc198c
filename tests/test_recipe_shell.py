"""The shell layer: option parsing, usage messages, the job runner, and run.sh end to end on a tiny corpus."""
import pytest

from conftest import REPO, TINY_CORPUS, bash

STEP_SCRIPTS = sorted(str(p.relative_to(REPO)) for p in REPO.glob("steps/*.sh") if p.name != "parse_options.sh") + [
    "local/make_synth_corpus.sh", "local/prepare_corpus.sh", "local/prepare_dict.sh", "local/train_lm.sh"]
SINGLE_JOB_SCRIPTS = {"steps/mkgraph.sh", "local/prepare_dict.sh", "local/train_lm.sh"}  # one job: no --nj


@pytest.mark.parametrize("script", STEP_SCRIPTS)
def test_scripts_print_usage_and_fail_without_arguments(script):
    result = bash(script)
    assert result.returncode != 0
    assert result.stderr.startswith("Usage:") and "--cmd" in result.stderr
    assert script in SINGLE_JOB_SCRIPTS or "--nj" in result.stderr


@pytest.mark.parametrize("script", STEP_SCRIPTS)
def test_scripts_refuse_unknown_options(script):
    result = bash(f"{script} --no-such-option 3 a b c")
    assert result.returncode == 1
    assert "unknown option --no-such-option" in result.stderr


def test_parse_options_sets_variables_and_bare_booleans():
    result = bash("nj=1; force=false; some_name=x; set -- --nj 4 --force --some-name=y rest; "
                  ". steps/parse_options.sh; echo $nj $force $some_name $1")
    assert result.stdout.split() == ["4", "true", "y", "rest"]
    result = bash("force=false; set -- --force=maybe; . steps/parse_options.sh")
    assert result.returncode == 1 and "expects true or false" in result.stderr


def test_run_sh_help_lists_the_stages():
    result = bash("./run.sh --help")
    assert result.returncode == 0
    for stage in ("1  data", "2  validate", "3  dict", "4  lang", "5  lm"):
        assert stage in result.stdout


def test_run_sh_rejects_bad_options():
    assert "unknown option --colour" in bash("./run.sh --colour red").stderr
    assert "--device must be cpu or cuda" in bash("./run.sh --device tpu").stderr
    assert "--nnet-gmm must be mono or tri3" in bash("./run.sh --nnet-gmm tri1").stderr
    assert "needs --corpus-dir" in bash("./run.sh --corpus librispeech").stderr


@pytest.mark.parametrize("options,message", [
    ("--stage abc", "option --stage expects a number, got 'abc'"),
    ("--stage 0", "--stage must be a positive integer, got '0'"),
    ("--stage 99", "--stage 99: there are stages 1 to 15"),
    ("--stage 5 --stop-stage 3", "--stop-stage 3 is before --stage 5"),
    ("--mono-gauss 1e3", "--mono-gauss must be a positive integer, got '1e3'"),
    ("--corpus kaldi:/no/such/dir", "--corpus kaldi:/no/such/dir: no such directory"),
    ("--feats kaldi", "--feats kaldi needs --corpus kaldi:<dir> (its data dirs' feats.scp)"),
    ("--feats mfcc", "--feats must be plp or kaldi, got 'mfcc'"),
    ("--nj 0", "--nj must be a positive integer, got '0'"),
    ("--nj -3", "--nj must be a positive integer, got '-3'"),
])
def test_run_sh_refuses_bad_values_before_doing_anything(options, message):
    result = bash(f"./run.sh {options}")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == f"./run.sh: {message}\n"


def test_steps_refuse_a_bad_nj_or_number():
    result = bash("steps/make_plp.sh --nj -3 data/x exp/x plp")
    assert result.returncode == 1 and result.stderr == "steps/make_plp.sh: --nj must be a positive integer, got '-3'\n"
    result = bash("steps/train_mono.sh --totgauss 1k data/x data/lang exp/x")
    assert result.returncode == 1
    assert result.stderr == "steps/train_mono.sh: option --totgauss expects a number, got '1k'\n"


STUB = """#!/usr/bin/env bash
echo "$0 $*" >> calls.log
[ -z "${STUB_WRITE:-}" ] || { mkdir -p "$(dirname "$STUB_WRITE")"; echo new > "$STUB_WRITE"; }
[ -z "${STUB_FAIL:-}" ] || { echo "$0: bad input" >&2; exit 1; }
"""


@pytest.fixture
def stub_recipe(tmp_path):
    """run.sh whose stage 1 (local/prepare_corpus.sh) and stage 12 (steps/train_nnet.sh, decode_nnet.sh) are stubs
    that log their call, write $STUB_WRITE and fail with $STUB_FAIL; markers of a finished earlier run."""
    for name in ("run.sh", "cmd.sh", "path.sh"):
        (tmp_path / name).symlink_to(REPO / name)
    for stub in ("local/bootstrap.sh", "local/show_results.sh", "local/prepare_corpus.sh", "steps/train_nnet.sh",
                 "steps/decode_nnet.sh"):
        (tmp_path / stub).parent.mkdir(exist_ok=True)
        (tmp_path / stub).write_text(STUB if "prepare" in stub or "nnet" in stub else "#!/bin/sh\n")
        (tmp_path / stub).chmod(0o755)
    (tmp_path / "steps" / "parse_options.sh").symlink_to(REPO / "steps" / "parse_options.sh")
    (tmp_path / "corpus_src").mkdir()
    (tmp_path / "exp" / ".stages").mkdir(parents=True)
    for marker in ("1.data", "2.validate", "3.dict"):
        (tmp_path / "exp" / ".stages" / marker).write_text("an earlier run\n")
    return tmp_path


def markers(recipe):
    return {p.name: p.read_text() for p in (recipe / "exp" / ".stages").iterdir()}


def test_failed_stage_keeps_the_markers_of_finished_work(stub_recipe):
    before = markers(stub_recipe)
    run = "./run.sh --corpus kaldi:corpus_src --stop-stage 1"
    failed = bash(run, cwd=stub_recipe, env={"STUB_FAIL": "1"})
    assert failed.returncode == 1 and "stage 1 (data) failed" in failed.stderr
    assert {k: v for k, v in markers(stub_recipe).items() if not k.endswith(".running")} == before
    # a failure after writing an output retracts the stage's own marker only
    failed = bash(run, cwd=stub_recipe, env={"STUB_FAIL": "1", "STUB_WRITE": "data/train/text"})
    assert failed.returncode == 1
    assert sorted(markers(stub_recipe)) == ["1.data.running", "2.validate", "3.dict"]
    assert bash(run, cwd=stub_recipe).returncode == 0  # the stage succeeds: its marker, the later ones no longer match
    assert sorted(markers(stub_recipe)) == ["1.data", "2.validate", "3.dict"]
    assert markers(stub_recipe)["1.data"].startswith("--corpus=kaldi:corpus_src\n--corpus-dir=\ncommand=stage_data\n")


def test_stage_12_resumes_only_a_run_stopped_with_the_same_signature(stub_recipe):
    run = "./run.sh --corpus kaldi:corpus_src --stage 12 --stop-stage 12"
    assert "stage 12 (dnn) failed" in bash(run, cwd=stub_recipe, env={"STUB_FAIL": "1"}).stderr
    assert bash(run, cwd=stub_recipe).returncode == 0
    assert bash(f"{run} --force", cwd=stub_recipe).returncode == 0
    trains = [line for line in (stub_recipe / "calls.log").read_text().splitlines() if "train_nnet.sh" in line]
    assert [line.split("--resume ")[1].split()[0] for line in trains] == ["false", "true", "false"]


def test_a_failed_table_1_job_is_reported_by_its_error_line(stub_recipe):
    (stub_recipe / "conf").symlink_to(REPO / "conf")
    (stub_recipe / "exp" / "dnn").mkdir()
    (stub_recipe / "exp" / "dnn" / "final.pt").write_text("a model\n")
    train_esgd = stub_recipe / "steps" / "train_esgd.sh"
    train_esgd.write_text("#!/bin/sh\necho 'reading egs'\necho 'esgd-train-esgd: error: exp/x/ali.1.gz: line 3: bad "
                          "alignment' >&2\necho 'steps/train_esgd.sh: failed, see the log' >&2\nexit 1\n")
    train_esgd.chmod(0o755)
    result = bash("./run.sh --corpus kaldi:corpus_src --stage 14 --stop-stage 14", cwd=stub_recipe)
    assert result.returncode == 1
    assert ("./run.sh: exp/esgd_dnn_esgd failed: esgd-train-esgd: error: exp/x/ali.1.gz: line 3: bad alignment "
            "[log: exp/esgd_dnn_esgd/log/run.log]\n") in result.stderr
    assert "stage 14 (esgd_dnn) failed" in result.stderr


def test_queue_runs_job_arrays_and_reports_failures(tmp_path):
    ok = bash(f"esgd-queue JOB=1:3 {tmp_path}/log/echo.JOB.log echo job JOB done")
    assert ok.returncode == 0
    for i in (1, 2, 3):
        log = (tmp_path / "log" / f"echo.{i}.log").read_text()
        assert f"job {i} done" in log and "status=0" in log
    bad = bash(f"esgd-queue JOB=1:2 {tmp_path}/log/bad.JOB.log "
               "bash -c 'if [ JOB = 2 ]; then echo \"error: broken input\" >&2; exit 3; fi'")
    assert bad.returncode == 1
    assert "1 of 2 jobs failed; job 2 (exit 3): error: broken input" in bad.stderr
    assert str(tmp_path / "log" / "bad.2.log") in bad.stderr


# A minute of training speech trains triphone systems too sharp to align the unseen dev speakers, so the tiny
# recipe's hybrid stages take the monophone system's senones (the recipe's default is tri3).
TINY_RUN = "./run.sh --nj 2 --synth-config tiny.conf --ubm-gauss 8 --ivector-dim 10 --nnet-gmm mono"


@pytest.fixture(scope="module")
def finished_recipe(tmp_path_factory):
    """A recipe directory linking the repository's scripts, with a tiny corpus configuration, after one run of all
    15 stages: (the directory, that run's result)."""
    work = tmp_path_factory.mktemp("recipe")
    for name in ("run.sh", "path.sh", "cmd.sh", "steps", "local", "setup.py", ".venv", "conf"):
        (work / name).symlink_to(REPO / name)
    # three times the shared tiny corpus' training speech (about a minute): with less, the monophone system
    # that the hybrid stages take their senones from cannot align the unseen dev speakers
    settings = {**TINY_CORPUS, "train-hours": "0.03"}
    (work / "tiny.conf").write_text("".join(f"--{name}={value}\n" for name, value in settings.items()))
    return work, bash(TINY_RUN, cwd=work)


@pytest.mark.recipe
def test_run_sh_end_to_end_then_skips_finished_stages(finished_recipe):
    recipe_dir, first = finished_recipe
    assert first.returncode == 0, first.stderr[-2000:]
    for stage in ("stage 1: data", "stage 5: lm", "stage 6: plp", "stage 7: ivector"):
        assert stage in first.stdout
    assert "== Results ==" in first.stdout and "dev perplexity" in first.stdout
    for path in ("data/train/wav.scp", "data/manifests/synth_cuts_test.jsonl.gz", "data/lang/L_disambig.fst",
                 "data/lang_test/G.fst", "data/local/lm/lm.arpa", "exp/make_synth_corpus/log/make_synth_corpus.log",
                 "data/test/feats.scp", "data/test/cmvn.scp", "data/train/utt2num_frames",
                 "exp/ivectors_test/ivector_online.scp", "exp/ivectors_dev/eer", "data/test_fmllr/feats.scp",
                 "data/heldout_fmllr/feats.scp", "exp/ivectors_heldout/ivector_online.scp",
                 *(f"exp/{system}/decode_heldout/best_wer" for system in (
                     "mono", "tri3", "dnn", "blstm", "esgd_dnn_iterated", "esgd_blstm_esgd")),
                 *(f"exp/{system}/decode_test/best_wer" for system in (
                     "mono", "tri1", "tri2", "tri3", "dnn", "blstm", "esgd_dnn_iterated", "esgd_blstm_iterated"))):
        assert (recipe_dir / path).is_file(), path
    assert "Table 1" in first.stdout
    second = bash(TINY_RUN, cwd=recipe_dir)
    assert second.returncode == 0
    assert second.stdout.count("finished before, skipped") == first.stdout.count("== stage ") >= 6


@pytest.mark.recipe
def test_run_sh_stops_with_a_reason_and_keeps_earlier_outputs(finished_recipe):
    recipe_dir, first = finished_recipe
    assert first.returncode == 0, first.stderr[-2000:]
    text = recipe_dir / "data" / "dev" / "text"
    original = text.read_text()
    lines = original.splitlines()
    text.write_text("\n".join([lines[0].split()[0]] + lines[1:]) + "\n")
    lexicon_before = (recipe_dir / "data" / "local" / "dict" / "lexicon.txt").read_text()
    try:
        result = bash("./run.sh --nj 2 --synth-config tiny.conf --stage 2 --force", cwd=recipe_dir)
        assert result.returncode == 1
        assert "empty transcript for utterance" in result.stderr
        assert "stage 2 (validate) failed" in result.stderr
        assert (recipe_dir / "data" / "local" / "dict" / "lexicon.txt").read_text() == lexicon_before
    finally:
        text.write_text(original)
