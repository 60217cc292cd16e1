"""`Dropout`: inverted dropout, the identity in evaluation."""

from __future__ import annotations

from .._namespace import namespace
from ..backends import backend_of
from ..random import global_generator
from .activations import Activation
from .base import is_half
from .resampling import check_channels_first


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
        u = rng.uniform(self._mask_shape(x), dtype=draw, backend=backend)
        # The mask already holds the 1/(1-p) scale: backward is one product.
        self._mask = mask = xp.astype(u >= self.p, x.dtype) * (1.0 / (1.0 - self.p))
        return x * mask

    def _mask_shape(self, x) -> tuple:
        """One draw per element."""
        return tuple(x.shape)

    def backward(self, dy):
        if self._mask is None:
            return dy
        return dy * self._mask

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


class SpatialDropout1D(Dropout):
    """Drop whole channels of ``(batch, channels, length)`` input with
    probability `p` while training (``torch.nn.Dropout1d``): neighbouring
    positions are correlated, so dropping them one by one regularizes
    little. One draw per sample and channel, scaled by ``1 / (1 - p)``;
    the backward multiplies by the same mask.

    Examples
    --------
    >>> import portnn
    >>> portnn.seed(0)
    >>> x = portnn.get_backend().xp.ones((1, 8, 5))
    >>> y = portnn.SpatialDropout1D(0.5)(x, training=True)
    >>> sorted({float(v) for v in y[0, :, 0]}), bool((y == y[:, :, :1]).all())
    ([0.0, 2.0], True)
    """

    nd = 1
    supports_masking = False  # channels first: axis 2 is the time

    def _mask_shape(self, x) -> tuple:
        check_channels_first(self, x, self.nd)
        return (int(x.shape[0]), int(x.shape[1])) + (1,) * self.nd


class SpatialDropout2D(SpatialDropout1D):
    """Drop whole channels of ``(batch, channels, height, width)`` input
    (``torch.nn.Dropout2d``); see :class:`SpatialDropout1D`.

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().xp.ones((2, 3, 4, 4))
    >>> portnn.SpatialDropout2D(0.3)(x, training=True).shape
    (2, 3, 4, 4)
    """

    nd = 2
