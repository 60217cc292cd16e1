"""`Masking`: mark the padded steps of a float sequence."""

from __future__ import annotations

from .._namespace import namespace
from .activations import Activation


class Masking(Activation):
    """Keras's ``Masking``: a step whose features all equal `mask_value`
    is padding. The output is the input with those steps zeroed, and it
    carries a mask (True at the real steps) for the layers after it (see
    ``Embedding(mask_zero=True)``), for sequences of floats rather than
    token ids.

    Parameters
    ----------
    mask_value : float
        The value every feature of a padded step holds.

    Examples
    --------
    >>> import portnn
    >>> xp = portnn.get_backend().xp
    >>> x = xp.asarray([[[1.0, 2.0], [0.0, 0.0]]])
    >>> layer = portnn.Masking()
    >>> y = layer(x)
    >>> [bool(v) for v in layer.compute_mask(x, None)[0]]
    [True, False]
    """

    _cache_attrs = ("_keep",)
    makes_mask = True

    def __init__(self, mask_value: float = 0.0) -> None:
        super().__init__()
        self.mask_value = float(mask_value)

    def compute_mask(self, x, mask):
        """True where any feature differs from `mask_value`."""
        xp = namespace(x)
        real = xp.any(x != self.mask_value, axis=-1)
        return real if mask is None else real & mask

    def forward(self, x, training=False):
        if x.ndim != 3:
            msg = (f"Masking: expected a sequence (batch, time, features), got shape "
                   f"{tuple(x.shape)}")
            raise ValueError(msg)
        xp = namespace(x)
        self._keep = xp.astype(xp.expand_dims(self.compute_mask(x, None), -1), x.dtype)
        return x * self._keep

    def backward(self, dy):
        return dy * self._keep

    def get_config(self) -> dict:
        """The mask value."""
        return {"mask_value": self.mask_value}

    def __repr__(self) -> str:
        return f"Masking(mask_value={self.mask_value})"
