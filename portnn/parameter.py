"""`Parameter`: a trainable array and the gradient accumulated for it."""

from __future__ import annotations

from typing import Any


class Parameter:
    """A trainable array with its gradient.

    Parameters
    ----------
    value : array
        The current value; optimizers update it.
    name : str, optional
        Short name inside its layer (``"W"``, ``"b"``).

    Attributes
    ----------
    grad : array or None
        Sum of the gradients since the last ``zero_grad()``; ``None`` when no
        backward pass has run since.
    trainable : bool
        False freezes it: no gradient is kept for it and optimizers leave
        it alone (``layer.trainable = False`` sets it for a whole layer).

    Examples
    --------
    >>> import portnn
    >>> p = portnn.Parameter(portnn.get_backend().asarray([1.0, 2.0]), name="b")
    >>> p.shape, p.grad is None
    ((2,), True)
    """

    __slots__ = ("value", "grad", "name", "trainable")

    def __init__(self, value: Any, name: str = "", trainable: bool = True) -> None:
        self.value = value
        self.grad = None
        self.name = name
        self.trainable = trainable

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)

    @property
    def dtype(self):
        return self.value.dtype

    @property
    def size(self) -> int:
        n = 1
        for s in self.value.shape:
            n *= s
        return n

    def accumulate(self, g: Any) -> None:
        """Add `g` to ``grad`` (the first gradient is stored as is, so a layer
        must hand over an array it no longer uses); a frozen parameter keeps
        nothing."""
        if not self.trainable:
            return
        if self.grad is None:
            self.grad = g
        else:
            self.grad = self.grad + g

    def __getstate__(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state):
        for k in self.__slots__:
            setattr(self, k, state.get(k, True if k == "trainable" else None))

    def __repr__(self) -> str:
        frozen = "" if self.trainable else ", frozen"
        return (f"Parameter(name={self.name!r}, shape={self.shape}, "
                f"dtype={self.dtype}{frozen})")
