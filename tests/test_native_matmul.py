"""The NumPy backend's dense products equal ``a @ b`` in each of their
regimes: OpenBLAS's own threads, one BLAS thread, rows split on the pool."""

from __future__ import annotations

import numpy as np
import pytest

import portnn
import portnn.backends.numpy_threads as threads
from portnn.backends.numpy_threads import PoolAwareMatmul
from portnn.ops.matmul import matmul

SHAPES = [((128, 4608), (4608, 10)),  # the benchmark CNN's head
          ((37, 300), (300, 41)),     # rows that do not divide evenly
          ((5, 7), (7, 3))]           # below OpenBLAS's own threshold


def _operands(shapes, dtype, transpose):
    rs = np.random.default_rng(0)
    (m, k), (_, n) = shapes
    a = rs.normal(size=(m, k)).astype(dtype)
    b = rs.normal(size=(n, k)).astype(dtype).T if transpose else \
        rs.normal(size=(k, n)).astype(dtype)  # W.T in the backward is a view
    return a, b


@pytest.mark.parametrize("shapes", SHAPES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("transpose", [False, True], ids=["contiguous", "view"])
@pytest.mark.parametrize("regime", ["idle", "one-blas-thread", "split"])
def test_pool_aware_matmul_equals_the_product(shapes, dtype, transpose, regime,
                                              monkeypatch):
    a, b = _operands(shapes, dtype, transpose)
    mm = PoolAwareMatmul(threads=2)
    if regime != "idle":
        mm.pool.map(lambda i: i, [0, 1], blas=False)  # the pool just worked
        assert mm.pool.engaged()
    if regime == "split":
        monkeypatch.setattr(threads, "_SPLIT_MNK", 1)
        monkeypatch.setattr(threads, "_OPENBLAS_SERIAL_MNK", 0)
    calls = []
    original = mm.pool.map_blocks
    monkeypatch.setattr(mm.pool, "map_blocks",
                        lambda *args, **kw: calls.append(1) or original(*args, **kw))
    out = mm(a, b)
    assert out.dtype == a.dtype
    rtol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(out, a @ b, rtol=rtol, atol=rtol * 10)
    assert bool(calls) == (regime == "split")  # the regime was the one meant


def test_the_pool_is_engaged_only_after_working_on_several_threads(monkeypatch):
    mm = PoolAwareMatmul(threads=2)
    assert not mm.pool.engaged()
    mm.pool.map(lambda i: i, [0])  # one item: the calling thread, no pool
    assert not mm.pool.engaged()
    mm.pool.map(lambda i: i, [0, 1], blas=False)
    assert mm.pool.engaged()
    monkeypatch.setattr(threads, "_ENGAGED_S", 0.0)
    assert not mm.pool.engaged()


def test_dense_uses_the_backends_product_and_others_the_portable_one():
    assert portnn.backends.get("numpy").native["matmul"].pool is \
        portnn.backends.get("numpy").native["conv2d"].pool
    strict = pytest.importorskip("array_api_strict")
    a = strict.asarray([[1.0, 2.0]])
    b = strict.asarray([[3.0], [4.0]])
    assert float(matmul(a, b)[0, 0]) == 11.0


@pytest.mark.parametrize("shapes", [((3200, 512), (3200, 128)), ((7, 5), (7, 3))])
def test_jax_transposed_product_equals_the_portable_one(shapes):
    pytest.importorskip("jax")
    from portnn.ops.matmul import _portable_tn, matmul_tn

    backend = portnn.backends.get("jax")
    assert backend.native.get("matmul_tn") is not None  # a CPU here
    rs = np.random.default_rng(0)
    a, b = (backend.asarray(rs.normal(size=s).astype(np.float32)) for s in shapes)
    assert matmul_tn(a, b).shape == (shapes[0][1], shapes[1][1])
    np.testing.assert_allclose(np.asarray(matmul_tn(a, b)),
                               np.asarray(_portable_tn(a, b)), rtol=1e-4, atol=1e-3)
    want = np.asarray(a, np.float64).T @ np.asarray(b, np.float64)
    np.testing.assert_allclose(np.asarray(matmul_tn(a, b)), want, rtol=1e-4,
                               atol=2e-3)  # float32 sums of 3200 terms
