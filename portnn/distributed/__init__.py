"""Data-parallel training on the engines clusters already run: MPI through
mpi4py (any CPU backend), NCCL through ``cupyx.distributed`` (CuPy) and
``torch.distributed`` (the torch backend).

Start the processes with a launcher and call :func:`init` in each::

    mpiexec -n 4 python train.py --backend numpy
    torchrun --nproc-per-node 2 train.py --backend torch
    srun --ntasks 8 python train.py --backend cupy

After it, ``fit``, ``evaluate`` and ``predict`` run data-parallel:
rank 0's weights are broadcast, every epoch's global permutation is
split into per-rank shards of each global batch (``batch_size`` is the
global batch), gradients are combined as the exact global mean in one flat
buffer per step, losses and metrics are reduced across ranks, and only the
main rank prints and writes files. Without a launcher, :func:`init` makes a
world of one and everything works as before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from ..backends import get, get_backend, set_backend
from .comm import (
    CollectiveTimeoutError,
    Communicator,
    LocalCommunicator,
    collective_timeout,
    launcher_environment,
)

__all__ = ["CollectiveTimeoutError", "Communicator", "init", "shutdown", "current",
           "rank", "world_size", "local_rank", "is_main", "barrier", "single"]

_world: Communicator | None = None
_single: ContextVar[bool] = ContextVar("portnn_single_process", default=False)


def init(engine: str = "auto", backend=None, timeout=None) -> Communicator:
    """Join the job the launcher started (a world of one without one).

    Parameters
    ----------
    engine : {"auto", "mpi", "nccl", "torch", "local"}
        ``"auto"`` picks by backend: torch -> torch.distributed, cupy ->
        NCCL (MPI if NCCL cannot start), anything else -> MPI.
    backend : str or Backend, optional
        Default: the current backend. On a GPU each rank moves to the
        device of its local rank (``cupy:<local_rank>``,
        ``torch:cuda:<local_rank>``), and that becomes the current backend.
    timeout : float, optional
        Seconds a collective waits for the other ranks before it raises
        :class:`~portnn.distributed.comm.CollectiveTimeoutError` naming the
        rank and the call (a rank that stopped or never called ``fit``
        ends the job instead of hanging it). Default
        ``PORTNN_COLLECTIVE_TIMEOUT``, else 600. MPI and torch.distributed
        honour it; NCCL through CuPy has no bound.

    Returns
    -------
    Communicator

    Examples
    --------
    >>> import portnn
    >>> world = portnn.distributed.init()   # no launcher: a world of one
    >>> world.size, portnn.distributed.is_main()
    (1, True)
    """
    global _world
    if engine not in ("auto", "mpi", "nccl", "torch", "local"):
        msg = (f"unknown engine {engine!r}; choose 'auto', 'mpi', 'nccl', 'torch' "
               "or 'local'")
        raise ValueError(msg)
    backend = get(backend) if backend is not None else get_backend()
    timeout = collective_timeout(timeout)
    env = launcher_environment()
    if engine == "local" or (engine == "auto" and not env):
        _world = LocalCommunicator(backend)
        return _world
    local = env.get("local_rank") or 0
    backend = _device_of_local_rank(backend, local)
    if engine == "auto":
        engine = {"torch": "torch", "cupy": "nccl"}.get(backend.name, "mpi")
        if env.get("launcher") == "torchrun" and engine != "torch":
            msg = ("launched by torchrun, which only the torch backend's "
                   "torch.distributed can join: use the torch backend, or launch "
                   "with mpiexec for MPI")
            raise RuntimeError(msg)
    _world = _start(engine, backend, env, timeout)
    set_backend(backend)
    return _world


def _device_of_local_rank(backend, local: int):
    if backend.name == "cupy":
        return get(f"cupy:{local}")
    if backend.name == "torch" and getattr(backend.device, "type", "cpu") == "cuda":
        return get(f"torch:cuda:{local}")
    return backend


def _start(engine, backend, env, timeout) -> Communicator:
    if engine == "torch":
        from ..backends.torch_distributed import TorchCommunicator

        return TorchCommunicator(backend, env.get("rank"), env.get("size"),
                                 env.get("local_rank") or 0, timeout=timeout)
    if engine == "nccl":
        try:
            from ..backends.cupy_nccl import NCCLCommunicator

            return NCCLCommunicator(backend, env["rank"], env["size"],
                                    env.get("local_rank") or 0)
        except ImportError:
            engine = "mpi"  # cupyx.distributed missing: MPI through the host
    try:
        from .mpi import MPICommunicator, abort_on_error
    except ImportError as exc:
        msg = (f"MPI needs mpi4py ({exc}): pip install 'portnn[mpi]' (mpi4py and "
               "mpich), or pip install mpi4py mpich")
        raise RuntimeError(msg) from exc
    world = MPICommunicator(backend, timeout=timeout)
    abort_on_error(world)  # one rank's error ends the job: never a hang
    return world


def current() -> Communicator:
    """The world :func:`init` joined, or a world of one.

    Examples
    --------
    >>> from portnn import distributed
    >>> distributed.current().size
    1
    """
    if _world is None or _single.get():
        return LocalCommunicator(get_backend())
    return _world


@contextlib.contextmanager
def single() -> Iterator[None]:
    """Inside the block this process trains alone, as if no world had been
    joined (a reference run, a rank's own evaluation).

    Examples
    --------
    >>> from portnn import distributed
    >>> with distributed.single():
    ...     distributed.world_size()
    1
    """
    token = _single.set(True)
    try:
        yield
    finally:
        _single.reset(token)


def shutdown() -> None:
    """Leave the world (fit runs on one process again).

    Examples
    --------
    >>> from portnn import distributed
    >>> distributed.shutdown()  # nothing joined: nothing to leave
    >>> distributed.world_size()
    1
    """
    global _world
    if _world is not None:
        _world.close()
    _world = None


def rank() -> int:
    """This process's rank (0 without a world).

    Examples
    --------
    >>> from portnn import distributed
    >>> distributed.rank()
    0
    """
    return current().rank


def world_size() -> int:
    """The number of processes (1 without a world).

    Examples
    --------
    >>> from portnn import distributed
    >>> distributed.world_size()
    1
    """
    return current().size


def local_rank() -> int:
    """This process's rank on its machine (its GPU index).

    Examples
    --------
    >>> from portnn import distributed
    >>> distributed.local_rank()
    0
    """
    return current().local_rank


def is_main() -> bool:
    """Whether this is rank 0: the one that prints and writes files.

    Examples
    --------
    >>> from portnn import distributed
    >>> if distributed.is_main():
    ...     print("only rank 0 prints this")
    only rank 0 prints this
    """
    return current().rank == 0


def barrier() -> None:
    """Wait until every rank gets here.

    Examples
    --------
    >>> from portnn import distributed
    >>> distributed.barrier()  # returns at once in a world of one
    """
    current().barrier()
