"""Failures reported in one line: OS errors of every esgd-* command (cli_main), atomic writes that fail keep the
old output, and the job runner names the first error of a failed job's log whole."""
import argparse
import errno
import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from esgd_asr.errors import os_error_message
from corpus_fixture import snapshot, write_kaldi_corpus

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PATH=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}")


@pytest.mark.parametrize("error,message", [
    (OSError(errno.ENOSPC, "No space left on device", "/x/f.pt"), "cannot write /x/f.pt: No space left on device"),
    (OSError(errno.EROFS, "Read-only file system", "/x/a.ark"), "cannot write /x/a.ark: Read-only file system"),
    (OSError(errno.EACCES, "Permission denied", "/no/such/dir/f"), "cannot write /no/such/dir/f: Permission denied"),
    (OSError(errno.ENOENT, "No such file or directory", "/x/y"), "/x/y: No such file or directory"),
])
def test_os_errors_read_as_one_line(error, message):
    assert os_error_message(error) == message


def small_files():
    """In the child: writes beyond 200 bytes fail with EFBIG (as on a full disk) instead of killing the process."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))


def test_a_failed_write_is_one_line_naming_the_output_and_the_old_outputs_stay(tmp_path):
    write_kaldi_corpus(tmp_path / "src", with_segments=False)
    command = [str(REPO / ".venv" / "bin" / "esgd-import-corpus"), "--corpus", f"kaldi:{tmp_path / 'src'}",
               str(tmp_path / "m"), str(tmp_path / "data")]
    assert subprocess.run(command, capture_output=True, env=ENV).returncode == 0
    before = snapshot(tmp_path / "m", tmp_path / "data")
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, preexec_fn=small_files)
    assert result.returncode == 1
    output = tmp_path / "m" / "kaldi_recordings_train.jsonl.gz"
    assert result.stderr == f"esgd-import-corpus: error: cannot write {output}: File too large\n"
    assert snapshot(tmp_path / "m", tmp_path / "data") == before
    assert not [p for root in ("m", "data") for p in (tmp_path / root).iterdir() if p.name.startswith(".")]


def test_torch_save_failure_names_the_output(tmp_path):
    code = ("import sys, torch; from esgd_asr.atomic import atomic_torch_save; from esgd_asr.errors import cli_main; "
            "cli_main(lambda argv: atomic_torch_save(torch.zeros(1000), sys.argv[1]))()")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "final.pt")], capture_output=True, text=True,
                            env=ENV, preexec_fn=small_files)
    assert result.returncode == 1
    assert result.stderr.endswith(f": error: cannot write {tmp_path / 'final.pt'}: File too large\n")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_fst_write_names_the_fst(tmp_path):
    code = ("import sys, kaldi_hmm_gmm, kaldifst; from esgd_asr.atomic import write_fst; "
            "from esgd_asr.errors import cli_main\n"
            "fst = kaldifst.compile(s=''.join(f'{i} {i + 1} {i + 1} {i + 1} 0.5\\n' for i in range(100)) + '100\\n')\n"
            "cli_main(lambda argv: write_fst(fst, sys.argv[1]))()")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "HCLG.fst")], capture_output=True, text=True,
                            env=ENV, preexec_fn=small_files)
    assert result.returncode == 1, result.stderr
    assert result.stderr.endswith(f": error: cannot write {tmp_path / 'HCLG.fst'}: kaldifst could not write the FST\n")


@pytest.mark.parametrize("job_range", ["JOB=1:0", "JOB=1:-3", "JOB=0:2", "JOB=a:b"])
def test_queue_refuses_a_bad_job_range_before_running_anything(tmp_path, job_range):
    result = subprocess.run(["esgd-queue", job_range, str(tmp_path / "log" / "x.JOB.log"), "touch", "ran"],
                            capture_output=True, text=True, env=ENV, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (f"esgd-queue: error: job range '{job_range}': expected VAR=FIRST:LAST with 1 <= FIRST "
                             f"<= LAST (e.g. JOB=1:4)\n")
    assert list(tmp_path.iterdir()) == []


def test_queue_reports_the_first_error_line_whole(tmp_path):
    first = "esgd-compute-plp: error: /data/" + "x" * 400 + "/wav.scp:3: duplicate key 'a' (first on line 1)"
    job = (f"echo 'reading...'; echo \"{first}\"; echo 'Traceback (most recent call last):'; "
           "echo '  raise ValueError(1)'; echo 'ValueError: later'; exit 2")
    result = subprocess.run(["esgd-queue", str(tmp_path / "log" / "x.log"), "bash", "-c", job], capture_output=True,
                            text=True, env=ENV)
    assert result.returncode == 1
    assert f"1 of 1 jobs failed; job 1 (exit 2): {first} [log: {tmp_path / 'log' / 'x.log'}]" in result.stderr


def test_a_second_runner_on_a_locked_exp_dir_stops_naming_the_holder(tmp_path):
    log = tmp_path / "exp" / "log" / "job.log"
    # the first run's job leaves a process behind (an orphan), which keeps the dir locked
    orphan = "sleep 5 > /dev/null 2>&1 & echo $! > pid"
    first = subprocess.run(["esgd-queue", str(log), "bash", "-c", orphan], capture_output=True, text=True, env=ENV,
                           cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    first_log = log.read_text()
    pid = int((tmp_path / "pid").read_text())
    try:
        second = subprocess.run(["esgd-queue", str(log), "true"], capture_output=True, text=True, env=ENV)
        assert second.returncode == 1
        holder = (tmp_path / "exp" / ".lock").read_text().strip()
        assert holder.endswith(f": bash -c '{orphan}'")
        assert second.stderr == (f"esgd-queue: error: {tmp_path / 'exp'} is being written by another run "
                                 f"(pid {holder}); wait for it or stop it\n")
        assert log.read_text() == first_log
    finally:
        os.kill(pid, signal.SIGTERM)
    for _ in range(50):  # the orphan gone, the dir is free
        if subprocess.run(["esgd-queue", str(log), "true"], capture_output=True, env=ENV).returncode == 0:
            break
    else:
        pytest.fail("the lock outlived the orphan")


def test_a_failed_ark_write_names_the_ark(tmp_path):
    code = ("import sys, numpy as np; from esgd_asr.errors import cli_main; "
            "from esgd_asr.features.feature_io import ArkScpWriter\n"
            "def main(argv):\n"
            "    with ArkScpWriter(sys.argv[1], sys.argv[2]) as writer:\n"
            "        writer.write('utt1', np.zeros((100, 40), np.float32))\n"
            "cli_main(main)()")
    ark, scp = tmp_path / "feats.ark", tmp_path / "feats.scp"
    result = subprocess.run([sys.executable, "-c", code, str(ark), str(scp)], capture_output=True, text=True, env=ENV,
                            preexec_fn=small_files)
    assert result.returncode == 1
    assert result.stderr.endswith(f": error: cannot write {ark}: File too large\n")
    assert not ark.exists() and not scp.exists()



@pytest.mark.parametrize("device,reason", [
    ("tpu", "'tpu' is not a torch device (cpu, cuda or cuda:N)"), ("cuda:7", "'cuda:7': no CUDA device"),
    ("meta", "'meta': only cpu and cuda devices are supported")])
def test_device_option_is_checked_when_parsed(device, reason):
    from esgd_asr.cli.options import device_name

    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(reason)):
        device_name(device)
    assert device_name("cpu") == "cpu"


def test_every_command_takes_device_through_the_one_checked_option(tmp_path):
    raw = [p.name for p in (REPO / "esgd_asr" / "cli").glob("*.py")
           if p.name != "options.py" and 'add_argument("--device"' in p.read_text()]
    assert raw == []
    result = subprocess.run(["esgd-decode-nnet", "--device", "tpu", *(str(tmp_path / f"x{i}") for i in range(5))],
                            capture_output=True, text=True, env=ENV)
    assert result.returncode != 0 and not list(tmp_path.iterdir())
    assert result.stderr == ("esgd-decode-nnet: error: argument --device: 'tpu' is not a torch device (cpu, cuda or "
                             "cuda:N)\n")
