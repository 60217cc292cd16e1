"""The `Loss` base: a 0-d loss from `forward`, d loss / d pred from `backward`."""

from __future__ import annotations

from .._namespace import namespace
from ..backends import check_same_backend
from ..ops.reduce import total

_REDUCTIONS = ("mean", "sum")


class Loss:
    """Base class of the losses.

    Subclasses implement ``forward(pred, target)``, returning a 0-d array and
    caching what ``backward()`` needs to return ``d loss / d pred``.

    Parameters
    ----------
    reduction : {"mean", "sum"}
        Average or add the per-element losses.

    Examples
    --------
    A loss of your own: the forward pass and its hand-written gradient.

    >>> import portnn
    >>> class HalfSquared(portnn.Loss):
    ...     def forward(self, pred, target):
    ...         self.diff = pred - target
    ...         return 0.5 * (self.diff * self.diff).sum() / pred.shape[0]
    ...     def backward(self):
    ...         return self.diff / self.diff.shape[0]
    >>> loss = HalfSquared()
    >>> float(loss(portnn.asarray([[3.0]]), portnn.asarray([[1.0]])))
    2.0
    >>> loss.backward().tolist()
    [[2.0]]
    """

    #: What `forward` keeps for `backward` (predictions, targets): not
    #: state, so pickles leave it out.
    _cache_attrs: tuple[str, ...] = ()

    def __init__(self, reduction: str = "mean") -> None:
        if reduction not in _REDUCTIONS:
            msg = f"{type(self).__name__}: reduction must be one of {_REDUCTIONS}, "
            msg += f"got {reduction!r}"
            raise ValueError(msg)
        self.reduction = reduction

    def __call__(self, pred, target, sample_weight=None):
        if sample_weight is None:
            return self.forward(pred, target)
        return self.forward(pred, target, sample_weight=sample_weight)

    def __getstate__(self):
        state = self.__dict__.copy()
        for name in type(self)._cache_attrs:
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __getattr__(self, name):
        if name in type(self)._cache_attrs:
            msg = (
                f"{type(self).__name__}.backward needs a forward(pred, target) "
                f"first (no {name!r} cached)"
            )
            raise AttributeError(msg)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def forward(self, pred, target, sample_weight=None):
        """Loss of `pred` against `target`, as a 0-d array.

        `sample_weight` (one per sample, shape ``(N,)``) scales each
        sample's loss; the mean is still over the batch (Keras's
        ``sum_over_batch_size``), so weights of 1 change nothing.
        """
        raise NotImplementedError

    def backward(self):
        """Gradient of the last `forward` with respect to `pred`."""
        raise NotImplementedError

    def check_target(self, pred, target) -> None:
        """Validate a whole target array once, before a loop over batches.

        Parameters
        ----------
        pred : array
            Predictions for the first samples (their trailing shape counts).
        target : array
            Every target of the data set.

        Raises
        ------
        ValueError
            If the targets cannot go with such predictions.
        """
        want, got = tuple(pred.shape[1:]), tuple(target.shape[1:])
        if got != want and want != (*got, 1):
            msg = (
                f"{type(self).__name__}: targets of shape (N, *{got}) cannot go "
                f"with predictions of shape (N, *{want}); reshape them to "
                f"(N, *{want}) (no silent broadcasting)"
            )
            raise ValueError(msg)

    def _scale(self, n_elements: int) -> float:
        return 1.0 / n_elements if self.reduction == "mean" else 1.0

    def _reduce(self, xp, per_element, n=None):
        """The sum, or the mean, of `per_element` (`n` elements, if known)."""
        summed = total(per_element)
        if self.reduction != "mean":
            return summed
        return summed / (_size(per_element) if n is None else n)

    def _element_weights(self, sample_weight, like):
        """`sample_weight` as ``(N, 1, ...)``, to scale every element of a
        sample's loss, or, of shape ``(N, T)`` (Keras's temporal weights),
        every step of a sequence: any leading axes of the output's shape.
        None without weights."""
        if sample_weight is None:
            return None
        from ..backends import backend_of

        backend = backend_of(like)
        w = backend.asarray(sample_weight) if backend is not None else sample_weight
        if not 1 <= w.ndim <= like.ndim or tuple(w.shape) != tuple(
                like.shape[:w.ndim]):
            msg = (
                f"{type(self).__name__}: sample_weight must have one weight per "
                f"sample, shape ({like.shape[0]},), or per step of a sequence, "
                f"shape {tuple(like.shape[:2])}, got {tuple(w.shape)}"
            )
            raise ValueError(msg)
        xp = namespace(like)
        w = xp.astype(w, like.dtype)
        return xp.reshape(w, tuple(w.shape) + (1,) * (like.ndim - w.ndim))

    def _match(self, pred, target):
        """Check backends and shapes of an element-wise loss's arguments."""
        if (type(pred) is type(target) and target.dtype == pred.dtype
                and target.shape == pred.shape):
            return target  # the common case, in three reads
        if type(pred) is not type(target):
            check_same_backend(pred, target, where=type(self).__name__)
        if target.dtype != pred.dtype:
            # integer or bool labels (0/1), or another float precision
            target = namespace(target).astype(target, pred.dtype)
        if tuple(target.shape) == tuple(pred.shape):
            return target
        if tuple(pred.shape) == (*target.shape, 1):
            # (N,) targets for an (N, 1) output: the common case, made explicit.
            return namespace(target).reshape(target, tuple(pred.shape))
        msg = (
            f"{type(self).__name__}: prediction shape {tuple(pred.shape)} and "
            f"target shape {tuple(target.shape)} differ; reshape the target to "
            f"{tuple(pred.shape)} (no silent broadcasting)"
        )
        raise ValueError(msg)

    def get_config(self) -> dict:
        """Constructor arguments: the public attributes the constructor
        takes (all of them if it takes ``**kwargs``), so a subclass with
        its own signature is rebuilt by ``cls(**config)``."""
        import inspect

        params = inspect.signature(type(self).__init__).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        return {k: v for k, v in vars(self).items()
                if not k.startswith("_") and (takes_any or k in params)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reduction={self.reduction!r})"


def _size(x) -> int:
    n = 1
    for s in x.shape:
        n *= s
    return n
