"""Data helpers and the scatter-add op (portable path vs native fast paths)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import portnn
from portnn.ops import scatter_add, scatter_add_portable

from .conftest import to_np


def test_batches_cover_every_sample_once(backend):
    x = backend.asarray(np.arange(23, dtype=np.float32).reshape(23, 1))
    y = backend.asarray(np.arange(23))
    seen_x, seen_y = [], []
    for xb, yb in portnn.data.batches(x, y, batch_size=5, shuffle=True):
        seen_x += to_np(xb).ravel().tolist()
        seen_y += to_np(yb).tolist()
    assert sorted(seen_y) == list(range(23))
    assert seen_x == [float(v) for v in seen_y]  # pairs stay together
    assert seen_y != list(range(23))  # shuffled


def test_standardizer_uses_training_statistics(backend):
    train = backend.asarray([[1.0, 5.0], [3.0, 5.0]])
    s = portnn.data.Standardizer().fit(train)
    np.testing.assert_allclose(to_np(s.transform(train)), [[-1, 0], [1, 0]])
    np.testing.assert_allclose(to_np(s.transform(backend.asarray([[5.0, 6.0]]))),
                               [[3.0, 1.0]])
    np.testing.assert_allclose(to_np(s.inverse_transform(s.transform(train))),
                               to_np(train))
    with pytest.raises(RuntimeError, match="not fitted"):
        portnn.data.Standardizer().transform(train)


def test_minmax_scaler(backend):
    train = backend.asarray([[0.0, 10.0], [4.0, 30.0]])
    s = portnn.data.MinMaxScaler((-1.0, 1.0)).fit(train)
    np.testing.assert_allclose(to_np(s.transform(train)), [[-1, -1], [1, 1]])


def test_one_hot(backend):
    out = portnn.data.one_hot(backend.asarray([2, 0]), 3)
    np.testing.assert_array_equal(to_np(out), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(ValueError, match="labels must lie"):
        portnn.data.one_hot(backend.asarray([3]), 3)


def test_stratified_split_keeps_class_shares(backend):
    y_np = np.repeat(np.arange(3), [50, 30, 20])
    x = backend.asarray(np.arange(100, dtype=np.float32).reshape(100, 1))
    y = backend.asarray(y_np)
    x_tr, x_te, y_tr, y_te = portnn.data.train_test_split(x, y, 0.2, stratify=True)
    assert np.bincount(to_np(y_te)).tolist() == [10, 6, 4]
    assert np.bincount(to_np(y_tr)).tolist() == [40, 24, 16]
    ids = np.concatenate([to_np(x_tr).ravel(), to_np(x_te).ravel()])
    assert sorted(ids.tolist()) == list(range(100))  # a partition
    np.testing.assert_array_equal(y_np[to_np(x_te).ravel().astype(int)], to_np(y_te))


def test_split_is_the_same_on_every_backend(backend):
    def split(name):
        with portnn.use_backend(name) as b:
            portnn.seed(9)
            x = b.asarray(np.arange(40, dtype=np.float32).reshape(40, 1))
            return to_np(portnn.data.train_test_split(x, x[:, 0], 0.25)[1])

    np.testing.assert_array_equal(split(backend.spec), split("numpy"))


@pytest.mark.parametrize("shape", [(5,), (5, 3)])
def test_scatter_add_native_matches_portable(backend, shape):
    rs = np.random.default_rng(0)
    idx = np.array([0, 4, 4, 1, 0, 0])  # repeated indices must accumulate
    values = rs.normal(size=(6, *shape[1:]))
    target = rs.normal(size=shape)
    expected = target.copy()
    np.add.at(expected, idx, values)
    portable = scatter_add_portable(backend.asarray(target), backend.asarray(idx),
                                    backend.asarray(values))
    native = scatter_add(backend.asarray(target), backend.asarray(idx),
                         backend.asarray(values))
    np.testing.assert_allclose(to_np(portable), expected, rtol=1e-12)
    np.testing.assert_allclose(to_np(native), expected, rtol=1e-12)


def test_numpy_and_torch_register_native_scatter_add():
    assert "scatter_add" in portnn.backends.get("numpy").native
    assert "scatter_add" not in portnn.backends.get("array_api_strict").native


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 6), c=st.integers(2, 6), scale=st.floats(0.1, 50.0),
       seed=st.integers(0, 2**31))
def test_cross_entropy_gradient_rows_sum_to_zero(n, c, scale, seed):
    """For any logits, p - q sums to zero per row and the loss is finite."""
    b = portnn.backends.get("numpy")
    z = portnn.random.Generator(seed).normal((n, c), std=scale, dtype="float64",
                                             backend=b)
    y = portnn.random.Generator(seed + 1).integers(0, c, (n,), backend=b)
    loss = portnn.CrossEntropy()
    value = float(loss(z, y))
    grad = to_np(loss.backward())
    assert np.isfinite(value) and value >= 0
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-12)


@pytest.mark.parametrize("pads", [((1, 1), (1, 1)), ((0, 2), (1, 0))])
@pytest.mark.parametrize("value", [0.0, -float("inf")])
def test_pad2d_native_matches_portable(backend, pads, value):
    from portnn.ops.windows import pad2d, pad2d_portable

    host = np.random.default_rng(0).normal(size=(2, 3, 4, 5))
    got = backend.to_numpy(pad2d(backend.asarray(host), pads, value))
    numpy_backend = portnn.backends.get("numpy")
    ref = pad2d_portable(numpy_backend.asarray(host), pads, value)
    np.testing.assert_array_equal(got, ref)
    assert got.shape == (2, 3, 4 + sum(pads[0]), 5 + sum(pads[1]))


@pytest.mark.parametrize(("stride", "kernel"), [((1, 1), (3, 3)), ((2, 1), (3, 2)),
                                                ((2, 2), (2, 2))])
def test_add_windows_native_matches_portable(backend, stride, kernel):
    from portnn.ops.windows import (
        add_into_views_portable,
        add_windows,
        window_keys,
        window_views,
    )

    rs = np.random.default_rng(0)
    x = backend.asarray(rs.normal(size=(2, 3, 7, 6)))
    views = window_views(x, kernel, stride, (1, 1))
    pieces = [v * (k + 1.0) for k, v in enumerate(views)]  # distinct per tap
    got = add_windows(pieces, tuple(x.shape), kernel, stride, (1, 1), x.dtype,
                      x.device)
    # the portable path, forced (on NumPy where arrays are immutable: JAX)
    ref_backend = backend if backend.inplace else portnn.backends.get("numpy")
    xp = ref_backend.xp
    keys = window_keys(kernel, stride, (1, 1), tuple(views[0].shape[-2:]))
    host_pieces = [ref_backend.asarray(backend.to_numpy(p)) for p in pieces]
    ref = add_into_views_portable(xp.zeros(tuple(x.shape), dtype=host_pieces[0].dtype,
                                           device=ref_backend.device), keys,
                                  host_pieces)
    np.testing.assert_allclose(backend.to_numpy(got), ref_backend.to_numpy(ref))
    # overlapping windows really add up: the centre of a 3x3 stride-1 window
    if stride == (1, 1):
        assert backend.to_numpy(got)[0, 0, 3, 3] == pytest.approx(
            sum((k + 1.0) * backend.to_numpy(x)[0, 0, 3, 3] for k in range(9)))


def test_native_add_into_views_is_registered_where_slices_are_views():
    assert "add_into_views" in portnn.backends.get("numpy").native
    assert "add_into_views" not in portnn.backends.get("array_api_strict").native
