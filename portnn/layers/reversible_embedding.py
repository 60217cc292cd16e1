"""`ReversibleEmbedding`: one table for the input ids and the output logits
(weight tying, as in GPT-2 and Press & Wolf, 2017)."""

from __future__ import annotations

from .. import init as initializers
from .._namespace import namespace
from ..ops.matmul import matmul
from .embedding import Embedding


class ReversibleEmbedding(Embedding):
    """An :class:`Embedding` that also maps vectors back to the vocabulary:
    ``layer(ids)`` looks rows of ``W`` up, ``layer(h, reverse=True)`` scores
    `h` against every row, ``h @ W.T``, giving one logit per token (Keras
    Hub's layer of the same name).

    Called both ways in one graph model (a shared layer), the input
    embedding and the output projection are one ``(V, D)`` table: a language
    model saves ``V * D`` parameters and its rare tokens learn from both
    ends. The table's gradient is the sum of the two uses' gradients:
    the scatter-add of the lookup, and ``dW = dlogits^T h`` of the
    projection, whose input gradient is ``dh = dlogits W``.

    Parameters
    ----------
    num_embeddings, embedding_dim, init, padding_idx, mask_zero
        As for :class:`Embedding`; the padding row gets no gradient from
        either use.
    tie_weights : bool
        False gives the reverse direction its own ``(D, V)`` table
        ``reverse_W`` (an untied output layer with no bias).
    backend, dtype, rng : optional

    Examples
    --------
    A language model's two ends, one table:

    >>> import portnn
    >>> ids = portnn.Input((None,), dtype="int64")
    >>> table = portnn.ReversibleEmbedding(50, 8)
    >>> h = portnn.Dense(8, 8, activation="tanh")(table(ids))
    >>> model = portnn.Model(inputs=ids, outputs=table(h, reverse=True))
    >>> model.predict(portnn.get_backend().asarray([[1, 2, 3]])).shape
    (1, 3, 50)
    >>> model.num_parameters()  # 50 * 8 once, plus the Dense's 8 * 8 + 8
    472
    """

    _cache_attrs = ("_ids", "_h", "_reverse")

    def __init__(self, num_embeddings: int, embedding_dim: int, init="uniform", *,
                 tie_weights: bool = True, padding_idx: int | None = None,
                 mask_zero: bool = False, backend=None, dtype=None, rng=None) -> None:
        super().__init__(num_embeddings, embedding_dim, init, padding_idx=padding_idx,
                         mask_zero=mask_zero, backend=backend, dtype=dtype, rng=rng)
        if not isinstance(tie_weights, bool):
            msg = (f"ReversibleEmbedding: tie_weights must be True or False, got "
                   f"{tie_weights!r}")
            raise TypeError(msg)
        self.tie_weights = tie_weights
        self.reverse_W = None
        if not tie_weights:
            self.reverse_W = self.add_parameter("reverse_W", initializers.get(init)(
                (embedding_dim, num_embeddings), backend=self.backend,
                dtype=self._dtype, rng=rng))

    def forward(self, x, training=False, reverse=False):
        if not reverse:
            self._reverse = False
            return super().forward(x, training)
        self._check_backend(x, self.W)
        if x.ndim < 2 or x.shape[-1] != self.embedding_dim:
            msg = (
                f"ReversibleEmbedding(reverse=True): expected vectors (..., "
                f"{self.embedding_dim}), got shape {tuple(x.shape)}"
            )
            raise ValueError(msg)
        xp = namespace(x)
        self._reverse, self._h = True, x
        h = xp.reshape(x, (-1, self.embedding_dim))
        w = (xp.matrix_transpose(self.W.value) if self.tie_weights
             else self.reverse_W.value)
        return xp.reshape(matmul(h, w), (*x.shape[:-1], self.num_embeddings))

    def compute_mask(self, x, mask):
        """Looking ids up: :meth:`Embedding.compute_mask`; reversing
        vectors: the input's mask, passed on."""
        if namespace(x).isdtype(x.dtype, "integral"):
            return super().compute_mask(x, mask)
        return mask

    def backward(self, dy):
        if not self._reverse:
            return super().backward(dy)
        return self._reverse_grads(dy, input_grad=True)

    def backward_params(self, dy):
        if not self._reverse:
            return super().backward_params(dy)
        self._reverse_grads(dy, input_grad=False)
        return None

    def _reverse_grads(self, dy, input_grad: bool):
        """The projection's gradients: ``dW = dy^T h`` (tied; ``dW_r = h^T
        dy`` untied) and, if asked, ``dh = dy W``."""
        xp = namespace(dy)
        d, v = self.embedding_dim, self.num_embeddings
        h = xp.reshape(self._h, (-1, d))
        d2 = xp.reshape(dy, (-1, v))
        table = self.W if self.tie_weights else self.reverse_W
        if table.trainable:
            if self.tie_weights:
                grad = matmul(xp.matrix_transpose(d2), h)
                if self.padding_idx is not None:  # padding never learns
                    keep = xp.arange(v, device=grad.device) != self.padding_idx
                    grad = grad * xp.expand_dims(xp.astype(keep, grad.dtype), 1)
            else:
                grad = matmul(xp.matrix_transpose(h), d2)
            table.accumulate(grad)
        if not input_grad:
            return None
        w = table.value if self.tie_weights else xp.matrix_transpose(table.value)
        return xp.reshape(matmul(d2, w), tuple(self._h.shape))

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {**super().get_config(), "tie_weights": self.tie_weights}

    def __repr__(self) -> str:
        text = "Reversible" + super().__repr__()
        return text if self.tie_weights else f"{text[:-1]}, tie_weights=False)"
