"""`Conv1DTranspose` and `Conv2DTranspose`: the adjoints of the convolutions.

A convolution maps an input to an output through its weights; its
transpose maps the other way through the same weights, so each input
pixel spreads a kernel-sized patch into a larger output ("up-sampling with
learned weights"). No new machinery is needed: with ``y = conv_W(x)``,

* the transposed forward is the convolution's input gradient, taken of the
  transposed layer's input (:meth:`portnn.ops.conv.Conv2dPortable.transpose`,
  the columns added back through the windows);
* its input gradient is the convolution itself, of ``dy``:
  ``<dy, conv_W^T(x)> = <conv_W(dy), x>``;
* its weight gradient is the convolution's weight gradient with the roles
  of input and output gradient swapped: ``dW`` of ``conv_W`` at input ``dy``
  and upstream gradient ``x``.

``padding`` crops the full result (PyTorch's meaning), and
``output_padding`` adds rows and columns at the end that no input reaches,
to pick one of the output sizes a strided convolution maps to the same
input size. ``W`` has PyTorch's layout ``(in_channels, out_channels //
groups, *kernel_size)``.
"""

from __future__ import annotations

from .._namespace import namespace
from ..ops.conv import conv2d_impl, conv_transpose2d
from ..ops.windows import pad2d, unpad2d
from .conv import OneD, _Conv


