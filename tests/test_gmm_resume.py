"""The GMM trainers' --stage: a run stopped in the middle of a pass (after the pass has changed its model or
transforms in place) and continued from its last complete N.mdl ends with the same model as a run in one go.

The step scripts run as run.sh runs them, on the tiny task of gmm_fixture; their esgd-* commands (and the job
runner) are small clients of this test process, which runs each command's main function in-process: no process
pays for importing torch, and `kill_after` stops a job right after it ran, as a kill would."""
import json
import os
import shlex
import socketserver
import subprocess
import sys
import threading
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

import pytest

from esgd_asr.cli import align, fmllr, gmm_train, train_lda_mllt, train_mono, train_tree
from gmm_fixture import NJ, make_lang, synth_data, train

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {"esgd-gmm-train": gmm_train.main, "esgd-align": align.main, "esgd-train-mono": train_mono.main,
            "esgd-train-tree": train_tree.main, "esgd-train-lda-mllt": train_lda_mllt.main, "esgd-fmllr": fmllr.main}
CLIENT = """#!/usr/bin/env python3
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["ESGD_TEST_SOCKET"])
s.sendall(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]).encode())
s.shutdown(socket.SHUT_WR)
reply = json.loads(b"".join(iter(lambda: s.recv(1 << 16), b"")))
sys.stdout.write(reply["stdout"])
sys.stderr.write(reply["stderr"])
sys.exit(reply["rc"])
"""


def run_main(argv):
    """(exit status, stdout, stderr) of an esgd-* command run in-process."""
    out, err = StringIO(), StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            COMMANDS[argv[0]](argv[1:])
        rc = 0
    except SystemExit as exit_:
        rc = exit_.code if isinstance(exit_.code, int) else 1
    return rc, out.getvalue(), err.getvalue()


class Server(socketserver.UnixStreamServer):
    kill_after = None  # a log name: the job runner stops (status 137) right after the job logging there has run
    calls: list[str] = []


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        argv = json.loads(self.rfile.read())
        if argv[0] == "esgd-queue":  # esgd-queue [--backend B] [JOB=1:N] LOG COMMAND...: the jobs one by one
            args = argv[1:]
            if args[0] == "--backend":
                args = args[2:]
            jobs = [None]
            if args[0].startswith("JOB="):
                first, last = map(int, args.pop(0)[4:].split(":"))
                jobs = range(first, last + 1)
            reply = {"rc": 0, "stdout": "", "stderr": ""}
            for job in jobs:
                log, *command = [a.replace("JOB", str(job)) if job else a for a in args]
                self.server.calls.append(Path(log).name)
                rc, out, err = run_main(command)
                Path(log).parent.mkdir(parents=True, exist_ok=True)
                Path(log).write_text(out + err)
                if rc:
                    reply = {"rc": 1, "stdout": "", "stderr": f"job failed: {err}"}
                    break
                if Path(log).name == self.server.kill_after:
                    reply = {"rc": 137, "stdout": "", "stderr": "killed\n"}
                    break
        else:
            rc, out, err = run_main(argv)
            reply = {"rc": rc, "stdout": out, "stderr": err}
        self.wfile.write(json.dumps(reply).encode())


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """The tiny task's lang and data dirs, a monophone system to start from, and the in-process command server."""
    root = tmp_path_factory.mktemp("gmm_resume")
    lang, _ = make_lang(root)
    data = synth_data(root)
    mono = root / "mono"
    train(data, lang, mono)
    (mono / "num_jobs").write_text(f"{NJ}\n")
    (root / "lda.conf").write_text("--left-context=2\n--right-context=2\n--dim=20\n--mllt-update-iters=20\n")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for name in [*COMMANDS, "esgd-queue"]:
        (bin_dir / name).write_text(CLIENT)
        (bin_dir / name).chmod(0o755)
    server = Server(str(root / "socket"), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"root": root, "lang": lang, "data": data, "mono": mono, "bin": bin_dir, "server": server}
    server.shutdown()


STEPS = {  # pass 2 (the last) realigns and updates the front end
    "train_lda_mllt.sh": "--num-iters 3 --mllt-iters 2 --realign-iters 2 --lda-config {root}/lda.conf 12 60",
    "train_sat.sh": "--num-iters 3 --fmllr-iters 2 --realign-iters 2 12 60",
}
CHANGED_IN_PLACE = {"train_lda_mllt.sh": ["2.mdl.pass2.bak"], "train_sat.sh": ["trans.1.ark.pass2.bak"]}


def step(task, script, exp, options=""):
    args = STEPS[script].format(root=task["root"])
    command = (f"steps/{script} --nj {NJ} --tree-config conf/tree.conf {options} {args} {task['data']} "
               f"{task['lang']} {task['mono']} {exp}")
    env = dict(os.environ, PATH=f"{task['bin']}:{Path(sys.executable).parent}:{os.environ['PATH']}",
               ESGD_TEST_SOCKET=str(task["root"] / "socket"))
    return subprocess.run(shlex.split(command), cwd=REPO, env=env, capture_output=True, text=True)


def outputs(exp):
    names = ["final.mdl", "log/objf.tsv", "final.mat", "trans.1.ark", "trans.2.ark", "ali.1.ark", "ali.2.ark"]
    return {name: (exp / name).read_bytes() for name in names if (exp / name).exists()}


@pytest.mark.parametrize("script", sorted(STEPS))
def test_a_step_stopped_mid_pass_continues_to_the_same_model(task, script):
    server = task["server"]
    whole = task["root"] / f"{script}.whole"
    result = step(task, script, whole)
    assert result.returncode == 0, result.stderr
    # stopped in pass 2 after its MLLT / fMLLR update and its statistics, before its model
    split = task["root"] / f"{script}.split"
    server.kill_after = "acc.2.2.log"
    assert step(task, script, split).returncode != 0
    server.kill_after = None
    assert not (split / "3.mdl").exists() and not (split / "final.mdl").exists()
    assert all((split / name).exists() for name in CHANGED_IN_PLACE[script])
    last = max(int(p.stem) for p in split.glob("[0-9]*.mdl"))  # as run.sh finds it
    assert last == 2
    server.calls.clear()
    resumed = step(task, script, split, f"--stage {last}")
    assert resumed.returncode == 0, resumed.stderr
    assert "continuing the run" in resumed.stdout
    assert not any(call.startswith(("acc_tree", "build_tree", "acc.1.")) for call in server.calls)
    assert outputs(split) == outputs(whole)
    assert not list(split.glob("*.bak"))
    # a run of another --nj is not continued
    other = step(task, script, split, f"--stage {last} --nj 3")
    assert other.returncode == 1 and f"continues a run of --nj {NJ}" in other.stderr
