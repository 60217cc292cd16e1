"""`Conv1D` and `Conv2D`: convolution as matrix products (im2col).

The input's windows are gathered by strided slicing (:mod:`portnn.ops.windows`)
into a column matrix, and the convolution is a single GEMM with the
flattened kernel; the backward is two GEMMs and the adjoint of the gather
(:mod:`portnn.ops.conv`, where a backend may put its native kernels).
``Conv1D`` runs as a ``Conv2D`` with a height of 1.
"""

from __future__ import annotations

from .. import init as initializers
from .._namespace import namespace
from ..ops.conv import conv2d_impl
from ..ops.windows import output_size, pad2d, unpad2d
from .activations import get as get_activation
from .base import Layer, dtype_name, float_dtype, owns_activation
from .dense import build_lazy, draw_weights


def _pair(value, name, layer, nd):
    """An int or a tuple of `nd` positive ints, as a tuple."""
    values = (value,) * nd if isinstance(value, int) else tuple(value)
    if len(values) != nd or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        msg = f"{layer}: {name} must be a positive int or {nd} of them, got {value!r}"
        raise ValueError(msg)
    return values


def _padding(padding, kernel, stride, dilation, layer, nd):
    """Per-axis ``(before, after)`` padding from an int, a tuple of ints, a
    tuple of pairs, ``"valid"`` or ``"same"``."""
    if padding == "valid":
        return ((0, 0),) * nd
    if padding == "same":
        if any(s != 1 for s in stride):
            msg = f"{layer}: padding='same' needs stride 1, got stride {stride}"
            raise ValueError(msg)
        # as in PyTorch: the extra pixel of an even kernel goes after
        total = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        return tuple((t // 2, t - t // 2) for t in total)
    items = (padding,) * nd if isinstance(padding, int) else tuple(padding)
    pads = []
    for p in items:
        pair = (p, p) if isinstance(p, int) else tuple(p)
        if len(pair) != 2 or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0
                for v in pair):
            pads = None
            break
        pads.append(pair)
    if pads is None or len(pads) != nd:
        msg = (
            f"{layer}: padding must be 'same', 'valid', an int >= 0, {nd} ints or "
            f"{nd} (before, after) pairs, got {padding!r}"
        )
        raise ValueError(msg)
    return tuple(pads)


class _Conv(Layer):
    """Shared machinery of Conv1D and Conv2D (computed in 2-D)."""

    nd = 2
    _cache_attrs = ("_ctx", "_conv", "_x_shape")

    def __init__(self, in_channels=None, out_channels=None, kernel_size=None,
                 stride=1, padding=0, dilation=1, groups=1, bias=True, init="auto",
                 activation=None, *, backend=None, dtype=None, rng=None):
        super().__init__(backend)
        name, nd = type(self).__name__, self.nd
        if out_channels is None:  # one channel count: the output's (lazy input)
            in_channels, out_channels = None, in_channels
        if kernel_size is None:
            msg = f"{name}: kernel_size is required"
            raise ValueError(msg)
        for arg, v in (("in_channels", in_channels), ("out_channels", out_channels),
                       ("groups", groups)):
            if v is None and arg == "in_channels":
                continue
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                msg = f"{name}: {arg} must be a positive int, got {v!r}"
                raise ValueError(msg)
        self._check_groups(in_channels, out_channels, groups)
        self.in_channels, self.out_channels, self.groups = (
            in_channels, out_channels, groups)
        self.kernel_size = _pair(kernel_size, "kernel_size", name, nd)
        self.stride = _pair(stride, "stride", name, nd)
        self.dilation = _pair(dilation, "dilation", name, nd)
        self.padding = padding
        self._pads = _padding(padding, self.kernel_size, self.stride, self.dilation,
                              name, nd)
        self.init = init
        self.activation = None if activation is None else get_activation(activation)
        self._dtype = float_dtype(self.backend, dtype)
        self._rng, self._next_activation = rng, None
        if in_channels is None:
            weights = initializers.Unallocated(self.weight_shape, self._dtype)
        else:
            weights = draw_weights(self, self.activation, rng)
        self.W = self.add_parameter("W", weights)
        self.b = None
        if bias:
            self.b = self.add_parameter("b", initializers.zeros(
                (out_channels,), backend=self.backend, dtype=self._dtype))

    def _check_groups(self, in_channels, out_channels, groups):
        if (in_channels is not None and in_channels % groups) or out_channels % groups:
            msg = (
                f"{type(self).__name__}: in_channels ({in_channels}) and "
                f"out_channels ({out_channels}) must both be divisible by groups "
                f"({groups})"
            )
            raise ValueError(msg)

    # -- weights ---------------------------------------------------------------
    @property
    def weight_shape(self) -> tuple:
        """``(out_channels, in_channels // groups, *kernel_size)``, as in
        PyTorch (``in_channels`` None until a lazy layer is built)."""
        per_group = None if self.in_channels is None else (
            self.in_channels // self.groups)
        return (self.out_channels, per_group, *self.kernel_size)

    @property
    def built(self) -> bool:
        """Whether the weights exist (a lazy layer builds at its first call)."""
        return self.in_channels is not None

    def _build(self, in_channels: int) -> None:
        self._check_groups(in_channels, self.out_channels, self.groups)
        self.in_channels = int(in_channels)
        build_lazy(self)

    def reset_parameters(self, next_activation=None, rng=None) -> None:
        """Draw ``W`` again (zero ``b``); `next_activation` guides ``"auto"``.
        A lazy layer draws at its first call instead."""
        if not self.built:
            self._next_activation = next_activation
            return
        self.W.value = draw_weights(self, self.activation or next_activation, rng)
        if self.b is not None:
            self.b.value = initializers.zeros(
                (self.out_channels,), backend=self.backend, dtype=self._dtype)

    # -- 2-D views of the arguments ----------------------------------------------
    def _as_2d(self, x):
        return x

    def _geometry(self):
        return self.kernel_size, self.stride, self.dilation, self._pads

    # -- forward and backward --------------------------------------------------
    def _take_input(self, x) -> None:
        """Build a lazy layer from `x`, then check its backend and shape."""
        if self.in_channels is None and x.ndim == self.nd + 2:
            self._build(x.shape[1])
        W = self.W
        if type(x) is not type(W.value):
            self._check_backend(x, W)
        if x.ndim != self.nd + 2 or x.shape[1] != self.in_channels:
            layout = "(batch, channels, length)" if self.nd == 1 else (
                "(batch, channels, height, width)")
            msg = (
                f"{type(self).__name__}: expected input {layout} with "
                f"{self.in_channels} channels, got shape {tuple(x.shape)}"
            )
            raise ValueError(msg)

    def forward(self, x, training=False):
        self._take_input(x)
        name = type(self).__name__
        xp = namespace(x)
        kernel, stride, dilation, pads = self._geometry()
        x4 = pad2d(self._as_2d(x), pads)
        n, c, hp, wp = x4.shape
        oh = output_size(hp, kernel[0], stride[0], dilation[0])
        ow = output_size(wp, kernel[1], stride[1], dilation[1])
        if oh < 1 or ow < 1:
            span = tuple(d * (k - 1) + 1 for k, d in
                         zip(self.kernel_size, self.dilation, strict=True))
            msg = (
                f"{name}: the kernel (dilated extent {span}) is larger than the "
                f"padded input (spatial size {(hp, wp)[2 - self.nd:]}); got input "
                f"shape {tuple(x.shape)}; use a larger input, more padding or a "
                "smaller kernel"
            )
            raise ValueError(msg)
        self._conv = conv2d_impl(x4)
        y, self._ctx = self._conv.forward(x4, self._w4(), stride, dilation, self.groups)
        o = self.out_channels
        if self.b is not None:
            y += xp.reshape(self.b.value, (o, 1, 1))  # y is the conv's own array
        self._x_shape = tuple(x.shape)
        y = self._from_2d(y)
        if self.activation is not None:
            y = self.activation.forward(y, training)
        return y

    def _from_2d(self, y):
        return y

    def _w4(self):
        """``W`` as ``(O, C // groups, KH, KW)`` (Conv1D's has KH = 1)."""
        w = self.W.value
        return w if w.ndim == 4 else namespace(w).reshape(
            w, (*w.shape[:2], *self._geometry()[0]))

    _owned_layers = owns_activation

    def _param_grads(self, dy):
        """Accumulate dW and db; return dy as ``(N, O, OH, OW)``."""
        if self.activation is not None:
            dy = self.activation.backward(dy)
        xp = namespace(dy)
        dy4 = self._as_2d(dy)
        if self.b is not None and self.b.trainable:
            self.b.accumulate(xp.sum(dy4, axis=(0, 2, 3)))
        if self.W.trainable:
            dw = self._conv.weight_grad(self._ctx, dy4, self._w4().shape)
            self.W.accumulate(xp.reshape(dw, self.weight_shape))
        return dy4

    def backward(self, dy):
        dy4 = self._param_grads(dy)
        dx = self._conv.input_grad(self._ctx, dy4, self._w4())
        return namespace(dx).reshape(unpad2d(dx, self._geometry()[3]), self._x_shape)

    def backward_params(self, dy):
        self._param_grads(dy)

    def get_config(self) -> dict:
        """Constructor arguments (the activation as its own config)."""
        act = None
        if self.activation is not None:
            from .registry import layer_to_json

            act = layer_to_json(self.activation)
        padding = self.padding if isinstance(self.padding, (int, str)) else [
            list(p) if isinstance(p, tuple) else p for p in self.padding]
        return {
            "in_channels": self.in_channels, "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size), "stride": list(self.stride),
            "padding": padding, "dilation": list(self.dilation),
            "groups": self.groups, "bias": self.b is not None,
            "init": self.init if isinstance(self.init, str) else "auto",
            "activation": act, "dtype": dtype_name(self._dtype),
        }

    def __repr__(self) -> str:
        if not self.built:
            return (f"{type(self).__name__}(out_channels={self.out_channels}, "
                    f"kernel_size={self.kernel_size})")
        extra = "" if self.stride == (1,) * self.nd else f", stride={self.stride}"
        if self.padding != 0:
            extra += f", padding={self.padding!r}"
        if self.groups != 1:
            extra += f", groups={self.groups}"
        if self.activation is not None:
            extra += f", activation={self.activation!r}"
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}{extra})")


