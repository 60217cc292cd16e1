"""Regression losses: MSE, MAE and Huber."""

from __future__ import annotations

from .._namespace import namespace
from ..ops.reduce import total
from .base import Loss, _size


class _Elementwise(Loss):
    """A loss that is a mean (or sum) of per-element terms ``f(d)`` of
    ``d = pred - target``; subclasses give ``f`` and ``f'``."""

    _cache_attrs = ("_d", "_k")

    def forward(self, pred, target, sample_weight=None):
        target = self._match(pred, target)
        self._d = d = pred - target
        per = self._term(d)
        # _scale and _reduce written out: their calls were a tenth of the
        # smallest network's loss
        n = _size(d) if self.reduction == "mean" else 1
        if sample_weight is None:
            self._k = 1.0 / n
        else:
            w = self._element_weights(sample_weight, d)
            per = per * w
            self._k = w * (1.0 / n)  # sample weights scale the gradient too
        return total(per) / n

    def backward(self):
        return self._slope(namespace(self._d), self._d) * self._k


class MSE(_Elementwise):
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

    def _term(self, d):
        return d * d

    def _slope(self, xp, d):
        return 2.0 * d

    def backward(self):
        # 2 d k as d (2 k): one pass over d instead of two (k is a float, or
        # the sample weights' (N, 1, ...) array)
        return self._d * (2.0 * self._k)


class MAE(_Elementwise):
    """Mean absolute error (L1): ``mean(|pred - target|)``; the gradient is
    ``sign(pred - target) / n`` (0 where they are equal, as in PyTorch).

    Examples
    --------
    >>> import portnn
    >>> loss = portnn.MAE()
    >>> float(loss(portnn.asarray([[1.0], [4.0]]), portnn.asarray([[2.0], [2.0]])))
    1.5
    >>> loss.backward().tolist()
    [[-0.5], [0.5]]
    """

    def _term(self, d):
        return namespace(d).abs(d)

    def _slope(self, xp, d):
        return xp.sign(d)


class Huber(_Elementwise):
    """Huber loss: quadratic within `delta` of the target, linear beyond.

    ``l = d**2 / 2`` for ``|d| <= delta`` else ``delta (|d| - delta / 2)``;
    ``dl/dd = clip(d, -delta, delta)``. Matches ``torch.nn.HuberLoss``.

    Examples
    --------
    >>> import portnn
    >>> loss = portnn.Huber(delta=1.0)
    >>> float(loss(portnn.asarray([[0.5], [3.0]]), portnn.asarray([[0.0], [0.0]])))
    1.3125
    """

    def __init__(self, delta: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if delta <= 0:
            msg = f"Huber: delta must be positive, got {delta!r}"
            raise ValueError(msg)
        self.delta = float(delta)

    def _term(self, d):
        xp = namespace(d)
        a = xp.abs(d)
        delta = self.delta
        return xp.where(a <= delta, 0.5 * d * d, delta * (a - 0.5 * delta))

    def _slope(self, xp, d):
        return xp.clip(d, -self.delta, self.delta)
