"""`PositionalEncoding` and the pre-norm `TransformerEncoderLayer`."""

from __future__ import annotations

import math

from .. import init as initializers
from .._namespace import is_traced, namespace
from ..backends import backend_of
from .activations import GELU, ReLU
from .attention import MultiHeadAttention
from .base import Layer, dtype_name, float_dtype
from .dense import Dense
from .dropout import Dropout
from .normalization import LayerNorm


class PositionalEncoding(Layer):
    """Add position information to ``(batch, time, d_model)`` input.

    Parameters
    ----------
    max_len : int
        Longest sequence accepted.
    d_model : int
        Width of the model.
    learned : bool
        False (default): the fixed sinusoidal table of "Attention Is All You
        Need", ``PE[t, 2i] = sin(t / 10000^(2i/d))``, ``PE[t, 2i+1] = cos(...)``.
        True: a learned table ``P`` of shape ``(max_len, d_model)``.
    backend, dtype, rng : optional

    Examples
    --------
    >>> import portnn
    >>> pe = portnn.PositionalEncoding(max_len=16, d_model=4)
    >>> x = portnn.get_backend().xp.zeros((2, 3, 4))
    >>> [round(v, 4) for v in pe(x)[0, 1].tolist()]
    [0.8415, 0.5403, 0.01, 1.0]
    """

    _cache_attrs = ("_steps",)
    supports_masking = True  # adds a position's own code to each step

    def __init__(self, max_len: int, d_model: int, learned: bool = False, *,
                 backend=None, dtype=None, rng=None) -> None:
        super().__init__(backend)
        for arg, v in (("max_len", max_len), ("d_model", d_model)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                msg = f"PositionalEncoding: {arg} must be a positive int, got {v!r}"
                raise ValueError(msg)
        self.max_len, self.d_model, self.learned = max_len, d_model, learned
        self._dtype = float_dtype(self.backend, dtype)
        if learned:
            self.P = self.add_parameter("P", initializers.uniform(
                (max_len, d_model), backend=self.backend, dtype=self._dtype,
                rng=rng))
        self._table = None  # the fixed table, made for the input's backend

    def _sinusoids(self, x, rows: int):
        """The first `rows` rows of the table: only the positions used are
        computed (a max_len of 10**8 read from a file costs nothing until a
        sequence that long arrives)."""
        backend = backend_of(x) or self.backend
        xp, dev = backend.xp, x.device
        half = (self.d_model + 1) // 2
        pos = xp.reshape(xp.arange(rows, dtype=xp.float64, device=dev), (-1, 1))
        rate = xp.exp(xp.arange(half, dtype=xp.float64, device=dev)
                      * (-2.0 * math.log(10000.0) / self.d_model))
        angle = pos * rate
        table = xp.reshape(xp.stack([xp.sin(angle), xp.cos(angle)], axis=-1),
                           (rows, 2 * half))
        return xp.astype(table[:, :self.d_model], x.dtype)

    def forward(self, x, training=False):
        if x.ndim != 3 or x.shape[2] != self.d_model or x.shape[1] > self.max_len:
            msg = (
                f"PositionalEncoding: expected input (batch, time <= {self.max_len}, "
                f"{self.d_model}), got shape {tuple(x.shape)}; build the layer with "
                "a larger max_len for longer sequences"
            )
            raise ValueError(msg)
        if self.learned:
            table = self.P.value
        else:
            table = self._table
            if (table is None or type(table) is not type(x) or table.dtype != x.dtype
                    or table.shape[0] < x.shape[1]):
                table = self._sinusoids(x, int(x.shape[1]))
                if not is_traced(x):  # a compiled step computes it in-program
                    self._table = table
        self._steps = x.shape[1]
        return x + table[:x.shape[1], :]

    def backward(self, dy):
        if self.learned:
            xp = namespace(dy)
            rest = xp.zeros((self.max_len - self._steps, self.d_model),
                            dtype=dy.dtype, device=dy.device)
            self.P.accumulate(xp.concat([xp.sum(dy, axis=0), rest], axis=0))
        return dy

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {"max_len": self.max_len, "d_model": self.d_model,
                "learned": self.learned, "dtype": dtype_name(self._dtype)}

    def __repr__(self) -> str:
        kind = ", learned=True" if self.learned else ""
        return f"PositionalEncoding({self.max_len}, {self.d_model}{kind})"


def _activation(name):
    """The feed-forward block's activation: PyTorch's names ("relu",
    "gelu", exact), portnn's "gelu_tanh", or an activation layer."""
    if isinstance(name, Layer):
        return name
    choices = {"relu": ReLU, "gelu": lambda: GELU(approximate="none"),
               "gelu_tanh": GELU}
    if name not in choices:
        msg = (f"activation must be one of {sorted(choices)} or an activation "
               f"layer, got {name!r}")
        raise ValueError(msg)
    return choices[name]()


def _activation_name(layer) -> str | dict:
    if isinstance(layer, ReLU):
        return "relu"
    if isinstance(layer, GELU):
        return "gelu" if layer.approximate == "none" else "gelu_tanh"
    from .registry import layer_to_json

    return layer_to_json(layer)


class TransformerEncoderLayer(Layer):
    """A Transformer encoder block on ``(batch, time, d_model)``; pre-norm
    (the default)::

        x = x + Dropout(MultiHeadAttention(LayerNorm(x)))
        y = x + Dropout(Dense(act(Dense(LayerNorm(x)))))

    or post-norm (``norm_first=False``, the original Transformer's)::

        x = LayerNorm(x + Dropout(MultiHeadAttention(x)))
        y = LayerNorm(x + Dropout(Dense(act(Dense(x)))))

    Parameters
    ----------
    d_model : int
        Model width.
    num_heads : int
        Attention heads (must divide `d_model`).
    dim_feedforward : int, optional
        Hidden width of the feed-forward block (default ``4 * d_model``).
    dropout : float
        Dropout after the attention and the feed-forward block (training only).
    causal : bool
        Causal self-attention (each step sees only the past).
    norm_first : bool
        Pre-norm (True) or post-norm.
    activation : {"gelu_tanh", "gelu", "relu"} or Layer
        Of the feed-forward block; ``"gelu"`` is the exact GELU (PyTorch's
        meaning), ``"gelu_tanh"`` its tanh form (the default here, as
        before this option existed).
    backend, dtype, rng : optional

    Notes
    -----
    Matches ``torch.nn.TransformerEncoderLayer(batch_first=True)`` with the
    same `norm_first` and activation (and ``dropout=0``; PyTorch drops out
    inside the feed-forward block too). The sub-layers are ``norm1, attn,
    norm2, ff1, ff2`` (parameter names ``0.gamma``, ``1.W_in``, ...).
    Masks pass through: ``layer(x, training=..., attn_mask=...,
    key_padding_mask=...)`` as for :class:`MultiHeadAttention`; a padded
    sequence's mask (from ``Embedding(mask_zero=True)``) masks the padded
    keys and passes on.

    Examples
    --------
    >>> import portnn
    >>> block = portnn.TransformerEncoderLayer(16, num_heads=4)
    >>> x = portnn.get_backend().xp.ones((2, 6, 16), dtype=block.norm1.gamma.dtype)
    >>> block(x).shape
    (2, 6, 16)
    """

    #: built from its config: checkpoints store the config, not the sub-layers
    owns_children = True
    _cache_attrs = ("_child_calls",)
    uses_mask = True  # padded keys left out of the attention; passed on

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int | None = None,
                 dropout: float = 0.0, causal: bool = False, *,
                 norm_first: bool = True, activation="gelu_tanh", backend=None,
                 dtype=None, rng=None) -> None:
        super().__init__(backend)
        self.d_model, self.num_heads = d_model, num_heads
        self.dim_feedforward = dim_feedforward or 4 * d_model
        self.dropout, self.causal = dropout, causal
        self.norm_first = bool(norm_first)
        self._dtype = float_dtype(self.backend, dtype)
        kw = {"backend": self.backend, "dtype": self._dtype}
        self.norm1 = LayerNorm(d_model, **kw)
        self.attn = MultiHeadAttention(d_model, num_heads, causal=causal, rng=rng, **kw)
        self.norm2 = LayerNorm(d_model, **kw)
        self.ff1 = Dense(d_model, self.dim_feedforward,
                         activation=_activation(activation), rng=rng, **kw)
        self.ff2 = Dense(self.dim_feedforward, d_model, rng=rng, **kw)
        self.drop1, self.drop2 = Dropout(dropout), Dropout(dropout)
        for layer in (*self.children(), *self._owned_layers()):
            layer._uses += 1  # each called once per forward: caches in place

    def children(self) -> list[Layer]:
        return [self.norm1, self.attn, self.norm2, self.ff1, self.ff2]

    def _owned_layers(self):
        return (self.drop1, self.drop2)

    def forward(self, x, training=False, attn_mask=None, key_padding_mask=None,
                mask=None):
        self.begin_calls()
        run = self.forward_child
        extra = {} if mask is None else {"mask": mask}

        def attend(h):
            a = run(self.attn, h, training, attn_mask=attn_mask,
                    key_padding_mask=key_padding_mask, **extra)
            return run(self.drop1, a, training)

        def feed(h):
            f = run(self.ff2, run(self.ff1, h, training), training)
            return run(self.drop2, f, training)

        if self.norm_first:
            x = x + attend(run(self.norm1, x, training))
            return x + feed(run(self.norm2, x, training))
        x = run(self.norm1, x + attend(x), training)
        return run(self.norm2, x + feed(x), training)

    def backward(self, dy):
        back = self.backward_child

        def attend(d):
            return back(self.attn, back(self.drop1, d))

        def feed(d):
            return back(self.ff1, back(self.ff2, back(self.drop2, d)))

        if self.norm_first:
            dx = dy + back(self.norm2, feed(dy))
            return dx + back(self.norm1, attend(dx))
        dz = back(self.norm2, dy)
        dx = dz + feed(dz)
        dz = back(self.norm1, dx)
        return dz + attend(dz)

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {"d_model": self.d_model, "num_heads": self.num_heads,
                "dim_feedforward": self.dim_feedforward, "dropout": self.dropout,
                "causal": self.causal, "norm_first": self.norm_first,
                "activation": _activation_name(self.ff1.activation),
                "dtype": dtype_name(self._dtype)}

    def __repr__(self) -> str:
        return (f"TransformerEncoderLayer({self.d_model}, num_heads={self.num_heads}, "
                f"dim_feedforward={self.dim_feedforward})")


