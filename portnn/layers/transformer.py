"""`PositionalEncoding` and the pre-norm `TransformerEncoderLayer`."""

from __future__ import annotations

import math

from .. import init as initializers
from .._namespace import namespace
from ..backends import backend_of
from .activations import GELU
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
                self._table = table = self._sinusoids(x, int(x.shape[1]))
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


class TransformerEncoderLayer(Layer):
    """A pre-norm Transformer encoder block on ``(batch, time, d_model)``::

        x = x + Dropout(MultiHeadAttention(LayerNorm(x)))
        y = x + Dropout(Dense(GELU(Dense(LayerNorm(x)))))

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
    backend, dtype, rng : optional

    Notes
    -----
    Matches ``torch.nn.TransformerEncoderLayer(norm_first=True,
    batch_first=True)`` with a tanh-GELU activation. The sub-layers are
    ``norm1, attn, norm2, ff1, ff2`` (parameter names ``0.gamma``,
    ``1.W_in``, ...). Masks pass through: ``layer(x, training=...,
    attn_mask=..., key_padding_mask=...)`` as for
    :class:`MultiHeadAttention`; a padded sequence's mask (from
    ``Embedding(mask_zero=True)``) masks the padded keys and passes on.

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
                 dropout: float = 0.0, causal: bool = False, *, backend=None,
                 dtype=None, rng=None) -> None:
        super().__init__(backend)
        self.d_model, self.num_heads = d_model, num_heads
        self.dim_feedforward = dim_feedforward or 4 * d_model
        self.dropout, self.causal = dropout, causal
        self._dtype = float_dtype(self.backend, dtype)
        kw = {"backend": self.backend, "dtype": self._dtype}
        self.norm1 = LayerNorm(d_model, **kw)
        self.attn = MultiHeadAttention(d_model, num_heads, causal=causal, rng=rng, **kw)
        self.norm2 = LayerNorm(d_model, **kw)
        self.ff1 = Dense(d_model, self.dim_feedforward, activation=GELU(), rng=rng,
                         **kw)
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
        a = run(self.attn, run(self.norm1, x, training), training,
                attn_mask=attn_mask, key_padding_mask=key_padding_mask, **extra)
        x = x + run(self.drop1, a, training)
        f = run(self.ff2, run(self.ff1, run(self.norm2, x, training), training),
                training)
        return x + run(self.drop2, f, training)

    def backward(self, dy):
        back = self.backward_child
        df = back(self.ff1, back(self.ff2, back(self.drop2, dy)))
        dx = dy + back(self.norm2, df)
        da = back(self.attn, back(self.drop1, dx))
        return dx + back(self.norm1, da)

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {"d_model": self.d_model, "num_heads": self.num_heads,
                "dim_feedforward": self.dim_feedforward, "dropout": self.dropout,
                "causal": self.causal, "dtype": dtype_name(self._dtype)}

    def __repr__(self) -> str:
        return (f"TransformerEncoderLayer({self.d_model}, num_heads={self.num_heads}, "
                f"dim_feedforward={self.dim_feedforward})")
