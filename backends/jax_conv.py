"""XLA's convolution as the jax backend's native ``conv2d`` and
``conv_transpose2d`` (``lax.conv_general_dilated``; in a compiled step XLA
fuses around it). portnn still writes the backward: the two gradient
products are the convolution's exact adjoints, taken with
``jax.linear_transpose`` of the one linear map (as PyTorch's
``torch.nn.grad.conv2d_weight``/``conv2d_input`` are), and tested against
the portable im2col path. No autodiff of the network is involved."""

from __future__ import annotations


def _conv(x, w, stride, dilation, groups):
    from jax import lax

    return lax.conv_general_dilated(
        x, w, window_strides=tuple(stride), padding="VALID",
        rhs_dilation=tuple(dilation), dimension_numbers=("NCHW", "OIHW", "NCHW"),
        feature_group_count=groups)


class JaxConv2d:
    """:class:`portnn.ops.conv.Conv2dPortable`'s three products in XLA."""

    def forward(self, x, w, stride, dilation, groups):
        return _conv(x, w, stride, dilation, groups), (x, w, stride, dilation,
                                                        groups)

    def weight_grad(self, ctx, dy, w_shape):
        import jax

        x, w, stride, dilation, groups = ctx
        adjoint = jax.linear_transpose(
            lambda v: _conv(x, v, stride, dilation, groups),
            jax.ShapeDtypeStruct(tuple(w_shape), w.dtype))
        return adjoint(dy)[0]

    def input_grad(self, ctx, dy, w):
        x, _, stride, dilation, groups = ctx
        return self.transpose(dy, w, tuple(x.shape), stride, dilation, groups)

    def transpose(self, dy, w, x_shape, stride, dilation, groups):
        """The adjoint in the input: a transposed convolution's forward."""
        import jax

        adjoint = jax.linear_transpose(
            lambda v: _conv(v, w, stride, dilation, groups),
            jax.ShapeDtypeStruct(tuple(x_shape), dy.dtype))
        return adjoint(dy)[0]
