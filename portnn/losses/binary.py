"""Binary cross-entropy on probabilities and on logits."""

from __future__ import annotations

from .._namespace import namespace
from .base import Loss, _size

_LOG_FLOOR = -100.0  # as torch.nn.BCELoss: log(0) counts as -100, not -inf
_DENOM_EPS = 1e-12
_TINY = 1e-44  # log(_TINY) < -100, so clipping here changes no result


class BCE(Loss):
    """Binary cross-entropy on probabilities ``p`` in ``[0, 1]``.

    ``l = -(t log p + (1 - t) log(1 - p))`` with each log clipped at -100,
    ``dl/dp = (p - t) / max(p (1 - p), 1e-12)``. Prefer
    :class:`BCEWithLogits` after a final linear layer: it is more stable.

    Examples
    --------
    >>> import portnn
    >>> b = portnn.get_backend()
    >>> round(float(portnn.BCE()(b.asarray([0.5]), b.asarray([1.0]))), 4)
    0.6931
    """

    _cache_attrs = ("_p", "_t", "_k")

    def forward(self, pred, target):
        target = self._match(pred, target)
        xp = namespace(pred)
        # NOTE: clipping the logs (not p) keeps the value finite at p = 0 or 1
        # exactly as PyTorch does, so both report the same loss.
        log_p = xp.clip(xp.log(xp.clip(pred, _TINY, None)), _LOG_FLOOR, None)
        log_q = xp.clip(xp.log(xp.clip(1.0 - pred, _TINY, None)), _LOG_FLOOR, None)
        self._p, self._t = pred, target
        self._k = self._scale(_size(pred))
        return self._reduce(xp, -(target * log_p + (1.0 - target) * log_q))

    def backward(self):
        xp = namespace(self._p)
        p, t = self._p, self._t
        denom = xp.clip(p * (1.0 - p), _DENOM_EPS, None)
        return (p - t) / denom * self._k


class BCEWithLogits(Loss):
    """Binary cross-entropy on logits ``z`` (a sigmoid fused into the loss).

    ``l = max(z, 0) - z t + log(1 + exp(-|z|))`` (never overflows) and
    ``dl/dz = sigmoid(z) - t``.
    """

    _cache_attrs = ("_sig", "_t", "_k")

    def forward(self, pred, target):
        target = self._match(pred, target)
        xp = namespace(pred)
        e = xp.exp(-xp.abs(pred))
        self._sig = xp.where(pred >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        self._t = target
        self._k = self._scale(_size(pred))
        per = xp.maximum(pred, 0.0) - pred * target + xp.log1p(e)
        return self._reduce(xp, per)

    def backward(self):
        return (self._sig - self._t) * self._k
