"""PyTorch's max pooling kernels as the torch backend's native
``max_pool2d``. portnn still writes the backward: the forward keeps the
argmax indices and the gradient is routed through them by name
(``max_pool2d_with_indices_backward``), the product the portable path
computes, and tested against it. No autograd graph is built."""

from __future__ import annotations


class TorchMaxPool2d:
    """:class:`portnn.ops.pool.MaxPool2dPortable`'s two products in PyTorch."""

    def forward(self, x, kernel, stride, pads):
        import torch

        # portnn pads symmetrically (pooling layers check it); PyTorch pads
        # with -inf itself and picks the first maximum on ties, as portnn does
        padding = (pads[0][0], pads[1][0])
        y, indices = torch.ops.aten.max_pool2d_with_indices(
            x, list(kernel), list(stride), list(padding))
        return y, (x, indices, kernel, stride, padding)

    def input_grad(self, ctx, dy):
        import torch

        x, indices, kernel, stride, padding = ctx
        return torch.ops.aten.max_pool2d_with_indices_backward(
            dy, x, list(kernel), list(stride), list(padding), [1, 1], False, indices)
