"""The NumPy adapter's native sum (``numpy.add.reduce``) equals the portable
``xp.sum`` bit for bit, and every backend's sum goes through `total`."""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from portnn.ops.reduce import total, total_portable

from .conftest import to_np


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize("axis", [None, 0, 1])
def test_numpy_native_sum_equals_the_portable_path_bit_for_bit(dtype, axis):
    b = portnn.backends.get("numpy")
    x = np.random.default_rng(0).normal(size=(1000, 37)).astype(dtype)
    native = b.native["sum"](x, axis)
    portable = total_portable(b.asarray(x), axis)
    assert native.dtype == portable.dtype
    np.testing.assert_array_equal(native, portable)


def test_total_runs_on_every_backend(backend):
    x = backend.asarray(np.arange(12.0).reshape(3, 4))
    np.testing.assert_array_equal(to_np(total(x, axis=0)), [12.0, 15.0, 18.0, 21.0])
    assert float(total(x)) == 66.0
