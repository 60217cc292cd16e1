"""Every native LSTM gate activation computes what the portable one does."""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from portnn.ops.lstm import PORTABLE, lstm_gates_impl

from .conftest import to_np


def _natives():
    try:
        torch_backend = portnn.backends.get("torch")
    except portnn.backends.BackendUnavailableError:
        return [pytest.param(None, None, marks=pytest.mark.skip(
            reason="no backend here registers native LSTM gates (torch does)"))]
    return [pytest.param("torch", torch_backend.native["lstm_gates"], id="torch")]


def _rows(b, hs, dtype):
    scale = np.repeat([0.5, 0.5, 1.0, 0.5], hs).astype(dtype)
    shift = np.repeat([0.5, 0.5, 0.0, 0.5], hs).astype(dtype)
    return b.asarray(scale), b.asarray(shift)


@pytest.mark.parametrize(("spec", "native"), _natives())
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_native_lstm_gates_equal_the_portable_ones(spec, native, dtype):
    b = portnn.backends.get(spec)
    hs = 5
    rs = np.random.default_rng(0)
    a = rs.normal(scale=4.0, size=(6, 4 * hs)).astype(dtype)
    a[0, :4] = [0.0, 40.0, -40.0, -0.0]  # saturated and centred gates
    scale, shift = _rows(b, hs, dtype)
    expect = 1.0 / (1.0 + np.exp(-a.astype(np.float64)))
    expect[:, 2 * hs:3 * hs] = np.tanh(a[:, 2 * hs:3 * hs].astype(np.float64))
    got = native(b.asarray(a.copy()), scale, shift)
    portable = PORTABLE(b.asarray(a.copy()), scale, shift)
    assert got.dtype == portable.dtype == b.asarray(a).dtype
    tol = {"float64": 1e-14, "float32": 1e-6}[dtype]
    np.testing.assert_allclose(to_np(got), to_np(portable), rtol=tol, atol=tol)
    np.testing.assert_allclose(to_np(got), expect, rtol=tol, atol=tol)


def test_the_lstm_uses_the_backends_gates():
    assert lstm_gates_impl(portnn.backends.get("numpy").asarray([1.0])) is PORTABLE
    try:
        torch_backend = portnn.backends.get("torch")
    except portnn.backends.BackendUnavailableError:
        pytest.skip("torch is not installed")
    native = torch_backend.native["lstm_gates"]
    assert lstm_gates_impl(torch_backend.asarray([1.0])) is native
