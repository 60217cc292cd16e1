"""MPI through mpi4py: any CPU backend (NumPy, array-api-strict, JAX,
PyTorch on the CPU), and CuPy through host copies.

Arrays cross MPI as host buffers: a NumPy array directly (copied once, so
the caller's array is never written), other backends through their
``to_numpy``. Collectives of large arrays are MPI's own (``Allreduce``,
``Bcast``); a gather of arrays of different lengths goes through mpi4py's
object layer (used for predictions and metrics, once per call).
"""

from __future__ import annotations

import sys
import time

from ..backends import backend_of, get
from .comm import Communicator


class MPICommunicator(Communicator):
    """A world of MPI processes (``MPI.COMM_WORLD``)."""

    engine = "mpi"

    def __init__(self, backend, comm=None) -> None:
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = comm or MPI.COMM_WORLD
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        super().__init__(backend, self.comm.Get_rank(), self.comm.Get_size(),
                         local.Get_rank())
        local.Free()

    def _host(self, x, donate: bool = False):
        """`x`'s backend, and a contiguous host buffer MPI may write into:
        `x` itself when it is a donated, writeable NumPy array, else a copy."""
        backend = backend_of(x) or self.backend
        flags = getattr(x, "flags", None)
        if donate and backend.name == "numpy" and flags is not None and \
                flags.writeable and flags.c_contiguous:
            return backend, x
        return backend, get("numpy").asarray(backend.to_numpy(x), copy=True)

    def all_reduce(self, x, donate: bool = False):
        backend, buf = self._host(x, donate)
        self.comm.Allreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM)
        return buf if buf is x else backend.asarray(buf)

    def broadcast(self, x, root: int = 0):
        backend, buf = self._host(x)
        self.comm.Bcast(buf, root=root)
        return backend.asarray(buf)

    def all_gather(self, x) -> list:
        backend = backend_of(x) or self.backend
        parts = self.comm.allgather(backend.to_numpy(x))
        return [backend.asarray(p) for p in parts]

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int = 1) -> None:
        """End every rank of the job (after an error on this one)."""
        self.comm.Abort(code)


_DRAIN_SECONDS = 0.5


def abort_on_error(communicator) -> None:
    """An uncaught exception on one rank prints its traceback and ends the
    whole job, instead of leaving the other ranks waiting in a collective
    (what ``python -m mpi4py`` does; installed by ``init``)."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.flush()
        # the launcher forwards our stderr through a pipe, and Abort kills
        # the forwarders too: give them a moment to pass the traceback on
        time.sleep(_DRAIN_SECONDS)
        communicator.abort(1)

    sys.excepthook = hook
