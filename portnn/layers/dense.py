"""`Dense`: the fully connected layer ``y = x @ W + b``."""

from __future__ import annotations

from .. import init as initializers
from .._namespace import namespace
from ..ops.matmul import matmul, matmul_path
from ..ops.reduce import total
from ..random import Generator, global_generator
from .activations import Activation
from .activations import get as get_activation
from .base import (
    Layer,
    dtype_name,
    float_dtype,
    in_shape_pass,
    owns_activation,
    walk_layers,
)


def initial_weights(init, activation, shape, backend, dtype, rng):
    """Weights of `shape` from initializer `init`; ``"auto"`` picks the one
    `activation` asks for (He for ReLU-like) or Glorot uniform."""
    if init == "auto":
        init = activation.init if isinstance(activation, Activation) else (
            "glorot_uniform")
    return initializers.get(init)(shape, backend=backend, dtype=dtype, rng=rng)


def draw_weights(layer, activation, rng=None):
    """``W`` for `layer` (a Dense or a convolution) from its initializer."""
    return initial_weights(layer.init, activation, layer.weight_shape, layer.backend,
                           layer._dtype, rng or layer._rng)


def build_lazy(layer) -> None:
    """Give a lazy layer its weights, now that its input size is known.

    Inside a model's shape pass (:func:`portnn.layers.base.shape_pass`)
    they are zeros for now and the model draws them afterwards, in the order
    the same model with its sizes given would have drawn them
    (:func:`replay_draws`): same seed, same weights. Called alone, the layer
    draws at once, as it would have at construction (and again if
    ``Sequential`` re-initialized it for the activation that follows).
    """
    if in_shape_pass():
        layer.W.value = initializers.zeros(layer.weight_shape, backend=layer.backend,
                                           dtype=layer._dtype)
        layer._pending_draw = True
        return
    layer.W.value = draw_weights(layer, layer.activation)
    if layer._next_activation is not None:
        layer.W.value = draw_weights(layer, layer.activation or layer._next_activation)


def replay_draws(model) -> None:
    """Draw the pending weights under `model` as eager construction would
    have: children first, in order (Python builds them before their
    container), then a ``Sequential``'s re-initializations for the
    activations that follow its layers."""
    _replay(model)
    for layer in walk_layers(model):
        layer.__dict__.pop("_pending_draw", None)


def _replay(layer) -> None:
    for child in layer.children():
        _replay(child)
    if getattr(layer, "_pending_draw", False):
        layer.W.value = draw_weights(layer, layer.activation)
    for child in layer.children() if hasattr(layer, "_auto_init") else ():
        following = child._next_activation if hasattr(child, "_pending_draw") else None
        if following is not None and child._pending_draw:
            child.W.value = draw_weights(child, child.activation or following)


