"""Every native ReLU computes what the portable path does."""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from portnn.ops.relu import PORTABLE, relu_impl

from .conftest import to_np


def _natives():
    out = []
    try:
        torch_backend = portnn.backends.get("torch")
        out.append(pytest.param("torch", torch_backend.native["relu"], id="torch"))
    except (portnn.backends.BackendUnavailableError, KeyError):
        pass
    if not out:
        out.append(pytest.param(None, None, marks=pytest.mark.skip(
            reason="no backend here registers a native relu (torch does)")))
    return out


@pytest.mark.parametrize(("spec", "native"), _natives())
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_native_relu_equals_the_portable_path(spec, native, dtype):
    rs = np.random.default_rng(0)
    xs = rs.normal(size=(4, 3, 5, 6)).astype(dtype)
    xs[0, 0, 0, :3] = [0.0, -0.0, 1e-300 if dtype == "float64" else 1e-40]  # the edges
    b = portnn.backends.get(spec)
    x = b.asarray(xs)
    y, ctx = native.forward(x)
    y0, ctx0 = PORTABLE.forward(x)
    assert y.dtype == x.dtype
    np.testing.assert_array_equal(to_np(y), to_np(y0))
    dy = b.asarray(rs.normal(size=xs.shape).astype(dtype))
    dx, dx0 = native.input_grad(ctx, dy), PORTABLE.input_grad(ctx0, dy)
    assert dx.dtype == x.dtype
    np.testing.assert_array_equal(to_np(dx), to_np(dx0))


def test_the_layer_uses_the_backends_relu():
    with portnn.use_backend("numpy") as b:
        assert relu_impl(b.asarray([1.0])) is PORTABLE
    try:
        torch_backend = portnn.backends.get("torch")
    except portnn.backends.BackendUnavailableError:
        pytest.skip("torch is not installed")
    assert relu_impl(torch_backend.asarray([1.0])) is torch_backend.native["relu"]
