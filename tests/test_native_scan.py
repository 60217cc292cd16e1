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
