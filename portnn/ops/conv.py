"""2-D convolution's three products: the output, d loss / d W, d loss / d x.

The portable path is im2col in standard ops: the windows of the padded
input (:func:`portnn.ops.windows.window_views`) are stacked into a column
matrix per sample, the output is one matrix product with the flattened
kernel, ``dW`` the products of ``dy`` with the columns summed over the
batch, and ``dx`` the columns' gradient added back through the windows.

A backend may register a native ``conv2d`` (an object with the three
methods of :class:`Conv2dPortable`): the NumPy adapter splits the batch over
threads, the torch adapter calls PyTorch's convolution kernels (cuDNN on
CUDA). The layer keeps the forward's context and never looks inside it;
every native path is tested against this one.
"""

from __future__ import annotations

from .._namespace import namespace
from ._native import native as native_path
from .windows import add_windows, output_size, window_views


def conv2d_impl(x):
    """The backend's native convolution, or the portable one."""
    native = native_path(x, "conv2d")
    return native if native is not None else PORTABLE


class Conv2dPortable:
    """Convolution by im2col and matrix products, in standard ops."""

    def forward(self, x, w, stride, dilation, groups):
        """``(y, ctx)``: `y` ``(N, O, OH, OW)`` (no bias) from the padded
        input `x` ``(N, C, H, W)`` and `w` ``(O, C // groups, KH, KW)``;
        `ctx` is what the two gradients need."""
        xp = namespace(x)
        n, c, h, wd = x.shape
        o, kernel = w.shape[0], tuple(w.shape[2:])
        oh = output_size(h, kernel[0], stride[0], dilation[0])
        ow = output_size(wd, kernel[1], stride[1], dilation[1])
        k, g = kernel[0] * kernel[1], groups
        # (N, C, K, OH, OW): batch outermost, so the output comes out NCHW
        # and every copy moves whole contiguous rows
        cols = xp.stack(window_views(x, kernel, stride, dilation), axis=2)
        if g == 1:
            cols = xp.reshape(cols, (n, c * k, oh * ow))
            wm = xp.reshape(w, (o, c * k))
        else:
            cols = xp.reshape(cols, (n, g, (c // g) * k, oh * ow))
            wm = xp.reshape(w, (g, o // g, (c // g) * k))
        y = xp.reshape(wm @ cols, (n, o, oh, ow))
        return y, (cols, tuple(x.shape), kernel, stride, dilation, g)

    def weight_grad(self, ctx, dy, w_shape):
        """``dW`` of shape `w_shape` from ``dy`` ``(N, O, OH, OW)``."""
        cols, _, _, _, _, g = ctx
        xp = namespace(dy)
        n, o = dy.shape[0], dy.shape[1]
        dyg = xp.reshape(dy, (n, o, -1) if g == 1 else (n, g, o // g, -1))
        # one GEMM per sample, then the sum over the batch
        dw = xp.sum(dyg @ xp.matrix_transpose(cols), axis=0)
        return xp.reshape(dw, w_shape)

    def input_grad(self, ctx, dy, w):
        """``dx`` of the padded input's shape from ``dy`` and `w`."""
        _, x_shape, _, stride, dilation, g = ctx
        return self.transpose(dy, w, x_shape, stride, dilation, g)

    def transpose(self, dy, w, x_shape, stride, dilation, groups):
        """The adjoint of :meth:`forward` in its input: `dy` ``(N, O, OH,
        OW)`` taken back to an input of `x_shape` ``(N, C, H, W)`` through
        `w` ``(O, C // groups, KH, KW)``. It is the input gradient of a
        convolution and the forward of a transposed convolution: one GEMM
        to the columns, then the columns added back through the windows."""
        xp = namespace(dy)
        n, o, oh, ow = dy.shape
        kernel, g = tuple(w.shape[2:]), groups
        c, k = x_shape[1], kernel[0] * kernel[1]
        dyg = xp.reshape(dy, (n, o, -1) if g == 1 else (n, g, o // g, -1))
        wm = xp.reshape(w, (o, -1) if g == 1 else (g, o // g, -1))
        dcols = xp.reshape(xp.matrix_transpose(wm) @ dyg, (n, c, k, oh, ow))
        pieces = [dcols[:, :, i, ...] for i in range(k)]
        return add_windows(pieces, x_shape, kernel, stride, dilation, dy.dtype,
                           dy.device)


PORTABLE = Conv2dPortable()


def conv_transpose2d(x, w, out_shape, stride, dilation, groups):
    """A transposed convolution before its cropping: :meth:`Conv2dPortable.transpose`
    of `x` ``(N, I, H, W)`` through `w` ``(I, O // groups, KH, KW)`` into
    `out_shape` ``(N, O, OH, OW)``, through the backend's native
    ``conv_transpose2d`` where it has one (same arguments)."""
    native = native_path(x, "conv_transpose2d")
    if native is not None:
        return native(x, w, out_shape, stride, dilation, groups)
    return PORTABLE.transpose(x, w, out_shape, stride, dilation, groups)
