"""Job runner behind `$cmd` in cmd.sh, like Kaldi's run.pl / slurm.pl.

Usage: esgd-queue [--backend local|slurm] [--max-jobs-run N] [JOB=1:N] <log-file> <command> [args...]

Every `JOB` in the log name and the command is replaced by the job index. Each job's output goes to its
log, framed by the command line, start time, end time and exit status. A single local job also streams its
output to the terminal (progress bars stay visible); several jobs show one bar of finished jobs. A failed
job makes the whole call fail with the first error line of its log (esgd_asr.cli.queue.first_error_line).
The exp dir the jobs write (the parent of the log dir) is locked while they run, and while anything they leave
running runs: a second runner on it stops with one line naming the holder's pid (esgd_asr.cli.queue.lock_dir).
"""
from __future__ import annotations

import datetime
import fcntl
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from esgd_asr.errors import EsgdError, cli_main

JOB_RANGE = re.compile(r"^([A-Za-z]+)=(\d+):(\d+)$")


def _now() -> str:
    return datetime.datetime.now().strftime("%a %b %d %H:%M:%S %Y")


def lock_dir(log_template: str, command: str) -> int:
    """Lock the exp dir that jobs logging to `log_template` write (the parent of a `log` dir, else the log's dir):
    an open descriptor of <dir>/.lock, flocked, holding this runner's pid and command. The jobs inherit it, so
    that it stays locked while any process they leave behind runs."""
    log_dir = Path(log_template).parent
    exp_dir = log_dir.parent if log_dir.name == "log" else log_dir
    exp_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(exp_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 300).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise EsgdError(f"{exp_dir} is being written by another run (pid {holder}); wait for it or stop it") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}: {command[:200]}\n".encode())
    return fd


def run_job(command: str, log: Path, backend: str, stream: bool, lock: int) -> int:
    """Run one job under bash, writing its framed log; return its exit status. The job inherits `lock`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = ["bash", "-c", command]
    if backend == "slurm":
        argv = ["srun", "--job-name", log.stem, *shlex.split(os.environ.get("ESGD_SRUN_OPTS", ""))] + argv
    with open(log, "w", encoding="utf-8") as out:
        out.write(f"# {command}\n# Started at {_now()}\n#\n")
        out.flush()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=(lock,))
        for chunk in iter(lambda: proc.stdout.read1(4096), b""):
            text = chunk.decode(errors="replace")
            out.write(text)
            if stream:
                sys.stdout.write(text)
                sys.stdout.flush()
        status = proc.wait()
        out.write(f"# Accounting: status={status}\n# Ended (code {status}) at {_now()}\n")
    return status


def first_error_line(log: Path) -> str:
    """The line of a failed job's log that says what went wrong, whole: the first one-line error of an esgd-*
    command ('prog: error: ...'), else the first other line mentioning an error (not a traceback's header or its
    indented frames), else the last line of output."""
    lines = [line.rstrip() for line in log.read_text(errors="replace").splitlines()
             if line.strip() and not line.startswith("#")]
    ours = [line for line in lines if ": error: " in line]
    errors = [line for line in lines if "error" in line.lower() and not line[0].isspace()
              and not line.startswith("Traceback")]
    return (ours or errors or [(lines or ["(no output)"])[-1]])[0].strip()


@cli_main
def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    backend, max_jobs = "local", os.cpu_count() or 1
    while args and args[0].startswith("--"):
        option = args.pop(0)
        if not args:
            raise EsgdError(f"option {option} needs a value")
        if option == "--backend":
            backend = args.pop(0)
        elif option == "--max-jobs-run":
            max_jobs = int(args.pop(0))
        else:
            raise EsgdError(f"unknown option {option}")
    if backend not in ("local", "slurm"):
        raise EsgdError(f"--backend must be local or slurm, got '{backend}'")
    var, first, last = "JOB", 1, 1
    if args and re.match(r"^[A-Za-z]+=", args[0]):
        match = JOB_RANGE.match(args[0])
        if not match or not 1 <= int(match.group(2)) <= int(match.group(3)):
            raise EsgdError(f"job range '{args[0]}': expected VAR=FIRST:LAST with 1 <= FIRST <= LAST (e.g. JOB=1:4)")
        var, first, last = match.group(1), int(match.group(2)), int(match.group(3))
        args.pop(0)
    if len(args) < 2:
        raise EsgdError("usage: esgd-queue [--backend local|slurm] [JOB=1:N] <log> <command> [args...]")
    log_template, command = args[0], args[1:]
    quoted = " ".join(a if re.fullmatch(r"[\w./:=@%+,-]+", a) else shlex.quote(a) for a in command)
    indices = range(first, last + 1)
    lock = lock_dir(log_template, quoted)

    def job(index: int) -> tuple[int, Path, int]:
        log = Path(log_template.replace(var, str(index)))
        return index, log, run_job(quoted.replace(var, str(index)), log, backend, len(indices) == 1, lock)

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(max_jobs, len(indices)))) as pool:
            results = pool.map(job, indices)
            if len(indices) > 1:
                results = tqdm(results, total=len(indices), desc=Path(log_template).stem.replace(f".{var}", ""),
                               unit="job")
            failed = [(i, log, status) for i, log, status in results if status != 0]
    finally:
        os.close(lock)
    if failed:
        index, log, status = failed[0]
        raise EsgdError(f"{len(failed)} of {len(indices)} jobs failed; job {index} (exit {status}): "
                        f"{first_error_line(log)} [log: {log}]")


if __name__ == "__main__":
    main()
