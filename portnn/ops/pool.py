"""Max pooling's two products: the output and d loss / d x.

The portable path is a running maximum over the window views
(:func:`portnn.ops.windows.window_views`) of the ``-inf``-padded input; its
backward routes each output's gradient to the first tap that holds the
maximum (PyTorch's choice on ties), with no mask the size of the input kept
between passes.

A backend may register a native ``max_pool2d`` (an object with the two
methods of :class:`MaxPool2dPortable`): the NumPy adapter splits the batch
over threads, the torch adapter calls PyTorch's pooling kernels. The layer
keeps the forward's context and never looks inside it; every native path is
tested against this one.
"""

from __future__ import annotations

from .._namespace import namespace
from ._native import native as native_path
from .windows import add_windows, pad2d, unpad2d, window_views


def max_pool2d_impl(x):
    """The backend's native max pooling, or the portable one."""
    native = native_path(x, "max_pool2d")
    return native if native is not None else PORTABLE


class MaxPool2dPortable:
    """Max pooling in standard ops."""

    def forward(self, x, kernel, stride, pads):
        """``(y, ctx)``: the window maxima `y` ``(N, C, OH, OW)`` of `x`
        ``(N, C, H, W)`` padded by `pads` ``((top, bottom), (left, right))``
        with ``-inf``; `ctx` is what the gradient needs."""
        xp = namespace(x)
        padded = pad2d(x, pads, -float("inf"))
        views = window_views(padded, kernel, stride, (1, 1))
        best = views[0]
        for v in views[1:]:
            best = xp.maximum(best, v)  # propagates NaN, as in PyTorch
        return best, (views, best, tuple(padded.shape), kernel, stride, pads)

    def input_grad(self, ctx, dy):
        """``dx`` of the unpadded input's shape from ``dy`` ``(N, C, OH, OW)``."""
        views, best, padded_shape, kernel, stride, pads = ctx
        xp = namespace(dy)
        # `free` marks the outputs whose gradient no earlier tap has taken
        free = None
        pieces = []
        for i, v in enumerate(views):
            hit = xp.astype(v == best, dy.dtype)
            if free is not None:
                hit = hit * free
            pieces.append(dy * hit)
            if i < len(views) - 1:
                free = (1.0 - hit) if free is None else (free - hit)
        dx = add_windows(pieces, padded_shape, kernel, stride, (1, 1), dy.dtype,
                         dy.device)
        return unpad2d(dx, pads)


PORTABLE = MaxPool2dPortable()
