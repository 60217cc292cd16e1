"""Shared fixtures: one `backend` fixture over every registered backend.

array-api-strict is always in the set (a missing install is a failure, not a
skip), on its CPU device and on ``device1``, the GPU proxy: arrays there
refuse to mix with CPU arrays and to turn into NumPy arrays implicitly, as
CuPy arrays on a GPU do. CuPy, torch and JAX skip with the registry's
reason where unusable; ``torch:cuda`` likewise (it and ``cupy`` are what
``benchmarks/gpu_check.py`` runs on a GPU machine).
"""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from portnn.backends import BackendUnavailableError

ALWAYS = ("numpy", "array_api_strict", "array_api_strict:device1")
BUILTIN = ("numpy", "array_api_strict", "array_api_strict:device1", "torch", "jax",
           "cupy", "torch:cuda")


def _get(name):
    try:
        return portnn.backends.get(name)
    except BackendUnavailableError as exc:
        if name in ALWAYS:
            raise
        pytest.skip(str(exc))


@pytest.fixture(params=BUILTIN)
def backend(request):
    """Each backend usable here, made current for the test."""
    b = _get(request.param)
    with portnn.use_backend(b):
        yield b


@pytest.fixture
def torch():
    """PyTorch as a test oracle (skips where not installed)."""
    return pytest.importorskip("torch")


def to_np(x):
    """Any backend's array as a NumPy array."""
    b = portnn.backends.backend_of(x)
    return b.to_numpy(x) if b is not None else np.asarray(x)


@pytest.fixture(autouse=True)
def _isolate_global_state():
    """No test leaks its current backend or default dtype into the next."""
    backend_token = portnn.backends._current.set(None)
    dtype_token = portnn.config._default_dtype.set("float32")
    yield
    portnn.config._default_dtype.reset(dtype_token)
    portnn.backends._current.reset(backend_token)
