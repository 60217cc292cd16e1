"""No silent float64 upcast anywhere in a float32 training step: every
layer's output and input gradient, every parameter gradient and every
optimizer state array stays float32, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from portnn.layers.base import _walk


def _cnn():
    return portnn.Sequential(
        portnn.Conv2D(2, 4, 3, padding=1), portnn.BatchNorm2D(4), portnn.ReLU(),
        portnn.MaxPool2D(2), portnn.AvgPool2D(1), portnn.Flatten(), portnn.Dropout(0.2),
        portnn.Dense(16, 8), portnn.BatchNorm1D(8), portnn.GELU(), portnn.Dense(8, 3))


def _sequence():
    return portnn.Sequential(
        portnn.Embedding(5, 8), portnn.PositionalEncoding(6, 8),
        portnn.TransformerEncoderLayer(8, 2, dim_feedforward=8, dropout=0.1),
        portnn.LSTM(8, 6), portnn.GRU(6, 6), portnn.RNN(6, 4), portnn.LayerNorm(4),
        portnn.Dense(4, 3))


def _data(kind):
    rs = np.random.default_rng(0)
    if kind == "cnn":
        return rs.normal(size=(4, 2, 4, 4)).astype(np.float32), rs.integers(0, 3, 4)
    return rs.integers(0, 5, (4, 6)), rs.integers(0, 3, (4, 6))


@pytest.mark.parametrize("kind", ["cnn", "sequence"])
def test_float32_step_never_upcasts(backend, kind):
    portnn.seed(0)
    model = _cnn() if kind == "cnn" else _sequence()
    xp = backend.xp
    seen = []

    def watch(layer):
        forward, backward = layer.forward, layer.backward

        def fwd(x, *args, **kwargs):
            y = forward(x, *args, **kwargs)
            seen.append((f"{type(layer).__name__} output", y.dtype))
            return y

        def bwd(dy):
            dx = backward(dy)
            if dx is not None:
                seen.append((f"{type(layer).__name__} input gradient", dx.dtype))
            return dx

        layer.forward, layer.backward = fwd, bwd

    for layer in _walk(model):
        watch(layer)
    x, y = (backend.asarray(a) for a in _data(kind))
    opt = portnn.Adam(model.parameters(), lr=1e-3)
    loss = portnn.CrossEntropy()
    seen.append(("loss", loss.forward(model.forward(x, training=True), y).dtype))
    model.backward(loss.backward())  # the steps of train_step, one by one
    grads = {n: p.grad.dtype for n, p in model.named_parameters()}
    opt.step()
    assert len(seen) > 20 and len(grads) == len(model.parameters())
    bad = [(what, dt) for what, dt in seen if dt != xp.float32]
    bad += [(f"{n} gradient", dt) for n, dt in grads.items() if dt != xp.float32]
    for i, state in enumerate(opt.state):
        bad += [(f"optimizer state {i}.{k}", v.dtype) for k, v in state.items()
                if hasattr(v, "dtype") and v.dtype != xp.float32]
    bad += [(n, p.dtype) for n, p in model.named_parameters() if p.dtype != xp.float32]
    bad += [(k, v.dtype) for k, v in model.state_dict().items()
            if v.dtype != xp.float32]
    assert not bad, bad
