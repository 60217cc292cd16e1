"""Weight initializers.

Each initializer is ``init(shape, *, backend=None, dtype=None, rng=None)``
and draws from portnn's counter-based generator, so one seed gives the same
weights on every backend. Fans follow PyTorch: for a 2-D shape
``(in_features, out_features)`` (portnn's Dense layout) ``fan_in = shape[0]``;
for a convolution kernel ``(out, in, *k)`` ``fan_in = in * prod(k)``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from . import config
from .backends import get_backend
from .random import global_generator

__all__ = [
    "Unallocated",
    "deferred",
    "get",
    "zeros",
    "ones",
    "normal",
    "uniform",
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
]


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of this shape."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


class Unallocated:
    """What an initializer returns inside :func:`deferred`: the shape and
    dtype of a weight, no memory and no random draw. Loading a checkpoint
    builds the model so, checks every stored shape against these, and only
    then reads the stored arrays into their places.

    Examples
    --------
    >>> from portnn import init
    >>> with init.deferred():
    ...     w = init.he_normal((3, 4))
    >>> type(w).__name__, w.shape
    ('Unallocated', (3, 4))
    """

    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype) -> None:
        # None: a size a lazy layer learns from its first input
        self.shape = tuple(None if s is None else int(s) for s in (
            (shape,) if isinstance(shape, int) else shape))
        self.dtype = dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        name = getattr(self.dtype, "__name__", str(self.dtype))
        return f"Unallocated(shape={self.shape}, dtype={name.removeprefix('torch.')})"


_deferred: ContextVar[bool] = ContextVar("portnn_deferred_init", default=False)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Build layers without weights: initializers return :class:`Unallocated`
    placeholders (no allocation, no draw from the generator).

    Examples
    --------
    >>> import portnn
    >>> with portnn.init.deferred():
    ...     layer = portnn.Dense(10**6, 10**6)
    >>> layer.W.value
    Unallocated(shape=(1000000, 1000000), dtype=float32)
    """
    token = _deferred.set(True)
    try:
        yield
    finally:
        _deferred.reset(token)


def _setup(backend, dtype, rng):
    backend = backend or get_backend()
    dtype = config.float_dtype(backend) if dtype is None else dtype
    if isinstance(dtype, str):
        dtype = backend.dtype(dtype)
    return backend, dtype, rng or global_generator()