class Dense(Layer):
    """Fully connected layer: ``y = x @ W + b``, optionally followed by an
    activation.

    Parameters
    ----------
    in_features, out_features : int
        Sizes of the input and output feature axes. With one size,
        ``Dense(64)``, it is the output size and the input size is taken
        from the first input (lazy; the same seed gives the same weights).
    bias : bool, default True
        Whether to learn ``b``.
    init : str or callable, default "auto"
        Initializer for ``W`` (see :mod:`portnn.init`). ``"auto"`` picks He
        uniform before ReLU-like activations and Glorot uniform otherwise
        (both uniform, so one seed gives bit-identical weights everywhere); in a
        :class:`Sequential`, the activation that follows the layer counts.
    activation : str or Layer, optional
        Applied after the affine map (Keras style), e.g. ``"relu"``.
    backend, dtype : optional
        Where and in which float dtype to create the weights (defaults: the
        current backend and default dtype).
    rng : portnn.random.Generator, optional
        Generator for the initial weights (default: the global one).

    Notes
    -----
    ``W`` has shape ``(in_features, out_features)``. Inputs may have extra
    leading axes (``(batch, time, in_features)``). Backward, with
    ``x`` flattened to 2-D::

        dW = x.T @ dy      db = sum(dy, axis=0)      dx = dy @ W.T

    Examples
    --------
    >>> import portnn
    >>> layer = portnn.Dense(3, 2)
    >>> x = portnn.get_backend().xp.ones((4, 3), dtype=layer.W.dtype)
    >>> layer(x).shape
    (4, 2)
    """

    _cache_attrs = ("_x",)
    supports_masking = True  # each step of a sequence alone

    def __init__(
        self,
        in_features: int | None,
        out_features: int | None = None,
        bias: bool = True,
        init="auto",
        activation=None,
        *,
        backend=None,
        dtype=None,
        rng=None,
    ) -> None:
        super().__init__(backend)
        if out_features is None:  # Dense(64): the input size comes later
            in_features, out_features = None, in_features
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if v is None and name == "in_features":
                continue
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                msg = f"Dense: {name} must be a positive int, got {v!r}"
                raise ValueError(msg)
        self.in_features = in_features
        self.out_features = out_features
        self.init = init
        self.activation = None if activation is None else get_activation(activation)
        self._dtype = float_dtype(self.backend, dtype)
        self._rng, self._next_activation = rng, None
        self._drawn_at = None
        if in_features is None:
            weights = initializers.Unallocated(self.weight_shape, self._dtype)
        else:
            self._drawn_at = (rng or global_generator()).get_state()
            weights = draw_weights(self, self.activation, rng)
        self.W = self.add_parameter("W", weights)
        self.b = None
        if bias:
            self.b = self.add_parameter(
                "b", initializers.zeros((out_features,), backend=self.backend,
                                        dtype=self._dtype)
            )

    @property
    def weight_shape(self) -> tuple:
        """``(in_features, out_features)`` (``in_features`` None until built)."""
        return (self.in_features, self.out_features)

    @property
    def built(self) -> bool:
        """Whether the weights exist (a lazy layer builds at its first call)."""
        return self.in_features is not None

    def _build(self, in_features: int) -> None:
        self.in_features = int(in_features)
        build_lazy(self)

    def as_drawn(self) -> bool:
        """Whether ``W`` and ``b`` still hold what construction drew.

        ``Sequential`` re-initializes an ``init="auto"`` layer for the
        activation that follows it only then: weights the user set or
        loaded before stacking the layer are kept. The check draws the
        weights again from the generator's state at construction and
        compares (one host read, while the model is built).
        """
        W = self.W.value
        if isinstance(W, initializers.Unallocated):
            return True
        if self._drawn_at is None:
            return False
        again = Generator()
        again.set_state(self._drawn_at)
        xp = self.backend.xp
        same = xp.all(W == draw_weights(self, self.activation, again))
        if self.b is not None and not isinstance(self.b.value,
                                                 initializers.Unallocated):
            same = same & xp.all(self.b.value == 0)
        return bool(same)

    def reset_parameters(self, next_activation=None, rng=None) -> None:
        """Draw ``W`` again (zero ``b``); `next_activation` guides ``"auto"``.
        A lazy layer draws at its first call instead."""
        if not self.built:
            self._next_activation = next_activation
            return
        self.W.value = draw_weights(self, self.activation or next_activation, rng)
        if self.b is not None:
            self.b.value = initializers.zeros(
                (self.out_features,), backend=self.backend, dtype=self._dtype
            )

    def forward(self, x, training=False):
        if self.in_features is None:
            self._build(x.shape[-1])
        W = self.W
        if type(x) is not type(W.value):
            self._check_backend(x, W)
        try:
            y = matmul(x, W.value)
        except (ValueError, TypeError, RuntimeError):
            # the size check runs where the product failed: every library
            # refuses a mismatched product, and checking first cost a
            # twentieth of the smallest network's step
            if x.shape[-1] != self.in_features:
                msg = (
                    f"Dense: expected input with {self.in_features} features in "
                    f"the last axis, got shape {tuple(x.shape)}"
                )
                raise ValueError(msg) from None
            raise
        self._x = x
        if self.b is not None:
            y = y + self.b.value
        if self.activation is not None:
            y = self.activation.forward(y, training)
        return y

    def backward(self, dy):
        mm = matmul_path(dy)  # two products of one kind: one lookup
        dy = self._param_grads(dy, mm)
        return mm(dy, self.W.value.T)

    def backward_params(self, dy):
        self._param_grads(dy)

    _owned_layers = owns_activation

    def _param_grads(self, dy, mm=matmul):
        """Accumulate dW and db; return dy past the activation. `mm` is the
        matrix product to use (:func:`~portnn.ops.matmul.matmul`'s path)."""
        if self.activation is not None:
            dy = self.activation.backward(dy)
        x = self._x
        if x.ndim != 2:
            xp = namespace(dy)
            x = xp.reshape(x, (-1, self.in_features))
            dy2 = xp.reshape(dy, (-1, self.out_features))
        else:
            dy2 = dy
        # Parameter.accumulate written out (its four calls were a twentieth
        # of the smallest network's step); frozen: no GEMM for a gradient
        # nobody keeps
        W, b = self.W, self.b
        if W.trainable:
            g = mm(x.T, dy2)
            W.grad = g if W.grad is None else W.grad + g
        if b is not None and b.trainable:
            g = total(dy2, axis=0)
            b.grad = g if b.grad is None else b.grad + g
        return dy

    def get_config(self) -> dict:
        """Constructor arguments; the activation is stored as its own config."""
        act = None
        if self.activation is not None:
            from .registry import layer_to_json

            act = layer_to_json(self.activation)
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.b is not None,
            "init": self.init if isinstance(self.init, str) else "auto",
            "activation": act,
            "dtype": dtype_name(self._dtype),
        }

    def __repr__(self) -> str:
        act = f", activation={self.activation!r}" if self.activation else ""
        bias = "" if self.b is not None else ", bias=False"
        if not self.built:
            return f"Dense({self.out_features}{bias}{act})"
        return f"Dense({self.in_features}, {self.out_features}{bias}{act})"
