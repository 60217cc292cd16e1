"""Regression losses: MSE, MAE and Huber."""

from __future__ import annotations

from .._namespace import namespace
from .base import Loss, _size


class MSE(Loss):
    """Mean (or summed) squared error: ``mean((pred - target)**2)``.

    ``d loss / d pred = 2 (pred - target) / n`` (``n = 1`` for ``"sum"``).
    The classic tutorials' ``1/2 * sum of squares`` is ``0.5 * MSE("sum")``.

    Examples
    --------
    >>> import portnn
    >>> b = portnn.get_backend()
    >>> float(portnn.MSE()(b.asarray([1.0, 3.0]), b.asarray([1.0, 1.0])))
    2.0
    """

    _cache_attrs = ("_d", "_k")

    def forward(self, pred, target):
        target = self._match(pred, target)
        xp = namespace(pred)
        self._d = d = pred - target
        self._k = 2.0 * self._scale(_size(d))
        return self._reduce(xp, d * d)

    def backward(self):
        return self._d * self._k


class MAE(Loss):
    """Mean absolute error (L1): ``mean(|pred - target|)``; the gradient is
    ``sign(pred - target) / n`` (0 where they are equal, as in PyTorch)."""

    _cache_attrs = ("_d", "_k")

    def forward(self, pred, target):
        target = self._match(pred, target)
        xp = namespace(pred)
        self._d = d = pred - target
        self._k = self._scale(_size(d))
        return self._reduce(xp, xp.abs(d))

    def backward(self):
        return namespace(self._d).sign(self._d) * self._k


class Huber(Loss):
    """Huber loss: quadratic within `delta` of the target, linear beyond.

    ``l = d**2 / 2`` for ``|d| <= delta`` else ``delta (|d| - delta / 2)``;
    ``dl/dd = clip(d, -delta, delta)``. Matches ``torch.nn.HuberLoss``.
    """

    _cache_attrs = ("_d", "_k")

    def __init__(self, delta: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if delta <= 0:
            msg = f"Huber: delta must be positive, got {delta!r}"
            raise ValueError(msg)
        self.delta = float(delta)

    def forward(self, pred, target):
        target = self._match(pred, target)
        xp = namespace(pred)
        self._d = d = pred - target
        self._k = self._scale(_size(d))
        a = xp.abs(d)
        delta = self.delta
        per = xp.where(a <= delta, 0.5 * d * d, delta * (a - 0.5 * delta))
        return self._reduce(xp, per)

    def backward(self):
        xp = namespace(self._d)
        return xp.clip(self._d, -self.delta, self.delta) * self._k
