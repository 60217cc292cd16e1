"""Optimizers, learning-rate schedules and gradient clipping."""

from __future__ import annotations

from .adam import Adam, AdamW
from .base import Optimizer
from .clip import clip_grad_norm, clip_grad_value
from .rmsprop import Adagrad, RMSprop
from .schedules import (
    CosineWithWarmup,
    ExponentialLR,
    FunctionLR,
    LinearWarmup,
    LRScheduler,
    OneCycle,
    StepLR,
)
from .sgd import SGD

__all__ = [
    "Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad",
    "LRScheduler", "StepLR", "ExponentialLR", "CosineWithWarmup", "LinearWarmup",
    "OneCycle", "FunctionLR", "resolve",
    "clip_grad_norm", "clip_grad_value", "get",
]

_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop,
            "adagrad": Adagrad}


def resolve(name) -> type:
    """The optimizer class called `name` (``"adam"`` -> :class:`Adam`).

    Examples
    --------
    >>> import portnn
    >>> portnn.optim.resolve("adam") is portnn.Adam
    True
    """
    try:
        return _BY_NAME[str(name).lower()]
    except KeyError:
        msg = f"unknown optimizer {name!r}; choose one of {sorted(_BY_NAME)}"
        raise ValueError(msg) from None


def get(optimizer, params, lr: float | None = None) -> Optimizer:
    """An optimizer from a name (``"adam"``) or an instance (returned as is).
    A name makes one over the trainable parameters among `params`.

    Examples
    --------
    >>> import portnn
    >>> model = portnn.Sequential(portnn.Dense(2, 1))
    >>> opt = portnn.optim.get("sgd", model.parameters(), lr=0.1)
    >>> type(opt).__name__, opt.lr
    ('SGD', 0.1)
    """
    if isinstance(optimizer, Optimizer):
        return optimizer
    cls = resolve(optimizer)
    params = [p for p in params if getattr(p, "trainable", True)]
    return cls(params) if lr is None else cls(params, lr=lr)
