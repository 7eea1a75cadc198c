"""The processes of a distributed population run (torch.distributed: NCCL on GPUs, gloo on the CPU) and the moves
of members between them: rows of stacked tensors sent point to point from the rank that holds them."""
from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist

from esgd_asr.errors import EsgdError
from esgd_asr.population.shard import Shard

Tensors = dict[str, torch.Tensor]


class PeerLost(EsgdError):
    """A collective failed: another rank stopped (killed, crashed) or cannot be reached. Its exit status tells the
    launcher that this rank did not stop the run."""

    status = 75   # EX_TEMPFAIL


class Ranks:
    """This process's rank among `size` and the device its messages travel on (cuda for NCCL, cpu for gloo)."""

    def __init__(self, rank: int, size: int, device: torch.device):
        self.rank, self.size, self.device = rank, size, device

    @classmethod
    def from_environment(cls, device: torch.device | str, timeout_s: float = 1800.0) -> "Ranks":
        """Join the process group that torchrun (or torch.distributed's launcher) describes in RANK, WORLD_SIZE,
        MASTER_ADDR and MASTER_PORT; NCCL on a CUDA `device` (cuda:LOCAL_RANK), gloo on the CPU."""
        missing = [name for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
        if missing:
            raise EsgdError(f"distributed run: {missing[0]} is not set (start it with torchrun or --nproc)")
        device = torch.device(device)
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout_s),
                                    device_id=device if device.type == "cuda" else None)
        return cls(dist.get_rank(), dist.get_world_size(), device)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @contextmanager
    def main_first(self):
        """Rank 0 runs the block before the others do (it writes a cache that they then read)."""
        if not self.is_main:
            dist.barrier()
        yield
        if self.is_main:
            dist.barrier()

    def shard(self, total: int) -> Shard:
        return Shard.of(total, self.rank, self.size)

    def shards(self, total: int) -> list[Shard]:
        """Every rank's shard of `total` members, by rank."""
        return [Shard.of(total, rank, self.size) for rank in range(self.size)]

    def blocks(self, total: int) -> list[list[int]]:
        """The global indices each rank holds of `total` members dealt out in shards."""
        return [shard.indices() for shard in self.shards(total)]

    def fetch(self, stacks: Tensors, held: list[list[int]], wanted: list[list[int]],
              device: torch.device | None = None) -> Tensors:
        """Rows `wanted[rank]` of stacked tensors spread over the ranks, rank r holding rows `held[r]` (global
        indices, in the order of its local rows of `stacks`); every rank passes the same `held` and `wanted`. Rows
        held elsewhere arrive point to point, one tensor at a time (one message per peer), so that only one tensor's
        rows are in flight; returns this rank's rows in the order asked, on `device` (default: that of `stacks`)."""
        owner = {index: (rank, row) for rank, rows in enumerate(held) for row, index in enumerate(rows)}
        unheld = [index for rows in wanted for index in rows if index not in owner]
        if unheld:
            raise EsgdError(f"distributed run: row {unheld[0]} is held by no rank")
        mine = wanted[self.rank]
        local = [pos for pos, index in enumerate(mine) if owner[index][0] == self.rank]
        local_rows = [owner[mine[pos]][1] for pos in local]
        sent = {peer: [owner[index][1] for index in wanted[peer] if owner[index][0] == self.rank]
                for peer in range(self.size) if peer != self.rank}
        coming = {peer: [pos for pos, index in enumerate(mine) if owner[index][0] == peer]
                  for peer in range(self.size) if peer != self.rank}
        out = {}
        for name, stack in stacks.items():
            out[name] = stack.new_empty((len(mine), *stack.shape[1:]), device=device or stack.device)
            if local:
                out[name][local] = stack[torch.tensor(local_rows, device=stack.device)].to(out[name].device)
            ops = [dist.P2POp(dist.isend, wire(stack[torch.tensor(rows, device=stack.device)].to(self.device)), peer)
                   for peer, rows in sent.items() if rows]
            arriving = {peer: torch.empty((len(positions), *stack.shape[1:]), dtype=stack.dtype, device=self.device)
                        for peer, positions in coming.items() if positions}
            ops += [dist.P2POp(dist.irecv, wire(buffer), peer) for peer, buffer in arriving.items()]
            if ops:
                try:
                    for request in dist.batch_isend_irecv(ops):
                        request.wait()
                except RuntimeError as err:  # gloo: the connection closed; NCCL: the communicator aborted
                    raise PeerLost(f"rank {self.rank}: a peer stopped answering ({str(err).splitlines()[0]})") from err
            for peer, buffer in arriving.items():
                out[name][coming[peer]] = buffer.to(out[name].device)
        return out

    def gather_rows(self, local: torch.Tensor, total: int) -> torch.Tensor:
        """The whole (total, ...) tensor on every rank from each rank's shard of it (Shard.of order)."""
        blocks = self.blocks(total)
        return self.fetch({"rows": local}, blocks, [list(range(total))] * self.size)["rows"]

    def gather_to_main(self, stacks: Tensors, total: int) -> Tensors | None:
        """The whole stacked tensors on rank 0's CPU (None elsewhere) from each rank's shard."""
        wanted = [list(range(total)) if rank == 0 else [] for rank in range(self.size)]
        whole = self.fetch(stacks, self.blocks(total), wanted, torch.device("cpu"))
        return whole if self.is_main else None


def wire(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous tensor the backends carry (bool as uint8)."""
    return tensor.contiguous().view(torch.uint8) if tensor.dtype == torch.bool else tensor.contiguous()
