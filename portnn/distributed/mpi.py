"""MPI through mpi4py: any CPU backend (NumPy, array-api-strict, JAX,
PyTorch on the CPU), and CuPy through host copies.

Arrays cross MPI as host buffers: a NumPy array directly (copied once, so
the caller's array is never written), other backends through their
``to_numpy``. Collectives of large arrays are MPI's own (``Allreduce``,
``Bcast``, started non-blocking and waited for at most ``timeout``
seconds, so a rank that left ends the job with an error instead of a hang);
a gather of arrays of different lengths goes through mpi4py's object layer
(used for predictions and metrics, once per call).
"""

from __future__ import annotations

import sys
import time

from ..backends import backend_of, get
from .comm import Communicator, collective_timeout, timeout_error


class MPICommunicator(Communicator):
    """A world of MPI processes (``MPI.COMM_WORLD``)."""

    engine = "mpi"

    def __init__(self, backend, comm=None, timeout=None) -> None:
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = comm or MPI.COMM_WORLD
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        super().__init__(backend, self.comm.Get_rank(), self.comm.Get_size(),
                         local.Get_rank())
        local.Free()
        self.timeout = collective_timeout(timeout)

    def _wait(self, request, call: str) -> None:
        """Wait for a non-blocking collective, at most `timeout` seconds:
        MPI's blocking collectives wait forever for a rank that left."""
        if request.Test():
            return
        start = time.monotonic()
        deadline = start + self.timeout
        # MPI moves a non-blocking collective on only inside MPI calls: spin
        # on Test (a sleep there made a 9 us all-reduce take 1 ms); a rank
        # that waits longer than SPIN seconds is waiting for a slow or
        # missing rank, and polls once a millisecond
        while not request.Test():
            now = time.monotonic()
            if now > deadline:
                raise timeout_error(self.rank, self.size, call, self.timeout)
            if now - start > _SPIN_SECONDS:
                time.sleep(0.001)

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
        self._wait(self.comm.Iallreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM),
                   "all_reduce")
        return buf if buf is x else backend.asarray(buf)

    def broadcast(self, x, root: int = 0):
        backend, buf = self._host(x)
        self._wait(self.comm.Ibcast(buf, root=root), "broadcast")
        return backend.asarray(buf)

    def all_gather(self, x) -> list:
        backend = backend_of(x) or self.backend
        # every rank here first (bounded), then mpi4py's gather of objects
        self._wait(self.comm.Ibarrier(), "all_gather")
        parts = self.comm.allgather(backend.to_numpy(x))
        return [backend.asarray(p) for p in parts]

    def barrier(self) -> None:
        self._wait(self.comm.Ibarrier(), "barrier")

    def abort(self, code: int = 1) -> None:
        """End every rank of the job (after an error on this one)."""
        self.comm.Abort(code)


_DRAIN_SECONDS = 0.5
_SPIN_SECONDS = 0.05


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
