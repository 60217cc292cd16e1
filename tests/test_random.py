"""The counter-based generator: one seed, one stream, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from portnn.random import Generator

from .conftest import to_np


def _reference(name):
    with portnn.use_backend(name) as b:
        g = Generator(123)
        return {
            "bits": to_np(g.bits(1000, b)),
            "u32": to_np(g.uniform((50, 20), dtype="float32", backend=b)),
            "u64": to_np(g.uniform((7, 3), dtype="float64", backend=b)),
            "normal": to_np(g.normal((100,), dtype="float64", backend=b)),
            "perm": to_np(g.permutation(257, backend=b)),
            "ints": to_np(g.integers(-3, 9, (40,), backend=b)),
        }


def test_streams_are_identical_on_every_backend(backend):
    ref = _reference("numpy")
    got = _reference(backend.spec)
    for key in ("bits", "u32", "u64", "perm", "ints"):
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)
    np.testing.assert_allclose(got["normal"], ref["normal"], rtol=1e-12, atol=1e-12)


def test_uniform_range_and_moments(backend):
    u = to_np(Generator(7).uniform((100_000,), backend=backend))
    assert u.dtype == np.float32
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.005
    assert abs(u.var() - 1 / 12) < 0.002
    # 24-bit resolution: plenty of distinct values, no visible lattice
    assert len(np.unique(u)) > 99_000


def test_bits_are_uniform_over_bytes():
    bits = to_np(Generator(1).bits(200_000))
    counts = np.bincount((bits & 0xFF).astype(np.int64), minlength=256)
    expected = len(bits) / 256
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 400  # 255 degrees of freedom; a broken mixer gives thousands


def test_neighbouring_seeds_are_uncorrelated():
    a = to_np(Generator(0).uniform((10_000,), dtype="float64"))
    b = to_np(Generator(1).uniform((10_000,), dtype="float64"))
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.05


def test_seed_reproduces_and_state_restores():
    portnn.seed(5)
    a = to_np(portnn.random.global_generator().uniform((10,)))
    state = portnn.random.get_state()
    b = to_np(portnn.random.global_generator().uniform((10,)))
    portnn.random.set_state(state)
    c = to_np(portnn.random.global_generator().uniform((10,)))
    portnn.seed(5)
    d = to_np(portnn.random.global_generator().uniform((10,)))
    np.testing.assert_array_equal(a, d)
    np.testing.assert_array_equal(b, c)
    assert not np.array_equal(a, b)


def test_counter_crossing_2_to_32_stays_distinct():
    g = Generator(3)
    g.counter = 2**32 - 5
    bits = to_np(g.bits(10))
    g2 = Generator(3)
    low = to_np(g2.bits(10))
    assert len(set(bits.tolist())) == 10
    assert not set(bits.tolist()) & set(low.tolist())


def test_permutation_is_a_permutation(backend):
    p = to_np(Generator(2).permutation(1000, backend=backend))
    assert sorted(p.tolist()) == list(range(1000))


@pytest.mark.parametrize("bad", [-1, 1.5, "x"])
def test_bad_seed_is_rejected(bad):
    with pytest.raises(ValueError, match="seed"):
        portnn.seed(bad)


def test_threads_after_a_seed_draw_reproducible_streams():
    import threading

    def build(out, i):
        out[i] = [to_np(portnn.Dense(30, 30).W.value) for _ in range(10)]

    totals = []
    for _ in range(4):
        portnn.seed(0)
        out = {}
        threads = [threading.Thread(target=build, args=(out, i)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # each thread starts from seed 0: the same weights, whatever the timing
        for a, b in zip(out[0], out[1], strict=True):
            np.testing.assert_array_equal(a, b)
        totals.append(float(np.sum(out[0])))
    assert len(set(totals)) == 1


def test_a_thread_seeding_leaves_the_other_threads_stream_alone():
    import threading

    portnn.seed(7)
    first = portnn.random.get_state()
    t = threading.Thread(target=lambda: portnn.random.set_state({"seed": 1,
                                                                 "counter": 99}))
    t.start()
    t.join()
    assert portnn.random.get_state() == first
