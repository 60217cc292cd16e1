"""Merge layers: several inputs in one list, one output; `backward` returns
one gradient per input.

``Concatenate(axis=1)([a, b])`` joins along an axis, ``Add``, ``Subtract``,
``Multiply`` and ``Average`` combine element-wise (inputs of one shape, no
broadcasting: a mismatch names both shapes). Each backward is the chain rule
of its forward, in a line or two.
"""

from __future__ import annotations

from .._namespace import namespace
from .base import Layer, any_mask


class _Merge(Layer):
    """Base class: checks the list of inputs."""

    _cache_attrs = ("_n",)
    #: the fewest inputs the layer takes
    min_inputs = 2
    supports_masking = True

    def compute_mask(self, xs, masks):
        """A step is real where it is real in every input that carries a
        mask (Keras's rule for merges)."""
        if not any_mask(masks):
            return None
        given = [m for m in masks if m is not None]
        out = given[0]
        for m in given[1:]:
            out = out & m
        return out

    def _check(self, xs) -> list:
        name = type(self).__name__
        if not isinstance(xs, (list, tuple)) or len(xs) < self.min_inputs:
            got = (f"{len(xs)} inputs" if isinstance(xs, (list, tuple))
                   else f"a {type(xs).__name__}")
            msg = (f"{name} takes a list of {self.min_inputs} or more inputs "
                   f"({name}()([a, b])), got {got}")
            raise TypeError(msg)
        return list(xs)

    def _check_same_shapes(self, xs) -> None:
        first = tuple(xs[0].shape)
        for i, x in enumerate(xs[1:], start=1):
            if tuple(x.shape) != first:
                msg = (f"{type(self).__name__}: input 0 has shape {first} and input "
                       f"{i} has shape {tuple(x.shape)}; element-wise merges take "
                       "inputs of one shape (no broadcasting)")
                raise ValueError(msg)

    def get_config(self) -> dict:
        """No arguments."""
        return {}


class Concatenate(_Merge):
    """Join inputs along `axis` (every other axis must agree).

    ``dy`` splits back into the inputs' slices of `axis`.

    Examples
    --------
    >>> import portnn
    >>> xp = portnn.get_backend().xp
    >>> a, b = xp.ones((2, 3)), xp.zeros((2, 1))
    >>> portnn.Concatenate(axis=1)([a, b]).shape
    (2, 4)
    """

    _cache_attrs = ("_sizes", "_axis")

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        if not isinstance(axis, int) or isinstance(axis, bool):
            msg = f"Concatenate: axis must be an int, got {axis!r}"
            raise TypeError(msg)
        self.axis = axis

    def forward(self, xs, training=False):
        xs = self._check(xs)
        ndim = xs[0].ndim
        axis = self.axis % ndim if -ndim <= self.axis < ndim else None
        if axis is None or axis == 0:
            msg = (f"Concatenate: axis {self.axis} does not name a feature axis of "
                   f"inputs with {ndim} axes (axis 0 is the batch)")
            raise ValueError(msg)
        first = tuple(xs[0].shape)
        for i, x in enumerate(xs[1:], start=1):
            other = tuple(x.shape)
            if len(other) != ndim or any(a != b for k, (a, b) in enumerate(
                    zip(first, other, strict=True)) if k != axis):
                msg = (f"Concatenate(axis={self.axis}): input 0 has shape {first} "
                       f"and input {i} has shape {other}; all axes but {self.axis} "
                       "must agree")
                raise ValueError(msg)
        self._axis = axis
        self._sizes = [int(x.shape[axis]) for x in xs]
        return namespace(xs[0]).concat(xs, axis=axis)

    def compute_mask(self, xs, masks):
        """Joined along time (axis 1 of sequences), the masks join too (an
        input without one is all real steps); along features, a step is
        real where it is real in every input."""
        if not any_mask(masks) or self.axis % xs[0].ndim != 1:
            return super().compute_mask(xs, masks)
        xp = namespace(xs[0])
        return xp.concat([m if m is not None else xp.ones(
            tuple(x.shape[:2]), dtype=xp.bool, device=x.device)
            for x, m in zip(xs, masks, strict=True)], axis=1)

    def backward(self, dy):
        grads, start = [], 0
        for size in self._sizes:
            key = [slice(None)] * dy.ndim
            key[self._axis] = slice(start, start + size)
            grads.append(dy[tuple(key)])
            start += size
        return grads

    def get_config(self) -> dict:
        """The axis."""
        return {"axis": self.axis}

    def __repr__(self) -> str:
        return f"Concatenate(axis={self.axis})"


