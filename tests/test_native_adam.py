"""The native Adam step computes what the portable one does, in place."""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from portnn.ops.adam import adam_step, adam_step_portable

from .conftest import to_np


def _torch():
    try:
        return portnn.backends.get("torch")
    except portnn.backends.BackendUnavailableError:
        pytest.skip("torch is not installed (it registers a native adam_step)")


def _run(b, fn, dtype, steps=5, device_scalars=False):
    rs = np.random.default_rng(0)
    p = b.asarray(rs.normal(size=(6, 4)).astype(dtype))
    m = b.asarray(np.zeros((6, 4), dtype))
    v = b.asarray(np.zeros((6, 4), dtype))
    b1, b2, lr, eps = 0.9, 0.999, 1e-2, 1e-8
    ids = (id(p), id(m), id(v))
    for t in range(1, steps + 1):
        g = b.asarray(rs.normal(size=(6, 4)).astype(dtype))
        step, inv_c2 = lr / (1 - b1**t), (1 - b2**t) ** -0.5
        if device_scalars:
            step, inv_c2 = (b.asarray(np.asarray(s, dtype)) for s in (step, inv_c2))
        p, m, v = fn(p, g, m, v, b1, b2, step, inv_c2, eps)
    assert (id(p), id(m), id(v)) == ids  # in place
    return [to_np(a) for a in (p, m, v)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("device_scalars", [False, True], ids=["floats", "0-d"])
def test_native_adam_step_equals_the_portable_path(dtype, device_scalars):
    b = _torch()
    got = _run(b, b.native["adam_step"], dtype, device_scalars=device_scalars)
    expect = _run(b, adam_step_portable, dtype, device_scalars=device_scalars)
    tol = {"float64": 1e-13, "float32": 2e-6}[dtype]
    for g, e in zip(got, expect, strict=True):
        np.testing.assert_allclose(g, e, rtol=tol, atol=tol)


def test_adam_step_dispatches_per_backend():
    numpy_backend = portnn.backends.get("numpy")
    p, m, v = _run(numpy_backend, adam_step, "float64")
    assert np.isfinite(p).all() and (v > 0).all()
