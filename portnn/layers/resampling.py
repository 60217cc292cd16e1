"""Layers that resize the spatial axes of channels-first input: zero
padding, cropping, and up-sampling (nearest or bilinear, as PyTorch's
``interpolate`` with ``align_corners=False``). Each backward is the
adjoint of its forward: crop the gradient of a padding, pad the gradient
of a crop, sum the gradient of each copy of a repeated pixel."""

from __future__ import annotations

import math

from .._namespace import namespace
from .activations import Activation


def _pairs(name: str, value, nd: int) -> tuple:
    """Keras's spelling of per-side sizes: an int (all sides), one int per
    spatial axis, or a ``(before, after)`` pair per axis."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * nd
    if nd == 1 and isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, int) for v in value):
        value = (tuple(value),)
    try:
        out = tuple((v, v) if isinstance(v, int) else tuple(v) for v in value)
    except TypeError:
        out = ()
    if len(out) != nd or not all(len(p) == 2 and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in p)
            for p in out):
        msg = (f"{name}: expected an int >= 0, {nd} of them, or {nd} (before, "
               f"after) pairs, got {value!r}")
        raise ValueError(msg)
    return out


def _zero_pad(x, padding):
    """`x` with zeros before and after each spatial axis (axes 2, ...):
    concatenations, so that immutable arrays (JAX) take it too."""
    xp = namespace(x)
    for axis, (before, after) in enumerate(padding, start=2):
        parts = []
        for size in (before, None, after):
            if size is None:
                parts.append(x)
            elif size:
                shape = list(x.shape)
                shape[axis] = size
                parts.append(xp.zeros(tuple(shape), dtype=x.dtype, device=x.device))
        x = xp.concat(parts, axis=axis) if len(parts) > 1 else x
    return x


def check_channels_first(layer, x, nd: int) -> None:
    """`x` must be ``(batch, channels, *spatial)`` with `nd` spatial axes;
    else an error names `layer`, the layout and the shape."""
    if x.ndim != nd + 2:
        layout = ("(batch, channels, length)" if nd == 1
                  else "(batch, channels, height, width)")
        msg = (f"{type(layer).__name__}: expected input {layout}, got shape "
               f"{tuple(x.shape)}")
        raise ValueError(msg)


class _Spatial(Activation):
    """Shared shape check of channels-first spatial layers."""

    nd = 2
    supports_masking = False

    def _check(self, x):
        check_channels_first(self, x, self.nd)


class ZeroPadding2D(_Spatial):
    """Pad the spatial axes of ``(batch, channels, height, width)`` input
    with zeros; the backward crops the gradient back.

    Parameters
    ----------
    padding : int, (rows, cols) or ((top, bottom), (left, right))

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().xp.ones((1, 2, 3, 3))
    >>> portnn.ZeroPadding2D((1, 2))(x).shape
    (1, 2, 5, 7)
    """

    def __init__(self, padding=1) -> None:
        super().__init__()
        self.padding = _pairs(type(self).__name__, padding, self.nd)

    def forward(self, x, training=False):
        self._check(x)
        return _zero_pad(x, self.padding)

    def backward(self, dy):
        key = tuple(slice(before, dy.shape[axis] - after) for axis, (before, after)
                    in enumerate(self.padding, start=2))
        return dy[(slice(None), slice(None), *key)]

    def get_config(self) -> dict:
        """The padding, as (before, after) pairs."""
        return {"padding": [list(p) for p in self.padding]}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.padding})"


class ZeroPadding1D(ZeroPadding2D):
    """Pad the length of ``(batch, channels, length)`` input with zeros.

    Parameters
    ----------
    padding : int or (left, right)

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().xp.ones((1, 2, 3))
    >>> portnn.ZeroPadding1D((1, 2))(x).shape
    (1, 2, 6)
    """

    nd = 1


class Cropping2D(_Spatial):
    """Remove rows and columns from the sides of ``(batch, channels,
    height, width)`` input; the backward pads the gradient with zeros.

    Parameters
    ----------
    cropping : int, (rows, cols) or ((top, bottom), (left, right))

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().xp.ones((1, 2, 6, 6))
    >>> portnn.Cropping2D(((1, 0), (2, 2)))(x).shape
    (1, 2, 5, 2)
    """

    def __init__(self, cropping=1) -> None:
        super().__init__()
        self.cropping = _pairs(type(self).__name__, cropping, self.nd)

    def forward(self, x, training=False):
        self._check(x)
        key = []
        for axis, (before, after) in enumerate(self.cropping, start=2):
            if before + after >= x.shape[axis]:
                msg = (f"{type(self).__name__}: cropping {self.cropping} leaves "
                       f"nothing of input shape {tuple(x.shape)}")
                raise ValueError(msg)
            key.append(slice(before, x.shape[axis] - after))
        return x[(slice(None), slice(None), *key)]

    def backward(self, dy):
        return _zero_pad(dy, self.cropping)

    def get_config(self) -> dict:
        """The cropping, as (before, after) pairs."""
        return {"cropping": [list(p) for p in self.cropping]}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.cropping})"


class Cropping1D(Cropping2D):
    """Remove steps from both ends of ``(batch, channels, length)`` input.

    Parameters
    ----------
    cropping : int or (left, right)

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().xp.ones((1, 2, 6))
    >>> portnn.Cropping1D((1, 2))(x).shape
    (1, 2, 3)
    """

    nd = 1


def _interpolation(xp, size_in: int, scale: int, like):
    """The ``(size_in * scale, size_in)`` matrix of linear interpolation
    with PyTorch's ``align_corners=False``: output ``o`` reads the input at
    ``(o + 0.5) / scale - 0.5`` (clamped at 0), between its two
    neighbours."""
    rows = []
    for o in range(size_in * scale):
        src = max((o + 0.5) / scale - 0.5, 0.0)
        i0 = min(int(math.floor(src)), size_in - 1)
        i1 = min(i0 + 1, size_in - 1)
        frac = src - i0
        row = [0.0] * size_in
        row[i0] += 1.0 - frac
        row[i1] += frac
        rows.append(row)
    return xp.asarray(rows, dtype=like.dtype, device=like.device)


class UpSampling2D(_Spatial):
    """Enlarge the spatial axes of ``(batch, channels, height, width)``
    input by integer factors.

    Parameters
    ----------
    size : int or (int, int)
        The factors along height and width.
    interpolation : {"nearest", "bilinear"}
        ``"nearest"`` repeats each pixel (the backward sums the gradients
        of its copies); ``"bilinear"`` is PyTorch's ``align_corners=False``
        interpolation, separable: ``y = A_h x A_w^T`` with interpolation
        matrices, so ``dx = A_h^T dy A_w``.

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().asarray([[[[1.0, 2.0]]]])
    >>> portnn.UpSampling2D(2)(x).tolist()
    [[[[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0]]]]
    """

    _cache_attrs = ("_x_shape", "_mats")
    modes = ("nearest", "bilinear")

    def __init__(self, size=2, interpolation: str = "nearest") -> None:
        super().__init__()
        size = (size,) * self.nd if isinstance(size, int) else tuple(size)
        if len(size) != self.nd or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 1
                for s in size):
            msg = (f"{type(self).__name__}: size must be a positive int or "
                   f"{self.nd} of them, got {size!r}")
            raise ValueError(msg)
        if interpolation not in self.modes:
            msg = (f"{type(self).__name__}: interpolation must be one of "
                   f"{self.modes}, got {interpolation!r}")
            raise ValueError(msg)
        self.size, self.interpolation = size, interpolation

    def forward(self, x, training=False):
        self._check(x)
        xp = namespace(x)
        self._x_shape = shape = tuple(x.shape)
        if self.interpolation == "nearest":
            lead, spatial = shape[:2], shape[2:]
            expanded = xp.reshape(x, lead + sum(((s, 1) for s in spatial), ()))
            target = lead + sum(((s, f) for s, f in zip(
                spatial, self.size, strict=True)), ())
            out = lead + tuple(s * f for s, f in zip(spatial, self.size, strict=True))
            return xp.reshape(xp.broadcast_to(expanded, target), out)
        self._mats = [_interpolation(xp, n, f, x)
                      for n, f in zip(shape[2:], self.size, strict=True)]
        y = self._mats[0] @ x  # (out_0, in_0) over the first spatial axis
        if self.nd == 2:
            y = y @ xp.matrix_transpose(self._mats[1])
        return y

    def backward(self, dy):
        xp = namespace(dy)
        shape = self._x_shape
        if self.interpolation == "nearest":
            lead, spatial = shape[:2], shape[2:]
            split = lead + sum(((s, f) for s, f in zip(
                spatial, self.size, strict=True)), ())
            axes = tuple(3 + 2 * i for i in range(self.nd))
            return xp.sum(xp.reshape(dy, split), axis=axes)
        dx = xp.matrix_transpose(self._mats[0]) @ dy
        if self.nd == 2:
            dx = dx @ self._mats[1]
        return dx

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {"size": list(self.size), "interpolation": self.interpolation}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(size={self.size}, "
                f"interpolation={self.interpolation!r})")


class UpSampling1D(UpSampling2D):
    """Enlarge the length of ``(batch, channels, length)`` input by an
    integer factor: ``"nearest"`` repeats each step, ``"linear"``
    interpolates as PyTorch's ``align_corners=False``.

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().asarray([[[1.0, 2.0]]])
    >>> portnn.UpSampling1D(3)(x).tolist()
    [[[1.0, 1.0, 1.0, 2.0, 2.0, 2.0]]]
    """

    nd = 1
    modes = ("nearest", "linear")

    def forward(self, x, training=False):
        self._check(x)
        if self.interpolation == "linear":  # the bilinear code, one axis
            xp = namespace(x)
            self._x_shape = tuple(x.shape)
            self._mats = [_interpolation(xp, int(x.shape[2]), self.size[0], x)]
            return x @ xp.matrix_transpose(self._mats[0])
        return super().forward(x, training)

    def backward(self, dy):
        if self.interpolation == "linear":
            return dy @ self._mats[0]
        return super().backward(dy)