class TransformerDecoderLayer(Layer):
    """A Transformer decoder block: causal self-attention over the target,
    cross-attention to a memory (the encoder's output), feed-forward.
    Called on ``[target, memory]``, both ``(batch, time, d_model)``; the
    backward returns ``[d target, d memory]``. Pre-norm (the default)::

        x = x + Dropout(SelfAttention(LayerNorm(x)))      # causal
        x = x + Dropout(CrossAttention(LayerNorm(x), memory))
        y = x + Dropout(Dense(act(Dense(LayerNorm(x)))))

    or post-norm (``norm_first=False``): ``x = LayerNorm(x + block(x))``
    for each block.

    Parameters
    ----------
    d_model, num_heads, dim_feedforward, dropout, norm_first, activation
        As for :class:`TransformerEncoderLayer`.
    backend, dtype, rng : optional

    Notes
    -----
    Matches ``torch.nn.TransformerDecoderLayer(batch_first=True)`` with a
    causal ``tgt_mask``, the same `norm_first` and activation (and
    ``dropout=0``). The sub-layers are ``norm1, self_attn, norm2,
    cross_attn, norm3, ff1, ff2``. The memory's gradient is the sum of the
    cross-attention's key and value gradients. Masks: ``tgt_key_padding_mask``
    and ``memory_key_padding_mask`` (PyTorch's), or the padded sequences'
    masks a graph passes (``[target mask, memory mask]``); the output
    carries the target's.

    Examples
    --------
    >>> import portnn
    >>> block = portnn.TransformerDecoderLayer(8, num_heads=2)
    >>> xp, dtype = portnn.get_backend().xp, block.norm1.gamma.dtype
    >>> target, memory = xp.ones((2, 5, 8), dtype=dtype), xp.ones((2, 7, 8))
    >>> block([target, xp.astype(memory, dtype)]).shape
    (2, 5, 8)
    """

    owns_children = True
    uses_mask = True
    _cache_attrs = ("_child_calls",)

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int | None = None,
                 dropout: float = 0.0, *, norm_first: bool = True,
                 activation="gelu_tanh", backend=None, dtype=None, rng=None) -> None:
        super().__init__(backend)
        self.d_model, self.num_heads = d_model, num_heads
        self.dim_feedforward = dim_feedforward or 4 * d_model
        self.dropout, self.norm_first = dropout, bool(norm_first)
        self._dtype = float_dtype(self.backend, dtype)
        kw = {"backend": self.backend, "dtype": self._dtype}
        self.norm1, self.norm2, self.norm3 = (LayerNorm(d_model, **kw)
                                              for _ in range(3))
        self.self_attn = MultiHeadAttention(d_model, num_heads, causal=True, rng=rng,
                                            **kw)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, rng=rng, **kw)
        self.ff1 = Dense(d_model, self.dim_feedforward,
                         activation=_activation(activation), rng=rng, **kw)
        self.ff2 = Dense(self.dim_feedforward, d_model, rng=rng, **kw)
        self.drop1, self.drop2, self.drop3 = (Dropout(dropout) for _ in range(3))
        for layer in (*self.children(), *self._owned_layers()):
            layer._uses += 1  # each called once per forward: caches in place

    def children(self) -> list[Layer]:
        return [self.norm1, self.self_attn, self.norm2, self.cross_attn, self.norm3,
                self.ff1, self.ff2]

    def _owned_layers(self):
        return (self.drop1, self.drop2, self.drop3)

    def compute_mask(self, xs, mask):
        """The target's mask (each output step is a target step)."""
        return mask[0] if isinstance(mask, (list, tuple)) else mask

    def forward(self, xs, training=False, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, mask=None):
        if not isinstance(xs, (list, tuple)) or len(xs) != 2:
            msg = ("TransformerDecoderLayer takes [target, memory] in one list "
                   "(block([target, memory]))")
            raise TypeError(msg)
        target, memory = xs
        self.begin_calls()
        run = self.forward_child
        masks = list(mask) if isinstance(mask, (list, tuple)) else [mask, None]
        self_extra = {} if masks[0] is None else {"mask": masks[0]}
        cross_extra = {} if masks[1] is None else {"mask": [masks[0], masks[1],
                                                             masks[1]]}

        def attend(h):
            a = run(self.self_attn, h, training,
                    key_padding_mask=tgt_key_padding_mask, **self_extra)
            return run(self.drop1, a, training)

        def consult(h):
            c = run(self.cross_attn, [h, memory, memory], training,
                    key_padding_mask=memory_key_padding_mask, **cross_extra)
            return run(self.drop2, c, training)

        def feed(h):
            f = run(self.ff2, run(self.ff1, h, training), training)
            return run(self.drop3, f, training)

        x = target
        if self.norm_first:
            x = x + attend(run(self.norm1, x, training))
            x = x + consult(run(self.norm2, x, training))
            return x + feed(run(self.norm3, x, training))
        x = run(self.norm1, x + attend(x), training)
        x = run(self.norm2, x + consult(x), training)
        return run(self.norm3, x + feed(x), training)

    def backward(self, dy):
        back = self.backward_child

        def attend(d):
            return back(self.self_attn, back(self.drop1, d))

        def consult(d):
            dq, dk, dv = back(self.cross_attn, back(self.drop2, d))
            return dq, dk + dv  # the memory is both key and value

        def feed(d):
            return back(self.ff1, back(self.ff2, back(self.drop3, d)))

        if self.norm_first:
            dx = dy + back(self.norm3, feed(dy))
            dq, dmemory = consult(dx)
            dx = dx + back(self.norm2, dq)
            return [dx + back(self.norm1, attend(dx)), dmemory]
        dz = back(self.norm3, dy)
        dz = back(self.norm2, dz + feed(dz))
        dq, dmemory = consult(dz)
        dz = back(self.norm1, dz + dq)
        return [dz + attend(dz), dmemory]

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {"d_model": self.d_model, "num_heads": self.num_heads,
                "dim_feedforward": self.dim_feedforward, "dropout": self.dropout,
                "norm_first": self.norm_first,
                "activation": _activation_name(self.ff1.activation),
                "dtype": dtype_name(self._dtype)}

    def __repr__(self) -> str:
        return (f"TransformerDecoderLayer({self.d_model}, num_heads={self.num_heads}, "
                f"dim_feedforward={self.dim_feedforward})")
