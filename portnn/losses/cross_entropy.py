"""`CrossEntropy`: softmax cross-entropy on logits, with the softmax gradient
fused in (or, Keras style, on probabilities)."""

from __future__ import annotations

import math

from .._host import read_scalars
from .._namespace import namespace
from .._validation import data_validated
from ..backends import check_same_backend
from .base import Loss


class CrossEntropy(Loss):
    """Softmax cross-entropy from logits (or from probabilities).

    Parameters
    ----------
    label_smoothing : float, default 0
        Mix the target distribution with the uniform one:
        ``q = (1 - eps) q + eps / C`` (as ``torch.nn.CrossEntropyLoss``).
    reduction : {"mean", "sum"}
        Average or sum over samples.
    weight : sequence of float, optional
        One weight per class, with PyTorch's semantics
        (``torch.nn.functional.cross_entropy(weight=...)``): each term is
        scaled by its class's weight, and with integer labels the mean
        divides by the summed weights of the samples' classes.
    from_logits : bool, default True
        True: `pred` holds logits (the last layer has no softmax; the
        softmax gradient is fused, the stable and fast way). False: `pred`
        holds probabilities (a softmax output), as Keras's
        ``categorical_crossentropy``: each row is normalized to sum 1 and
        clipped to ``[1e-7, 1 - 1e-7]`` before the log. The names
        ``"categorical_crossentropy"`` and
        ``"sparse_categorical_crossentropy"`` mean this, as in Keras.
    ignore_index : int, optional
        With integer labels, positions labelled so (padding) add nothing to
        the loss or its gradient, and the mean is over the other positions
        (their summed class weights with `weight`), as PyTorch's
        ``ignore_index``; the metrics of `fit` leave them out too. A batch
        with every position ignored has loss 0 (PyTorch gives NaN).
    axis : int, default -1
        The class axis of `pred` (and of probability targets). ``axis=1``
        takes PyTorch's ``(N, C, d1, ...)`` layout (per-pixel logits of a
        segmentation network); integer labels are then ``(N, d1, ...)``.
        The metrics of `fit` read the classes on the same axis.

    Notes
    -----
    `pred` holds logits of shape ``(..., C)`` (classes in the last axis by
    default; see `axis`). `target` is either integer labels of shape
    ``(...)`` or class probabilities/one-hot of shape ``(..., C)``. Another
    class axis is moved last before the loss and the gradient moved back
    after it (a transposition, its own chain rule). With ``p = softmax(z)``
    and ``sum(q) = 1``::

        l = -sum(q * log p)        dl/dz = p - q

    the fused gradient: no softmax Jacobian is ever formed. On probabilities
    ``p`` (``from_logits=False``) with ``p^ = clip(p / sum p)``::

        l = -sum(q * log p^)       g = -q / p^ (0 where clipped)
        dl/dp = (g - sum(g * p^)) / sum p

    Examples
    --------
    >>> import portnn
    >>> b = portnn.get_backend()
    >>> z = b.asarray([[2.0, 0.0, 0.0]])
    >>> y = b.asarray([0])
    >>> round(float(portnn.CrossEntropy()(z, y)), 4)
    0.2395
    """

    _cache_attrs = ("_p", "_q", "_k", "_plain", "_s", "_inside", "_moved")

    #: Keras's clip of probabilities before the log
    EPSILON = 1e-7

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean",
                 from_logits: bool = True, weight=None,
                 ignore_index: int | None = None, axis: int = -1) -> None:
        super().__init__(reduction)
        if isinstance(axis, bool) or not isinstance(axis, int):
            msg = f"CrossEntropy: axis must be an int, got {axis!r}"
            raise TypeError(msg)
        self.axis = axis
        if ignore_index is not None and (isinstance(ignore_index, bool)
                                         or not isinstance(ignore_index, int)):
            msg = f"CrossEntropy: ignore_index must be an int, got {ignore_index!r}"
            raise TypeError(msg)
        self.ignore_index = ignore_index
        self.from_logits = bool(from_logits)
        self.weight = None if weight is None else [float(w) for w in weight]
        if not 0.0 <= label_smoothing <= 1.0:
            msg = (
                "CrossEntropy: label_smoothing must be in [0, 1], "
                f"got {label_smoothing!r}"
            )
            raise ValueError(msg)
        self.label_smoothing = float(label_smoothing)

    def _class_axis(self, ndim: int):
        """The class axis as a positive index, or None when it is last."""
        if not -ndim <= self.axis < ndim:
            msg = (f"CrossEntropy: axis {self.axis} is out of range for "
                   f"predictions with {ndim} axes")
            raise ValueError(msg)
        axis = self.axis % ndim
        return None if axis == ndim - 1 else axis

    def to_last(self, pred, target=None):
        """`pred` (and soft `target`) with the class axis moved last."""
        axis = self._class_axis(pred.ndim)
        if axis is None:
            return pred, target
        xp = namespace(pred)
        if target is not None and tuple(target.shape) == tuple(pred.shape):
            target = xp.moveaxis(target, axis, -1)
        return xp.moveaxis(pred, axis, -1), target

    def forward(self, pred, target, sample_weight=None):
        self._moved = self._class_axis(pred.ndim)
        if self._moved is not None:
            pred, target = self.to_last(pred, target)
        if type(pred) is not type(target):
            check_same_backend(pred, target, where="CrossEntropy")
        xp = namespace(pred)
        if pred.ndim < 1:
            msg = "CrossEntropy: pred must have a class axis, got a 0-d array"
            raise ValueError(msg)
        n_classes = pred.shape[-1]
        valid = None
        if self.ignore_index is not None and xp.isdtype(target.dtype, "integral"):
            valid = target != self.ignore_index  # padding: out of loss and mean
            target = xp.where(valid, target, xp.zeros_like(target))
        q, self._plain = self._target_distribution(xp, pred, target, n_classes)
        # a = the weight of each log-probability in the loss: the target
        # distribution, scaled by class and sample weights where given
        rows = math.prod(pred.shape[:-1])
        denominator = rows if self.reduction == "mean" else 1
        if valid is not None:
            kept = xp.astype(valid, pred.dtype)
            q = q * xp.expand_dims(kept, axis=-1)  # after smoothing: all zero
            self._plain = False
            if self.reduction == "mean":
                denominator = xp.sum(kept)
        if self.weight is not None:
            cw = self._class_weights(xp, pred, n_classes)
            if self.reduction == "mean" and xp.isdtype(target.dtype, "integral"):
                taken = xp.take(cw, xp.reshape(target, (-1,)))
                if valid is not None:
                    taken = taken * xp.reshape(kept, (-1,))
                denominator = xp.sum(taken)
            q = q * cw
            self._plain = False
        if valid is not None and self.reduction == "mean":
            # every position ignored: loss and gradient 0 (not 0/0)
            denominator = xp.where(denominator > 0, denominator, 1.0)
        w = self._element_weights(sample_weight, pred[..., 0])
        if w is not None:
            q = q * xp.expand_dims(w, axis=-1)
            self._plain = False
        self._q = q
        self._k = 1.0 / denominator
        if not self.from_logits:
            return self._forward_probabilities(xp, pred, q)
        # NOTE: log-softmax via the max shift: exp never overflows and
        # log never sees 0.
        shifted = pred - xp.max(pred, axis=-1, keepdims=True)
        e = xp.exp(shifted)
        s = xp.sum(e, axis=-1, keepdims=True)
        log_p = shifted - xp.log(s)
        self._p = e / s
        total = -xp.sum(q * log_p)
        return total * self._k

    def _class_weights(self, xp, pred, n_classes):
        if len(self.weight) != n_classes:
            msg = (
                f"CrossEntropy: weight has {len(self.weight)} entries for "
                f"{n_classes} classes"
            )
            raise ValueError(msg)
        return xp.asarray(self.weight, dtype=pred.dtype, device=pred.device)

    def _forward_probabilities(self, xp, pred, q):
        # NOTE: normalize then clip, as Keras does: log never sees 0
        s = xp.sum(pred, axis=-1, keepdims=True)
        eps = self.EPSILON
        p = pred / s
        self._inside = (p > eps) & (p < 1.0 - eps)
        self._p = xp.clip(p, eps, 1.0 - eps)
        self._s = s
        return -xp.sum(q * xp.log(self._p)) * self._k

    def backward(self):
        grad = self._backward_last()
        if self._moved is not None:  # the class axis back where it was
            grad = namespace(grad).moveaxis(grad, -1, self._moved)
        return grad

    def _backward_last(self):
        xp = namespace(self._p)
        p, q = self._p, self._q
        if not self.from_logits:
            g = xp.where(self._inside, -q / p, 0.0)
            return (g - xp.sum(g * p, axis=-1, keepdims=True)) / self._s * self._k
        if self._plain:  # q sums to one per row: the classic p - q
            return (p - q) * self._k
        return (p * xp.sum(q, axis=-1, keepdims=True) - q) * self._k

    def check_target(self, pred, target) -> None:
        """Shapes, and the range of integer labels over the whole array (one
        host read)."""
        pred, target = self.to_last(pred, target)
        xp = namespace(target)
        n_classes = pred.shape[-1]
        if xp.isdtype(target.dtype, "integral"):
            self._check_label_shape(pred.shape, target.shape, whole=True)
            if self.ignore_index is not None:  # padding may lie outside [0, C)
                target = xp.where(target != self.ignore_index, target,
                                  xp.zeros_like(target))
            self._check_label_range(xp, target, n_classes)
        else:
            n = min(int(pred.shape[0]), int(target.shape[0]))
            self._check_soft_shape(pred[:n, ...].shape, target[:n, ...].shape)

    def _check_label_shape(self, pred_shape, target_shape, whole=False):
        want = tuple(pred_shape[:-1])
        got = tuple(target_shape)
        if (got[1:] != want[1:]) if whole else (got != want):
            msg = (
                f"CrossEntropy: integer labels must have shape (N, ...) = "
                f"{want} for logits of shape {tuple(pred_shape)} (classes in the "
                f"last axis), got {got}"
            )
            raise ValueError(msg)

    def _check_soft_shape(self, pred_shape, target_shape):
        if tuple(target_shape) == tuple(pred_shape[:-1]):
            msg = (
                f"CrossEntropy: float targets of shape {tuple(target_shape)} look "
                "like class labels; labels must be integers: cast them "
                "(xp.astype(y, xp.int64)), or pass one-hot/probabilities of shape "
                f"{tuple(pred_shape)}"
            )
            raise TypeError(msg)
        if tuple(target_shape) != tuple(pred_shape):
            msg = (
                f"CrossEntropy: probability/one-hot targets must have the "
                f"logits' shape {tuple(pred_shape)}, got {tuple(target_shape)}"
            )
            raise ValueError(msg)

    @staticmethod
    def _check_label_range(xp, target, n_classes):
        if math.prod(target.shape) == 0:
            return
        low, high = (int(v) for v in read_scalars([xp.min(target), xp.max(target)]))
        if low < 0 or high >= n_classes:
            msg = (
                f"CrossEntropy: labels must lie in [0, {n_classes}) for "
                f"{n_classes} classes; got min {low}, max {high}"
            )
            raise ValueError(msg)

    def _target_distribution(self, xp, pred, target, n_classes):
        eps = self.label_smoothing
        if xp.isdtype(target.dtype, "integral"):
            self._check_label_shape(pred.shape, target.shape)
            if not data_validated():  # fit checks the whole array once instead
                self._check_label_range(xp, target, n_classes)
            classes = xp.arange(n_classes, dtype=target.dtype, device=target.device)
            q = xp.astype(xp.expand_dims(target, axis=-1) == classes, pred.dtype)
            sums_to_one = True
        else:
            self._check_soft_shape(pred.shape, target.shape)
            q = xp.astype(target, pred.dtype)
            # Soft targets need not sum to one; then the general gradient is used.
            sums_to_one = False
        if eps > 0.0:
            q = q * (1.0 - eps) + eps / n_classes
        return q, sums_to_one

    def __repr__(self) -> str:
        probs = "" if self.from_logits else ", from_logits=False"
        if self.weight is not None:
            probs += f", weight={self.weight}"
        if self.ignore_index is not None:
            probs += f", ignore_index={self.ignore_index}"
        if self.axis != -1:
            probs += f", axis={self.axis}"
        return (
            f"CrossEntropy(label_smoothing={self.label_smoothing}, "
            f"reduction={self.reduction!r}{probs})"
        )
