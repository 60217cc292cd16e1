"""Element-wise activations, each with its derivative written next to it."""

from __future__ import annotations

import math

from .._namespace import namespace
from ..ops.erf import erf
from ..ops.gelu import gelu_impl
from ..ops.relu import relu_impl
from .base import Layer, dtype_name, float_dtype, upcast

__all__ = [
    "Identity",
    "Sigmoid",
    "Tanh",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "GELU",
    "SiLU",
    "Swish",
    "Softplus",
    "Mish",
    "SELU",
    "LogSoftmax",
    "PReLU",
    "Softmax",
    "get",
]

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


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
    """``y = tanh(x)``; ``dy/dx = 1 - y**2``.

    Examples
    --------
    >>> import portnn
    >>> portnn.Tanh()(portnn.asarray([0.0, 100.0])).tolist()
    [0.0, 1.0]
    """

    _cache_attrs = ("_y",)

    def forward(self, x, training=False):
        self._y = y = namespace(x).tanh(x)
        return y

    def backward(self, dy):
        y = self._y
        # dy (1 - y^2) without the Python float: NumPy converts one on
        # every operation (a third of this backward on a small array)
        return dy - dy * y * y


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
    """``y = x`` for ``x > 0`` else ``negative_slope * x``.

    Examples
    --------
    >>> import portnn
    >>> portnn.LeakyReLU(0.1)(portnn.asarray([-2.0, 3.0])).tolist()
    [-0.2, 3.0]
    """

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
    ``dy/dx = y + alpha``.

    Examples
    --------
    >>> import portnn
    >>> y = portnn.ELU()(portnn.asarray([-100.0, 2.0]))
    >>> y.tolist()
    [-1.0, 2.0]
    """

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
    """GELU: ``x Phi(x)``, ``Phi`` the standard normal distribution function.

    Parameters
    ----------
    approximate : {"tanh", "none"}
        ``"tanh"`` (the default here, kept for the checkpoints that rely on
        it; PyTorch's default is ``"none"``): ``y = x/2 (1 + t)`` with
        ``t = tanh(k (x + c x**3))``, so ``dy/dx = (1 + t)/2 + x/2 (1 - t**2)
        k (1 + 3 c x**2)`` (:mod:`portnn.ops.gelu`, where a backend may put
        its kernels). ``"none"``: the exact ``y = x/2 (1 + erf(x/sqrt 2))``,
        ``dy/dx = Phi(x) + x phi(x)`` with ``phi(x) = exp(-x**2/2) /
        sqrt(2 pi)`` (:func:`portnn.ops.erf.erf`).

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().asarray([-1.0, 0.0, 2.0], dtype="float64")
    >>> [round(v, 6) for v in portnn.GELU(approximate="none")(x).tolist()]
    [-0.158655, 0.0, 1.9545]
    """

    _cache_attrs = ("_ctx", "_impl")

    init = "he_uniform"

    def __init__(self, approximate: str = "tanh") -> None:
        super().__init__()
        if approximate not in ("tanh", "none"):
            msg = f"GELU: approximate must be 'tanh' or 'none', got {approximate!r}"
            raise ValueError(msg)
        self.approximate = approximate

    def forward(self, x, training=False):
        if self.approximate == "none":
            cdf = 0.5 * (1.0 + erf(x * _SQRT_HALF))
            self._impl, self._ctx = None, (x, cdf)
            return x * cdf
        self._impl = gelu_impl(x)
        y, self._ctx = self._impl.forward(x)
        return y

    def backward(self, dy):
        if self._impl is None:
            x, cdf = self._ctx
            pdf = namespace(x).exp(-0.5 * x * x) * _INV_SQRT_2PI
            return dy * (cdf + x * pdf)
        return self._impl.input_grad(self._ctx, dy)

    def __repr__(self):
        return "GELU()" if self.approximate == "tanh" else "GELU(approximate='none')"


class PReLU(Layer):
    """``y = x`` for ``x > 0``, else ``a x`` with learned slopes ``a``
    (``W``, PyTorch's ``weight``): one for all, or one per channel (axis 1).
    ``dx = dy`` or ``a dy``; ``da = sum of x dy`` where ``x <= 0``.

    Parameters
    ----------
    num_parameters : int
        1, or the number of channels (axis 1 of the input).
    init : float
        The slopes' starting value (PyTorch's 0.25).
    backend, dtype : optional

    Examples
    --------
    >>> import portnn
    >>> layer = portnn.PReLU()
    >>> x = portnn.get_backend().asarray([[-2.0, 3.0]], dtype=layer.W.dtype)
    >>> layer(x).tolist()
    [[-0.5, 3.0]]
    """

    _cache_attrs = ("_x",)
    init = "he_uniform"

    def __init__(self, num_parameters: int = 1, init: float = 0.25, *,
                 backend=None, dtype=None) -> None:
        super().__init__(backend)
        if (not isinstance(num_parameters, int) or isinstance(num_parameters, bool)
                or num_parameters < 1):
            msg = ("PReLU: num_parameters must be a positive int, got "
                   f"{num_parameters!r}")
            raise ValueError(msg)
        self.num_parameters, self.init_value = num_parameters, float(init)
        self._dtype = float_dtype(self.backend, dtype)
        b = self.backend
        self.W = self.add_parameter("W", b.xp.full(
            (num_parameters,), self.init_value, dtype=self._dtype, device=b.device))

    @property
    def supports_masking(self) -> bool:
        return self.num_parameters == 1  # per channel, axis 1 would be time

    def _slopes(self, x):
        n = self.num_parameters
        if n == 1:
            return self.W.value
        if x.ndim < 2 or x.shape[1] != n:
            msg = (f"PReLU: {n} slopes need {n} channels on axis 1, got input of "
                   f"shape {tuple(x.shape)}")
            raise ValueError(msg)
        return namespace(x).reshape(self.W.value, (1, n) + (1,) * (x.ndim - 2))

    def forward(self, x, training=False):
        if type(x) is not type(self.W.value):
            self._check_backend(x, self.W)
        self._x = x
        return namespace(x).where(x > 0, x, self._slopes(x) * x)

    def backward(self, dy):
        xp = namespace(dy)
        x = self._x
        if self.W.trainable:
            part = xp.where(x > 0, 0.0, x * dy)
            axes = tuple(i for i in range(x.ndim) if not (
                self.num_parameters > 1 and i == 1))
            grad = xp.sum(part, axis=axes)
            self.W.accumulate(xp.reshape(grad, (self.num_parameters,)))
        return xp.where(x > 0, dy, self._slopes(x) * dy)

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {"num_parameters": self.num_parameters, "init": self.init_value,
                "dtype": dtype_name(self._dtype)}

    def __repr__(self):
        return f"PReLU(num_parameters={self.num_parameters})"


def _sigmoid(xp, x):
    # exact and overflow-free: sigmoid(x) = (1 + tanh(x / 2)) / 2
    return 0.5 * xp.tanh(0.5 * x) + 0.5


def _softplus(xp, x):
    # log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|))
    return xp.maximum(x, 0.0) + xp.log1p(xp.exp(-xp.abs(x)))


class SiLU(Activation):
    """SiLU (Swish): ``y = x sigmoid(x)``, so ``dy/dx = s (1 + x (1 - s))``
    with ``s = sigmoid(x)``. ``portnn.Swish`` is the same class (Keras's
    name).

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().asarray([0.0, 2.0], dtype="float64")
    >>> [round(v, 6) for v in portnn.SiLU()(x).tolist()]
    [0.0, 1.761594]
    """

    _cache_attrs = ("_x", "_s")
    init = "he_uniform"

    def forward(self, x, training=False):
        self._x, self._s = x, _sigmoid(namespace(x), x)
        return x * self._s

    def backward(self, dy):
        s = self._s
        return dy * (s * (1.0 + self._x * (1.0 - s)))


Swish = SiLU


class Softplus(Activation):
    """``y = log(1 + exp(beta x)) / beta``, and ``y = x`` where ``beta x >
    threshold`` (PyTorch's); ``dy/dx = sigmoid(beta x)`` (1 on the linear
    part).

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().asarray([0.0, 30.0], dtype="float64")
    >>> [round(v, 6) for v in portnn.Softplus()(x).tolist()]
    [0.693147, 30.0]
    """

    _cache_attrs = ("_bx",)

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        if not beta > 0:
            msg = f"Softplus: beta must be > 0, got {beta!r}"
            raise ValueError(msg)
        self.beta, self.threshold = float(beta), float(threshold)

    def forward(self, x, training=False):
        xp = namespace(x)
        self._bx = bx = self.beta * x
        return xp.where(bx > self.threshold, x, _softplus(xp, bx) / self.beta)

    def backward(self, dy):
        xp = namespace(dy)
        bx = self._bx
        return xp.where(bx > self.threshold, dy, dy * _sigmoid(xp, bx))

    def __repr__(self):
        return f"Softplus(beta={self.beta}, threshold={self.threshold})"


class Mish(Activation):
    """``y = x tanh(softplus(x))``, so ``dy/dx = t + x (1 - t**2)
    sigmoid(x)`` with ``t = tanh(softplus(x))``.

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().asarray([1.0], dtype="float64")
    >>> [round(v, 6) for v in portnn.Mish()(x).tolist()]
    [0.865098]
    """

    _cache_attrs = ("_x", "_t")
    init = "he_uniform"

    def forward(self, x, training=False):
        xp = namespace(x)
        self._x, self._t = x, xp.tanh(_softplus(xp, x))
        return x * self._t

    def backward(self, dy):
        xp = namespace(dy)
        x, t = self._x, self._t
        return dy * (t + x * (1.0 - t * t) * _sigmoid(xp, x))


class SELU(Activation):
    """``y = scale x`` for ``x > 0``, else ``scale alpha (exp(x) - 1)``
    (self-normalizing, with LeCun-normal weights); ``dy/dx = scale`` or
    ``scale alpha exp(x)``. The constants are PyTorch's.

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().asarray([1.0], dtype="float64")
    >>> [round(v, 6) for v in portnn.SELU()(x).tolist()]
    [1.050701]
    """

    ALPHA = 1.6732632423543772848170429916717
    SCALE = 1.0507009873554804934193349852946
    _cache_attrs = ("_x",)
    init = "lecun_normal"

    def forward(self, x, training=False):
        xp = namespace(x)
        self._x = x
        # NOTE: expm1 of min(x, 0): the unused branch never overflows
        neg = self.ALPHA * xp.expm1(xp.minimum(x, 0.0))
        return self.SCALE * xp.where(x > 0, x, neg)

    def backward(self, dy):
        xp = namespace(dy)
        x = self._x
        slope = xp.where(x > 0, 1.0, self.ALPHA * xp.exp(xp.minimum(x, 0.0)))
        return dy * (self.SCALE * slope)


class LogSoftmax(Activation):
    """``y = x - max x - log sum exp(x - max x)`` over `axis`, the
    log-probabilities; ``dx = dy - softmax(x) sum(dy)``. For classification
    prefer :class:`portnn.CrossEntropy` on logits, which fuses this.

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().asarray([[0.0, 0.0]], dtype="float64")
    >>> [round(v, 6) for v in portnn.LogSoftmax()(x)[0].tolist()]
    [-0.693147, -0.693147]
    """

    _cache_attrs = ("_p",)

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        self.axis = axis

    @property
    def supports_masking(self) -> bool:
        return self.axis == -1 or self.axis >= 2  # as Softmax

    def forward(self, x, training=False):
        xp = namespace(x)
        dtype = x.dtype
        x = upcast(xp, x)  # float32 under mixed precision
        shifted = x - xp.max(x, axis=self.axis, keepdims=True)
        e = xp.exp(shifted)
        s = xp.sum(e, axis=self.axis, keepdims=True)
        self._p = e / s
        return xp.astype(shifted - xp.log(s), dtype, copy=False)

    def backward(self, dy):
        xp = namespace(dy)
        d = upcast(xp, dy)
        dx = d - self._p * xp.sum(d, axis=self.axis, keepdims=True)
        return xp.astype(dx, dy.dtype, copy=False)


class Softmax(Activation):
    """Softmax over `axis`: ``y = exp(x - max x) / sum exp(x - max x)``.

    Backward: ``dx = y (dy - sum(dy * y))``. For classification prefer
    :class:`portnn.CrossEntropy` on logits, which fuses this gradient.

    Examples
    --------
    >>> import portnn
    >>> portnn.Softmax()(portnn.asarray([[0.0, 0.0, 0.0, 0.0]])).tolist()
    [[0.25, 0.25, 0.25, 0.25]]
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
    "silu": SiLU,
    "swish": SiLU,
    "softplus": Softplus,
    "mish": Mish,
    "selu": SELU,
    "log_softmax": LogSoftmax,
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
