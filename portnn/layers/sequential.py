"""`Sequential`: layers run forward in order and backward in reverse."""

from __future__ import annotations

from ..training.model import Model
from .activations import Activation
from .base import Layer, free_caches
from .dense import Dense


class Sequential(Model):
    """A stack of layers; a :class:`portnn.training.Model`, so it can `fit`.

    Parameters
    ----------
    *layers : Layer
        Applied in order. A :class:`Dense` with ``init="auto"`` followed by
        an activation is initialized for that activation (He for ReLU-like,
        Glorot otherwise), unless its weights were set since it was made. A
        layer may appear more than once: its weights are shared, its
        gradients summed over the uses, and its parameters listed (and
        saved) once.

    Examples
    --------
    >>> import portnn
    >>> model = portnn.Sequential(
    ...     portnn.Dense(64, 32), portnn.ReLU(), portnn.Dense(32, 10))
    >>> len(model.parameters())
    4
    >>> x = portnn.get_backend().xp.ones((5, 64), dtype=model[0].W.dtype)
    >>> model(x).shape
    (5, 10)
    """

    def __init__(self, *layers: Layer, backend=None) -> None:
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                msg = (
                    f"Sequential: item {i} is a {type(layer).__name__}, not a Layer "
                    "(did you pass a class instead of an instance?)"
                )
                raise TypeError(msg)
        if backend is None:
            owners = [la for la in layers if la.parameters()]
            backend = owners[0].backend if owners else None
        super().__init__(backend)
        self.layers: list[Layer] = list(layers)
        for layer in self.layers:
            layer._uses += 1
        self._auto_init()

    _cache_attrs = ("_child_calls",)
    _call_outputs = ("_out_mask",)
    uses_mask = True

    def _auto_init(self) -> None:
        for layer, nxt in zip(self.layers[:-1], self.layers[1:], strict=True):
            if (isinstance(layer, Dense) and layer.init == "auto"
                    and layer.activation is None and isinstance(nxt, Activation)
                    and nxt.init != "glorot_uniform" and layer.as_drawn()):
                layer.reset_parameters(next_activation=nxt)

    @property
    def integer_input(self) -> bool:
        return bool(self.layers) and self.layers[0].integer_input

    def add(self, layer: Layer) -> Sequential:
        """Append `layer` and return the model (for chaining)."""
        if not isinstance(layer, Layer):
            msg = f"Sequential.add takes a Layer, got {type(layer).__name__}"
            raise TypeError(msg)
        self.layers.append(layer)
        layer._uses += 1
        return self

    def get_config(self) -> dict:
        """No arguments of its own: the children are stored one by one."""
        return {}

    def children(self) -> list[Layer]:
        return self.layers

    def check_input(self, x) -> None:
        """The first layer sees the input: it checks it."""
        if self.layers:
            self.layers[0].check_input(x)

    @property
    def makes_mask(self) -> bool:
        return any(layer.makes_mask for layer in self.layers)

    def forward(self, x, training=False, mask=None):
        d = self.__dict__
        d.pop("_child_calls", None)  # begin_calls(), inline
        x, mask = self.forward_chain(self.layers, x, training, mask)
        if mask is None:  # _keep_mask(mask), inline: a tenth of the
            d.pop("_out_mask", None)  # smallest network's bookkeeping
        else:
            d["_out_mask"] = mask
        return x

    def compute_mask(self, x, mask):
        """The mask the last forward ended with (None: no mask)."""
        return self.__dict__.get("_out_mask")

    def backward(self, dy):
        return self.backward_chain(self.layers, dy)

    def backward_params(self, dy):
        # Layers below the first one with trainable parameters need no
        # backward at all (a frozen base under a fine-tuned head).
        layers = self.layers
        first = next((i for i, layer in enumerate(layers) if layer.has_trainable()),
                     len(layers))
        dy = self.backward_chain(layers[first + 1:], dy)
        if first < len(layers):
            self.backward_child(layers[first], dy, params_only=True)
        for layer in layers[:first]:
            free_caches(layer)

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Sequential(\n  {inner}\n)"
