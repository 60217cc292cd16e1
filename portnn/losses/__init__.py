"""Losses: each returns a 0-d array from `forward(pred, target)` and
d loss / d pred from `backward()`."""

from __future__ import annotations

import functools

from .base import Loss
from .binary import BCE, BCEWithLogits
from .cross_entropy import CrossEntropy
from .multi import MultiLoss
from .registry import register_builtins
from .regression import MAE, MSE, Huber

__all__ = ["Loss", "MSE", "MAE", "Huber", "BCE", "BCEWithLogits", "CrossEntropy",
           "MultiLoss", "get"]

_BY_NAME = {
    "mse": MSE,
    "mean_squared_error": MSE,
    "mae": MAE,
    "l1": MAE,
    "huber": Huber,
    "bce": BCE,
    "binary_crossentropy": BCE,
    "bce_with_logits": BCEWithLogits,
    "cross_entropy": CrossEntropy,  # portnn's: logits
    "crossentropy": CrossEntropy,
    # Keras's names keep Keras's meaning: probabilities (a softmax output)
    "categorical_crossentropy": functools.partial(CrossEntropy, from_logits=False),
    "sparse_categorical_crossentropy": functools.partial(CrossEntropy,
                                                         from_logits=False),
}


def get(loss) -> Loss:
    """A loss from a name (``"mse"``, ``"cross_entropy"``), a class or an instance.

    ``"cross_entropy"`` takes logits; Keras's ``"categorical_crossentropy"``
    and ``"sparse_categorical_crossentropy"`` take probabilities, as in Keras
    (``CrossEntropy(from_logits=False)``); ``"binary_crossentropy"`` is
    :class:`BCE` on probabilities.

    Examples
    --------
    >>> from portnn import losses
    >>> losses.get("mse")
    MSE(reduction='mean')
    """
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, type) and issubclass(loss, Loss):
        return loss()
    try:
        return _BY_NAME[str(loss).lower()]()
    except KeyError:
        msg = f"unknown loss {loss!r}; choose one of {sorted(_BY_NAME)} or pass a Loss"
        raise ValueError(msg) from None

register_builtins([BCE, BCEWithLogits, CrossEntropy, Huber, MAE, MSE, MultiLoss])
