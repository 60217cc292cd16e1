"""An LSTM step's gate activations: ``(i, f, g, o)`` side by side from their
pre-activations, sigmoid, sigmoid, tanh, sigmoid.

The portable path is one tanh over all four gates: sigmoid(a) is
``0.5 tanh(0.5 a) + 0.5`` and tanh(a) is ``1 tanh(1 a) + 0``, so the rows
`scale` and `shift` turn one tanh into all four (one pass each where four
slices would make four calls; NumPy's tanh is as fast as its sigmoid would
be). PyTorch's CPU tanh is about 6 times slower than its sigmoid (64 x 512
floats: 111 us against 20 us), so the torch adapter's native ``lstm_gates``
takes a sigmoid over all four and a tanh over ``g`` alone, as PyTorch's own
LSTM does. The backward needs only the gates, whichever way they were made;
every native path is tested against this one.

A backend may also register a whole LSTM layer, ``lstm_layer`` (an object
with ``accepts(x, layer)``, ``forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh)``
returning ``(y, h, c, ctx)`` and ``backward(ctx, dy, return_sequences)``
returning ``(dx, dW_ih, dW_hh, db_ih, db_hh, dh0, dc0)``): the torch
adapter's is oneDNN's LSTM, the kernel PyTorch's own ``nn.LSTM`` runs on
the CPU, for float32. The layer's own step loop is the portable path, and
the native one is tested against it.
"""

from __future__ import annotations

from .._namespace import namespace
from ._native import native as native_path


def lstm_gates_impl(a):
    """The backend's native gate activations, or the portable ones."""
    native = native_path(a, "lstm_gates")
    return native if native is not None else PORTABLE


def lstm_layer_impl(x, layer):
    """The backend's whole-layer LSTM kernel if it takes this input and
    layer, else ``None`` (the layer runs its own loop)."""
    native = native_path(x, "lstm_layer")
    return native if native is not None and native.accepts(x, layer) else None


class LstmGatesPortable:
    """The gate activations in standard ops."""

    def __call__(self, a, scale, shift):
        """The gates of pre-activations `a` ``(N, 4H)``, which it may
        overwrite; `scale` and `shift` are the ``(4H,)`` rows ``(0.5, 0.5,
        1, 0.5)`` and ``(0.5, 0.5, 0, 0.5)`` per gate."""
        xp = namespace(a)
        a *= scale
        gates = xp.tanh(a)
        gates *= scale
        gates += shift
        return gates


PORTABLE = LstmGatesPortable()
