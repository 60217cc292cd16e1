"""`Dropout`: inverted dropout, the identity in evaluation."""

from __future__ import annotations

from .._namespace import namespace
from ..backends import backend_of
from ..random import global_generator
from .activations import Activation
from .base import is_half


class Dropout(Activation):
    """Zero each element with probability `p` while training and scale the
    rest by ``1 / (1 - p)``, so evaluation needs no rescaling.

    Parameters
    ----------
    p : float
        Drop probability, in ``[0, 1)``.
    rng : portnn.random.Generator, optional
        Source of the masks (default: the global generator, so
        ``portnn.seed`` fixes them on every backend).

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().xp.ones((2, 4))
    >>> bool((portnn.Dropout(0.5)(x) == x).all())  # eval mode: identity
    True
    """

    _cache_attrs = ("_mask",)

    def __init__(self, p: float = 0.5, rng=None) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            msg = f"Dropout: p must be in [0, 1), got {p!r}"
            raise ValueError(msg)
        self.p = float(p)
        self.rng = rng

    def forward(self, x, training=False):
        if not training or self.p == 0.0:
            self._mask = None
            return x
        xp = namespace(x)
        rng = self.rng or global_generator()
        backend = backend_of(x) or self.backend
        # a half type cannot hold the 24 random bits: draw float32 masks then
        draw = xp.float32 if is_half(xp, x.dtype) else x.dtype
        u = rng.uniform(tuple(x.shape), dtype=draw, backend=backend)
        # The mask already holds the 1/(1-p) scale: backward is one product.
        self._mask = mask = xp.astype(u >= self.p, x.dtype) * (1.0 / (1.0 - self.p))
        return x * mask

    def backward(self, dy):
        if self._mask is None:
            return dy
        return dy * self._mask

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"