class Conv2D(_Conv):
    """2-D convolution (cross-correlation, as in every framework) over
    ``(batch, channels, height, width)`` input.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out. Given one count (``Conv2D(32, kernel_size=3)``
        or ``Conv2D(out_channels=32, kernel_size=3)``), it is the output's
        and the input channels come from the first input (lazy).
    kernel_size, stride, dilation : int or (int, int)
        Window size, step and spacing of the kernel taps.
    padding : int, (int, int), ((top, bottom), (left, right)), "same" or "valid"
        Zero padding. ``"same"`` keeps the spatial size (stride 1 only; an
        even kernel pads one more after than before, as in PyTorch).
    groups : int
        Split channels into independent groups; ``groups == in_channels``
        is a depthwise convolution.
    bias : bool
        Learn one bias per output channel.
    init : str or callable
        Initializer of ``W``; ``"auto"`` picks He uniform before ReLU-like
        activations and Glorot uniform otherwise.
    activation : str or Layer, optional
        Applied to the output.
    backend, dtype, rng : optional
        As for :class:`Dense`.

    Notes
    -----
    ``W`` has PyTorch's layout ``(out_channels, in_channels // groups, KH,
    KW)``, so weights copy across unchanged. The output size per axis is
    ``(size + pad_before + pad_after - dilation * (k - 1) - 1) // stride + 1``.

    Examples
    --------
    >>> import portnn
    >>> conv = portnn.Conv2D(3, 8, kernel_size=3, padding="same")
    >>> x = portnn.get_backend().xp.ones((2, 3, 5, 5), dtype=conv.W.dtype)
    >>> conv(x).shape
    (2, 8, 5, 5)
    """


