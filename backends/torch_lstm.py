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
        return (self._available and x.dtype == torch.float32
                and x.device.type == "cpu" and x.ndim == 3
                and all(p.value.dtype == torch.float32 for p in layer.parameters()))

    def forward(self, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        import torch

        if b_ih is None:  # no bias: oneDNN adds zeros
            b_ih = b_hh = torch.zeros(w_ih.shape[0], dtype=x.dtype, device=x.device)
        args = (x.transpose(0, 1).contiguous(), w_ih.contiguous(), w_hh.contiguous(),
                b_ih.contiguous(), b_hh.contiguous(), h0.contiguous(), c0.contiguous())
        y, h, c, workspace = _kernels()[0](*args)
        return y.transpose(0, 1), h, c, (args, y, h, c, workspace)

    def backward(self, ctx, dy, return_sequences):
        args, y, h, c, workspace = ctx
        if return_sequences:
            dy_seq, dh = dy.transpose(0, 1).contiguous(), None
        else:  # the last output is the final h
            dy_seq, dh = None, dy.contiguous()
        dx, dw_ih, dw_hh, db_ih, db_hh, dh0, dc0 = _kernels()[1](
            *args, y, h, c, dy_seq, dh, workspace)
        return dx.transpose(0, 1), dw_ih, dw_hh, db_ih, db_hh, dh0, dc0


def _forward_eager(x, w_ih, w_hh, b_ih, b_hh, h0, c0):
    import torch

    # oneDNN keeps the workspace its backward needs only while autograd
    # is on; a compiled graph runs with it off
    with torch.enable_grad():
        return torch.ops.aten.mkldnn_rnn_layer(
            x, w_ih, w_hh, b_ih, b_hh, h0, c0, False, [], _LSTM_MODE,
            w_hh.shape[1], 1, True, False, False, True)


def _backward_eager(x, w_ih, w_hh, b_ih, b_hh, h0, c0, y, h, c, dy, dh, workspace):
    import torch

    return torch.ops.aten.mkldnn_rnn_layer_backward(
        x, w_ih, w_hh, b_ih, b_hh, h0, c0, y, h, c, dy, dh, None, False,
        _LSTM_MODE, w_hh.shape[1], 1, True, True, False, [], False, workspace)


_KERNELS = []


def _kernels():
    """The forward and backward kernels: aten's eagerly, the same calls as
    ``portnn::lstm_forward`` and ``portnn::lstm_backward`` custom ops while
    a step is traced for ``torch.compile`` (Inductor keeps a custom op as an
    opaque call between its fused loops; aten's own op has no fake
    implementation that gives the workspace's size)."""
    if not tracing.get():
        return _forward_eager, _backward_eager
    if not _KERNELS:
        _KERNELS.extend(_custom_ops())
    return _KERNELS


def _custom_ops():
    import torch

    sizes = {}  # (input shape, W_hh shape) -> the workspace's shape and dtype

    weights = "Tensor x, Tensor w_ih, Tensor w_hh, Tensor b_ih, Tensor b_hh, " \
              "Tensor h0, Tensor c0"

    @torch.library.custom_op("portnn::lstm_forward", mutates_args=(), schema=(
        f"({weights}) -> (Tensor, Tensor, Tensor, Tensor)"))
    def forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0):
        return tuple(_forward_eager(x, w_ih, w_hh, b_ih, b_hh, h0, c0))

    @forward.register_fake
    def _(x, w_ih, w_hh, b_ih, b_hh, h0, c0):
        key = (tuple(x.shape), tuple(w_hh.shape), x.device)
        if key not in sizes:  # oneDNN's size: one real call on zeros, once
            from torch._subclasses.fake_tensor import unset_fake_temporarily

            with unset_fake_temporarily():
                real = [torch.zeros(t.shape, dtype=t.dtype, device=t.device)
                        for t in (x, w_ih, w_hh, b_ih, b_hh, h0, c0)]
                workspace = _forward_eager(*real)[3]
                sizes[key] = (tuple(workspace.shape), workspace.dtype)
        shape, dtype = sizes[key]
        steps, batch, _ = x.shape
        hidden = w_hh.shape[1]
        return (x.new_empty((steps, batch, hidden)), h0.new_empty(h0.shape),
                c0.new_empty(c0.shape), x.new_empty(shape, dtype=dtype))

    @torch.library.custom_op("portnn::lstm_backward", mutates_args=(), schema=(
        f"({weights}, Tensor y, Tensor h, Tensor c, Tensor? dy, Tensor? dh, "
        "Tensor workspace) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, "
        "Tensor)"))
    def backward(x, w_ih, w_hh, b_ih, b_hh, h0, c0, y, h, c, dy, dh, workspace):
        return tuple(t.clone() if t is not None and any(t is a for a in (
            x, w_ih, w_hh, b_ih, b_hh, h0, c0)) else t for t in _backward_eager(
            x, w_ih, w_hh, b_ih, b_hh, h0, c0, y, h, c, dy, dh, workspace))

    @backward.register_fake
    def _(x, w_ih, w_hh, b_ih, b_hh, h0, c0, y, h, c, dy, dh, workspace):
        return tuple(t.new_empty(t.shape) for t in (x, w_ih, w_hh, b_ih, b_hh, h0, c0))

    return forward, backward
