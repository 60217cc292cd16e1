"""The dense layer's matrix products.

The portable path is ``a @ b``. A backend may register a native ``matmul``
(a callable of the same two arguments): the NumPy adapter keeps OpenBLAS's
threads out of the way of its own thread pool (see
``portnn.backends.numpy_threads.PoolAwareMatmul``). Every native path is
tested against this one.
"""

from __future__ import annotations

from ._native import paths, resolved

_paths = paths("matmul")


def matmul(a, b):
    """``a @ b`` through the backend's native product where it has one."""
    impl = _paths.get(type(a))
    if impl is None:
        impl = resolved(a, "matmul", _portable)
    return impl(a, b)


def matmul_path(a):
    """The callable :func:`matmul` runs for arrays like `a`: a layer making
    several products of one kind of array resolves it once."""
    return _paths.get(type(a)) or resolved(a, "matmul", _portable)


def _portable(a, b):
    return a @ b
