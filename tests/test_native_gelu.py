"""Every native GELU computes what the portable path does."""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from portnn.ops.gelu import PORTABLE, gelu_impl

from .conftest import to_np


def _natives():
    try:
        torch_backend = portnn.backends.get("torch")
    except portnn.backends.BackendUnavailableError:
        return [pytest.param(None, None, marks=pytest.mark.skip(
            reason="no backend here registers a native gelu (torch does)"))]
    return [pytest.param("torch", torch_backend.native["gelu"], id="torch")]


@pytest.mark.parametrize(("spec", "native"), _natives())
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_native_gelu_equals_the_portable_path(spec, native, dtype):
    b = portnn.backends.get(spec)
    rs = np.random.default_rng(0)
    xs = rs.normal(scale=3.0, size=(4, 3, 7)).astype(dtype)
    xs[0, 0, :4] = [0.0, 12.0, -12.0, 1e-3]  # saturated and near zero
    x = b.asarray(xs)
    y, ctx = native.forward(x)
    y0, ctx0 = PORTABLE.forward(x)
    assert y.dtype == x.dtype
    tol = {"float64": 1e-12, "float32": 1e-5}[dtype]
    np.testing.assert_allclose(to_np(y), to_np(y0), rtol=tol, atol=tol)
    dy = b.asarray(rs.normal(size=xs.shape).astype(dtype))
    dx, dx0 = native.input_grad(ctx, dy), PORTABLE.input_grad(ctx0, dy)
    assert dx.dtype == x.dtype
    np.testing.assert_allclose(to_np(dx), to_np(dx0), rtol=tol, atol=tol)


def test_the_layer_uses_the_backends_gelu():
    assert gelu_impl(portnn.backends.get("numpy").asarray([1.0])) is PORTABLE
    try:
        torch_backend = portnn.backends.get("torch")
    except portnn.backends.BackendUnavailableError:
        pytest.skip("torch is not installed")
    assert gelu_impl(torch_backend.asarray([1.0])) is torch_backend.native["gelu"]
