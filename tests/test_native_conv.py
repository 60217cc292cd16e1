"""Every native convolution computes what the portable im2col path does."""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from portnn.ops.conv import PORTABLE

from .conftest import to_np

GEOMETRIES = [  # (N, C, H, W), (O, KH, KW), stride, dilation, groups
    ((5, 3, 9, 8), (4, 3, 3), (1, 1), (1, 1), 1),
    ((4, 4, 11, 7), (6, 2, 3), (2, 1), (1, 2), 2),
    ((3, 6, 8, 8), (6, 3, 3), (2, 2), (1, 1), 6),   # depthwise
    ((7, 1, 28, 28), (16, 3, 3), (1, 1), (1, 1), 1),  # the benchmark's first layer
]


def _natives():
    out = []
    from portnn.backends.numpy_threads import ThreadedConv2d

    out.append(pytest.param("numpy", ThreadedConv2d(threads=3), id="numpy-threads"))
    for spec in ("torch", "jax"):
        try:
            b = portnn.backends.get(spec)
            out.append(pytest.param(spec, b.native["conv2d"], id=spec))
        except (portnn.backends.BackendUnavailableError, KeyError):
            pass
    return out


@pytest.mark.parametrize(("spec", "native"), _natives())
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_native_conv2d_equals_the_portable_path(spec, native, geometry, monkeypatch):
    import portnn.backends.numpy_threads as threads

    monkeypatch.setattr(threads, "_MIN_CHUNK_WORK", 1)  # several chunks, always
    (n, c, h, w), (o, kh, kw), stride, dilation, g = geometry
    rs = np.random.default_rng(0)
    xs = rs.normal(size=(n, c, h, w))
    ws = rs.normal(size=(o, c // g, kh, kw))
    b = portnn.backends.get(spec)
    x, wt = b.asarray(xs), b.asarray(ws)
    y, ctx = native.forward(x, wt, stride, dilation, g)
    y0, ctx0 = PORTABLE.forward(x, wt, stride, dilation, g)
    np.testing.assert_allclose(to_np(y), to_np(y0), rtol=1e-12, atol=1e-12)
    dy = b.asarray(rs.normal(size=tuple(y.shape)))
    np.testing.assert_allclose(to_np(native.weight_grad(ctx, dy, tuple(ws.shape))),
                               to_np(PORTABLE.weight_grad(ctx0, dy, tuple(ws.shape))),
                               rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(to_np(native.input_grad(ctx, dy, wt)),
                               to_np(PORTABLE.input_grad(ctx0, dy, wt)),
                               rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("spec", ["torch", "jax"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_native_conv_transpose2d_equals_the_portable_path(spec, geometry):
    pytest.importorskip(spec)
    (n, c, h, w), (o, kh, kw), stride, dilation, g = geometry
    rs = np.random.default_rng(1)
    b = portnn.backends.get(spec)
    ws = b.asarray(rs.normal(size=(o, c // g, kh, kw)))
    y, _ = PORTABLE.forward(b.asarray(rs.normal(size=(n, c, h, w))), ws, stride,
                            dilation, g)
    x = b.asarray(rs.normal(size=tuple(y.shape)))  # the transposed layer's input
    native = b.native["conv_transpose2d"]
    np.testing.assert_allclose(
        to_np(native(x, ws, (n, c, h, w), stride, dilation, g)),
        to_np(PORTABLE.transpose(x, ws, (n, c, h, w), stride, dilation, g)),
        rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize(("spec", "native"), _natives())
def test_native_conv2d_keeps_float32(spec, native):
    b = portnn.backends.get(spec)
    x = b.asarray(np.ones((2, 3, 6, 6), dtype=np.float32))
    w = b.asarray(np.ones((4, 3, 3, 3), dtype=np.float32))
    y, ctx = native.forward(x, w, (1, 1), (1, 1), 1)
    assert y.dtype == x.dtype
    assert native.weight_grad(ctx, y, (4, 3, 3, 3)).dtype == x.dtype
    assert native.input_grad(ctx, y, w).dtype == x.dtype


def test_the_thread_count_comes_from_the_environment(monkeypatch):
    from portnn.backends.numpy_threads import thread_count

    for name in ("PORTNN_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert thread_count() == 3
    monkeypatch.setenv("PORTNN_NUM_THREADS", "5")
    assert thread_count() == 5
