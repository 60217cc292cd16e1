"""Sliding windows over the two trailing axes, in standard slicing.

Convolution and pooling have no primitive in the array API. Both are built
here from strided slices: a window of size ``(KH, KW)`` is seen as the
``KH * KW`` strided views ``x[..., i*d :: s, j*d :: s]``, one per kernel
offset. The forward reads those views; the backward adds gradients back
through the same views (:func:`add_windows`, the adjoint of
:func:`window_views`), so overlapping windows sum, as they must.
"""

from __future__ import annotations

from .._namespace import namespace
from ._native import native as native_path


def output_size(size: int, kernel: int, stride: int, dilation: int) -> int:
    """Number of window positions along one (already padded) axis; 0 or
    less when the dilated kernel does not fit."""
    return (size - dilation * (kernel - 1) - 1) // stride + 1


def pad2d(x, pads, value=0.0):
    """Pad the two trailing axes of `x`.

    Parameters
    ----------
    x : array
        ``(..., H, W)``.
    pads : tuple
        ``((top, bottom), (left, right))``.
    value : float
        Fill value (``-inf`` for max pooling).

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().xp.ones((1, 2))
    >>> pad2d(x, ((1, 0), (0, 1))).tolist()
    [[0.0, 0.0, 0.0], [1.0, 1.0, 0.0]]
    """
    (top, bottom), (left, right) = pads
    if top == bottom == left == right == 0:
        return x
    native = native_path(x, "pad2d")
    if native is not None:
        return native(x, pads, value)
    return pad2d_portable(x, pads, value)


def pad2d_portable(x, pads, value=0.0):
    """:func:`pad2d` in standard ops: a filled array, `x` assigned inside."""
    (top, bottom), (left, right) = pads
    xp = namespace(x)
    *lead, h, w = x.shape
    out = xp.full((*lead, h + top + bottom, w + left + right), value,
                  dtype=x.dtype, device=x.device)
    out[..., top:top + h, left:left + w] = x
    return out


def unpad2d(x, pads):
    """The inverse of :func:`pad2d`: a view without the padded border."""
    (top, bottom), (left, right) = pads
    if top == bottom == left == right == 0:
        return x
    h, w = x.shape[-2], x.shape[-1]
    return x[..., top:h - bottom, left:w - right]


def window_views(x, kernel, stride, dilation):
    """The ``KH * KW`` strided views of `x` that make up its windows.

    Parameters
    ----------
    x : array
        ``(..., H, W)``, already padded.
    kernel, stride, dilation : tuple of int
        ``(KH, KW)``, ``(SH, SW)``, ``(DH, DW)``.

    Returns
    -------
    list of arrays
        View ``i * KW + j`` has shape ``(..., OH, OW)`` and holds, at each
        output position, the input element under kernel offset ``(i, j)``.

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().xp.reshape(portnn.get_backend().xp.arange(9), (3, 3))
    >>> [v.tolist() for v in window_views(x, (2, 2), (1, 1), (1, 1))][0]
    [[0, 1], [3, 4]]
    """
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    oh = output_size(x.shape[-2], kh, sh, dh)
    ow = output_size(x.shape[-1], kw, sw, dw)
    return [x[key] for key in window_keys(kernel, stride, dilation, (oh, ow))]


def window_keys(kernel, stride, dilation, out_shape):
    """The index of view ``i * KW + j``: ``(..., rows, cols)`` slices that
    pick kernel offset ``(i, j)`` at every one of the ``(OH, OW)`` outputs."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    oh, ow = out_shape
    return [
        (..., slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
         slice(j * dw, j * dw + sw * (ow - 1) + 1, sw))
        for i in range(kh) for j in range(kw)
    ]


def add_windows(pieces, shape, kernel, stride, dilation, dtype, device):
    """The adjoint of :func:`window_views`: a zero array of `shape` with
    ``pieces[i * KW + j]`` added at the positions view ``(i, j)`` reads.

    Overlapping windows (stride smaller than the dilated kernel) add up.
    Backends whose slices are writable views register the native
    ``add_into_views`` (``out[key] += piece`` with no temporary), JAX one
    with ``out.at[key].add(piece)``; the portable path writes
    ``out[key] = out[key] + piece``.
    """
    xp = namespace(pieces[0])
    keys = window_keys(kernel, stride, dilation, tuple(pieces[0].shape[-2:]))
    out = xp.zeros(shape, dtype=dtype, device=device)
    native = native_path(out, "add_into_views")
    if native is not None:
        return native(out, keys, pieces)
    return add_into_views_portable(out, keys, pieces)


def add_into_views_portable(out, keys, pieces):
    """``out[key] += piece`` for each pair, in standard ops (returns `out`)."""
    for key, piece in zip(keys, pieces, strict=True):
        out[key] = out[key] + piece
    return out