class Add(_Merge):
    """``y = x_0 + x_1 + ...``; each input's gradient is ``dy``.

    Examples
    --------
    >>> import portnn
    >>> a, b = portnn.Input((3,)), portnn.Input((3,))
    >>> model = portnn.Model(inputs=[a, b], outputs=portnn.Add()([a, b]))
    >>> model.predict([[[1.0, 2.0, 3.0]], [[10.0, 20.0, 30.0]]]).tolist()
    [[11.0, 22.0, 33.0]]
    """

    def forward(self, xs, training=False):
        xs = self._check(xs)
        self._check_same_shapes(xs)
        self._n = len(xs)
        return _sum(xs)

    def backward(self, dy):
        return [dy] * self._n


class Subtract(_Merge):
    """``y = x_0 - x_1`` (two inputs); gradients ``dy`` and ``-dy``.

    Examples
    --------
    >>> import portnn
    >>> a, b = portnn.Input((2,)), portnn.Input((2,))
    >>> model = portnn.Model(inputs=[a, b], outputs=portnn.Subtract()([a, b]))
    >>> model.predict([[[5.0, 5.0]], [[1.0, 2.0]]]).tolist()
    [[4.0, 3.0]]
    """

    def forward(self, xs, training=False):
        xs = self._check(xs)
        if len(xs) != 2:
            msg = f"Subtract takes exactly 2 inputs, got {len(xs)}"
            raise TypeError(msg)
        self._check_same_shapes(xs)
        return xs[0] - xs[1]

    def backward(self, dy):
        return [dy, -dy]


class Multiply(_Merge):
    """``y = x_0 * x_1 * ...``; input i's gradient is ``dy`` times the
    product of the others.

    Examples
    --------
    >>> import portnn
    >>> a, b = portnn.Input((2,)), portnn.Input((2,))
    >>> model = portnn.Model(inputs=[a, b], outputs=portnn.Multiply()([a, b]))
    >>> model.predict([[[2.0, 3.0]], [[4.0, 5.0]]]).tolist()
    [[8.0, 15.0]]
    """

    _cache_attrs = ("_xs",)

    def forward(self, xs, training=False):
        xs = self._check(xs)
        self._check_same_shapes(xs)
        self._xs = xs
        y = xs[0]
        for x in xs[1:]:
            y = y * x
        return y

    def backward(self, dy):
        grads = []
        for i in range(len(self._xs)):
            g = dy
            for j, x in enumerate(self._xs):
                if j != i:
                    g = g * x
            grads.append(g)
        return grads


class Average(_Merge):
    """The mean of the inputs, ``y = sum(x_i) / n``; each gets ``dy / n``.

    Examples
    --------
    >>> import portnn
    >>> a, b = portnn.Input((2,)), portnn.Input((2,))
    >>> model = portnn.Model(inputs=[a, b], outputs=portnn.Average()([a, b]))
    >>> model.predict([[[2.0, 3.0]], [[4.0, 5.0]]]).tolist()
    [[3.0, 4.0]]
    """

    def forward(self, xs, training=False):
        xs = self._check(xs)
        self._check_same_shapes(xs)
        self._n = len(xs)
        return _sum(xs) / self._n

    def backward(self, dy):
        g = dy / self._n
        return [g] * self._n


def _sum(xs):
    y = xs[0]
    for x in xs[1:]:
        y = y + x
    return y