class _ConvTranspose(_Conv):
    """Shared machinery of Conv1DTranspose and Conv2DTranspose (in 2-D)."""

    _cache_attrs = ("_x4", "_x_shape")

    def __init__(self, in_channels=None, out_channels=None, kernel_size=None,
                 stride=1, padding=0, output_padding=0, dilation=1, groups=1,
                 bias=True, init="auto", activation=None, *, backend=None,
                 dtype=None, rng=None):
        same = isinstance(padding, str) and padding == "same"
        super().__init__(in_channels, out_channels, kernel_size, stride,
                         0 if same else padding, dilation, groups, bias, init,
                         activation, backend=backend, dtype=dtype, rng=rng)
        name = type(self).__name__
        self.padding = padding
        if same:
            self._pads = self._same_crop(name)
        ops = (output_padding,) * self.nd if isinstance(output_padding, int) else (
            tuple(output_padding))
        if len(ops) != self.nd or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ops):
            msg = (f"{name}: output_padding must be an int >= 0 or {self.nd} of "
                   f"them, got {output_padding!r}")
            raise ValueError(msg)
        for op, s, d in zip(ops, self.stride, self.dilation, strict=True):
            if op >= max(s, d):
                msg = (
                    f"{name}: output_padding {ops} must be smaller than the stride "
                    f"{self.stride} or the dilation {self.dilation} on every axis "
                    "(it picks one of the output sizes a strided convolution "
                    "maps to the same input size)"
                )
                raise ValueError(msg)
        self.output_padding = ops

    def _same_crop(self, name):
        """``padding="same"`` (Keras): the output is ``stride`` times the
        input; the crop of the dilated kernel's extra reach, the odd pixel
        after."""
        pads = []
        for k, s, d in zip(self.kernel_size, self.stride, self.dilation, strict=True):
            total = d * (k - 1) + 1 - s
            if total < 0:
                msg = (
                    f"{name}: padding='same' needs a dilated kernel at least as "
                    f"large as the stride (kernel {self.kernel_size}, stride "
                    f"{self.stride}); give padding and output_padding as ints"
                )
                raise ValueError(msg)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)

    @property
    def weight_shape(self) -> tuple:
        """``(in_channels, out_channels // groups, *kernel_size)``, as in
        PyTorch (``in_channels`` None until a lazy layer is built)."""
        return (self.in_channels, self.out_channels // self.groups, *self.kernel_size)

    def _output_pads(self):
        return self.output_padding if self.nd == 2 else (0, *self.output_padding)

    def _reach(self, size, axis):
        """Output rows (or columns) the input reaches along 2-D `axis`,
        before cropping and without output padding."""
        kernel, stride, dilation, _ = self._geometry()
        return (size - 1) * stride[axis] + dilation[axis] * (kernel[axis] - 1) + 1

    def forward(self, x, training=False):
        self._take_input(x)
        _, stride, dilation, pads = self._geometry()
        x4 = self._as_2d(x)
        n, _, h, w = x4.shape
        reach = (self._reach(h, 0), self._reach(w, 1))
        extra = self._output_pads()
        full = tuple(r + op for r, op in zip(reach, extra, strict=True))
        kept = tuple(f - before - after for f, (before, after) in
                     zip(full, pads, strict=True))
        if min(kept) < 1:
            msg = (
                f"{type(self).__name__}: padding {self.padding!r} crops the whole "
                f"output (uncropped spatial size {full[2 - self.nd:]}) of input "
                f"shape {tuple(x.shape)}; use less padding or a larger input"
            )
            raise ValueError(msg)
        y = conv_transpose2d(x4, self._w4(), (n, self.out_channels, *reach), stride,
                             dilation, self.groups)
        # the output padding: zeros no input reaches (a native kernel may
        # refuse padding as large as the stride, which dilation allows)
        y = unpad2d(pad2d(y, ((0, extra[0]), (0, extra[1]))), pads)
        if self.b is not None:
            y = y + namespace(y).reshape(self.b.value, (self.out_channels, 1, 1))
        self._x4, self._x_shape = x4, tuple(x.shape)
        y = self._from_2d(y)
        if self.activation is not None:
            y = self.activation.forward(y, training)
        return y

    def _param_grads(self, dy):
        """Accumulate dW and db; return d loss / d input as ``(N, I, H, W)``."""
        if self.activation is not None:
            dy = self.activation.backward(dy)
        xp = namespace(dy)
        dy4 = self._as_2d(dy)
        if self.b is not None and self.b.trainable:
            self.b.accumulate(xp.sum(dy4, axis=(0, 2, 3)))
        _, stride, dilation, pads = self._geometry()
        x4 = self._x4
        # back to the uncropped output, less the output padding (no input
        # reaches it): the convolution of that is the input gradient
        dyp = pad2d(dy4, pads)[..., :self._reach(x4.shape[2], 0),
                                 :self._reach(x4.shape[3], 1)]
        w4 = self._w4()
        conv = conv2d_impl(dyp)
        dx, ctx = conv.forward(dyp, w4, stride, dilation, self.groups)
        if self.W.trainable:
            dw = conv.weight_grad(ctx, x4, tuple(w4.shape))
            self.W.accumulate(xp.reshape(dw, self.weight_shape))
        return dx

    def backward(self, dy):
        dx = self._param_grads(dy)
        return namespace(dx).reshape(dx, self._x_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config["output_padding"] = list(self.output_padding)
        return config

    def __repr__(self) -> str:
        text = super().__repr__()
        if any(self.output_padding):
            text = f"{text[:-1]}, output_padding={self.output_padding})"
        return text


class Conv2DTranspose(_ConvTranspose):
    """2-D transposed convolution ("deconvolution") over ``(batch,
    channels, height, width)`` input: the adjoint of :class:`Conv2D`, the
    learned up-sampling of autoencoders, U-Nets and GAN generators.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out; given one count, it is the output's and the
        input channels come from the first input (lazy).
    kernel_size, stride, dilation : int or (int, int)
        As for the convolution this layer is the adjoint of.
    padding : int, (int, int), ((top, bottom), (left, right)), "valid" or "same"
        Rows and columns cropped from the full output (PyTorch's meaning).
        ``"same"`` (Keras) makes the output ``stride`` times the input,
        cropping an odd row or column at the end as TensorFlow does
        (PyTorch's ``padding=1, output_padding=1`` for a 3x3 kernel of
        stride 2 gives the same size but crops the first row instead).
    output_padding : int or (int, int)
        Rows and columns added at the bottom and right, each smaller than
        the stride or the dilation.
    groups, bias, init, activation, backend, dtype, rng
        As for :class:`Conv2D`.

    Notes
    -----
    The output size per axis is ``(size - 1) * stride - pad_before -
    pad_after + dilation * (k - 1) + output_padding + 1``. ``W`` has
    PyTorch's ``ConvTranspose2d`` layout ``(in_channels, out_channels //
    groups, KH, KW)``, so weights copy across unchanged; its initializer's
    fan-in is ``out_channels // groups * KH * KW``, as in PyTorch.

    Examples
    --------
    >>> import portnn
    >>> up = portnn.Conv2DTranspose(8, 4, kernel_size=2, stride=2)
    >>> x = portnn.get_backend().xp.ones((2, 8, 5, 5), dtype=up.W.dtype)
    >>> up(x).shape
    (2, 4, 10, 10)
    >>> portnn.Conv2DTranspose(8, 4, 3, stride=2, padding=1, output_padding=1)(x).shape
    (2, 4, 10, 10)
    """


class Conv1DTranspose(OneD, _ConvTranspose):
    """1-D transposed convolution over ``(batch, channels, length)`` input.

    Parameters are those of :class:`Conv2DTranspose` with one spatial axis
    (``padding`` an int, a ``(before, after)`` pair, ``"valid"`` or
    ``"same"``); ``W`` has shape ``(in_channels, out_channels // groups, k)``.

    Examples
    --------
    >>> import portnn
    >>> up = portnn.Conv1DTranspose(4, 6, kernel_size=3, stride=2)
    >>> x = portnn.get_backend().xp.ones((2, 4, 9), dtype=up.W.dtype)
    >>> up(x).shape
    (2, 6, 19)
    """

    def __init__(self, in_channels=None, out_channels=None, kernel_size=None,
                 stride=1, padding=0, output_padding=0, dilation=1, groups=1,
                 bias=True, init="auto", activation=None, *, backend=None,
                 dtype=None, rng=None):
        super().__init__(in_channels, out_channels, kernel_size, stride,
                         self.one_padding(padding), output_padding, dilation, groups,
                         bias, init, activation, backend=backend, dtype=dtype, rng=rng)
