"""PyTorch's LSTM kernels for the torch backend: ``lstm_gates``, a sigmoid
over all four gates and a tanh over ``g`` alone (PyTorch's CPU tanh is
several times slower than its sigmoid), and ``lstm_layer``, the whole layer
on oneDNN as PyTorch's ``nn.LSTM`` runs it on the CPU. Both compute what
the portable path computes, and are tested against it."""

from __future__ import annotations

from portnn._namespace import tracing


class TorchLstmGates:
    """:class:`portnn.ops.lstm.LstmGatesPortable` in PyTorch."""

    def __call__(self, a, scale, shift):
        import torch

        hs = a.shape[1] // 4
        gates = torch.sigmoid(a)
        gates[:, 2 * hs:3 * hs] = torch.tanh(a[:, 2 * hs:3 * hs])
        return gates


# ideep's rnn_kind::LSTM, the mode argument of aten's mkldnn_rnn_layer
_LSTM_MODE = 2


class TorchLstmLayer:
    """A whole LSTM layer on oneDNN (``aten::mkldnn_rnn_layer`` and its
    backward), as PyTorch's ``nn.LSTM`` runs on the CPU: float32 only, with
    the input made contiguous and time-major (the kernel reads memory as
    such; a batch-first or strided input gives wrong results)."""

    def __init__(self) -> None:
        self._available = None

    def accepts(self, x, layer) -> bool:
        import torch

        if self._available is None:
            self._available = bool(torch.backends.mkldnn.is_available())
        # not in a traced step: Inductor refuses the opaque kernel, and
        # fuses the layer's own loop instead
        return (self._available and not tracing.get() and x.dtype == torch.float32
                and x.device.type == "cpu" and x.ndim == 3
                and all(p.value.dtype == torch.float32 for p in layer.parameters()))

    def forward(self, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        import torch

        hidden = w_hh.shape[1]
        if b_ih is None:  # no bias: oneDNN adds zeros
            b_ih = b_hh = torch.zeros(w_ih.shape[0], dtype=x.dtype)
        args = (x.transpose(0, 1).contiguous(), w_ih.contiguous(), w_hh.contiguous(),
                b_ih.contiguous(), b_hh.contiguous(), h0.contiguous(), c0.contiguous())
        y, h, c, workspace = torch.ops.aten.mkldnn_rnn_layer(
            *args, False, [], _LSTM_MODE, hidden, 1, True, False, False, True)
        return y.transpose(0, 1), h, c, (args, y, h, c, workspace, hidden)

    def backward(self, ctx, dy, return_sequences):
        import torch

        args, y, h, c, workspace, hidden = ctx
        if return_sequences:
            dy_seq, dh = dy.transpose(0, 1).contiguous(), None
        else:  # the last output is the final h
            dy_seq, dh = None, dy.contiguous()
        dx, dw_ih, dw_hh, db_ih, db_hh, dh0, dc0 = \
            torch.ops.aten.mkldnn_rnn_layer_backward(
                *args, y, h, c, dy_seq, dh, None, False, _LSTM_MODE, hidden, 1,
                True, True, False, [], False, workspace)
        return dx.transpose(0, 1), dw_ih, dw_hh, db_ih, db_hh, dh0, dc0
