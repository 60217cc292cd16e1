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

    def forward(self, x, training=False):
        self._begin_calls()
        y = self._forward_child(self.layer, x, training)
        if tuple(y.shape) != tuple(x.shape):
            msg = (
                f"Residual: the wrapped {type(self.layer).__name__} must keep the "
                f"input shape {tuple(x.shape)}, but returned shape {tuple(y.shape)}"
            )
            raise ValueError(msg)
        return x + y

    def backward(self, dy):
        return dy + self._backward_child(self.layer, dy)

    def get_config(self) -> dict:
        """No arguments of its own: the wrapped layer is stored as a child."""
        return {}

    def __repr__(self) -> str:
        return f"Residual({self.layer!r})"
