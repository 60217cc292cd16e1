"""The loss registry: the loss classes a checkpoint may name."""

from __future__ import annotations

from .base import Loss

_LOSSES: dict[str, type] = {}


def register_loss(cls: type, name: str | None = None) -> type:
    """Allow checkpoints to rebuild losses of class `cls` (usable as a
    decorator), as :func:`register_layer` does for layers. Its
    ``get_config()`` (by default its public attributes) must be JSON data.
    A loss that cannot be rebuilt never stops a load: the model and its
    optimizer load, with a warning that the loss must be given again.

    Examples
    --------
    >>> import portnn
    >>> @portnn.checkpoint.register_loss
    ... class HalfMSE(portnn.MSE):
    ...     def forward(self, pred, target):
    ...         return 0.5 * super().forward(pred, target)
    ...     def backward(self):
    ...         return 0.5 * super().backward()
    """
    if not (isinstance(cls, type) and issubclass(cls, Loss)):
        msg = f"register_loss takes a Loss subclass, got {cls!r}"
        raise TypeError(msg)
    _LOSSES[name or cls.__name__] = cls
    return cls


def register_builtins(classes) -> None:
    """Register the built-in loss classes (:mod:`portnn.losses` does, as
    it defines them; what :func:`register_loss` added first stays)."""
    for cls in classes:
        if isinstance(cls, type) and issubclass(cls, Loss) and cls is not Loss:
            _LOSSES.setdefault(cls.__name__, cls)


def loss_class(name: str):
    """The loss class a checkpoint names: registered, or built in."""
    return _LOSSES.get(name) if isinstance(name, str) else None
