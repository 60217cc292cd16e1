"""The SGD update's native path computes what the portable one does, in
place where arrays are mutable."""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from portnn.ops.axpy import sub_scaled, sub_scaled_portable

from .conftest import to_np


def _torch():
    try:
        return portnn.backends.get("torch")
    except portnn.backends.BackendUnavailableError:
        pytest.skip("torch is not installed (it registers a native sub_scaled)")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("alpha", [0.1, 3, -0.5])
def test_native_sub_scaled_equals_the_portable_path(dtype, alpha):
    b = _torch()
    rs = np.random.default_rng(0)
    ps, gs = rs.normal(size=(2, 7, 5)).astype(dtype)
    p = b.asarray(ps.copy())
    out = b.native["sub_scaled"](p, b.asarray(gs), alpha)
    expect = to_np(sub_scaled_portable(b.asarray(ps.copy()), b.asarray(gs), alpha))
    assert out is p  # in place, as the portable path on mutable arrays
    tol = {"float64": 1e-15, "float32": 1e-6}[dtype]
    np.testing.assert_allclose(to_np(out), expect, rtol=tol, atol=tol)


def test_sub_scaled_dispatches_per_backend():
    p = np.ones(3)
    assert sub_scaled(p, np.ones(3), 0.5) is p  # NumPy: portable, in place
    np.testing.assert_array_equal(p, 0.5)
    b = _torch()
    t = b.asarray(np.ones(3))
    assert sub_scaled(t, b.asarray(np.ones(3)), 0.25) is t
    np.testing.assert_array_equal(to_np(t), 0.75)
    # a step size held in a tensor takes the portable arithmetic
    lr = b.asarray(np.asarray(0.25))
    assert to_np(b.native["sub_scaled"](t, b.asarray(np.ones(3)), lr)).tolist() == \
        [0.5, 0.5, 0.5]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_plain_sgd_updates_exactly_and_follows_a_changed_rate(backend, dtype):
    """Plain SGD multiplies by its rate held as a 0-d array (NumPy converts
    a Python float on every product): the update equals the one with the
    Python float (:func:`sub_scaled`) bit for bit, in the parameter's
    dtype, and a new rate (a schedule, ``ReduceLROnPlateau``) is used at
    the next step, not a stale copy."""
    b = backend
    if not hasattr(b.xp, dtype):
        pytest.skip(f"{b.name} has no {dtype}")
    rs = np.random.default_rng(1)
    ps, gs = rs.normal(size=(2, 4, 3)).astype(dtype)
    p = portnn.Parameter(b.asarray(ps.copy()))
    expect = b.asarray(ps.copy())
    opt = portnn.SGD([p], lr=0.1)
    for lr in (0.1, 0.1, 0.03, 0.5):
        opt.lr = lr
        p.grad = b.asarray(gs)
        opt.step()
        expect = sub_scaled(expect, b.asarray(gs), lr)
        got = to_np(p.value)
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, to_np(expect))


def test_plain_sgd_rate_follows_the_parameters_device():
    """The kept 0-d rate is made again when the parameters move to another
    device (a stale one there would fail, or copy on every step)."""
    strict = pytest.importorskip("array_api_strict")
    p = portnn.Parameter(strict.asarray([1.0, 2.0]))
    opt = portnn.SGD([p], lr=0.5)
    p.grad = strict.ones_like(p.value)
    opt.step()
    other = strict.Device("device1")
    p.value = strict.asarray([1.0, 2.0], device=other)
    p.grad = strict.ones_like(p.value)
    opt.step()
    assert p.value.device == other
    assert to_np(p.value).tolist() == [0.5, 1.5]
