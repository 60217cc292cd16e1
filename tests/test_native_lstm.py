"""Every native LSTM gate activation computes what the portable one does."""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from portnn.ops.lstm import PORTABLE, lstm_gates_impl

from .conftest import to_np


def _natives():
    try:
        torch_backend = portnn.backends.get("torch")
    except portnn.backends.BackendUnavailableError:
        return [pytest.param(None, None, marks=pytest.mark.skip(
            reason="no backend here registers native LSTM gates (torch does)"))]
    return [pytest.param("torch", torch_backend.native["lstm_gates"], id="torch")]


def _torch():
    """The torch backend (it registers the native LSTM layer), or a skip."""
    try:
        return portnn.backends.get("torch")
    except portnn.backends.BackendUnavailableError:
        pytest.skip("torch is not installed (it registers a native lstm_layer)")


def _sequences(b, seed, return_sequences, n=3, t=6, i=4, h=5):
    """An input (n, t, i) and an output gradient, float32, on `b`."""
    rs = np.random.default_rng(seed)
    x = b.asarray(rs.normal(size=(n, t, i)).astype("float32"))
    dy = b.asarray(rs.normal(size=(n, t, h) if return_sequences else (n, h))
                   .astype("float32"))
    return rs, x, dy


def _rows(b, hs, dtype):
    scale = np.repeat([0.5, 0.5, 1.0, 0.5], hs).astype(dtype)
    shift = np.repeat([0.5, 0.5, 0.0, 0.5], hs).astype(dtype)
    return b.asarray(scale), b.asarray(shift)


@pytest.mark.parametrize(("spec", "native"), _natives())
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_native_lstm_gates_equal_the_portable_ones(spec, native, dtype):
    b = portnn.backends.get(spec)
    hs = 5
    rs = np.random.default_rng(0)
    a = rs.normal(scale=4.0, size=(6, 4 * hs)).astype(dtype)
    a[0, :4] = [0.0, 40.0, -40.0, -0.0]  # saturated and centred gates
    scale, shift = _rows(b, hs, dtype)
    expect = 1.0 / (1.0 + np.exp(-a.astype(np.float64)))
    expect[:, 2 * hs:3 * hs] = np.tanh(a[:, 2 * hs:3 * hs].astype(np.float64))
    got = native(b.asarray(a.copy()), scale, shift)
    portable = PORTABLE(b.asarray(a.copy()), scale, shift)
    assert got.dtype == portable.dtype == b.asarray(a).dtype
    tol = {"float64": 1e-14, "float32": 1e-6}[dtype]
    np.testing.assert_allclose(to_np(got), to_np(portable), rtol=tol, atol=tol)
    np.testing.assert_allclose(to_np(got), expect, rtol=tol, atol=tol)


def test_the_lstm_uses_the_backends_gates():
    assert lstm_gates_impl(portnn.backends.get("numpy").asarray([1.0])) is PORTABLE
    try:
        torch_backend = portnn.backends.get("torch")
    except portnn.backends.BackendUnavailableError:
        pytest.skip("torch is not installed")
    native = torch_backend.native["lstm_gates"]
    assert lstm_gates_impl(torch_backend.asarray([1.0])) is native


@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("given_state", [False, True], ids=["zeros", "state"])
def test_native_lstm_layer_equals_the_layers_own_loop(return_sequences, bias,
                                                       given_state, monkeypatch):
    b = _torch()
    n, i, h = 3, 4, 5
    rs, x, dy = _sequences(b, 1, return_sequences)
    state = tuple(b.asarray(rs.normal(size=(n, h)).astype("float32"))
                  for _ in range(2)) if given_state else None

    first = portnn.LSTM(i, h, bias=bias, backend=b, dtype="float32")
    if not b.native["lstm_layer"].accepts(x, first):
        pytest.skip("this PyTorch has no oneDNN")
    start = first.state_dict()

    def run():
        layer = portnn.LSTM(i, h, return_sequences=return_sequences, bias=bias,
                            backend=b, dtype="float32")
        layer.load_state_dict(start)
        layer.W_hh.trainable = False  # a frozen weight gets no gradient
        y = layer(x, training=True, initial_state=state)
        dx = layer.backward(dy)
        grads = {p.name: to_np(p.grad) for p in layer.parameters()
                 if p.grad is not None}
        return (to_np(y), to_np(dx), [to_np(s) for s in layer.final_state],
                [to_np(s) for s in layer.initial_state_grad], grads)

    native = run()
    monkeypatch.delitem(b.native, "lstm_layer")
    portable = run()
    for got, expect in zip(native[:4], portable[:4], strict=True):
        np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-6)
    assert native[4].keys() == portable[4].keys()
    assert not any("W_hh" in k for k in native[4])
    for k in native[4]:
        np.testing.assert_allclose(native[4][k], portable[4][k], rtol=1e-5, atol=1e-5)


def test_the_native_lstm_layer_takes_only_float32():
    b = _torch()
    native = b.native["lstm_layer"]
    layer64 = portnn.LSTM(2, 3, backend=b, dtype="float64")
    layer32 = portnn.LSTM(2, 3, backend=b, dtype="float32")
    x = np.zeros((1, 2, 2))
    assert not native.accepts(b.asarray(x), layer64)
    assert native.accepts(b.asarray(x.astype("float32")), layer32) == \
        bool(__import__("torch").backends.mkldnn.is_available())


@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_a_traced_torch_step_keeps_onednns_lstm(return_sequences, bias, monkeypatch):
    # traced for torch.compile, the layer calls oneDNN through the custom
    # ops portnn::lstm_forward/backward (fake versions give the shapes,
    # the workspace's too); the graph equals the layer's own loop
    from portnn._namespace import tracing
    from portnn.backends.torch_compile import CompiledTorchStep

    b = _torch()
    i, h = 4, 5
    _, x, dy = _sequences(b, 2, return_sequences)
    layer = portnn.LSTM(i, h, return_sequences=return_sequences, bias=bias,
                        backend=b, dtype="float32")
    if not b.native["lstm_layer"].accepts(x, layer):
        pytest.skip("this PyTorch has no oneDNN")

    def step(x, dy):
        for p in layer.parameters():
            p.grad = None
        y = layer(x, training=True)
        dx = layer.backward(dy)
        return [y, dx, *(p.grad for p in layer.parameters())]

    def traced(x, dy):
        token = tracing.set(True)
        try:
            return step(x, dy)
        finally:
            tracing.reset(token)

    program = CompiledTorchStep(traced, compiler=None)  # the graph as traced
    got = program(x, dy)
    (graph,) = program.programs.values()
    assert "portnn.lstm_forward" in graph.code
    assert "portnn.lstm_backward" in graph.code
    monkeypatch.delitem(b.native, "lstm_layer")
    want = step(x, dy)
    assert len(got) == len(want) == 4 + 2 * bias
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(to_np(g), to_np(w), rtol=1e-5, atol=1e-5)
