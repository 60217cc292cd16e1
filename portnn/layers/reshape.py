"""`Flatten` and `Reshape`: change the shape after the batch axis."""

from __future__ import annotations

from .._namespace import namespace
from .activations import Activation


class _Reshaping(Activation):
    """No parameters, but not element-wise: the time axis may move."""

    supports_masking = False


class Flatten(_Reshaping):
    """``(N, d1, d2, ...) -> (N, d1 * d2 * ...)``, e.g. between convolutions
    and dense layers.

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().xp.ones((2, 3, 4, 4))
    >>> portnn.Flatten()(x).shape
    (2, 48)
    """

    _cache_attrs = ("_x_shape",)

    def forward(self, x, training=False):
        if x.ndim < 1:
            msg = f"Flatten: expected at least a batch axis, got shape {tuple(x.shape)}"
            raise ValueError(msg)
        self._x_shape = tuple(x.shape)
        return namespace(x).reshape(x, (x.shape[0], -1))

    def backward(self, dy):
        return namespace(dy).reshape(dy, self._x_shape)

    def get_config(self) -> dict:
        """No arguments."""
        return {}


class Reshape(_Reshaping):
    """Reshape every sample to `shape` (the batch axis is kept).

    Parameters
    ----------
    shape : tuple of int
        Target shape of one sample; one entry may be ``-1``.

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().xp.ones((2, 64))
    >>> portnn.Reshape((1, 8, 8))(x).shape
    (2, 1, 8, 8)
    """

    _cache_attrs = ("_x_shape",)

    def __init__(self, shape) -> None:
        super().__init__()
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if not all(isinstance(s, int) and (s > 0 or s == -1) for s in shape) or (
                shape.count(-1) > 1):
            msg = (
                "Reshape: shape must be positive ints with at most one -1, "
                f"got {shape!r}"
            )
            raise ValueError(msg)
        self.shape = shape

    def forward(self, x, training=False):
        self._x_shape = tuple(x.shape)
        size = 1
        for s in x.shape[1:]:
            size *= s
        known = 1
        for s in self.shape:
            known *= s if s != -1 else 1
        if (size % known if -1 in self.shape else size != known):
            msg = (
                f"Reshape: cannot reshape samples of shape {tuple(x.shape[1:])} "
                f"({size} elements) to {self.shape}; got input shape "
                f"{tuple(x.shape)}"
            )
            raise ValueError(msg)
        return namespace(x).reshape(x, (x.shape[0], *self.shape))

    def backward(self, dy):
        return namespace(dy).reshape(dy, self._x_shape)

    def get_config(self) -> dict:
        """The target shape."""
        return {"shape": list(self.shape)}

    def __repr__(self) -> str:
        return f"Reshape({self.shape})"


class Permute(_Reshaping):
    """Reorder the axes of each sample (the batch axis stays first), as
    Keras's ``Permute``: `dims` numbers the sample's axes from 1, so
    ``Permute((2, 1))`` turns ``(N, T, C)`` into ``(N, C, T)``. The
    backward applies the inverse order.

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().xp.ones((2, 5, 3))
    >>> portnn.Permute((2, 1))(x).shape
    (2, 3, 5)
    """

    def __init__(self, dims) -> None:
        super().__init__()
        dims = tuple(dims)
        if sorted(dims) != list(range(1, len(dims) + 1)):
            msg = (f"Permute: dims must order the axes 1..{len(dims)} of a sample, "
                   f"got {dims!r}")
            raise ValueError(msg)
        self.dims = dims

    def forward(self, x, training=False):
        if x.ndim != len(self.dims) + 1:
            msg = (f"Permute{self.dims}: expected samples of {len(self.dims)} axes, "
                   f"got input of shape {tuple(x.shape)}")
            raise ValueError(msg)
        return namespace(x).permute_dims(x, (0, *self.dims))

    def backward(self, dy):
        order = (0, *self.dims)
        inverse = tuple(order.index(i) for i in range(len(order)))
        return namespace(dy).permute_dims(dy, inverse)

    def get_config(self) -> dict:
        """The order."""
        return {"dims": list(self.dims)}

    def __repr__(self) -> str:
        return f"Permute({self.dims})"
