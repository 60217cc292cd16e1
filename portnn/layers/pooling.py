"""Pooling: max and average over windows, and global average pooling.

Windows come from :func:`portnn.ops.windows.window_views`. Max pooling's
two products live in :mod:`portnn.ops.pool` (a running maximum over the
window's taps; the gradient to the first tap equal to it), where a backend
may put a native path.
"""

from __future__ import annotations

import math

from .._namespace import namespace
from ..ops.pool import max_pool2d_impl
from ..ops.windows import add_windows, output_size, pad2d, unpad2d, window_views
from .activations import Activation
from .conv import _pair
from .resampling import check_channels_first


class _Pool(Activation):
    """Shared machinery of the window pooling layers (computed in 2-D)."""

    supports_masking = False  # windows over time would mix padded steps in

    nd = 2
    _cache_attrs = ("_x_shape", "_in_shape")

    def __init__(self, kernel_size, stride=None, padding=0) -> None:
        super().__init__()
        name, nd = type(self).__name__, self.nd
        self.kernel_size = _pair(kernel_size, "kernel_size", name, nd)
        self.stride = (self.kernel_size if stride is None
                       else _pair(stride, "stride", name, nd))
        pad = (padding,) * nd if isinstance(padding, int) else tuple(padding)
        if len(pad) != nd or not all(
                isinstance(p, int) and 0 <= p <= k // 2
                for p, k in zip(pad, self.kernel_size, strict=True)):
            msg = (
                f"{name}: padding must be ints between 0 and half the kernel "
                f"{self.kernel_size}, got {padding!r}"
            )
            raise ValueError(msg)
        self.padding = pad

    @property
    def _taps(self) -> int:
        """Number of elements in one window."""
        k = 1
        for size in self.kernel_size:
            k *= size
        return k

    def _geometry(self):
        pads = tuple((p, p) for p in self.padding)
        if self.nd == 1:
            return (1, *self.kernel_size), (1, *self.stride), ((0, 0), *pads)
        return self.kernel_size, self.stride, pads

    def _as_2d(self, x):
        """`x` checked and seen as ``(N, C, H, W)``; records the shapes."""
        name = type(self).__name__
        if x.ndim != self.nd + 2:
            layout = "(batch, channels, length)" if self.nd == 1 else (
                "(batch, channels, height, width)")
            msg = f"{name}: expected input {layout}, got shape {tuple(x.shape)}"
            raise ValueError(msg)
        self._x_shape = tuple(x.shape)
        if self.nd == 1:
            x = namespace(x).reshape(x, (x.shape[0], x.shape[1], 1, x.shape[2]))
        kernel, stride, pads = self._geometry()
        (top, bottom), (left, right) = pads
        hp, wp = x.shape[-2] + top + bottom, x.shape[-1] + left + right
        self._in_shape = (*x.shape[:-2], hp, wp)
        if (output_size(hp, kernel[0], stride[0], 1) < 1
                or output_size(wp, kernel[1], stride[1], 1) < 1):
            msg = (
                f"{name}: the kernel {self.kernel_size} is larger than the padded "
                f"input (spatial size {(hp, wp)[2 - self.nd:]}); got input shape "
                f"{self._x_shape}"
            )
            raise ValueError(msg)
        return x

    def _windows(self, x, fill):
        kernel, stride, pads = self._geometry()
        return window_views(pad2d(self._as_2d(x), pads, fill), kernel, stride, (1, 1))

    def _output(self, y):
        if self.nd == 1:
            return namespace(y).reshape(y, (y.shape[0], y.shape[1], y.shape[3]))
        return y

    def _input_grad(self, pieces, dy):
        kernel, stride, pads = self._geometry()
        dx = add_windows(pieces, self._in_shape, kernel, stride, (1, 1),
                         dy.dtype, dy.device)
        return namespace(dx).reshape(unpad2d(dx, pads), self._x_shape)

    def _dy_2d(self, dy):
        if self.nd == 1:
            return namespace(dy).reshape(dy, (dy.shape[0], dy.shape[1], 1,
                                              dy.shape[2]))
        return dy

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding)}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(kernel_size={self.kernel_size}, "
                f"stride={self.stride})")


