"""Optimizers, learning-rate schedules and gradient clipping."""

from __future__ import annotations

from .adam import Adam, AdamW
from .base import Optimizer
from .clip import clip_grad_norm, clip_grad_value
from .rmsprop import Adagrad, RMSprop
from .schedules import CosineWithWarmup, ExponentialLR, LRScheduler, StepLR
from .sgd import SGD

__all__ = [
    "Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad",
    "LRScheduler", "StepLR", "ExponentialLR", "CosineWithWarmup",
    "clip_grad_norm", "clip_grad_value", "get",
]

_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop,
            "adagrad": Adagrad}


def get(optimizer, params, lr: float | None = None) -> Optimizer:
    """An optimizer from a name (``"adam"``) or an instance (returned as is)."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    try:
        cls = _BY_NAME[str(optimizer).lower()]
    except KeyError:
        msg = f"unknown optimizer {optimizer!r}; choose one of {sorted(_BY_NAME)}"
        raise ValueError(msg) from None
    return cls(params) if lr is None else cls(params, lr=lr)
