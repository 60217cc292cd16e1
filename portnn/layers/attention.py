"""`MultiHeadAttention`: scaled dot-product self-attention over several heads."""

from __future__ import annotations

import math

from .. import init as initializers
from .._namespace import namespace
from .base import Layer, dtype_name, float_dtype, upcast


def masked_softmax(scores, keep):
    """Softmax over the last axis where `keep` is True (zero elsewhere).

    A row with nothing kept is all zeros rather than NaN, so a fully padded
    sequence contributes nothing instead of poisoning the batch.
    """
    xp = namespace(scores)
    dtype = scores.dtype
    scores = upcast(xp, scores)  # float32 under mixed precision
    if keep is not None:
        scores = xp.where(keep, scores, xp.finfo(scores.dtype).min)
    e = xp.exp(scores - xp.max(scores, axis=-1, keepdims=True))
    if keep is not None:
        e = xp.where(keep, e, 0.0)
    total = xp.sum(e, axis=-1, keepdims=True)
    if keep is not None:
        total = xp.where(total == 0.0, 1.0, total)
    return xp.astype(e / total, dtype, copy=False)


def _padding_from_mask(mask, key_padding_mask):
    """PyTorch's ``key_padding_mask`` (True: padding) from the mask a
    sequence carries (True: a real step): the key's mask, or the value's
    (Keras's MultiHeadAttention masks keys by both), joined with any
    padding mask given."""
    if isinstance(mask, (list, tuple)):
        _, key_mask, value_mask = (list(mask) + [None, None])[:3]
        if key_mask is None or value_mask is None:
            real = value_mask if key_mask is None else key_mask
        else:
            real = key_mask & value_mask
    else:
        real = mask
    if real is None:
        return key_padding_mask
    return ~real if key_padding_mask is None else key_padding_mask | ~real


