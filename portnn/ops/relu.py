"""ReLU's two products: the output and d loss / d x.

The portable path keeps a float mask (``dy * mask`` is several times faster
than ``where(mask, dy, 0)`` on NumPy: 1.5 ms against 12 ms on 2.4M floats)
and takes the output with ``maximum``, not ``where``, so that NaN propagates
as in PyTorch. A backend may register a native ``relu`` (an object with the
two methods of :class:`ReluPortable`): the torch adapter's is PyTorch's
``relu`` and ``threshold_backward``, one pass each where the portable path
makes four (the benchmark CNN's second ReLU on torch: 5.5 ms -> 0.5 ms
forward at one thread). NumPy has none: a mask written by the comparison
itself, split over portnn's threads, measured no faster on the benchmark
CNN. Every native path is tested against this one. On NaN inputs PyTorch's gradient passes (it tests
``x <= 0``) where the others give 0; the output is NaN in all.
"""

from __future__ import annotations

from .._namespace import namespace
from ._native import native as native_path


def relu_impl(x):
    """The backend's native ReLU, or the portable one."""
    native = native_path(x, "relu")
    return native if native is not None else PORTABLE


class ReluPortable:
    """ReLU in standard ops."""

    def forward(self, x):
        """``(y, ctx)``: ``y = max(x, 0)``; `ctx` is what the gradient needs."""
        xp = namespace(x)
        return xp.maximum(x, 0.0), xp.astype(x > 0, x.dtype)

    def input_grad(self, ctx, dy):
        """``dx``: `dy` where the input was positive, else 0."""
        return dy * ctx


PORTABLE = ReluPortable()
