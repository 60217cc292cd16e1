"""Stochastic gradient descent with momentum, Nesterov and weight decay."""

from __future__ import annotations

from ..ops.axpy import scalar_like, sub_scaled, sub_scaled_path, sub_scaled_portable
from .base import Optimizer


class SGD(Optimizer):
    """Mini-batch gradient descent: ``p -= lr * g``.

    With ``momentum`` (as ``torch.optim.SGD``)::

        g = grad + weight_decay * p
        buf = g                                   (first step)
        buf = momentum * buf + (1 - dampening) * g
        p -= lr * (g + momentum * buf  if nesterov else  buf)

    Examples
    --------
    >>> import portnn
    >>> model = portnn.Sequential(portnn.Dense(2, 1))
    >>> opt = portnn.SGD(model.parameters(), lr=0.1, momentum=0.9)
    """

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0,
                 dampening: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, *, clipnorm=None, clipvalue=None,
                 global_clipnorm=None) -> None:
        super().__init__(params, lr, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm)
        if nesterov and (momentum <= 0 or dampening != 0):
            msg = "SGD: nesterov needs momentum > 0 and dampening = 0"
            raise ValueError(msg)
        self.momentum = float(momentum)
        self.dampening = float(dampening)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)

    @property
    def keeps_state(self) -> bool:
        return self.momentum != 0  # plain SGD has no buffer to create

    def _step(self) -> None:
        if self.momentum or self.weight_decay or type(self).update is not SGD.update:
            return super()._step()
        # plain SGD, the tutorials' update: one loop, no per-parameter call
        # (a fifth of the smallest network's step went to the calls)
        self.steps += 1
        lr, kind, dtype, impl = self.lr, None, None, None
        for p in self.params:
            g = p.grad
            if g is not None and p.trainable:
                value = p.value
                if type(value) is not kind or value.dtype is not dtype:
                    # resolved once per kind of array
                    kind, dtype = type(value), value.dtype
                    impl = sub_scaled_path(value)
                    portable = impl is sub_scaled_portable
                    if portable:
                        rate = self._rate_like(value)
                if portable:  # inline: no call per parameter
                    value -= rate * g  # in place, or a new array (JAX)
                    p.value = value
                else:
                    p.value = impl(value, g, lr)
        return None

    def _rate_like(self, value):
        """The rate as a 0-d array like `value` (see
        :func:`~portnn.ops.axpy.scalar_like`), kept while the rate and the
        array's type, dtype and device stay; a traced rate (a compiled
        step) is used as it is."""
        lr = self.lr
        if type(lr) is not float:
            return lr
        key = (lr, type(value), value.dtype, value.device)
        kept = self.__dict__.get("_rate")
        if kept is None or kept[0] != key:
            kept = self._rate = (key, scalar_like(lr, value))
        return kept[1]

    def update(self, p, g, state):
        if self.weight_decay:
            g = g + self.weight_decay * p.value
        if self.momentum:
            buf = state.get("momentum")
            if buf is None:
                buf = g + 0.0  # a copy: the buffer must not alias the gradient
            else:
                buf *= self.momentum
                buf += (1.0 - self.dampening) * g
            state["momentum"] = buf
            g = g + self.momentum * buf if self.nesterov else buf
        p.value = sub_scaled(p.value, g, self.lr)