class MaxPool2D(_Pool):
    """Maximum over ``kernel_size`` windows of ``(batch, channels, H, W)`` input.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to `kernel_size` (non-overlapping windows).
    padding : int or (int, int)
        Implicit ``-inf`` padding, at most half the kernel (as in PyTorch).

    Examples
    --------
    >>> import portnn
    >>> xp = portnn.get_backend().xp
    >>> x = xp.reshape(xp.arange(16.0), (1, 1, 4, 4))
    >>> portnn.MaxPool2D(2)(x)[0, 0].tolist()
    [[5.0, 7.0], [13.0, 15.0]]
    """

    _cache_attrs = ("_x_shape", "_in_shape", "_ctx", "_pool")

    def forward(self, x, training=False):
        x4 = self._as_2d(x)
        self._pool = max_pool2d_impl(x4)
        y, self._ctx = self._pool.forward(x4, *self._geometry())
        return self._output(y)

    def backward(self, dy):
        dx = self._pool.input_grad(self._ctx, self._dy_2d(dy))
        return namespace(dx).reshape(dx, self._x_shape)


class AvgPool2D(_Pool):
    """Mean over ``kernel_size`` windows of ``(batch, channels, H, W)`` input.

    Zero padding counts in the mean (PyTorch's default
    ``count_include_pad=True``). Parameters as for :class:`MaxPool2D`.

    Examples
    --------
    >>> import portnn
    >>> xp = portnn.get_backend().xp
    >>> x = xp.reshape(xp.arange(16.0), (1, 1, 4, 4))
    >>> portnn.AvgPool2D(2)(x)[0, 0].tolist()
    [[2.5, 4.5], [10.5, 12.5]]
    """

    def forward(self, x, training=False):
        views = self._windows(x, 0.0)
        total = views[0]
        for v in views[1:]:
            total = total + v
        return self._output(total * (1.0 / len(views)))

    def backward(self, dy):
        dy = self._dy_2d(dy)
        share = dy * (1.0 / self._taps)
        return self._input_grad([share] * self._taps, dy)


class MaxPool1D(MaxPool2D):
    """Maximum over windows of ``(batch, channels, length)`` input.

    Parameters as for :class:`MaxPool2D`, with one spatial axis.

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().asarray([[[1.0, 3.0, 2.0, 0.0]]])
    >>> portnn.MaxPool1D(2)(x).tolist()
    [[[3.0, 2.0]]]
    """

    nd = 1


class AvgPool1D(AvgPool2D):
    """Mean over windows of ``(batch, channels, length)`` input.

    Parameters as for :class:`AvgPool2D`, with one spatial axis.

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().asarray([[[1.0, 3.0, 2.0, 0.0]]])
    >>> portnn.AvgPool1D(2)(x).tolist()
    [[[2.0, 1.0]]]
    """

    nd = 1


class GlobalAvgPool2D(Activation):
    """Mean over the spatial axes: ``(N, C, H, W) -> (N, C)``.

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().xp.ones((2, 3, 4, 4))
    >>> portnn.GlobalAvgPool2D()(x).shape
    (2, 3)
    """

    _cache_attrs = ("_x_shape",)
    supports_masking = False

    def forward(self, x, training=False):
        if x.ndim != 4:
            msg = (
                "GlobalAvgPool2D: expected input (batch, channels, height, width), "
                f"got shape {tuple(x.shape)}"
            )
            raise ValueError(msg)
        self._x_shape = tuple(x.shape)
        return namespace(x).mean(x, axis=(2, 3))

    def backward(self, dy):
        xp = namespace(dy)
        n, c, h, w = self._x_shape
        share = xp.reshape(dy * (1.0 / (h * w)), (n, c, 1, 1))
        return xp.zeros(self._x_shape, dtype=dy.dtype, device=dy.device) + share

    def get_config(self) -> dict:
        """No arguments."""
        return {}


