"""A counter-based random number generator written in standard integer ops.

Every draw is a pure function of ``(seed, counter)``: the counter of each
element is hashed with the seed by two rounds of a 32-bit integer mixer
(Chris Wellons' *lowbias32*). The arithmetic uses only int64 array ops that
every array-API library computes exactly, so one seed gives bit-identical
uniform streams on NumPy, CuPy, PyTorch and array-api-strict, and normals
(Box-Muller) equal to floating-point tolerance.

NOTE: 32-bit multiplication modulo 2**32 is done on 16-bit halves, so no
intermediate exceeds 2**49 and signed overflow (undefined on some devices)
never happens.
"""

from __future__ import annotations

import math
import os
import threading
from contextvars import ContextVar
from typing import Any

from . import config
from .backends import get_backend

_MASK32 = 0xFFFFFFFF
_M1 = 0x7FEB352D
_M2 = 0x846CA68B


def _mul32(x, c: int):
    """``(x * c) mod 2**32`` for int64 arrays holding values below 2**32."""
    lo = x & 0xFFFF
    hi = x >> 16
    return (lo * c + (((hi * c) & 0xFFFF) << 16)) & _MASK32


def _mix(x):
    """lowbias32: a bijective 32-bit integer hash with a low avalanche bias."""
    x = x ^ (x >> 16)
    x = _mul32(x, _M1)
    x = x ^ (x >> 15)
    x = _mul32(x, _M2)
    return x ^ (x >> 16)


def _mix_int(v: int) -> int:
    """The same hash on a Python int (for keys derived from the seed)."""
    v &= _MASK32
    v ^= v >> 16
    v = (v * _M1) & _MASK32
    v ^= v >> 15
    v = (v * _M2) & _MASK32
    return v ^ (v >> 16)


def _shape_size(shape) -> tuple[tuple[int, ...], int]:
    if isinstance(shape, int):
        shape = (shape,)
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        msg = f"random shapes must be non-negative, got {shape}"
        raise ValueError(msg)
    return shape, math.prod(shape)


