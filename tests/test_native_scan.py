"""``portnn.ops.scan``: the backend's scan (jax.lax.scan) against the
portable loop, and when the layers take it (only while a step is traced)."""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from portnn._namespace import tracing
from portnn.ops.scan import native_scan, scan_portable


def _step(carry, inputs):
    h, c = carry
    x_t, w_t = inputs
    if w_t is not None:
        x_t = x_t * w_t
    h = np.tanh(h + x_t) if isinstance(h, np.ndarray) else h + x_t
    return (h * 0.5, c + h), (h, c)


@pytest.mark.parametrize("reverse", [False, True])
def test_jax_scan_equals_the_portable_loop(reverse):
    jax = pytest.importorskip("jax")
    backend = portnn.backends.get("jax")
    rs = np.random.default_rng(0)
    xs = rs.normal(size=(5, 3, 4)).astype(np.float32)
    h0 = np.zeros((3, 4), np.float32)
    for weights in (None, rs.normal(size=(5, 3, 4)).astype(np.float32)):
        args = ((backend.asarray(h0), backend.asarray(h0)),
                (backend.asarray(xs), None if weights is None
                 else backend.asarray(weights)))
        token = tracing.set(True)
        try:
            native = native_scan(args[0][0])
        finally:
            tracing.reset(token)
        assert native is not None
        got = native(_step, *args, reverse=reverse)
        want = scan_portable(_step, *args, reverse=reverse)
        for g, w in zip(jax.tree_util.tree_leaves(got),
                        jax.tree_util.tree_leaves(want), strict=True):
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5,
                                       atol=1e-6)  # float32, fused by XLA


def test_eager_steps_and_other_backends_run_the_python_loop():
    x = portnn.asarray([1.0])  # numpy: no scan registered
    assert native_scan(x) is None
    token = tracing.set(True)
    try:
        assert native_scan(x) is None
    finally:
        tracing.reset(token)
    pytest.importorskip("jax")
    jx = portnn.backends.get("jax").asarray([1.0])
    assert native_scan(jx) is None  # eager: not traced


def _pass(layer, x, dy, h0, scanned, monkeypatch):
    """Forward and backward of `layer`, the Python loop or the scanned
    path (the portable scan standing in for the compiler's): every array
    that comes out, flattened, and whether the scanned path ran."""
    import portnn.layers.recurrent as recurrent

    monkeypatch.setattr(recurrent, "native_scan",
                        lambda x: scan_portable if scanned else None)
    for p in layer.parameters():
        p.grad = None
    y = layer(x, training=True, initial_state=h0)
    ran = layer.__dict__.get("_scanned") is not None
    final = layer.final_state
    dx = layer.backward(dy)
    out = [y, *(final if isinstance(final, tuple) else [final]), dx]
    dh0 = layer.initial_state_grad
    out += list(dh0) if isinstance(dh0, tuple) else [dh0]
    out += [p.grad for p in layer.parameters()]
    return out, ran


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_the_scanned_layer_equals_the_python_loop(cls, return_sequences, bias,
                                                  monkeypatch):
    # float64 on NumPy: the time-major scanned path (biases joined, one
    # stack of gate gradients, outputs from the carried states) is the
    # loop's arithmetic, reordered
    portnn.seed(0)
    layer = getattr(portnn, cls)(3, 5, return_sequences=return_sequences,
                                 bias=bias, dtype="float64")
    rs = np.random.default_rng(1)
    x = rs.normal(size=(4, 6, 3))
    dy = rs.normal(size=(4, 6, 5) if return_sequences else (4, 5))
    states = [rs.normal(size=(4, 5)) for _ in layer.state_names]
    h0 = states[0] if len(states) == 1 else tuple(states)
    loop, ran_loop = _pass(layer, x, dy, h0, False, monkeypatch)
    scanned, ran_scan = _pass(layer, x, dy, h0, True, monkeypatch)
    assert (ran_loop, ran_scan) == (False, True)
    assert len(loop) == len(scanned) == 4 + 2 * len(states) + 2 * bias
    for i, (want, got) in enumerate(zip(loop, scanned, strict=True)):
        assert got.shape == want.shape, i
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=i)
