"""`Residual`: ``y = x + f(x)``, the skip connection of ResNets and
Transformers."""

from __future__ import annotations

from .base import Layer


class Residual(Layer):
    """Add the input to the output of a layer: ``y = x + layer(x)``.

    The backward is the chain rule through the sum: the gradient flows to
    the input twice, straight and through `layer`.

    Parameters
    ----------
    layer : Layer
        Must keep the shape of its input (use a :class:`Sequential` to wrap
        several layers).

    Examples
    --------
    >>> import portnn
    >>> block = portnn.Residual(portnn.Dense(4, 4))
    >>> x = portnn.get_backend().xp.ones((2, 4), dtype=block.layer.W.dtype)
    >>> block(x).shape
    (2, 4)
    """

    def __init__(self, layer: Layer) -> None:
        if not isinstance(layer, Layer):
            msg = f"Residual wraps a Layer, got {type(layer).__name__}"
            raise TypeError(msg)
        super().__init__(layer.backend)
        self.layer = layer
        layer._uses += 1

    def children(self) -> list[Layer]:
        return [self.layer]

    def check_input(self, x) -> None:
        """The wrapped layer sees the input: it checks it."""
        self.layer.check_input(x)

    _cache_attrs = ("_child_calls",)
    _call_outputs = ("_out_mask",)
    uses_mask = True

    def forward(self, x, training=False, mask=None):
        self.begin_calls()
        if mask is None and not self.layer.makes_mask:
            y = self.forward_child(self.layer, x, training)
            self._keep_mask(None)
        else:  # real where both x and the block's output are
            y, inner = self._forward_masked(self.layer, x, training, mask)
            self._keep_mask(mask if inner is None else (
                inner if mask is None else mask & inner))
        if tuple(y.shape) != tuple(x.shape):
            msg = (
                f"Residual: the wrapped {type(self.layer).__name__} must keep the "
                f"input shape {tuple(x.shape)}, but returned shape {tuple(y.shape)}"
            )
            raise ValueError(msg)
        return x + y

    @property
    def makes_mask(self) -> bool:
        return self.layer.makes_mask

    def compute_mask(self, x, mask):
        """The mask the last forward ended with."""
        return self.__dict__.get("_out_mask")

    def backward(self, dy):
        return dy + self.backward_child(self.layer, dy)

    def get_config(self) -> dict:
        """No arguments of its own: the wrapped layer is stored as a child."""
        return {}

    def __repr__(self) -> str:
        return f"Residual({self.layer!r})"
