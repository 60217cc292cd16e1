"""`Bidirectional`: a recurrent layer run forward and, with its own
weights, backward in time, the two outputs merged."""

from __future__ import annotations

from .._namespace import namespace
from .base import Layer
from .recurrent import _Recurrent
from .registry import layer_from_json, layer_to_json

_MERGES = ("concat", "sum", "mul", "ave")


class Bidirectional(Layer):
    """Keras's wrapper over :class:`RNN`, :class:`LSTM` or :class:`GRU`.

    ``forward_layer`` reads the sequence as given; ``backward_layer`` (a
    copy of its configuration, with weights of its own) reads it reversed;
    its outputs are put back in time order and merged with the forward
    ones. With ``merge_mode="concat"`` this is PyTorch's
    ``bidirectional=True`` (forward features first), and with
    ``return_sequences=False`` the two last states.

    Parameters
    ----------
    layer : RNN, LSTM or GRU
        The forward layer.
    merge_mode : {"concat", "sum", "mul", "ave"}

    Notes
    -----
    With a mask (``Embedding(mask_zero=True)``), each sequence is reversed
    within its own length, its real steps taken to be the first ones (right
    padding, as PyTorch's packed sequences): the backward layer starts at a
    sequence's last real step, not at the padding. The reversal is a
    permutation of the steps, its own inverse, so the backward pass
    reverses the gradient the same way. The merge's chain rule: concat
    splits ``dy``; sum passes it to both; ave halves it; mul multiplies it
    by the other output.

    Examples
    --------
    >>> import portnn
    >>> bi = portnn.Bidirectional(portnn.GRU(3, 4))
    >>> x = portnn.get_backend().xp.ones((2, 5, 3), dtype=bi.forward_layer.W_ih.dtype)
    >>> bi(x).shape
    (2, 5, 8)
    """

    owns_children = True  # rebuilt from the wrapped layer's config
    uses_mask = True
    _cache_attrs = ("_child_calls", "_order", "_outs")

    def __init__(self, layer, merge_mode: str = "concat") -> None:
        if not isinstance(layer, _Recurrent):
            msg = (f"Bidirectional wraps an RNN, LSTM or GRU, got "
                   f"{type(layer).__name__}")
            raise TypeError(msg)
        if merge_mode not in _MERGES:
            msg = (f"Bidirectional: merge_mode must be one of {_MERGES}, got "
                   f"{merge_mode!r}")
            raise ValueError(msg)
        super().__init__(layer.backend)
        self.forward_layer = layer
        self.backward_layer = layer_from_json(layer_to_json(layer), layer.backend)
        self.merge_mode = merge_mode
        for child in (self.forward_layer, self.backward_layer):
            child._uses += 1  # each called once per forward: caches in place

    def children(self) -> list[Layer]:
        return [self.forward_layer, self.backward_layer]

    @property
    def return_sequences(self) -> bool:
        return self.forward_layer.return_sequences

    def compute_mask(self, x, mask):
        """The mask goes on with the sequences; last states use it up."""
        return mask if self.return_sequences else None

    def _reversal(self, xp, x, mask):
        """Per row, the step each position reads: ``length - 1 - t`` for
        the real steps, ``t`` for the padding after them."""
        n, steps = int(x.shape[0]), int(x.shape[1])
        t = xp.arange(steps, device=x.device)
        if mask is None:
            return xp.broadcast_to(steps - 1 - t, (n, steps))
        length = xp.sum(xp.astype(mask, t.dtype), axis=1, keepdims=True)
        return xp.where(t < length, length - 1 - t, t)

    @staticmethod
    def _reorder(xp, a, order):
        """``a[n, order[n, t], ...]``: the steps of each row permuted."""
        index = xp.reshape(order, tuple(order.shape) + (1,) * (a.ndim - 2))
        index = xp.broadcast_to(index, tuple(order.shape) + tuple(a.shape[2:]))
        return xp.take_along_axis(a, index, axis=1)

    def forward(self, x, training=False, mask=None):
        self.begin_calls()
        xp = namespace(x)
        extra = {} if mask is None else {"mask": mask}
        f = self.forward_child(self.forward_layer, x, training, **extra)
        self._order = order = self._reversal(xp, x, mask)
        b = self.forward_child(self.backward_layer, self._reorder(xp, x, order),
                               training, **extra)
        if self.return_sequences:
            b = self._reorder(xp, b, order)  # back in time order
        self._outs = (f, b)
        if self.merge_mode == "concat":
            return xp.concat([f, b], axis=-1)
        if self.merge_mode == "sum":
            return f + b
        if self.merge_mode == "mul":
            return f * b
        return (f + b) * 0.5

    def backward(self, dy):
        xp = namespace(dy)
        f, b = self._outs
        if self.merge_mode == "concat":
            h = int(f.shape[-1])
            df, db = dy[..., :h], dy[..., h:]
        elif self.merge_mode == "sum":
            df = db = dy
        elif self.merge_mode == "mul":
            df, db = dy * b, dy * f
        else:
            df = db = dy * 0.5
        order = self._order
        if self.return_sequences:
            db = self._reorder(xp, db, order)  # into the backward layer's order
        dx_back = self.backward_child(self.backward_layer, db)
        dx = self.backward_child(self.forward_layer, df)
        return dx + self._reorder(xp, dx_back, order)

    def get_config(self) -> dict:
        """The wrapped layer's architecture and the merge."""
        return {"layer": layer_to_json(self.forward_layer),
                "merge_mode": self.merge_mode}

    def __repr__(self) -> str:
        return f"Bidirectional({self.forward_layer!r}, merge_mode={self.merge_mode!r})"
