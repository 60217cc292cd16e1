"""Adam and AdamW."""

from __future__ import annotations

import math

from .._namespace import namespace
from ..ops.adam import adam_step
from .base import Optimizer, zeros_like


class Adam(Optimizer):
    """Adam (Kingma & Ba), as ``torch.optim.Adam``.

    The update, per parameter ``p``::

        g = grad + weight_decay * p          (L2 penalty, coupled)
        m = b1 m + (1 - b1) g
        v = b2 v + (1 - b2) g**2
        p -= lr / (1 - b1**t) * m / (sqrt(v) / sqrt(1 - b2**t) + eps)

    Examples
    --------
    >>> import portnn
    >>> model = portnn.Sequential(portnn.Dense(2, 1))
    >>> opt = portnn.Adam(model.parameters(), lr=1e-3)
    """

    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, *, clipnorm=None,
                 clipvalue=None, global_clipnorm=None) -> None:
        super().__init__(params, lr, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm)
        b1, b2 = betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            msg = f"{type(self).__name__}: betas must be in [0, 1), got {betas!r}"
            raise ValueError(msg)
        self.betas = (float(b1), float(b2))
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)

    def update(self, p, g, state):
        b1, b2 = self.betas
        if self.weight_decay:
            if self.decoupled:
                p.value *= 1.0 - self.lr * self.weight_decay
            else:
                g = g + self.weight_decay * p.value
        m = state.get("m")
        if m is None:
            m = zeros_like(p.value)
            v = zeros_like(p.value)
            t = 0
        else:
            v = state["v"]
            t = state["t"]
        t += 1
        p.value, m, v = adam_step(p.value, g, m, v, b1, b2,
                                  self.lr / _one_minus_pow(b1, t),
                                  _one_minus_pow(b2, t) ** -0.5, self.eps)
        state["m"], state["v"], state["t"] = m, v, t


def _one_minus_pow(b: float, t):
    """``1 - b**t``, the bias correction. `t` is a Python int, or a device
    scalar after device-side guarded steps; then it is computed as
    ``-expm1(t log b)``, which float32 keeps accurate near ``t = 1``."""
    if hasattr(t, "shape"):
        return -namespace(t).expm1(t * math.log(b))
    return 1.0 - b**t


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as
    ``torch.optim.AdamW``: ``p *= 1 - lr * weight_decay`` before the Adam
    step, with no L2 term in the gradient.

    Examples
    --------
    >>> import portnn
    >>> model = portnn.Sequential(portnn.Dense(2, 1))
    >>> opt = portnn.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    >>> _ = model.compile(optimizer=opt, loss="mse")
    """

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01, *, clipnorm=None,
                 clipvalue=None, global_clipnorm=None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm)
