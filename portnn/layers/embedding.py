"""`Embedding`: a lookup table from token ids to learned vectors."""

from __future__ import annotations

import math

from .. import init as initializers
from .._host import read_scalars
from .._namespace import namespace
from .._validation import data_validated
from ..ops.scatter import scatter_add
from .base import Layer, dtype_name, float_dtype


class Embedding(Layer):
    """Map integer ids to rows of a learned table ``W``.

    Parameters
    ----------
    num_embeddings : int
        Size of the vocabulary; ids must lie in ``[0, num_embeddings)``.
    embedding_dim : int
        Length of each vector.
    init : str or callable
        Initializer of ``W`` (default uniform in ``[-0.05, 0.05]``, as in
        Keras; uniform draws are bit-identical on every backend).
    padding_idx : int, optional
        PyTorch's: the row of this id (padding) starts at zero and never
        gets a gradient, so it stays zero; negative counts from the end.
    mask_zero : bool
        Keras's: id 0 is padding, and the output carries a mask (True at
        the real steps) that travels through a :class:`Sequential` or a
        graph model to the layers that use it: RNNs skip the padded steps,
        attention leaves them out of its keys, :class:`GlobalAvgPool1D`
        averages the real steps, and the loss and metrics of `fit` leave
        them out of their means and counts. Id 0 is then reserved: size
        the vocabulary one larger.
    backend, dtype, rng : optional

    Notes
    -----
    Forward is ``W[ids]`` (``take``). The backward is a scatter-add of the
    output gradients into the rows that were read, so a repeated id sums
    its gradients (:func:`portnn.ops.scatter_add`). There is no gradient
    with respect to the ids: ``backward`` returns ``None``, so an
    ``Embedding`` comes first in a model.

    Examples
    --------
    >>> import portnn
    >>> emb = portnn.Embedding(10, 4)
    >>> ids = portnn.get_backend().asarray([[1, 2, 2]])
    >>> emb(ids).shape
    (1, 3, 4)
    """

    integer_input = True
    _cache_attrs = ("_ids",)
    supports_masking = True

    def __init__(self, num_embeddings: int, embedding_dim: int, init="uniform", *,
                 padding_idx: int | None = None, mask_zero: bool = False,
                 backend=None, dtype=None, rng=None) -> None:
        super().__init__(backend)
        for name, v in (("num_embeddings", num_embeddings),
                        ("embedding_dim", embedding_dim)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                msg = f"Embedding: {name} must be a positive int, got {v!r}"
                raise ValueError(msg)
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.init = init
        self._dtype = float_dtype(self.backend, dtype)
        if padding_idx is not None:
            if (isinstance(padding_idx, bool) or not isinstance(padding_idx, int)
                    or not -num_embeddings <= padding_idx < num_embeddings):
                msg = (f"Embedding: padding_idx must be an int in "
                       f"[-{num_embeddings}, {num_embeddings}), got {padding_idx!r}")
                raise ValueError(msg)
            padding_idx %= num_embeddings
        self.padding_idx = padding_idx
        if not isinstance(mask_zero, bool):
            msg = f"Embedding: mask_zero must be True or False, got {mask_zero!r}"
            raise TypeError(msg)
        self.mask_zero = self.makes_mask = mask_zero
        self.W = self.add_parameter("W", initializers.get(init)(
            (num_embeddings, embedding_dim), backend=self.backend, dtype=self._dtype,
            rng=rng))
        if padding_idx is not None and not isinstance(self.W.value,
                                                      initializers.Unallocated):
            self.W.value = self._without_padding(self.W.value)

    def _without_padding(self, table):
        """`table` with the padding row zero (rows ``(V, D)``)."""
        xp = namespace(table)
        ids = xp.arange(table.shape[0], device=table.device)
        return xp.where(xp.expand_dims(ids == self.padding_idx, 1), 0.0, table)

    def forward(self, x, training=False):
        W = self.W
        if type(x) is not type(W.value):
            self._check_backend(x, W)
        xp = namespace(x)
        flat = xp.reshape(x, (-1,))
        if not data_validated():  # fit checks the whole array once instead
            self.check_input(flat)
        else:
            _check_integral(xp, x)
        self._ids = flat
        out = xp.take(W.value, flat, axis=0)
        return xp.reshape(out, (*x.shape, self.embedding_dim))

    def compute_mask(self, x, mask):
        """``ids != 0`` with `mask_zero` (True at the real steps); else the
        input's mask, if any."""
        return x != 0 if self.mask_zero else mask

    def check_input(self, x) -> None:
        """Ids must lie in ``[0, num_embeddings)``: CuPy's ``take`` would
        wrap around silently. One host read for the whole array."""
        xp = namespace(x)
        _check_integral(xp, x)
        if math.prod(x.shape) == 0:
            return
        low, high = (int(v) for v in read_scalars([xp.min(x), xp.max(x)]))
        if low < 0 or high >= self.num_embeddings:
            msg = (
                f"Embedding: ids must lie in [0, {self.num_embeddings}), got values "
                f"from {low} to {high}"
            )
            raise IndexError(msg)

    def backward(self, dy):
        self.backward_params(dy)

    def backward_params(self, dy):
        if not self.W.trainable:
            return
        xp = namespace(dy)
        rows = xp.reshape(dy, (-1, self.embedding_dim))
        if self.padding_idx is not None:  # padding never learns
            keep = xp.astype(self._ids != self.padding_idx, rows.dtype)
            rows = rows * xp.expand_dims(keep, 1)
        grad = xp.zeros(self.W.shape, dtype=dy.dtype, device=dy.device)
        self.W.accumulate(scatter_add(grad, self._ids, rows))

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {"num_embeddings": self.num_embeddings,
                "embedding_dim": self.embedding_dim,
                "init": self.init if isinstance(self.init, str) else "uniform",
                "padding_idx": self.padding_idx, "mask_zero": self.mask_zero,
                "dtype": dtype_name(self._dtype)}

    def __repr__(self) -> str:
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        if self.mask_zero:
            pad += ", mask_zero=True"
        return f"Embedding({self.num_embeddings}, {self.embedding_dim}{pad})"


def _check_integral(xp, ids) -> None:
    if not xp.isdtype(ids.dtype, "integral"):
        msg = (
            f"Embedding: expected integer token ids, got dtype {ids.dtype}; "
            "convert with xp.astype(ids, xp.int64)"
        )
        raise TypeError(msg)
