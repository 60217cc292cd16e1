"""Scatter-add: ``target[indices[i]] += values[i]``, repeated indices summed."""

from __future__ import annotations

from .._namespace import namespace
from ._native import native as native_path


def scatter_add_portable(target, indices, values):
    """Portable scatter-add along axis 0 in standard ops.

    NOTE: ``target[idx] += v`` drops repeated indices, so the sum goes
    through a one-hot matrix product instead: ``onehot(idx).T @ values``.
    It costs ``O(len(idx) * len(target))`` memory; backends register a
    native path for large inputs.

    Returns
    -------
    array
        A new array (the portable path never writes into `target`).

    Examples
    --------
    Repeated indices add up (``target[idx] += v`` would keep only one):

    >>> import portnn
    >>> from portnn.ops import scatter_add_portable
    >>> target = portnn.asarray([[0.0], [0.0], [0.0]])
    >>> values = portnn.asarray([[1.0], [2.0], [5.0]])
    >>> idx = portnn.asarray([0, 0, 2])
    >>> scatter_add_portable(target, idx, values).tolist()
    [[3.0], [0.0], [5.0]]
    """
    xp = namespace(target)
    n = target.shape[0]
    rows = xp.arange(n, dtype=indices.dtype, device=target.device)
    onehot = xp.astype(xp.expand_dims(indices, axis=0) == xp.expand_dims(rows, 1),
                       values.dtype)
    flat = xp.reshape(values, (values.shape[0], -1))
    return target + xp.reshape(onehot @ flat, tuple(target.shape))


def scatter_add(target, indices, values):
    """Scatter-add through the backend's native path when it has one.

    The native paths (``numpy.add.at``, ``cupyx.scatter_add``,
    ``Tensor.index_add_``) update `target` in place and return it.

    Examples
    --------
    >>> import portnn
    >>> b = portnn.get_backend()
    >>> t = b.xp.zeros((3,))
    >>> idx, v = b.asarray([0, 0, 2]), b.asarray([1.0, 1.0, 5.0])
    >>> portnn.ops.scatter_add(t, idx, v).tolist()
    [2.0, 0.0, 5.0]
    """
    native = native_path(target, "scatter_add")
    if native is not None:
        return native(target, indices, values)
    return scatter_add_portable(target, indices, values)
