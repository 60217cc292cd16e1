"""Metrics: figures accumulated on the device over an epoch.

A :class:`Metric` adds each batch into 0-d device arrays (`update`) and
turns the host values of those sums into its figure (`result`), so an epoch
costs one host read however many batches it has, and figures such as
accuracy are exact over the epoch rather than a mean of batch means.
"""

from __future__ import annotations

import math

from .._host import accumulator_dtype
from .._namespace import namespace


def _correct(pred, target, threshold):
    """Boolean array: which predictions are right (see :func:`accuracy`)."""
    xp = namespace(pred)
    if pred.ndim >= 2 and pred.shape[-1] > 1:
        guess = xp.argmax(pred, axis=-1)
        if target.ndim == pred.ndim:
            target = xp.argmax(target, axis=-1)
        return guess == xp.astype(target, guess.dtype)
    guess = pred > threshold
    if target.ndim != pred.ndim:
        target = xp.reshape(target, tuple(pred.shape))
    return guess == (xp.astype(target, pred.dtype) > 0.5)


def accuracy(pred, target, threshold: float = 0.5) -> float:
    """Fraction of correct predictions, as a Python float (one host read).

    Parameters
    ----------
    pred : array
        ``(N, C)`` scores (argmax is the class) or ``(N,)``/``(N, 1)``
        probabilities or logits of a binary task.
    target : array
        Integer labels ``(N,)``, one-hot ``(N, C)`` or binary ``{0, 1}``.
    threshold : float
        Decision threshold of a binary task (0.5 for probabilities, 0 for
        logits).

    Examples
    --------
    >>> import portnn
    >>> b = portnn.get_backend()
    >>> portnn.training.accuracy(b.asarray([[0.1, 0.9], [0.8, 0.2]]), b.asarray([1, 1]))
    0.5
    """
    xp = namespace(pred)
    correct = _correct(pred, target, threshold)
    return float(xp.mean(xp.astype(correct, pred.dtype)))


class Metric:
    """Base class: a figure accumulated on the device over an epoch.

    Subclasses set `name` and implement :meth:`reset`, :meth:`update`,
    :meth:`totals` (the 0-d device arrays to read) and :meth:`result`
    (the figure from their host values).
    """

    name = "metric"

    def reset(self, backend) -> None:
        """Zero the sums on `backend`'s device."""
        raise NotImplementedError

    def update(self, pred, target) -> None:
        """Add one batch (no host read)."""
        raise NotImplementedError

    def totals(self) -> list:
        """The running sums, as 0-d device arrays."""
        raise NotImplementedError

    def result(self, totals: list[float]) -> float:
        """The figure from the host values of :meth:`totals`."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Accuracy(Metric):
    """Fraction of correct predictions over the epoch.

    Parameters
    ----------
    threshold : float
        Decision threshold of a binary task with one output (0.5 for
        probabilities, 0 for logits); multi-class outputs use the argmax.

    Examples
    --------
    >>> import portnn
    >>> b = portnn.get_backend()
    >>> acc = Accuracy()
    >>> acc.reset(b)
    >>> acc.update(b.asarray([[0.1, 0.9], [0.8, 0.2]]), b.asarray([1, 1]))
    >>> acc.update(b.asarray([[0.3, 0.7]]), b.asarray([1]))
    >>> round(acc.result([float(t) for t in acc.totals()]), 4)
    0.6667
    """

    name = "accuracy"

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = float(threshold)

    def reset(self, backend) -> None:
        xp = backend.xp
        self._correct = xp.zeros((), dtype=accumulator_dtype(backend),
                                 device=backend.device)
        self._count = 0

    def update(self, pred, target) -> None:
        xp = namespace(pred)
        correct = _correct(pred, target, self.threshold)
        self._correct = self._correct + xp.sum(xp.astype(correct,
                                                         self._correct.dtype))
        self._count += math.prod(correct.shape)  # sequences count every step

    def totals(self) -> list:
        return [self._correct]

    def result(self, totals: list[float]) -> float:
        return totals[0] / max(self._count, 1)
