"""Every native ReLU computes what the portable path does."""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from portnn.ops.relu import PORTABLE, relu_impl

from .conftest import to_np

SHAPES = [(4, 3, 5, 6), (7, 33), (5,), (), (0, 4)]


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
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_native_relu_equals_the_portable_path(spec, native, dtype, shape):
    rs = np.random.default_rng(0)
    xs = np.asarray(rs.normal(size=shape)).astype(dtype)
    if xs.size >= 3:  # the edges: zeros of both signs, the smallest positive
        xs.reshape(-1)[:3] = [0.0, -0.0, 1e-300 if dtype == "float64" else 1e-40]
    b = portnn.backends.get(spec)
    x = b.asarray(xs)
    y, ctx = native.forward(x)
    y0, ctx0 = PORTABLE.forward(x)
    assert y.dtype == x.dtype
    np.testing.assert_array_equal(to_np(y), to_np(y0))
    dy = b.asarray(np.asarray(rs.normal(size=shape)).astype(dtype))
    dx, dx0 = native.input_grad(ctx, dy), PORTABLE.input_grad(ctx0, dy)
    assert dx.dtype == x.dtype
    np.testing.assert_array_equal(to_np(dx), to_np(dx0))


@pytest.mark.parametrize(("spec", "native"), _natives())
def test_native_relu_propagates_nan_and_passes_no_gradient_there(spec, native):
    b = portnn.backends.get(spec)
    x = b.asarray(np.array([[np.nan, -1.0, 2.0]] * 4))
    y, ctx = native.forward(x)
    assert np.isnan(to_np(y)[:, 0]).all()
    dx = to_np(native.input_grad(ctx, b.asarray(np.ones((4, 3)))))
    portable = to_np(PORTABLE.input_grad(PORTABLE.forward(x)[1],
                                         b.asarray(np.ones((4, 3)))))
    # PyTorch passes the gradient through NaN (threshold_backward tests
    # x <= 0); the portable path does not. Both are documented.
    np.testing.assert_array_equal(dx[:, 1:], portable[:, 1:])
    assert (portable[:, 0] == 0).all()


def test_the_layer_uses_the_backends_relu():
    assert relu_impl(portnn.backends.get("numpy").asarray([1.0])) is PORTABLE
    strict = pytest.importorskip("array_api_strict")
    assert relu_impl(strict.asarray([1.0])) is PORTABLE
    try:
        torch_backend = portnn.backends.get("torch")
    except portnn.backends.BackendUnavailableError:
        pytest.skip("torch is not installed")
    assert relu_impl(torch_backend.asarray([1.0])) is torch_backend.native["relu"]