class Generator:
    """A reproducible stream of random numbers, identical on every backend.

    Parameters
    ----------
    seed : int, optional
        Any non-negative integer. ``None`` draws one from the OS.

    Examples
    --------
    >>> from portnn.random import Generator
    >>> g = Generator(42)
    >>> u = g.uniform((2, 3))
    >>> u.shape
    (2, 3)
    >>> Generator(42).uniform((2, 3)).tolist() == u.tolist()
    True
    """

    def __init__(self, seed: int | None = None) -> None:
        self.reseed(seed)

    def reseed(self, seed: int | None) -> None:
        """Restart the stream from `seed`."""
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "little")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            msg = f"seed must be a non-negative int, got {seed!r}"
            raise ValueError(msg)
        self.seed = seed
        self.counter = 0
        self._k0 = _mix_int(seed ^ 0x9E3779B9)
        self._k1 = _mix_int((seed >> 32) ^ _mix_int(seed) ^ 0x85EBCA6B)

    def get_state(self) -> dict[str, int]:
        """The generator's state, a small dict that `set_state` accepts (the
        counter a Python int also while a compiled step keeps it on the
        device)."""
        return {"seed": self.seed, "counter": int(self.counter)}

    def set_state(self, state: dict[str, int]) -> None:
        """Restore a state from `get_state`.

        Raises
        ------
        ValueError
            A counter outside ``[0, 2**62)``: draws index elements by int64
            counters, so a larger one would overflow at the next draw.
        """
        counter = state["counter"]
        if not (isinstance(counter, int) and not isinstance(counter, bool)
                and 0 <= counter < MAX_COUNTER):
            msg = f"the RNG counter must be an int in [0, 2**62), got {counter!r}"
            raise ValueError(msg)
        self.reseed(int(state["seed"]))
        self.counter = counter

    def bits(self, n: int, backend: Any = None):
        """`n` random 32-bit words as an int64 array (values in [0, 2**32))."""
        backend = backend or get_backend()
        xp = backend.xp
        with _draw_lock:  # a prefetch thread may share this generator
            start = self.counter
            # rebound, not += : while a compiled step runs, the counter is a
            # 0-d array, and torch's += would change `start` with it
            self.counter = start + n
        idx = xp.arange(n, dtype=xp.int64, device=backend.device) + start
        lo = idx & _MASK32
        hi = idx >> 32
        x = _mix(lo ^ self._k0)
        return _mix(x ^ ((hi + self._k1) & _MASK32))

    def uniform(
        self, shape, low: float = 0.0, high: float = 1.0, dtype=None, backend=None
    ):
        """Uniform floats in ``[low, high)``.

        float32 values carry 24 random bits and float64 values 53, so the
        stream is exactly the same on every backend.
        """
        backend = backend or get_backend()
        xp = backend.xp
        dtype = _resolve_dtype(backend, dtype)
        shape, n = _shape_size(shape)
        if dtype == xp.float64:
            b = self.bits(2 * n, backend)
            hi = b[:n] >> 5
            lo = b[n:] >> 6
            u = xp.astype(hi, xp.float64) * 67108864.0 + xp.astype(lo, xp.float64)
            u = u * (1.0 / 9007199254740992.0)
        else:
            u = xp.astype(self.bits(n, backend) >> 8, dtype) * (1.0 / 16777216.0)
        u = xp.reshape(u, shape)
        if low != 0.0 or high != 1.0:
            u = u * (high - low) + low
        return u

    def normal(self, shape, mean: float = 0.0, std: float = 1.0, dtype=None,
               backend=None):
        """Normally distributed floats (Box-Muller on two uniform streams)."""
        backend = backend or get_backend()
        xp = backend.xp
        dtype = _resolve_dtype(backend, dtype)
        shape, n = _shape_size(shape)
        u = self.uniform((2, n), dtype=dtype, backend=backend)
        u1 = 1.0 - u[0, :]  # in (0, 1]: log never sees 0
        z = xp.sqrt(-2.0 * xp.log(u1)) * xp.cos((2.0 * math.pi) * u[1, :])
        z = xp.reshape(z, shape)
        if mean != 0.0 or std != 1.0:
            z = z * std + mean
        return z

    def permutation(self, n: int, backend=None):
        """A random permutation of ``range(n)`` as an int64 array."""
        backend = backend or get_backend()
        # Stable sort of random keys: ties resolve by position on every backend.
        return backend.xp.argsort(self.bits(n, backend), stable=True)

    def integers(self, low: int, high: int, shape, backend=None):
        """Integers in ``[low, high)`` (high - low must be below 2**32)."""
        backend = backend or get_backend()
        span = high - low
        if not 0 < span <= 2**32:
            msg = f"need 0 < high - low <= 2**32, got low={low}, high={high}"
            raise ValueError(msg)
        shape, n = _shape_size(shape)
        # NOTE: modulo bias is below span / 2**32, negligible for ML uses.
        v = self.bits(n, backend) % span + low
        return backend.xp.reshape(v, shape)


def _resolve_dtype(backend, dtype):
    if dtype is None:
        return config.float_dtype(backend)
    if isinstance(dtype, str):
        return backend.dtype(dtype)
    return dtype


#: Counters index draws as int64: a state beyond this is refused.
MAX_COUNTER = 2**62

#: Reserves counter ranges: two threads drawing from one generator never
#: get the same numbers.
_draw_lock = threading.Lock()

#: The template a context's generator starts from: `seed` resets it, so a
#: thread started after ``seed(0)`` begins at seed 0 too.
_template = Generator()
_current: ContextVar[Generator | None] = ContextVar("portnn_generator", default=None)


def seed(n: int) -> None:
    """Seed portnn's generator: same weights, masks and shuffles on every
    backend.

    The generator is per context, as the backend is: this thread (or
    asyncio task) gets a fresh generator at seed `n`, and so does every
    thread that starts drawing after this call, each with its own stream.
    Building layers in two threads after ``seed(0)`` is reproducible.

    Examples
    --------
    >>> import portnn
    >>> portnn.seed(0)
    """
    _template.reseed(n)
    _current.set(Generator(n))


def global_generator() -> Generator:
    """The generator of the current context, which layers, initializers and
    `fit` draw from by default (created from the last `seed` on first use)."""
    generator = _current.get()
    if generator is None:
        generator = Generator()
        generator.set_state(_template.get_state())
        _current.set(generator)
    return generator


def get_state() -> dict[str, int]:
    """State of the current context's generator."""
    return global_generator().get_state()


def set_state(state: dict[str, int]) -> None:
    """Restore the current context's generator (other threads are untouched)."""
    global_generator().set_state(state)
