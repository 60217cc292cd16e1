"""Binary cross-entropy on probabilities and on logits."""

from __future__ import annotations

from .._namespace import namespace
from .base import Loss, _size

_LOG_FLOOR = -100.0  # as torch.nn.BCELoss: log(0) counts as -100, not -inf
_DENOM_EPS = 1e-12
_TINY = 1e-44  # log(_TINY) < -100, so clipping here changes no result


class _Binary(Loss):
    """Shared arguments of the binary losses."""

    def __init__(self, reduction: str = "mean", pos_weight=None) -> None:
        super().__init__(reduction)
        if pos_weight is not None and not isinstance(pos_weight, (int, float)):
            pos_weight = [float(v) for v in pos_weight]
        elif pos_weight is not None:
            pos_weight = float(pos_weight)
        self.pos_weight = pos_weight

    def _pos_weight(self, xp, like):
        """``pos_weight`` as an array over the last axis (one per output)."""
        if self.pos_weight is None:
            return None
        return xp.asarray(self.pos_weight, dtype=like.dtype, device=like.device)

    def __repr__(self) -> str:
        pw = "" if self.pos_weight is None else f", pos_weight={self.pos_weight}"
        return f"{type(self).__name__}(reduction={self.reduction!r}{pw})"


class BCE(_Binary):
    """Binary cross-entropy on probabilities ``p`` in ``[0, 1]``.

    ``l = -(w t log p + (1 - t) log(1 - p))`` with each log clipped at -100
    and ``w`` the `pos_weight` (1 by default), so
    ``dl/dp = (p (w t + 1 - t) - w t) / max(p (1 - p), 1e-12)``. Prefer
    :class:`BCEWithLogits` after a final linear layer: it is more stable.

    Parameters
    ----------
    reduction : {"mean", "sum"}
    pos_weight : float or sequence of float, optional
        Weight of the positive term, one per output (PyTorch's
        ``pos_weight``): ``n_negative / n_positive`` balances a rare class.

    Examples
    --------
    >>> import portnn
    >>> b = portnn.get_backend()
    >>> round(float(portnn.BCE()(b.asarray([0.5]), b.asarray([1.0]))), 4)
    0.6931
    """

    _cache_attrs = ("_p", "_t", "_k", "_pw")

    def forward(self, pred, target, sample_weight=None):
        target = self._match(pred, target)
        xp = namespace(pred)
        # NOTE: clipping the logs (not p) keeps the value finite at p = 0 or 1
        # exactly as PyTorch does, so both report the same loss.
        log_p = xp.clip(xp.log(xp.clip(pred, _TINY, None)), _LOG_FLOOR, None)
        log_q = xp.clip(xp.log(xp.clip(1.0 - pred, _TINY, None)), _LOG_FLOOR, None)
        pw = self._pos_weight(xp, pred)
        pos = target if pw is None else target * pw
        self._p, self._t, self._pw = pred, target, pw
        k = self._scale(_size(pred))
        per = -(pos * log_p + (1.0 - target) * log_q)
        w = self._element_weights(sample_weight, pred)
        if w is not None:
            per, k = per * w, w * k
        self._k = k
        return self._reduce(xp, per)

    def backward(self):
        xp = namespace(self._p)
        p, t = self._p, self._t
        denom = xp.clip(p * (1.0 - p), _DENOM_EPS, None)
        if self._pw is None:
            return (p - t) / denom * self._k
        pos = t * self._pw
        return (p * (pos + 1.0 - t) - pos) / denom * self._k


class BCEWithLogits(_Binary):
    """Binary cross-entropy on logits ``z`` (a sigmoid fused into the loss).

    ``l = max(z, 0) - z t + log(1 + exp(-|z|))`` (never overflows) and
    ``dl/dz = sigmoid(z) - t``; with a `pos_weight` ``w`` (as
    ``torch.nn.BCEWithLogitsLoss``) ``l = (1 - t) z + (1 + (w - 1) t)
    (log(1 + exp(-|z|)) + max(-z, 0))`` and ``dl/dz = sigmoid(z) (w t + 1 -
    t) - w t``.

    Parameters
    ----------
    reduction : {"mean", "sum"}
    pos_weight : float or sequence of float, optional
        Weight of the positive term, one per output.

    Examples
    --------
    >>> import portnn
    >>> loss = portnn.BCEWithLogits()
    >>> round(float(loss(portnn.asarray([[0.0]]), portnn.asarray([[1.0]]))), 4)
    0.6931
    >>> loss.backward().tolist()
    [[-0.5]]
    """

    _cache_attrs = ("_sig", "_t", "_k", "_pw")

    def forward(self, pred, target, sample_weight=None):
        target = self._match(pred, target)
        xp = namespace(pred)
        e = xp.exp(-xp.abs(pred))
        self._sig = xp.where(pred >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        self._t = target
        pw = self._pw = self._pos_weight(xp, pred)
        k = self._scale(_size(pred))
        if pw is None:
            per = xp.maximum(pred, 0.0) - pred * target + xp.log1p(e)
        else:
            per = ((1.0 - target) * pred
                   + (1.0 + (pw - 1.0) * target) * (xp.log1p(e) + xp.maximum(-pred,
                                                                              0.0)))
        w = self._element_weights(sample_weight, pred)
        if w is not None:
            per, k = per * w, w * k
        self._k = k
        return self._reduce(xp, per)

    def backward(self):
        s, t = self._sig, self._t
        if self._pw is None:
            return (s - t) * self._k
        pos = t * self._pw
        return (s * (pos + 1.0 - t) - pos) * self._k
