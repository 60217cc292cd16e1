"""torch.distributed for the torch backend: gloo on the CPU, NCCL on CUDA.

Started by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT``), or by ``mpiexec``/``srun``: then the
rank and size are the launcher's, and the ranks meet at ``MASTER_ADDR``:
``MASTER_PORT`` when set, else at rank 0's host (told to the others over
MPI when mpi4py is installed; ``127.0.0.1`` otherwise) on port 29500.
"""

from __future__ import annotations

import os
import socket

from portnn.distributed.comm import Communicator, collective_timeout


def meeting_point(rank: int) -> str:
    """The ``tcp://host:port`` where the ranks of a non-torchrun job meet."""
    host = os.environ.get("MASTER_ADDR")
    if host is None:
        try:
            from mpi4py import MPI

            host = MPI.COMM_WORLD.bcast(socket.gethostname() if rank == 0 else None)
        except ImportError:
            host = "127.0.0.1"
    return f"tcp://{host}:{os.environ.get('MASTER_PORT', '29500')}"


class TorchCommunicator(Communicator):
    """A torch.distributed process group."""

    engine = "torch.distributed"

    def __init__(self, backend, rank=None, size=None, local_rank=0,
                 timeout=None) -> None:
        import datetime

        import torch.distributed as dist

        self._dist = dist
        self.timeout = collective_timeout(timeout)
        if not dist.is_initialized():
            kind = "nccl" if backend.device.type == "cuda" else "gloo"
            # the engine's own bound on every collective
            limit = datetime.timedelta(seconds=self.timeout)
            if "RANK" in os.environ and "MASTER_ADDR" in os.environ:  # torchrun
                dist.init_process_group(backend=kind, init_method="env://",
                                        timeout=limit)
            else:
                dist.init_process_group(backend=kind, init_method=meeting_point(rank),
                                        rank=rank, world_size=size, timeout=limit)
        super().__init__(backend, dist.get_rank(), dist.get_world_size(),
                         local_rank or 0)

    def all_reduce(self, x, donate: bool = False):
        out = x if donate and x.is_contiguous() else x.clone().contiguous()
        self._dist.all_reduce(out, op=self._dist.ReduceOp.SUM)
        return out

    def broadcast(self, x, root: int = 0):
        out = x.clone().contiguous()
        self._dist.broadcast(out, src=root)
        return out

    def all_gather(self, x) -> list:
        import torch

        # lengths may differ: gather them, pad to the longest, then trim
        n = torch.tensor([x.shape[0]], device=x.device)
        sizes = [torch.zeros_like(n) for _ in range(self.size)]
        self._dist.all_gather(sizes, n)
        sizes = [int(s.item()) for s in sizes]
        longest = max(sizes)
        padded = torch.zeros((longest, *x.shape[1:]), dtype=x.dtype, device=x.device)
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        self._dist.all_gather(parts, padded)
        return [p[:s] for p, s in zip(parts, sizes, strict=True)]

    def barrier(self) -> None:
        self._dist.barrier()

    def close(self) -> None:
        if self._dist.is_initialized():
            self._dist.destroy_process_group()
