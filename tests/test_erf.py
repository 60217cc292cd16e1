"""The portable error function against math.erf, and every backend's
native one against the portable path."""

from __future__ import annotations

import math

import numpy as np

from portnn.ops.erf import erf, erf_portable

from .conftest import to_np


def test_portable_erf_is_float64_accurate_over_a_wide_range():
    x = np.concatenate([np.linspace(-8.0, 8.0, 100_001),
                        [1e-300, -1e-12, 1e-5, 1.9999999, 2.0, 2.0000001, 27.0,
                         -40.0]])
    want = np.array([math.erf(v) for v in x])
    got = erf_portable(x)
    ulps = np.abs(got - want) / np.spacing(np.abs(want))
    assert ulps.max() <= 10  # the docstring's figure
    assert erf_portable(np.array([np.inf, -np.inf])).tolist() == [1.0, -1.0]
    assert np.isnan(erf_portable(np.array([np.nan]))[0])


def test_portable_erf_keeps_float32():
    x = np.linspace(-4, 4, 1001, dtype=np.float32)
    got = erf_portable(x)
    assert got.dtype == np.float32
    want = np.array([math.erf(v) for v in x.astype(np.float64)])
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_each_backends_erf_equals_the_portable_path(backend):
    x = np.linspace(-6.0, 6.0, 1201)
    native = to_np(erf(backend.asarray(x)))
    portable = to_np(erf_portable(backend.asarray(x)))
    np.testing.assert_allclose(native, portable, rtol=2e-15, atol=1e-16)
