"""Start a distributed population run: N processes per node through torch.distributed's elastic launcher (what
torchrun runs), one node by itself or several meeting at a c10d rendezvous (Slurm: the job's first node). A rank
that dies stops the run with one line naming it and the checkpoint the run resumes from."""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import torch
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from esgd_asr.errors import EsgdError
from esgd_asr.population.ranks import PeerLost

RDZV_PORT = 29500


def slurm_endpoint(environ=os.environ) -> str:
    """host:port of the rendezvous of a Slurm job step: its first node, port 29500."""
    nodes = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST")
    if not nodes:
        raise EsgdError("--nnodes above 1 needs --rdzv-endpoint HOST:PORT (or a Slurm job, whose first node is used)")
    if shutil.which("scontrol") is None:
        raise EsgdError("--nnodes: scontrol (Slurm) not found to expand the node list; give --rdzv-endpoint HOST:PORT")
    hosts = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True, check=True)
    return f"{hosts.stdout.split()[0]}:{RDZV_PORT}"


def launch(command: list[str], nproc: int, checkpoint: Path, nnodes: int = 1, rdzv_endpoint: str | None = None,
           rdzv_id: str | None = None) -> None:
    """Run `command` (program and arguments) as `nproc` processes on this node, ranks of a run over `nnodes`
    nodes. A failed rank raises EsgdError naming it (one killed by a signal first: the others stop because they
    lost it) and `checkpoint`, the last one written whole."""
    if nproc < 1 or nnodes < 1:
        raise EsgdError(f"--nproc and --nnodes must be at least 1, got {nproc} and {nnodes}")
    if nnodes == 1 and not rdzv_endpoint:
        rdzv_endpoint, rdzv_id = "localhost:0", rdzv_id or str(uuid.uuid4())   # torchrun --standalone
    config = LaunchConfig(min_nodes=nnodes, max_nodes=nnodes, nproc_per_node=nproc, rdzv_backend="c10d",
                          rdzv_endpoint=rdzv_endpoint or slurm_endpoint(),
                          run_id=rdzv_id or os.environ.get("SLURM_JOB_ID", "esgd"), max_restarts=0,
                          monitor_interval=0.1)
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)   # the failure is told below
    try:
        elastic_launch(config, command[0])(*command[1:])
    except ChildFailedError as err:
        raise EsgdError(f"{failure_line(err.failures)}; {resume_hint(checkpoint)}") from None


def failure_line(failures: dict) -> str:
    """Which rank stopped the run, from the launcher's failures (global rank -> ProcessFailure): first one killed
    by a signal other than SIGTERM (the launcher's own to stop the others), then one that exited on an error of its
    own, then SIGTERM, last those that only lost a peer (PeerLost's status); the earlier first. Others of the same
    kind are named too."""
    def kind(failure) -> int:
        if failure.exitcode < 0:
            return 2 if -failure.exitcode == signal.SIGTERM else 0
        return 3 if failure.exitcode == PeerLost.status else 1

    ranked = sorted(failures.items(), key=lambda item: (kind(item[1]), item[1].timestamp, item[0]))
    rank, failure = ranked[0]
    how = (f"was killed by {failure.signal_name()}" if failure.exitcode < 0
           else f"exited with status {failure.exitcode}")
    alike = [str(r) for r, f in ranked[1:] if kind(f) == kind(failure) and f.exitcode == failure.exitcode]
    return f"rank {rank} (pid {failure.pid}) {how}" + (f", as did rank {', '.join(alike)}" if alike else "")


def resume_hint(checkpoint: Path) -> str:
    """Where a stopped run resumes from: the generation of `checkpoint` (read without its tensors), or none yet."""
    if not checkpoint.is_file():
        return f"no checkpoint was written yet ({checkpoint}): rerun from the start"
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)
        done = f"generation {state['algorithm']['generation']}"
    except Exception as err:  # a checkpoint of another format: name it all the same
        done = f"unreadable: {err.__class__.__name__}"
    return f"resume from {checkpoint} ({done}) with --resume true, on any number of processes"
