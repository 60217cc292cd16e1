"""Reading device values on the host, on purpose and in one transfer.

Every read of a device array (``float(x)``, ``bool(x)``, a copy to NumPy)
waits for all queued GPU work. The core reads only here, with several
values stacked into one transfer.
"""

from __future__ import annotations

from .backends import backend_of, get_backend


def accumulator_dtype(backend):
    """float64 where the backend has it (exact counts, stable sums), else
    float32."""
    try:
        return backend.dtype("float64")
    except TypeError:
        return backend.dtype("float32")


def read_arrays(values, backend=None) -> list[list[float]]:
    """The elements of several device arrays (any shapes), as lists of
    Python floats, in one host transfer.

    Examples
    --------
    >>> import portnn
    >>> xp = portnn.get_backend().xp
    >>> read_arrays([xp.asarray(1.5), xp.ones((2, 2))])
    [[1.5], [1.0, 1.0, 1.0, 1.0]]
    """
    if not values:
        return []
    backend = backend or backend_of(values[0]) or get_backend()
    xp = backend.xp
    dtype = accumulator_dtype(backend)
    flat = [xp.astype(xp.reshape(v, (-1,)), dtype) for v in values]
    host = backend.to_numpy(xp.concat(flat)).tolist()
    out, start = [], 0
    for f in flat:
        out.append([float(v) for v in host[start:start + f.shape[0]]])
        start += f.shape[0]
    return out


def read_scalars(values, backend=None) -> list[float]:
    """Python floats of several 0-d device arrays, in one host transfer.

    Examples
    --------
    >>> import portnn
    >>> xp = portnn.get_backend().xp
    >>> read_scalars([xp.asarray(1.5), xp.sum(xp.ones(3))])
    [1.5, 3.0]
    """
    if not values:
        return []
    backend = backend or backend_of(values[0]) or get_backend()
    xp = backend.xp
    dtype = accumulator_dtype(backend)
    stacked = xp.stack([xp.astype(xp.reshape(v, ()), dtype) for v in values])
    return [float(v) for v in backend.to_numpy(stacked).tolist()]
