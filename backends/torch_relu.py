"""PyTorch's ReLU kernels as the torch backend's native ``relu``: the
forward keeps its output and the gradient passes where it is positive
(``threshold_backward``), the product the portable path computes, and
tested against it. No autograd graph is built."""

from __future__ import annotations


class TorchReLU:
    """:class:`portnn.ops.relu.ReluPortable`'s two products in PyTorch."""

    def forward(self, x):
        import torch

        y = torch.relu(x)  # NaN stays NaN, as with the portable maximum
        return y, y

    def input_grad(self, ctx, dy):
        import torch

        # y > 0 exactly where x > 0 (NaN in neither)
        return torch.ops.aten.threshold_backward(dy, ctx, 0)
