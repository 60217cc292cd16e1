"""torch.distributed for the torch backend: gloo on the CPU, NCCL on CUDA.

Started by ``torchrun`` (or anything that sets ``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT``): the process group is made from the
environment.
"""

from __future__ import annotations

from .comm import Communicator


class TorchCommunicator(Communicator):
    """A torch.distributed process group."""

    engine = "torch.distributed"

    def __init__(self, backend, rank=None, size=None, local_rank=0) -> None:
        import torch.distributed as dist

        self._dist = dist
        if not dist.is_initialized():
            kind = "nccl" if backend.device.type == "cuda" else "gloo"
            dist.init_process_group(backend=kind, init_method="env://")
        super().__init__(backend, dist.get_rank(), dist.get_world_size(),
                         local_rank or 0)

    def all_reduce(self, x):
        out = x.clone()
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
