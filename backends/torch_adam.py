"""PyTorch's single-tensor Adam arithmetic as the torch backend's native
``adam_step``: seven passes in place, tested against the portable path."""

from __future__ import annotations


def torch_adam_step(p, g, m, v, b1, b2, step, inv_c2, eps):
    """:func:`portnn.ops.adam.adam_step` in PyTorch."""
    if not isinstance(step, (int, float)) or not isinstance(inv_c2, (int, float)):
        from portnn.ops.adam import adam_step_portable  # device-scalar steps

        return adam_step_portable(p, g, m, v, b1, b2, step, inv_c2, eps)
    m.mul_(b1).add_(g, alpha=1.0 - b1)
    v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
    denom = v.sqrt().mul_(inv_c2).add_(eps)
    p.addcdiv_(m, denom, value=-step)
    return p, m, v
