"""NCCL for CuPy arrays, through ``cupyx.distributed``: the collectives
run on the GPUs, with no host copy.

The ranks meet through the TCP store ``cupyx.distributed`` starts on rank 0
(``MASTER_ADDR``/``MASTER_PORT`` when set). Every rank uses the GPU of its
local rank.
"""

from __future__ import annotations

import os

from portnn.distributed.comm import Communicator


class NCCLCommunicator(Communicator):
    """A world of CuPy processes joined by NCCL."""

    engine = "nccl"

    def __init__(self, backend, rank: int, size: int, local_rank: int = 0) -> None:
        from cupyx import distributed

        host = os.environ.get("MASTER_ADDR", "127.0.0.1")
        port = int(os.environ.get("MASTER_PORT", "13333"))
        self._comm = distributed.init_process_group(
            size, rank, host=host, port=port, backend="nccl")
        super().__init__(backend, rank, size, local_rank)

    def all_reduce(self, x, donate: bool = False):
        out = x if donate else x.copy()
        self._comm.all_reduce(x, out, op="sum")  # NCCL sums in place when out is x
        return out

    def broadcast(self, x, root: int = 0):
        out = x.copy()
        self._comm.broadcast(out, root=root)
        return out

    def all_gather(self, x) -> list:
        import cupy

        n = cupy.asarray([x.shape[0]])
        sizes = cupy.zeros(self.size, dtype=n.dtype)
        self._comm.all_gather(n, sizes, 1)
        sizes = [int(s) for s in sizes.get()]
        longest = max(sizes)
        padded = cupy.zeros((longest, *x.shape[1:]), dtype=x.dtype)
        padded[: x.shape[0]] = x
        out = cupy.empty((self.size, *padded.shape), dtype=x.dtype)
        self._comm.all_gather(padded, out, padded.size)
        return [out[r, :s] for r, s in enumerate(sizes)]

    def barrier(self) -> None:
        self._comm.barrier()
