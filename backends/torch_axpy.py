"""``Tensor.sub_(g, alpha=...)`` as the torch backend's native
``sub_scaled``: the SGD update in one pass, tested against the portable
two."""

from __future__ import annotations


def torch_sub_scaled(p, g, alpha):
    """:func:`portnn.ops.axpy.sub_scaled` in PyTorch."""
    if not isinstance(alpha, (int, float)):  # a tensor step size
        p -= alpha * g
        return p
    return p.sub_(g, alpha=alpha)
