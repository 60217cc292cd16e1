"""Every native max pooling computes what the portable path does."""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from portnn.ops.pool import PORTABLE

from .conftest import to_np

GEOMETRIES = [  # (N, C, H, W), kernel, stride, padding
    ((5, 3, 8, 8), (2, 2), (2, 2), (0, 0)),      # the benchmark's: disjoint
    ((4, 2, 9, 7), (3, 3), (2, 2), (1, 1)),      # overlapping, padded
    ((3, 2, 7, 10), (3, 2), (1, 2), (1, 0)),     # overlapping rows only
    ((6, 1, 1, 12), (1, 3), (1, 3), (0, 1)),     # MaxPool1D's shape
]


def _natives():
    from portnn.backends.numpy_threads import ThreadedMaxPool2d

    out = [pytest.param("numpy", ThreadedMaxPool2d(threads=3), id="numpy-threads")]
    try:
        torch_backend = portnn.backends.get("torch")
        out.append(pytest.param("torch", torch_backend.native["max_pool2d"],
                                id="torch"))
    except (portnn.backends.BackendUnavailableError, KeyError):
        pass
    return out


@pytest.mark.parametrize(("spec", "native"), _natives())
@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_native_max_pool2d_equals_the_portable_path(spec, native, geometry, ties,
                                                    monkeypatch):
    import portnn.backends.numpy_threads as threads

    monkeypatch.setattr(threads, "_MIN_CHUNK_WORK", 1)  # several chunks, always
    shape, kernel, stride, padding = geometry
    pads = tuple((p, p) for p in padding)
    rs = np.random.default_rng(0)
    # small integers make ties common: the gradient must go to the first tap
    xs = rs.integers(0, 3, size=shape).astype(float) if ties else rs.normal(size=shape)
    b = portnn.backends.get(spec)
    x = b.asarray(xs)
    y, ctx = native.forward(x, kernel, stride, pads)
    y0, ctx0 = PORTABLE.forward(x, kernel, stride, pads)
    np.testing.assert_array_equal(to_np(y), to_np(y0))
    dy = b.asarray(rs.normal(size=tuple(y.shape)))
    dx, dx0 = to_np(native.input_grad(ctx, dy)), to_np(PORTABLE.input_grad(ctx0, dy))
    assert dx.shape == xs.shape
    np.testing.assert_allclose(dx, dx0, rtol=1e-12, atol=1e-12)
    # every output's gradient lands exactly once
    np.testing.assert_allclose(dx.sum(), to_np(dy).sum(), rtol=1e-10)


@pytest.mark.parametrize(("spec", "native"), _natives())
def test_native_max_pool2d_keeps_float32(spec, native):
    b = portnn.backends.get(spec)
    x = b.asarray(np.arange(2 * 3 * 6 * 6, dtype=np.float32).reshape(2, 3, 6, 6))
    y, ctx = native.forward(x, (2, 2), (2, 2), ((0, 0), (0, 0)))
    assert y.dtype == x.dtype
    assert native.input_grad(ctx, y).dtype == x.dtype


def test_the_numpy_kernels_share_one_thread_pool():
    native = portnn.backends.get("numpy").native
    assert native["conv2d"].pool is native["max_pool2d"].pool