class GlobalAvgPool1D(Activation):
    """Mean over the time axis of a sequence; with a mask, over its real
    steps only.

    Parameters
    ----------
    data_format : {"channels_first", "channels_last"}
        ``(batch, channels, length)`` as :class:`Conv1D` gives (the
        default), or ``(batch, time, features)`` as :class:`Embedding`,
        RNNs and attention give (Keras's default).

    Notes
    -----
    With a mask (``Embedding(mask_zero=True)``), ``y = sum_t m_t x_t /
    sum_t m_t``: padded steps count neither in the sum nor in the count
    (a sequence with no real step gives zeros), and the gradient of a
    real step is ``dy / sum_t m_t``, of a padded one zero. The mask is
    used up: the output carries none.

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().xp.ones((2, 5, 3))
    >>> portnn.GlobalAvgPool1D(data_format="channels_last")(x).shape
    (2, 3)
    """

    _cache_attrs = ("_x_shape", "_share")
    supports_masking = False
    uses_mask = True

    def __init__(self, data_format: str = "channels_first") -> None:
        super().__init__()
        if data_format not in ("channels_first", "channels_last"):
            msg = ("GlobalAvgPool1D: data_format must be 'channels_first' or "
                   f"'channels_last', got {data_format!r}")
            raise ValueError(msg)
        self.data_format = data_format

    def compute_mask(self, x, mask):
        """None: the time axis is gone."""
        return None

    def forward(self, x, training=False, mask=None):
        first = self.data_format == "channels_first"
        if x.ndim != 3:
            layout = ("(batch, channels, length)" if first
                      else "(batch, time, features)")
            msg = (f"GlobalAvgPool1D: expected input {layout}, got shape "
                   f"{tuple(x.shape)}")
            raise ValueError(msg)
        xp = namespace(x)
        axis = 2 if first else 1
        self._x_shape = tuple(x.shape)
        if mask is None:
            self._share = None
            return xp.mean(x, axis=axis)
        if first:
            msg = ("GlobalAvgPool1D: a mask marks the steps of a (batch, time, "
                   "features) sequence; use GlobalAvgPool1D(data_format="
                   "'channels_last') after an Embedding, RNN or attention")
            raise ValueError(msg)
        if tuple(mask.shape) != self._x_shape[:2]:
            msg = (f"GlobalAvgPool1D: mask of shape {tuple(mask.shape)} does not fit "
                   f"input of shape {self._x_shape} (it needs (batch, time))")
            raise ValueError(msg)
        real = xp.expand_dims(xp.astype(mask, x.dtype), -1)  # (N, T, 1)
        count = xp.sum(real, axis=1, keepdims=True)
        # each real step's weight in the mean; a row with none: all zero
        self._share = real / xp.where(count > 0, count, 1.0)
        return xp.sum(x * self._share, axis=1)

    def backward(self, dy):
        xp = namespace(dy)
        axis = 2 if self.data_format == "channels_first" else 1
        dy = xp.expand_dims(dy, axis)
        if self._share is None:
            share = 1.0 / self._x_shape[axis]
            zeros = xp.zeros(self._x_shape, dtype=dy.dtype, device=dy.device)
            return zeros + dy * share
        return dy * self._share

    def get_config(self) -> dict:
        """The data format."""
        return {"data_format": self.data_format}

    def __repr__(self) -> str:
        return f"GlobalAvgPool1D(data_format={self.data_format!r})"


class GlobalMaxPool2D(Activation):
    """Maximum over the spatial axes of channels-first input: ``(N, C, H,
    W) -> (N, C)`` (``GlobalMaxPool1D``: ``(N, C, L) -> (N, C)``). The
    gradient goes to the first maximum of each channel (PyTorch's
    max-pooling rule for ties).

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().asarray([[[[1.0, 5.0], [3.0, 5.0]]]])
    >>> portnn.GlobalMaxPool2D()(x).tolist()
    [[5.0]]
    """

    _cache_attrs = ("_x_shape", "_first")
    supports_masking = False
    nd = 2

    def forward(self, x, training=False):
        check_channels_first(self, x, self.nd)
        xp = namespace(x)
        self._x_shape = shape = tuple(x.shape)
        flat = xp.reshape(x, (shape[0], shape[1], -1))
        self._first = xp.argmax(flat, axis=-1)  # the first maximum
        return xp.max(flat, axis=-1)

    def backward(self, dy):
        xp = namespace(dy)
        n, c = self._x_shape[:2]
        positions = xp.arange(math.prod(self._x_shape[2:]), device=dy.device)
        hit = positions == xp.expand_dims(self._first, -1)
        dx = xp.where(hit, xp.expand_dims(dy, -1), xp.zeros_like(dy[..., None]))
        return xp.reshape(dx, self._x_shape)

    def get_config(self) -> dict:
        """No arguments."""
        return {}


class GlobalMaxPool1D(GlobalMaxPool2D):
    """Maximum over the length of ``(batch, channels, length)`` input; see
    :class:`GlobalMaxPool2D`.

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().asarray([[[1.0, 4.0, 2.0]]])
    >>> portnn.GlobalMaxPool1D()(x).tolist()
    [[4.0]]
    """

    nd = 1