class MultiHeadAttention(Layer):
    """Multi-head self-attention on ``(batch, time, embed_dim)`` input.

    Parameters
    ----------
    embed_dim : int
        Model width ``E``; split into `num_heads` heads of ``E / num_heads``.
    num_heads : int
        Must divide `embed_dim`.
    bias : bool
        Learn the projection biases.
    causal : bool
        Mask future positions (step ``t`` attends to steps ``<= t``).
    backend, dtype, rng : optional

    Notes
    -----
    ``Q, K, V = split(x W_in^T + b_in)``; per head
    ``softmax(Q K^T / sqrt(d) + mask) V``; heads concatenated and projected
    by ``W_out``. The weights have PyTorch's layout (``W_in`` is
    ``in_proj_weight``, ``(3E, E)``; ``W_out`` is ``out_proj.weight``).

    Call as ``layer(x, training=..., attn_mask=..., key_padding_mask=...)``
    for self-attention, or ``layer(query, key, value, ...)`` for
    cross-attention (PyTorch's order; `key` defaults to `query`, `value` to
    `key`; `backward` then returns ``[dquery, dkey, dvalue]``):
    ``attn_mask`` is a boolean ``(queries, keys)`` array, ``key_padding_mask``
    a boolean ``(batch, keys)`` array, True where attention is *not* allowed
    (PyTorch's boolean convention). A query with every key masked gets a
    zero output (PyTorch gives NaN). A padded sequence's mask (from
    ``Embedding(mask_zero=True)``, in a graph or a :class:`Sequential`)
    becomes the key padding mask; the output carries the query's mask.

    Examples
    --------
    >>> import portnn
    >>> mha = portnn.MultiHeadAttention(8, num_heads=2, causal=True)
    >>> x = portnn.get_backend().xp.ones((3, 5, 8), dtype=mha.W_in.dtype)
    >>> mha(x).shape
    (3, 5, 8)
    """

    _cache_attrs = ("_cache",)
    uses_mask = True

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True,
                 causal: bool = False, *, backend=None, dtype=None, rng=None):
        super().__init__(backend)
        for arg, v in (("embed_dim", embed_dim), ("num_heads", num_heads)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                msg = f"MultiHeadAttention: {arg} must be a positive int, got {v!r}"
                raise ValueError(msg)
        if embed_dim % num_heads:
            msg = (
                f"MultiHeadAttention: embed_dim ({embed_dim}) must be divisible by "
                f"num_heads ({num_heads})"
            )
            raise ValueError(msg)
        self.embed_dim, self.num_heads, self.causal = embed_dim, num_heads, causal
        self._dtype = float_dtype(self.backend, dtype)
        kw = {"backend": self.backend, "dtype": self._dtype}
        self.W_in = self.add_parameter("W_in", initializers.glorot_uniform(
            (3 * embed_dim, embed_dim), rng=rng, **kw))
        self.b_in = self.b_out = None
        if bias:
            self.b_in = self.add_parameter(
                "b_in", initializers.zeros((3 * embed_dim,), **kw))
        self.W_out = self.add_parameter("W_out", initializers.glorot_uniform(
            (embed_dim, embed_dim), rng=rng, **kw))
        if bias:
            self.b_out = self.add_parameter(
                "b_out", initializers.zeros((embed_dim,), **kw))

    def __call__(self, query, key=None, value=None, *, training=False,
                 attn_mask=None, key_padding_mask=None, mask=None):
        """Self-attention ``mha(x)``, or cross-attention ``mha(query, key,
        value)`` in PyTorch's order (`key` defaults to `query`, `value` to
        `key`); `training` is keyword-only. With `key` given, `backward`
        returns ``[dquery, dkey, dvalue]``. `mask` is a sequence's mask
        (True: a real step; a list ``[query, key, value]`` for
        cross-attention), as containers pass it."""
        x = query if key is None else [query, key, key if value is None else value]
        extra = {} if mask is None else {"mask": mask}
        return super().__call__(x, training=training, attn_mask=attn_mask,
                                key_padding_mask=key_padding_mask, **extra)

    def _keep(self, xp, n, t, attn_mask, key_padding_mask, device):
        """Boolean ``(batch or 1, 1, t, t)`` array of allowed pairs, or None."""
        keep = None
        if self.causal:
            rows = xp.arange(t, device=device)
            keep = xp.expand_dims(rows, axis=1) >= xp.expand_dims(rows, axis=0)
        if attn_mask is not None:
            if tuple(attn_mask.shape) != (t, t) or attn_mask.dtype != xp.bool:
                msg = (
                    f"MultiHeadAttention: attn_mask must be a boolean array of "
                    f"shape {(t, t)} (time, time), got shape "
                    f"{tuple(attn_mask.shape)} and dtype {attn_mask.dtype}"
                )
                raise ValueError(msg)
            keep = ~attn_mask if keep is None else keep & ~attn_mask
        if keep is not None:
            keep = xp.reshape(keep, (1, 1, t, t))
        if key_padding_mask is not None:
            if (tuple(key_padding_mask.shape) != (n, t)
                    or key_padding_mask.dtype != xp.bool):
                msg = (
                    f"MultiHeadAttention: key_padding_mask must be a boolean array "
                    f"of shape {(n, t)} (batch, time), got shape "
                    f"{tuple(key_padding_mask.shape)} and dtype "
                    f"{key_padding_mask.dtype}"
                )
                raise ValueError(msg)
            pad = xp.reshape(~key_padding_mask, (n, 1, 1, t))
            keep = pad if keep is None else keep & pad
        return keep

    def compute_mask(self, x, mask):
        """The query's mask: each output step is a query step."""
        if isinstance(mask, (list, tuple)):
            return mask[0]
        return mask

    def forward(self, x, training=False, attn_mask=None, key_padding_mask=None,
                mask=None):
        if mask is not None:  # padded keys (from a graph or a Sequential)
            key_padding_mask = _padding_from_mask(mask, key_padding_mask)
        if isinstance(x, (list, tuple)):
            return self._forward_cross(x, attn_mask, key_padding_mask)
        W_in = self.W_in
        if type(x) is not type(W_in.value):
            self._check_backend(x, W_in)
        e, h = self.embed_dim, self.num_heads
        if x.ndim != 3 or x.shape[2] != e:
            msg = (
                f"MultiHeadAttention: expected input (batch, time, {e}), got shape "
                f"{tuple(x.shape)}"
            )
            raise ValueError(msg)
        xp = namespace(x)
        n, t, _ = x.shape
        d = e // h
        x2 = xp.reshape(x, (n * t, e))
        qkv = x2 @ W_in.value.T
        if self.b_in is not None:
            qkv = qkv + self.b_in.value
        qkv = xp.permute_dims(xp.reshape(qkv, (n, t, 3, h, d)), (2, 0, 3, 1, 4))
        q, k, v = qkv[0, ...], qkv[1, ...], qkv[2, ...]  # (n, h, t, d) each
        scale = 1.0 / math.sqrt(d)
        scores = (q @ xp.permute_dims(k, (0, 1, 3, 2))) * scale
        p = masked_softmax(scores, self._keep(xp, n, t, attn_mask,
                                              key_padding_mask, x.device))
        heads = p @ v
        o = xp.reshape(xp.permute_dims(heads, (0, 2, 1, 3)), (n * t, e))
        y = o @ self.W_out.value.T
        if self.b_out is not None:
            y = y + self.b_out.value
        self._cache = (x2, q, k, v, p, o, scale, (n, t))
        return xp.reshape(y, (n, t, e))

    def _forward_cross(self, xs, attn_mask, key_padding_mask):
        """``softmax(Q K^T / sqrt(d)) V`` with ``Q`` projected from the query
        and ``K``, ``V`` from the key and value (``W_in``'s three blocks, as
        PyTorch's ``in_proj_weight``)."""
        if len(xs) != 3:
            msg = (f"MultiHeadAttention takes [query, key, value], got {len(xs)} "
                   "inputs")
            raise TypeError(msg)
        query, key, value = xs
        e, h = self.embed_dim, self.num_heads
        for name, a in (("query", query), ("key", key), ("value", value)):
            if type(a) is not type(self.W_in.value):
                self._check_backend(a, self.W_in)
            if a.ndim != 3 or a.shape[2] != e:
                msg = (f"MultiHeadAttention: expected {name} (batch, time, {e}), "
                       f"got shape {tuple(a.shape)}")
                raise ValueError(msg)
        n, tq, _ = query.shape
        tk = key.shape[1]
        if key.shape[0] != n or tuple(value.shape[:2]) != (n, tk):
            msg = (f"MultiHeadAttention: query {tuple(query.shape)}, key "
                   f"{tuple(key.shape)} and value {tuple(value.shape)} must share "
                   "the batch, and key and value the time")
            raise ValueError(msg)
        xp = namespace(query)
        d = e // h
        flat = [xp.reshape(a, (-1, e)) for a in (query, key, value)]
        heads_of = []
        for i, (a2, steps) in enumerate(zip(flat, (tq, tk, tk), strict=True)):
            proj = a2 @ self.W_in.value[i * e:(i + 1) * e, :].T
            if self.b_in is not None:
                proj = proj + self.b_in.value[i * e:(i + 1) * e]
            heads_of.append(xp.permute_dims(xp.reshape(proj, (n, steps, h, d)),
                                            (0, 2, 1, 3)))
        q, k, v = heads_of
        scale = 1.0 / math.sqrt(d)
        scores = (q @ xp.permute_dims(k, (0, 1, 3, 2))) * scale
        p = masked_softmax(scores, self._keep_cross(
            xp, n, tq, tk, attn_mask, key_padding_mask, query.device))
        o = xp.reshape(xp.permute_dims(p @ v, (0, 2, 1, 3)), (n * tq, e))
        y = o @ self.W_out.value.T
        if self.b_out is not None:
            y = y + self.b_out.value
        self._cache = ("cross", flat, q, k, v, p, o, scale, (n, tq, tk))
        return xp.reshape(y, (n, tq, e))

    def _keep_cross(self, xp, n, tq, tk, attn_mask, key_padding_mask, device):
        """As `_keep`, for ``tq`` queries over ``tk`` keys."""
        if tq == tk:
            return self._keep(xp, n, tq, attn_mask, key_padding_mask, device)
        if self.causal:
            msg = "MultiHeadAttention(causal=True) needs as many queries as keys"
            raise ValueError(msg)
        keep = None
        if attn_mask is not None:
            if tuple(attn_mask.shape) != (tq, tk) or attn_mask.dtype != xp.bool:
                msg = (f"MultiHeadAttention: attn_mask must be a boolean array of "
                       f"shape {(tq, tk)} (queries, keys), got shape "
                       f"{tuple(attn_mask.shape)} and dtype {attn_mask.dtype}")
                raise ValueError(msg)
            keep = xp.reshape(~attn_mask, (1, 1, tq, tk))
        if key_padding_mask is not None:
            if (tuple(key_padding_mask.shape) != (n, tk)
                    or key_padding_mask.dtype != xp.bool):
                msg = (f"MultiHeadAttention: key_padding_mask must be a boolean "
                       f"array of shape {(n, tk)} (batch, keys), got shape "
                       f"{tuple(key_padding_mask.shape)} and dtype "
                       f"{key_padding_mask.dtype}")
                raise ValueError(msg)
            pad = xp.reshape(~key_padding_mask, (n, 1, 1, tk))
            keep = pad if keep is None else keep & pad
        return keep

    def _backward_cross(self, dy, need_dx):
        xp = namespace(dy)
        _, flat, q, k, v, p, o, scale, (n, tq, tk) = self._cache
        e = self.embed_dim
        dq, dk, dv = self._heads_backward(xp, dy, q, k, v, p, o, scale, n, tq)
        # each projection's gradient: the heads back to (rows, E), then the
        # chain rule of  proj = a @ W_i^T + b_i
        dprojs = [xp.reshape(xp.permute_dims(g, (0, 2, 1, 3)), (-1, e))
                  for g in (dq, dk, dv)]
        if self.W_in.trainable:
            self.W_in.accumulate(xp.concat([g.T @ a for g, a in zip(
                dprojs, flat, strict=True)], axis=0))
        if self.b_in is not None:
            self.b_in.accumulate(xp.concat([xp.sum(g, axis=0) for g in dprojs]))
        if not need_dx:
            return None
        steps = (tq, tk, tk)
        return [xp.reshape(g @ self.W_in.value[i * e:(i + 1) * e, :], (n, steps[i], e))
                for i, g in enumerate(dprojs)]

    def _heads_backward(self, xp, dy, q, k, v, p, o, scale, n, tq):
        """From ``dy`` back through the output projection, ``p @ v`` and the
        softmax to the heads' ``dq, dk, dv`` (``(n, h, t, d)`` each);
        accumulates ``W_out`` and ``b_out``."""
        e, h = self.embed_dim, self.num_heads
        dy2 = xp.reshape(dy, (n * tq, e))
        if self.W_out.trainable:
            self.W_out.accumulate(dy2.T @ o)
        if self.b_out is not None:
            self.b_out.accumulate(xp.sum(dy2, axis=0))
        dheads = xp.permute_dims(xp.reshape(dy2 @ self.W_out.value,
                                            (n, tq, h, e // h)), (0, 2, 1, 3))
        dp = dheads @ xp.permute_dims(v, (0, 1, 3, 2))
        dv = xp.permute_dims(p, (0, 1, 3, 2)) @ dheads
        # softmax backward, row by row: p * (dp - sum(dp * p))
        ds = p * (dp - xp.sum(dp * p, axis=-1, keepdims=True)) * scale
        return ds @ k, xp.permute_dims(ds, (0, 1, 3, 2)) @ q, dv

    def _backward(self, dy, need_dx):
        if isinstance(self._cache[0], str):  # ("cross", ...): three inputs
            return self._backward_cross(dy, need_dx)
        xp = namespace(dy)
        x2, q, k, v, p, o, scale, (n, t) = self._cache
        e = self.embed_dim
        dq, dk, dv = self._heads_backward(xp, dy, q, k, v, p, o, scale, n, t)
        dqkv = xp.reshape(xp.permute_dims(xp.stack([dq, dk, dv]), (1, 3, 0, 2, 4)),
                          (n * t, 3 * e))
        if self.W_in.trainable:
            self.W_in.accumulate(dqkv.T @ x2)
        if self.b_in is not None:
            self.b_in.accumulate(xp.sum(dqkv, axis=0))
        if need_dx:
            return xp.reshape(dqkv @ self.W_in.value, (n, t, e))
        return None

    def backward(self, dy):
        return self._backward(dy, need_dx=True)

    def backward_params(self, dy):
        self._backward(dy, need_dx=False)

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {"embed_dim": self.embed_dim, "num_heads": self.num_heads,
                "bias": self.b_in is not None, "causal": self.causal,
                "dtype": dtype_name(self._dtype)}

    def __repr__(self) -> str:
        causal = ", causal=True" if self.causal else ""
        heads = f"num_heads={self.num_heads}"
        return f"MultiHeadAttention({self.embed_dim}, {heads}{causal})"
