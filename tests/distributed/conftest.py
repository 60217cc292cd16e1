"""Tests that need a world of two: run them with

    mpiexec -n 2 python -m mpi4py -m pytest tests/distributed

(``.ci/run`` does, inside a timeout). Run alone, they skip with that line.
"""

from __future__ import annotations

import pytest

import portnn


@pytest.fixture(scope="session")
def world():
    pytest.importorskip("mpi4py", reason="needs mpi4py: pip install mpi4py mpich")
    from portnn.distributed.comm import launcher_environment

    if (launcher_environment().get("size") or 1) != 2:
        pytest.skip("needs two ranks: mpiexec -n 2 python -m mpi4py -m pytest "
                    "tests/distributed")
    world = portnn.distributed.init(engine="mpi", backend="numpy")
    yield world


@pytest.fixture(params=["numpy", "torch", "array_api_strict", "jax"])
def dp_backend(request, world):
    try:
        b = portnn.backends.get(request.param)
    except portnn.backends.BackendUnavailableError as exc:
        pytest.skip(str(exc))
    with portnn.use_backend(b):
        yield b
