"""The one interface of data-parallel training: a communicator.

A communicator knows its `rank`, the `size` of the world and the
`local_rank` on this machine, and moves arrays of one backend between the
ranks: `all_reduce` (a sum), `broadcast` from a root and `all_gather`. The
engines (MPI, NCCL, torch.distributed) implement it in a few lines each;
nothing here is written on sockets.
"""

from __future__ import annotations

import os
import sys
from typing import Any

#: seconds a collective waits for the other ranks before it gives up
DEFAULT_TIMEOUT = 600.0


def collective_timeout(timeout=None) -> float:
    """`timeout`, else ``PORTNN_COLLECTIVE_TIMEOUT``, else 600 seconds."""
    if timeout is None:
        text = os.environ.get("PORTNN_COLLECTIVE_TIMEOUT")
        if text is None:
            return DEFAULT_TIMEOUT
        try:
            timeout = float(text)
        except ValueError:
            timeout = -1.0
        if not timeout > 0:
            msg = (f"PORTNN_COLLECTIVE_TIMEOUT must be a number of seconds > 0, "
                   f"got {text!r}")
            raise ValueError(msg)
        return timeout
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        msg = f"timeout must be a number of seconds > 0, got {timeout!r}"
        raise ValueError(msg)
    return float(timeout)


class CollectiveTimeoutError(TimeoutError):
    """A collective waited longer than the timeout for the other ranks:
    one of them stopped (an error it caught, ``sys.exit``) or never called
    the same function (``if is_main(): fit(...)``).

    Examples
    --------
    Raised by a collective whose partners never came; catch it to stop
    cleanly rather than wait for ever:

    >>> from portnn import distributed
    >>> issubclass(distributed.CollectiveTimeoutError, TimeoutError)
    True
    """


def timeout_error(rank: int, size: int, call: str, timeout: float):
    """The error a rank raises when `call` waited `timeout` seconds."""
    where = _caller()
    msg = (
        f"rank {rank} of {size}: {call}{where} waited {timeout:g} s for the other "
        "ranks and gave up. A rank has stopped (an exception it caught, "
        "sys.exit) or does not call the same function: every rank must call "
        "fit, evaluate and predict (not only the main rank). For steps that "
        "are slow, raise the limit: portnn.distributed.init(timeout=...) or "
        "PORTNN_COLLECTIVE_TIMEOUT"
    )
    return CollectiveTimeoutError(msg)


def _caller() -> str:
    """`` in <public portnn call> (via <function>)``: the outermost portnn
    frame (``fit``, ``evaluate``, ``predict``) and the first outside the
    engines, where they differ."""
    frame = sys._getframe(2)
    here = os.path.dirname(__file__)
    package = os.path.dirname(here)
    inner = outer = None
    while frame is not None:
        name = frame.f_code.co_filename
        engine = name.startswith(here) or os.path.basename(name) in (
            "torch_distributed.py", "cupy_nccl.py")
        if not engine and inner is None:
            inner = frame.f_code.co_name
        if name.startswith(package) and not frame.f_code.co_name.startswith("_"):
            outer = frame.f_code.co_name
        frame = frame.f_back
    if outer is None or outer == inner:
        return f" in {inner}" if inner else ""
    return f" in {outer} (via {inner})" if inner else f" in {outer}"


class Communicator:
    """Base class: a world of `size` processes, this one of `rank`.

    Subclasses implement the collectives on arrays of the backend they
    were made for (`backend`); every rank calls each collective, in the
    same order.

    Examples
    --------
    Without :func:`init`, the world is this process alone:

    >>> import portnn
    >>> from portnn import distributed
    >>> comm = distributed.current()
    >>> comm.rank, comm.size
    (0, 1)
    >>> comm.all_reduce(portnn.asarray([1.0, 2.0])).tolist()
    [1.0, 2.0]
    """

    engine = "none"
    #: seconds a collective waits for the other ranks (see `init`)
    timeout = DEFAULT_TIMEOUT

    def __init__(self, backend, rank: int = 0, size: int = 1,
                 local_rank: int = 0) -> None:
        self.backend = backend
        self.rank, self.size, self.local_rank = int(rank), int(size), int(local_rank)
        self.scratch: dict = {}  # reusable buffers of the gradient all-reduce

    def abort(self, code: int = 1) -> None:
        """End every rank of the job (the engine's abort where it has one)."""
        os._exit(code)

    def all_reduce(self, x, donate: bool = False) -> Any:
        """The elementwise sum of `x` over every rank.

        A new array, unless `donate` says that the caller no longer needs
        `x`: then the engine may sum into it (no copy) and return it.
        """
        raise NotImplementedError

    def broadcast(self, x, root: int = 0) -> Any:
        """`x` as the `root` rank has it (a new array on the others)."""
        raise NotImplementedError

    def all_gather(self, x) -> list:
        """Every rank's `x` (shapes may differ in axis 0), in rank order."""
        raise NotImplementedError

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        raise NotImplementedError

    def all_reduce_numbers(self, values: list[float]) -> list[float]:
        """The sums of a few host numbers over every rank."""
        b = self.backend
        host = b.to_numpy(self.all_reduce(b.asarray(
            [float(v) for v in values], dtype=_float64(b))))
        return [float(v) for v in host.tolist()]

    def close(self) -> None:
        """Leave the world (the engine's shutdown, where it has one)."""

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(engine={self.engine!r}, rank={self.rank}, "
                f"size={self.size}, local_rank={self.local_rank})")


def _float64(backend):
    try:
        return backend.dtype("float64")
    except TypeError:
        return backend.dtype("float32")


class LocalCommunicator(Communicator):
    """A world of one process: every collective returns its input."""

    engine = "local"

    def all_reduce(self, x, donate: bool = False):
        return x

    def broadcast(self, x, root: int = 0):
        return x

    def all_gather(self, x) -> list:
        return [x]

    def barrier(self) -> None:
        pass


def launcher_environment() -> dict[str, Any]:
    """What the launcher told this process: ``{"launcher", "rank", "size",
    "local_rank"}`` from torchrun, Slurm's srun, Open MPI's or MPICH's
    mpiexec, or an empty dict when nothing launched a world."""
    import os

    env = os.environ

    def ints(*names):
        for name in names:
            if env.get(name, "").strip().lstrip("-").isdigit():
                return int(env[name])
        return None

    if "TORCHELASTIC_RUN_ID" in env or ("RANK" in env and "MASTER_ADDR" in env):
        return {"launcher": "torchrun", "rank": ints("RANK"),
                "size": ints("WORLD_SIZE"), "local_rank": ints("LOCAL_RANK") or 0}
    size = ints("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")
    if size is not None and size >= 1:
        return {"launcher": "mpiexec",
                "rank": ints("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"),
                "size": size,
                "local_rank": ints("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID")}
    if ints("SLURM_NTASKS") is not None and "SLURM_PROCID" in env:
        return {"launcher": "srun", "rank": ints("SLURM_PROCID"),
                "size": ints("SLURM_NTASKS"), "local_rank": ints("SLURM_LOCALID") or 0}
    return {}
