"""PyTorch's GELU kernels (tanh form) as the torch backend's native
``gelu``: the forward keeps its input and the gradient is
``gelu_backward``'s, the product the portable path computes, and tested
against it. No autograd graph is built."""

from __future__ import annotations


class TorchGelu:
    """:class:`portnn.ops.gelu.GeluPortable`'s two products in PyTorch."""

    def forward(self, x):
        import torch

        return torch.nn.functional.gelu(x, approximate="tanh"), x

    def input_grad(self, ctx, dy):
        import torch

        return torch.ops.aten.gelu_backward(dy, ctx, approximate="tanh")