def zeros(shape, *, backend=None, dtype=None, rng=None):
    """All zeros (the usual bias initializer).

    Examples
    --------
    >>> from portnn import init
    >>> w = init.zeros((2, 3))
    >>> w.tolist()
    [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    backend, dtype, _ = _setup(backend, dtype, rng)
    if _deferred.get():
        return Unallocated(shape, dtype)
    return backend.xp.zeros(shape, dtype=dtype, device=backend.device)


def ones(shape, *, backend=None, dtype=None, rng=None):
    """All ones (normalization scales).

    Examples
    --------
    >>> from portnn import init
    >>> w = init.ones((3,))
    >>> w.tolist()
    [1.0, 1.0, 1.0]
    """
    backend, dtype, _ = _setup(backend, dtype, rng)
    if _deferred.get():
        return Unallocated(shape, dtype)
    return backend.xp.ones(shape, dtype=dtype, device=backend.device)


def normal(shape, std: float = 0.01, *, backend=None, dtype=None, rng=None):
    """``N(0, std**2)``; the classic tutorials' ``randn * 0.01``.

    Examples
    --------
    >>> from portnn import init
    >>> w = init.normal((100, 200), std=0.01)
    >>> 0.009 < float(w.std()) < 0.011
    True
    """
    backend, dtype, rng = _setup(backend, dtype, rng)
    if _deferred.get():
        return Unallocated(shape, dtype)
    return rng.normal(shape, std=std, dtype=dtype, backend=backend)


def uniform(shape, bound: float = 0.05, *, backend=None, dtype=None, rng=None):
    """``U(-bound, bound)``.

    Examples
    --------
    >>> from portnn import init
    >>> w = init.uniform((100, 200), bound=0.05)
    >>> float(abs(w).max()) <= 0.05
    True
    """
    backend, dtype, rng = _setup(backend, dtype, rng)
    if _deferred.get():
        return Unallocated(shape, dtype)
    return rng.uniform(shape, -bound, bound, dtype=dtype, backend=backend)


def glorot_uniform(shape, *, backend=None, dtype=None, rng=None):
    """Glorot/Xavier uniform: ``U(-a, a)``, ``a = sqrt(6 / (fan_in + fan_out))``.

    Examples
    --------
    >>> from portnn import init
    >>> w = init.glorot_uniform((100, 200))
    >>> float(abs(w).max()) <= (6 / (100 + 200)) ** 0.5
    True
    """
    fan_in, fan_out = fans(tuple(shape))
    a = math.sqrt(6.0 / (fan_in + fan_out))
    return uniform(shape, a, backend=backend, dtype=dtype, rng=rng)


def glorot_normal(shape, *, backend=None, dtype=None, rng=None):
    """Glorot/Xavier normal: std ``sqrt(2 / (fan_in + fan_out))``.

    Examples
    --------
    >>> from portnn import init
    >>> w = init.glorot_normal((100, 200))
    >>> abs(float(w.std()) - (2 / (100 + 200)) ** 0.5) < 0.005
    True
    """
    fan_in, fan_out = fans(tuple(shape))
    std = math.sqrt(2.0 / (fan_in + fan_out))
    return normal(shape, std, backend=backend, dtype=dtype, rng=rng)


def he_uniform(shape, *, backend=None, dtype=None, rng=None):
    """He/Kaiming uniform for ReLU: ``U(-a, a)``, ``a = sqrt(6 / fan_in)``.

    Examples
    --------
    >>> from portnn import init
    >>> w = init.he_uniform((100, 200))
    >>> float(abs(w).max()) <= (6 / 100) ** 0.5
    True
    """
    fan_in, _ = fans(tuple(shape))
    return uniform(shape, math.sqrt(6.0 / fan_in), backend=backend, dtype=dtype,
                   rng=rng)


def he_normal(shape, *, backend=None, dtype=None, rng=None):
    """He/Kaiming normal for ReLU: std ``sqrt(2 / fan_in)``.

    Examples
    --------
    >>> from portnn import init
    >>> w = init.he_normal((100, 200))
    >>> abs(float(w.std()) - (2 / 100) ** 0.5) < 0.005
    True
    """
    fan_in, _ = fans(tuple(shape))
    return normal(shape, math.sqrt(2.0 / fan_in), backend=backend, dtype=dtype,
                  rng=rng)


def lecun_uniform(shape, *, backend=None, dtype=None, rng=None):
    """LeCun uniform: ``U(-a, a)``, ``a = sqrt(3 / fan_in)``.

    Examples
    --------
    >>> from portnn import init
    >>> w = init.lecun_uniform((100, 200))
    >>> float(abs(w).max()) <= (3 / 100) ** 0.5
    True
    """
    fan_in, _ = fans(tuple(shape))
    return uniform(shape, math.sqrt(3.0 / fan_in), backend=backend, dtype=dtype,
                   rng=rng)


def lecun_normal(shape, *, backend=None, dtype=None, rng=None):
    """LeCun normal (for SELU-like activations): std ``sqrt(1 / fan_in)``.

    Examples
    --------
    >>> from portnn import init
    >>> w = init.lecun_normal((100, 200))
    >>> abs(float(w.std()) - (1 / 100) ** 0.5) < 0.005
    True
    """
    fan_in, _ = fans(tuple(shape))
    return normal(shape, math.sqrt(1.0 / fan_in), backend=backend, dtype=dtype,
                  rng=rng)


_REGISTRY: dict[str, Callable] = {
    "zeros": zeros,
    "ones": ones,
    "normal": normal,
    "uniform": uniform,
    "glorot_uniform": glorot_uniform,
    "xavier_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "xavier_normal": glorot_normal,
    "he_uniform": he_uniform,
    "kaiming_uniform": he_uniform,
    "he_normal": he_normal,
    "kaiming_normal": he_normal,
    "lecun_uniform": lecun_uniform,
    "lecun_normal": lecun_normal,
}


def get(init: str | Callable) -> Callable:
    """Look an initializer up by name (callables pass through).

    Examples
    --------
    >>> from portnn import init
    >>> init.get("kaiming_normal") is init.he_normal
    True
    """
    if callable(init):
        return init
    try:
        return _REGISTRY[init]
    except KeyError:
        msg = f"unknown initializer {init!r}; choose one of {sorted(_REGISTRY)}"
        raise ValueError(msg) from None
