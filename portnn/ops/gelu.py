"""GELU's two products (tanh form): the output and d loss / d x.

``y = x/2 (1 + t)`` with ``t = tanh(k (x + c x**3))``, so
``dy/dx = (1 + t)/2 + x/2 (1 - t**2) k (1 + 3 c x**2)``. The portable path
works in place on fresh arrays (two temporaries instead of six; immutable
arrays, as JAX's, rebind to the same result) and keeps ``x`` and ``t``. A
backend may register a native ``gelu`` (an object with the two methods of
:class:`GeluPortable`): the torch adapter's is PyTorch's ``gelu`` and
``gelu_backward`` (the Transformer benchmark's 1M-element GELU forward:
6.0 -> 2.6 ms at one thread, 2.9 -> 1.0 ms at two). Every native path is
tested against this one.
"""

from __future__ import annotations

import math

from .._namespace import namespace
from ._native import native as native_path

K = math.sqrt(2.0 / math.pi)
C = 0.044715


def gelu_impl(x):
    """The backend's native GELU, or the portable one."""
    native = native_path(x, "gelu")
    return native if native is not None else PORTABLE


class GeluPortable:
    """GELU in standard ops."""

    def forward(self, x):
        """``(y, ctx)``: the tanh-form GELU of `x`; `ctx` is what the
        gradient needs."""
        xp = namespace(x)
        u = x * x
        u *= C
        u += 1.0
        u *= x
        u *= K
        t = xp.tanh(u)
        y = t + 1.0
        y *= 0.5
        y *= x
        return y, (x, t)

    def input_grad(self, ctx, dy):
        """``dx`` from ``dy``."""
        x, t = ctx
        # 0.5 (1 + t) + 0.5 x (1 - t**2) k (1 + 3 c x**2), in two arrays
        term = x * x
        term *= 3.0 * C
        term += 1.0
        term *= K * 0.5
        term *= x
        t_sq_minus_1 = t * t
        t_sq_minus_1 -= 1.0
        term *= t_sq_minus_1  # now -0.5 x (1 - t**2) k (1 + 3 c x**2)
        grad = t + 1.0
        grad *= 0.5
        grad -= term
        grad *= dy
        return grad


PORTABLE = GeluPortable()
