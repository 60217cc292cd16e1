"""PyTorch's convolution kernels as the torch backend's native ``conv2d``
(oneDNN on the CPU, cuDNN on CUDA). portnn still writes the backward: the
two gradient products are called by name (``convolution_backward`` through
``torch.nn.grad``), the same products the portable im2col path computes,
and tested against it. No autograd graph is built."""

from __future__ import annotations


class TorchConv2d:
    """:class:`portnn.ops.conv.Conv2dPortable`'s three products in PyTorch."""

    def forward(self, x, w, stride, dilation, groups):
        import torch

        y = torch.nn.functional.conv2d(x, w, None, tuple(stride), 0, tuple(dilation),
                                       groups)
        return y, (x, tuple(stride), tuple(dilation), groups)

    def weight_grad(self, ctx, dy, w_shape):
        import torch

        x, stride, dilation, groups = ctx
        return torch.nn.grad.conv2d_weight(x, tuple(w_shape), dy, stride, 0, dilation,
                                           groups)

    def input_grad(self, ctx, dy, w):
        import torch

        x, stride, dilation, groups = ctx
        return torch.nn.grad.conv2d_input(tuple(x.shape), w, dy, stride, 0, dilation,
                                          groups)

    def transpose(self, x, w, out_shape, stride, dilation, groups):
        """The transposed convolution's forward (``conv_transpose2d``): the
        input gradient of a convolution, of `x`, into `out_shape`."""
        import torch

        return torch.nn.grad.conv2d_input(tuple(out_shape), w, x, tuple(stride), 0,
                                          tuple(dilation), groups)
