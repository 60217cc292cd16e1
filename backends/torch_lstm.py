"""PyTorch's kernels for an LSTM step's gate activations, the torch
backend's native ``lstm_gates``: a sigmoid over all four gates and a tanh
over ``g`` alone (PyTorch's CPU tanh is several times slower than its
sigmoid), the product the portable path computes, and tested against it."""

from __future__ import annotations


class TorchLstmGates:
    """:class:`portnn.ops.lstm.LstmGatesPortable` in PyTorch."""

    def __call__(self, a, scale, shift):
        import torch

        hs = a.shape[1] // 4
        gates = torch.sigmoid(a)
        gates[:, 2 * hs:3 * hs] = torch.tanh(a[:, 2 * hs:3 * hs])
        return gates