class OneD:
    """What a 1-D convolution adds to the 2-D machinery: its arrays are
    seen as height-1 images (``(N, C, L)`` as ``(N, C, 1, L)``)."""

    nd = 1

    @staticmethod
    def one_padding(padding):
        """A ``(before, after)`` pair as the one axis's padding."""
        if (isinstance(padding, (tuple, list)) and len(padding) == 2
                and all(isinstance(p, int) for p in padding)):
            return (tuple(padding),)
        return padding

    def _geometry(self):
        return ((1, *self.kernel_size), (1, *self.stride), (1, *self.dilation),
                ((0, 0), *self._pads))

    def _as_2d(self, x):
        n, c, length = x.shape
        return namespace(x).reshape(x, (n, c, 1, length))

    def _from_2d(self, y):
        n, c, _, length = y.shape
        return namespace(y).reshape(y, (n, c, length))


class Conv1D(OneD, _Conv):
    """1-D convolution over ``(batch, channels, length)`` input.

    Parameters are those of :class:`Conv2D` with one spatial axis
    (``padding`` may be an int, a ``(before, after)`` pair, ``"same"`` or
    ``"valid"``); ``W`` has shape ``(out_channels, in_channels // groups, k)``.

    Examples
    --------
    >>> import portnn
    >>> conv = portnn.Conv1D(4, 6, kernel_size=3, stride=2)
    >>> x = portnn.get_backend().xp.ones((2, 4, 9), dtype=conv.W.dtype)
    >>> conv(x).shape
    (2, 6, 4)
    """

    def __init__(self, in_channels=None, out_channels=None, kernel_size=None,
                 stride=1, padding=0, dilation=1, groups=1, bias=True, init="auto",
                 activation=None, *, backend=None, dtype=None, rng=None):
        super().__init__(in_channels, out_channels, kernel_size, stride,
                         self.one_padding(padding), dilation, groups, bias, init,
                         activation, backend=backend, dtype=dtype, rng=rng)
