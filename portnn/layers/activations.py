"""Element-wise activations, each with its derivative written next to it."""

from __future__ import annotations

from .._namespace import namespace
from ..ops.gelu import gelu_impl
from ..ops.relu import relu_impl
from .base import Layer, upcast

__all__ = [
    "Identity",
    "Sigmoid",
    "Tanh",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "GELU",
    "Softmax",
    "get",
]


class Activation(Layer):
    """An activation: no parameters; `init` names the weight initializer that
    suits the layer feeding it."""

    init = "glorot_uniform"
    supports_masking = True  # element-wise: a padded step stays one

    def __init__(self) -> None:
        # Activations take their namespace from the data, not from a backend.
        self._params = {}
        self._buffers = {}

    @property
    def backend(self):
        from ..backends import get_backend

        return get_backend()

    def get_config(self) -> dict:
        """Constructor arguments (the public attributes, for these layers)."""
        return {k: v for k, v in vars(self).items()
                if not k.startswith("_") and k != "rng"}


class Identity(Activation):
    """``y = x``.

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().asarray([1.0, -2.0])
    >>> portnn.Identity()(x).tolist()
    [1.0, -2.0]
    """

    def forward(self, x, training=False):
        return x

    def backward(self, dy):
        return dy


class Sigmoid(Activation):
    """``y = 1 / (1 + exp(-x))``; ``dy/dx = y (1 - y)``.

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().asarray([0.0])
    >>> portnn.Sigmoid()(x).tolist()
    [0.5]
    """

    _cache_attrs = ("_y",)

    def forward(self, x, training=False):
        xp = namespace(x)
        # NOTE: exp(-|x|) never overflows; both branches agree with the formula.
        e = xp.exp(-xp.abs(x))
        self._y = y = xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        return y

    def backward(self, dy):
        y = self._y
        return dy * (y * (1.0 - y))


class Tanh(Activation):
    """``y = tanh(x)``; ``dy/dx = 1 - y**2``."""

    _cache_attrs = ("_y",)

    def forward(self, x, training=False):
        self._y = y = namespace(x).tanh(x)
        return y

    def backward(self, dy):
        y = self._y
        return dy * (1.0 - y * y)


class ReLU(Activation):
    """``y = max(x, 0)``; the gradient passes where ``x > 0``.

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().asarray([-1.0, 2.0])
    >>> portnn.ReLU()(x).tolist()
    [0.0, 2.0]
    """

    _cache_attrs = ("_ctx", "_impl")

    init = "he_uniform"

    def forward(self, x, training=False):
        # the backend's kernels where it has them (portnn.ops.relu)
        self._impl = relu_impl(x)
        y, self._ctx = self._impl.forward(x)
        return y

    def backward(self, dy):
        return self._impl.input_grad(self._ctx, dy)


class LeakyReLU(Activation):
    """``y = x`` for ``x > 0`` else ``negative_slope * x``."""

    _cache_attrs = ("_mask",)

    init = "he_uniform"

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x, training=False):
        xp = namespace(x)
        self._mask = mask = x > 0
        return xp.where(mask, x, x * self.negative_slope)

    def backward(self, dy):
        return namespace(dy).where(self._mask, dy, dy * self.negative_slope)

    def __repr__(self):
        return f"LeakyReLU(negative_slope={self.negative_slope})"


class ELU(Activation):
    """``y = x`` for ``x > 0`` else ``alpha (exp(x) - 1)``; there
    ``dy/dx = y + alpha``."""

    _cache_attrs = ("_mask", "_y")

    init = "he_uniform"

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x, training=False):
        xp = namespace(x)
        self._mask = mask = x > 0
        # NOTE: expm1 of min(x, 0) keeps the unused branch from overflowing.
        neg = self.alpha * xp.expm1(xp.minimum(x, 0.0))
        self._y = y = xp.where(mask, x, neg)
        return y

    def backward(self, dy):
        xp = namespace(dy)
        return xp.where(self._mask, dy, dy * (self._y + self.alpha))

    def __repr__(self):
        return f"ELU(alpha={self.alpha})"


class GELU(Activation):
    """GELU, tanh form (as ``torch.nn.GELU(approximate="tanh")``).

    ``y = x/2 (1 + t)`` with ``t = tanh(k (x + c x**3))``, so
    ``dy/dx = (1 + t)/2 + x/2 (1 - t**2) k (1 + 3 c x**2)``
    (:mod:`portnn.ops.gelu`, where a backend may put its kernels).
    """

    _cache_attrs = ("_ctx", "_impl")

    init = "he_uniform"

    def forward(self, x, training=False):
        self._impl = gelu_impl(x)
        y, self._ctx = self._impl.forward(x)
        return y

    def backward(self, dy):
        return self._impl.input_grad(self._ctx, dy)


class Softmax(Activation):
    """Softmax over `axis`: ``y = exp(x - max x) / sum exp(x - max x)``.

    Backward: ``dx = y (dy - sum(dy * y))``. For classification prefer
    :class:`portnn.CrossEntropy` on logits, which fuses this gradient.
    """

    _cache_attrs = ("_y",)

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        self.axis = axis

    @property
    def supports_masking(self) -> bool:
        # over the features of each step; over time it would mix padding in
        return self.axis == -1 or self.axis >= 2

    def forward(self, x, training=False):
        xp = namespace(x)
        dtype = x.dtype
        x = upcast(xp, x)  # float32 under mixed precision
        # NOTE: subtracting the max keeps exp from overflowing; softmax is
        # invariant to the shift.
        e = xp.exp(x - xp.max(x, axis=self.axis, keepdims=True))
        self._y = y = e / xp.sum(e, axis=self.axis, keepdims=True)
        return xp.astype(y, dtype, copy=False)

    def backward(self, dy):
        xp = namespace(dy)
        y = self._y
        d = upcast(xp, dy)
        dx = y * (d - xp.sum(d * y, axis=self.axis, keepdims=True))
        return xp.astype(dx, dy.dtype, copy=False)


_BY_NAME = {
    "identity": Identity,
    "linear": Identity,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "elu": ELU,
    "gelu": GELU,
    "softmax": Softmax,
}


def get(activation) -> Activation:
    """An activation layer from a name (``"relu"``), a class or an instance."""
    if isinstance(activation, Layer):
        return activation
    if isinstance(activation, type) and issubclass(activation, Layer):
        return activation()
    try:
        return _BY_NAME[activation]()
    except (KeyError, TypeError):
        msg = f"unknown activation {activation!r}; choose one of {sorted(_BY_NAME)}"
        raise ValueError(msg) from None
