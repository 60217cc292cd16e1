"""Global numeric settings: the default floating dtype."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

_FLOAT_DTYPES = ("float32", "float64")
_default_dtype: ContextVar[str] = ContextVar("portnn_default_dtype", default="float32")


def set_default_dtype(name: str) -> None:
    """Set the floating dtype new parameters and data are created with.

    Parameters
    ----------
    name : {"float32", "float64"}
        float32 is the default; float64 is for gradient checks and numerics.

    Examples
    --------
    >>> import portnn
    >>> portnn.set_default_dtype("float64")
    >>> portnn.get_default_dtype()
    'float64'
    >>> portnn.set_default_dtype("float32")
    """
    name = _check(name)
    _default_dtype.set(name)


def get_default_dtype() -> str:
    """Name of the current default floating dtype (``"float32"`` by default).

    Examples
    --------
    >>> import portnn
    >>> portnn.get_default_dtype()
    'float32'
    """
    return _default_dtype.get()


@contextlib.contextmanager
def default_dtype(name: str) -> Iterator[str]:
    """Use `name` as the default dtype inside a ``with`` block.

    Examples
    --------
    >>> import portnn
    >>> with portnn.default_dtype("float64"):
    ...     layer = portnn.Dense(2, 1)
    >>> str(layer.W.value.dtype)
    'float64'
    >>> portnn.get_default_dtype()
    'float32'
    """
    token = _default_dtype.set(_check(name))
    try:
        yield name
    finally:
        _default_dtype.reset(token)


def _check(name) -> str:
    name = getattr(name, "name", name)  # accept numpy-like dtype objects too
    name = str(name)
    if name not in _FLOAT_DTYPES:
        msg = f"default dtype must be one of {_FLOAT_DTYPES}, got {name!r}"
        raise ValueError(msg)
    return name


def float_dtype(backend, name: str | None = None):
    """The backend's dtype object for `name` (default: the default dtype)."""
    return backend.dtype(name or get_default_dtype())
