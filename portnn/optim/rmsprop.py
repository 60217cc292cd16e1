"""RMSprop and Adagrad: per-parameter step sizes from squared gradients."""

from __future__ import annotations

from .._namespace import namespace
from .base import Optimizer, zeros_like


class RMSprop(Optimizer):
    """RMSprop, as ``torch.optim.RMSprop``.

    The update, per parameter ``p`` with gradient ``g``::

        s = alpha s + (1 - alpha) g**2
        a = sqrt(s - mean_g**2) + eps   (centered)   or   sqrt(s) + eps
        p -= lr * g / a                 (or through a momentum buffer)

    Examples
    --------
    >>> import portnn
    >>> model = portnn.Sequential(portnn.Dense(2, 1))
    >>> opt = portnn.RMSprop(model.parameters(), lr=1e-3, momentum=0.9)
    >>> _ = model.compile(optimizer=opt, loss="mse")
    """

    def __init__(self, params, lr: float = 0.01, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0, centered: bool = False, *, clipnorm=None,
                 clipvalue=None, global_clipnorm=None) -> None:
        super().__init__(params, lr, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm)
        self.alpha = float(alpha)
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.momentum = float(momentum)
        self.centered = bool(centered)

    def update(self, p, g, state):
        xp = namespace(g)
        if self.weight_decay:
            g = g + self.weight_decay * p.value
        s = state.get("square_avg")
        if s is None:
            s = zeros_like(p.value)
        s *= self.alpha
        s += (1.0 - self.alpha) * (g * g)
        state["square_avg"] = s
        if self.centered:
            mg = state.get("grad_avg")
            if mg is None:
                mg = zeros_like(p.value)
            mg *= self.alpha
            mg += (1.0 - self.alpha) * g
            state["grad_avg"] = mg
            avg = xp.sqrt(s - mg * mg) + self.eps
        else:
            avg = xp.sqrt(s) + self.eps
        if self.momentum:
            buf = state.get("momentum")
            if buf is None:
                buf = zeros_like(p.value)
            buf *= self.momentum
            buf += g / avg
            state["momentum"] = buf
            p.value -= self.lr * buf
        else:
            p.value -= self.lr * (g / avg)


class Adagrad(Optimizer):
    """Adagrad, as ``torch.optim.Adagrad``.

    The update, per parameter ``p`` with gradient ``g``::

        clr = lr / (1 + (t - 1) lr_decay)
        s += g**2
        p -= clr * g / (sqrt(s) + eps)

    Examples
    --------
    >>> import portnn
    >>> model = portnn.Sequential(portnn.Dense(2, 1))
    >>> opt = portnn.Adagrad(model.parameters(), lr=0.1)
    >>> _ = model.compile(optimizer=opt, loss="mse")
    """

    def __init__(self, params, lr: float = 0.01, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10, *, clipnorm=None, clipvalue=None,
                 global_clipnorm=None) -> None:
        super().__init__(params, lr, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm)
        self.lr_decay = float(lr_decay)
        self.weight_decay = float(weight_decay)
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.eps = float(eps)

    def update(self, p, g, state):
        xp = namespace(g)
        if self.weight_decay:
            g = g + self.weight_decay * p.value
        s = state.get("sum")
        if s is None:
            s = zeros_like(p.value) + self.initial_accumulator_value
            t = 0
        else:
            t = state["t"]
        t += 1
        s += g * g
        state["sum"], state["t"] = s, t
        clr = self.lr / (1.0 + (t - 1) * self.lr_decay)
        p.value -= clr * (g / (xp.sqrt(s) + self.eps))
