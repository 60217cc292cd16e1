"""Metrics computed on device arrays; each returns a Python float."""

from __future__ import annotations

from .._namespace import namespace


def accuracy(pred, target, threshold: float = 0.5) -> float:
    """Fraction of correct predictions.

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
    if pred.ndim >= 2 and pred.shape[-1] > 1:
        guess = xp.argmax(pred, axis=-1)
        if target.ndim == pred.ndim:
            target = xp.argmax(target, axis=-1)
        correct = guess == xp.astype(target, guess.dtype)
    else:
        guess = pred > threshold
        if target.ndim != pred.ndim:
            target = xp.reshape(target, tuple(pred.shape))
        correct = guess == (xp.astype(target, pred.dtype) > 0.5)
    return float(xp.mean(xp.astype(correct, pred.dtype)))
