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


_paths_tn = paths("matmul_tn")


def matmul_tn(a, b):
    """``a.T @ b``, the weight-gradient product (a sum over rows), through
    the backend's native product where it has one.

    BLAS libraries take a transposed operand as a flag; XLA's CPU runtime
    contracts over the leading axis of both operands 1.7-3.4x slower than
    over the trailing one (LSTM gradients: 4.0 ms against 2.3 ms), so the
    JAX adapter makes the transpose a real array first.

    Examples
    --------
    >>> import portnn
    >>> from portnn.ops.matmul import matmul_tn
    >>> xp = portnn.get_backend().xp
    >>> a, b = xp.ones((5, 2)), xp.ones((5, 3))
    >>> matmul_tn(a, b).shape
    (2, 3)
    """
    impl = _paths_tn.get(type(a))
    if impl is None:
        impl = resolved(a, "matmul_tn", _portable_tn)
    return impl(a, b)


def _portable_tn(a, b):
    return a.T @ b
