"""Metrics: figures accumulated on the device over an epoch.

A :class:`Metric` adds each batch into device arrays (`update`) and turns
them into its figure at the end (`totals`, 0-d device arrays read with the
epoch's other figures in one transfer, then `result` on the host). An
epoch costs one host read however many batches it has, and figures such as
F1, AUC or R² are exact over the epoch, not means of batch figures.

Names follow scikit-learn's scorers: ``"accuracy"``, ``"top_k_accuracy"``
(k=2) and ``"top_5_accuracy"``, ``"precision"``, ``"recall"``, ``"f1"``
(binary) and their ``_macro``, ``_micro`` and ``_weighted`` forms,
``"roc_auc"``, ``"r2"``, ``"neg_mean_squared_error"`` (and
``"mean_squared_error"``/``"mse"``), ``"neg_mean_absolute_error"`` (and
``"mae"``), ``"neg_root_mean_squared_error"``. Any ``metric(pred, target)``
returning a batch mean also works.

Binary losses (BCE, BCEWithLogits) make every output element a binary
decision (Keras's binary accuracy): ``accuracy`` thresholds element-wise and
counts every element, so a per-pixel ``(N, 1, H, W)`` output scores per
pixel. Their labels run along axis 1: one channel (``(N,)``, ``(N, 1)``,
``(N, 1, H, W)``) is one binary task over every element, where
``precision``/``recall``/``f1`` and their averages are scikit-learn's on the
flattened arrays; ``k > 1`` channels (``(N, k)``, ``(N, k, H, W)``) are
``k`` labels (scikit-learn's multilabel indicator): ``_micro`` pools every
label's counts, ``_macro`` averages the ``k`` labels' scores, ``_weighted``
weighs them by their positives, the plain binary form refuses them, and
``roc_auc`` is the mean of the labels' AUCs (``average="macro"``).

``greater_is_better(name)`` gives a logged figure's direction (scikit-learn's
scorer convention: ``neg_*`` errors, accuracies, F1, AUC and R2 grow; losses
and plain errors shrink); callbacks with ``mode="auto"`` use it.
"""

from __future__ import annotations

import copy
import math
import re

from .._host import accumulator_dtype
from .._namespace import namespace


def _labels_and_guesses(pred, target, threshold, binary=False):
    """Integer true classes and predicted classes, flattened. `binary`
    (a binary loss): every element is thresholded, whatever the shape."""
    xp = namespace(pred)
    if pred.ndim >= 2 and pred.shape[-1] > 1 and not binary:
        guess = xp.argmax(pred, axis=-1)
        if target.ndim == pred.ndim:
            target = xp.argmax(target, axis=-1)
        truth = xp.astype(target, guess.dtype)
    else:
        target = _like(target, pred)
        guess = xp.astype(pred > threshold, xp.int64)
        truth = xp.astype(xp.astype(target, pred.dtype) > 0.5, xp.int64)
    return xp.reshape(truth, (-1,)), xp.reshape(guess, (-1,))


def _spread(xp, mask, n: int):
    """A step mask ``(N, T)`` as one flag per element of `n` flattened
    (row-major) elements of those steps' outputs."""
    steps = math.prod(mask.shape)
    if n % steps:
        msg = (f"a mask of shape {tuple(mask.shape)} does not cover outputs of "
               f"{n} elements")
        raise ValueError(msg)
    column = xp.reshape(mask, (-1, 1))
    return xp.reshape(xp.broadcast_to(column, (steps, n // steps)), (-1,))


def _kept(xp, truth, ignore_index, mask):
    """The flattened positions that count (not ignored, not padding), or
    None when every one does."""
    kept = None if ignore_index is None else truth != ignore_index
    if mask is not None:
        real = _spread(xp, mask, int(truth.shape[0]))
        kept = real if kept is None else kept & real
    return kept


def _like(target, pred):
    """`target` in `pred`'s shape (``(N,)`` labels of an ``(N, 1)`` output)."""
    if tuple(target.shape) == tuple(pred.shape):
        return target
    if math.prod(target.shape) != math.prod(pred.shape):
        msg = (f"targets of shape {tuple(target.shape)} do not match outputs of "
               f"shape {tuple(pred.shape)}")
        raise ValueError(msg)
    return namespace(target).reshape(target, tuple(pred.shape))


def _label_columns(array):
    """An output as ``(elements, labels)``: labels along axis 1 (channels),
    every other axis pooled; ``(N,)`` is one label."""
    xp = namespace(array)
    if array.ndim == 1:
        return xp.reshape(array, (-1, 1))
    k = int(array.shape[1])
    if array.ndim > 2:
        array = xp.moveaxis(array, 1, -1)
    return xp.reshape(array, (-1, k))


def _n_labels(pred) -> int:
    return int(pred.shape[1]) if pred.ndim >= 2 else 1


def accuracy(pred, target, threshold: float = 0.5) -> float:
    """Fraction of correct predictions, as a Python float (one host read).

    Parameters
    ----------
    pred : array
        ``(N, C)`` scores (argmax is the class) or ``(N,)``/``(N, 1)``
        probabilities or logits of a binary task.
    target : array
        Integer labels ``(N,)``, one-hot ``(N, C)`` or binary ``{0, 1}``.
    threshold : float
        Decision threshold of a binary task (0.5 for probabilities, 0 for
        logits).

    Examples
    --------
    >>> import portnn
    >>> b = portnn.get_backend()
    >>> portnn.training.accuracy(b.asarray([[0.1, 0.9], [0.8, 0.2]]), b.asarray([1, 1]))
    0.5
    """
    xp = namespace(pred)
    truth, guess = _labels_and_guesses(pred, target, threshold)
    return float(xp.mean(xp.astype(truth == guess, pred.dtype)))


class Metric:
    """Base class: a figure accumulated on the device over an epoch.

    Subclasses set `name` and implement :meth:`reset`, :meth:`update`,
    :meth:`totals` (0-d device arrays to read) and :meth:`result` (the
    figure from their host values).
    """

    name = "metric"
    #: the direction of improvement (None: unknown, e.g. a user's function)
    greater_is_better: bool | None = None
    #: whether `update` takes ``mask=`` (an output's padded steps left out)
    supports_mask = False
    #: device arrays summed over the ranks, and host counts added up
    _sums: tuple[str, ...] = ()
    _counts: tuple[str, ...] = ()

    def reduce(self, world) -> None:
        """Combine the ranks' accumulations (data-parallel training): the
        default sums `_sums` and adds `_counts`."""
        for name in self._sums:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, world.all_reduce(value))
        if self._counts:
            totals = world.all_reduce_numbers([getattr(self, n) for n in self._counts])
            for name, total in zip(self._counts, totals, strict=True):
                setattr(self, name, int(total))

    def reset(self, backend) -> None:
        """Start an epoch on `backend`'s device."""
        self.backend = backend
        self.dtype = accumulator_dtype(backend)
        self._start()

    def _start(self) -> None:
        raise NotImplementedError

    def _zero(self):
        return self.backend.xp.zeros((), dtype=self.dtype, device=self.backend.device)

    def update(self, pred, target, mask=None) -> None:
        """Add one batch (no host read); `mask` ``(N, T)`` marks the real
        steps of a masked output, where `supports_mask`."""
        raise NotImplementedError

    def totals(self) -> list:
        """What to read: device arrays (read with the epoch's other figures
        in one transfer)."""
        raise NotImplementedError

    def result(self, totals: list[float]) -> float:
        """The figure from the host values of :meth:`totals`, flattened and
        concatenated."""
        return totals[0]

    def fresh(self) -> Metric:
        """An unaccumulated copy (the same settings)."""
        other = copy.copy(self)
        for key in [k for k in vars(other) if k.startswith("_")]:
            delattr(other, key)
        return other

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Accuracy(Metric):
    """Fraction of correct predictions over the epoch (every step of a
    sequence counts).

    Parameters
    ----------
    threshold : float
        Decision threshold of a binary task with one output (0.5 for
        probabilities, 0 for logits); multi-class outputs use the argmax.
    binary : bool
        Every output element is a binary decision (a binary loss:
        multi-label and per-pixel outputs are thresholded element-wise, as
        Keras's binary accuracy; scikit-learn's multilabel ``accuracy_score``
        is the stricter subset accuracy).

    Examples
    --------
    >>> import portnn
    >>> b = portnn.get_backend()
    >>> acc = Accuracy()
    >>> acc.reset(b)
    >>> acc.update(b.asarray([[0.1, 0.9], [0.8, 0.2]]), b.asarray([1, 1]))
    >>> acc.update(b.asarray([[0.3, 0.7]]), b.asarray([1]))
    >>> round(acc.result([float(t) for t in acc.totals()]), 4)
    0.6667
    """

    name = "accuracy"
    greater_is_better = True
    supports_mask = True
    # positions kept (not ignored, not padding) are counted on the device;
    # `_filtered` counts the batches that left some out, on every rank
    _sums, _counts = ("_correct", "_kept"), ("_count", "_filtered")

    def __init__(self, threshold: float = 0.5, name: str = "accuracy",
                 binary: bool = False, ignore_index: int | None = None) -> None:
        self.threshold = float(threshold)
        self.name = name
        self.binary = bool(binary)
        self.ignore_index = ignore_index

    def _start(self):
        self._correct, self._count, self._kept = self._zero(), 0, self._zero()
        self._filtered = 0

    def update(self, pred, target, mask=None):
        xp = namespace(pred)
        truth, guess = _labels_and_guesses(pred, target, self.threshold, self.binary)
        hit = truth == guess
        kept = _kept(xp, truth, self.ignore_index, mask)
        if kept is not None:
            hit = hit & kept
            self._kept = self._kept + xp.sum(xp.astype(kept, self.dtype))
            self._filtered += 1
        self._correct = self._correct + xp.sum(xp.astype(hit, self.dtype))
        self._count += math.prod(truth.shape)

    def totals(self):
        return [self._correct, self._kept]

    def result(self, totals):
        if self._filtered:
            return totals[0] / max(totals[1], 1)
        return totals[0] / max(self._count, 1)


class TopKAccuracy(Metric):
    """Fraction of samples whose true class is among the `k` highest scores
    (scikit-learn's ``top_k_accuracy_score``: among equal scores the higher
    class index ranks first, so ties are not all hits)."""

    greater_is_better = True
    supports_mask = True
    _sums, _counts = ("_hits", "_kept"), ("_count", "_filtered")

    def __init__(self, k: int = 5, name: str | None = None,
                 ignore_index: int | None = None) -> None:
        self.k = int(k)
        self.name = name or f"top_{self.k}_accuracy"
        self.ignore_index = ignore_index

    def _start(self):
        self._hits, self._count, self._kept = self._zero(), 0, self._zero()
        self._filtered = 0

    def update(self, pred, target, mask=None):
        xp = namespace(pred)
        if pred.ndim < 2 or pred.shape[-1] < 2:
            shape = tuple(pred.shape)
            msg = f"{self.name} needs (N, ..., C) class scores, got shape {shape}"
            raise ValueError(msg)
        if target.ndim == pred.ndim:  # one-hot or probabilities
            target = xp.argmax(target, axis=-1)
        if pred.ndim > 2:  # every step of a sequence is a sample
            pred = xp.reshape(pred, (-1, pred.shape[-1]))
            target = xp.reshape(target, (-1,))
        truth = xp.astype(target, xp.int64)
        kept = _kept(xp, truth, self.ignore_index, mask)
        if kept is not None:
            truth = xp.where(kept, truth, xp.zeros_like(truth))
            self._kept = self._kept + xp.sum(xp.astype(kept, self.dtype))
            self._filtered += 1
        column = xp.reshape(truth, (-1, 1))
        own = xp.take_along_axis(pred, column, axis=1)
        index = xp.arange(pred.shape[1], dtype=truth.dtype, device=truth.device)
        # classes ranked higher: a greater score, or an equal one and a
        # greater index (scikit-learn's reversed stable argsort)
        above = xp.sum(xp.astype((pred > own) | ((pred == own) & (index > column)),
                                 xp.int64), axis=1)
        hit = above < self.k
        if kept is not None:
            hit = hit & kept
        self._hits = self._hits + xp.sum(xp.astype(hit, self.dtype))
        self._count += int(pred.shape[0])

    def totals(self):
        return [self._hits, self._kept]

    def result(self, totals):
        if self._filtered:
            return totals[0] / max(totals[1], 1)
        return totals[0] / max(self._count, 1)


class _Confusion(Metric):
    """Precision, recall or F1 from the epoch's confusion matrix (counts on
    the device, ``C x C``), with scikit-learn's averages and
    ``zero_division=0``. Under a binary loss with ``k > 1`` labels (axis 1)
    the counts are per label instead: true positives, predicted and true
    positives, a ``3 x k`` array (scikit-learn's multilabel averages)."""

    greater_is_better = True
    _sums = ("_matrix",)

    def reduce(self, world) -> None:
        # a rank that saw no batch has no matrix yet: everyone sends one
        if self._matrix is None:
            return
        self._matrix = world.all_reduce(self._matrix)

    def __init__(self, kind: str, average: str, threshold: float = 0.5,
                 name: str | None = None, binary: bool = False,
                 ignore_index: int | None = None) -> None:
        if kind not in ("precision", "recall", "f1"):
            raise ValueError(f"unknown confusion metric {kind!r}")
        if average not in ("binary", "macro", "micro", "weighted"):
            raise ValueError(f"unknown average {average!r}")
        self.kind, self.average, self.threshold = kind, average, float(threshold)
        self.name = name or (kind if average == "binary" else f"{kind}_{average}")
        self.binary = bool(binary)
        self.ignore_index = ignore_index

    def _start(self):
        self._matrix = None
        self._multilabel = False

    supports_mask = True

    def update(self, pred, target, mask=None):
        xp = namespace(pred)
        if self.binary and _n_labels(pred) > 1 and not (
                mask is not None and pred.ndim == 3 and pred.shape[-1] == 1):
            if mask is not None:
                msg = (f"{self.name}: labels along axis 1 of shape "
                       f"{tuple(pred.shape)} cannot leave out a sequence's "
                       "padded steps (the mask marks axis 1 as time)")
                raise ValueError(msg)
            return self._update_labels(pred, target)
        if self.binary:  # one label: a two-class task over every element
            truth, guess = _labels_and_guesses(pred, target, self.threshold, True)
            self._add_matrix(xp, truth, guess, 2, mask)
            return None
        n_classes = int(pred.shape[-1]) if pred.ndim >= 2 and pred.shape[-1] > 1 else 2
        if self.average == "binary" and n_classes != 2:
            msg = (f"{self.name} is for binary tasks; with {n_classes} classes use "
                   f"{self.kind}_macro, _micro or _weighted")
            raise ValueError(msg)
        truth, guess = _labels_and_guesses(pred, target, self.threshold)
        self._add_matrix(xp, truth, guess, n_classes, mask)
        return None

    def _add_matrix(self, xp, truth, guess, n_classes, mask=None):
        classes = xp.arange(n_classes, dtype=truth.dtype, device=truth.device)
        true_hot = xp.astype(xp.expand_dims(truth, 1) == classes, self.dtype)
        guess_hot = xp.astype(xp.expand_dims(guess, 1) == classes, self.dtype)
        kept = _kept(xp, truth, self.ignore_index, mask)
        if kept is not None:  # an ignored or padded position: no row at all
            guess_hot = guess_hot * xp.expand_dims(xp.astype(kept, self.dtype), 1)
        counts = xp.matrix_transpose(true_hot) @ guess_hot  # [true, predicted]
        self._matrix = counts if self._matrix is None else self._matrix + counts

    def _update_labels(self, pred, target):
        xp = namespace(pred)
        k = _n_labels(pred)
        if self.average == "binary":
            msg = (f"{self.name} is for one binary label; outputs of shape "
                   f"{tuple(pred.shape)} hold {k} labels (axis 1): use "
                   f"{self.kind}_macro, _micro or _weighted")
            raise ValueError(msg)
        guess = _label_columns(xp.astype(pred > self.threshold, self.dtype))
        truth = _label_columns(xp.astype(
            xp.astype(_like(target, pred), self.dtype) > 0.5, self.dtype))
        counts = xp.stack([xp.sum(truth * guess, axis=0), xp.sum(guess, axis=0),
                           xp.sum(truth, axis=0)])  # tp, predicted, support
        self._multilabel = True
        self._matrix = counts if self._matrix is None else self._matrix + counts

    def totals(self):
        return [] if self._matrix is None else [self._matrix]

    def result(self, totals):
        if not totals:
            return 0.0
        if self._multilabel:
            return self._result_labels(totals)
        c = int(round(math.sqrt(len(totals))))
        m = [totals[i * c:(i + 1) * c] for i in range(c)]
        tp = [m[k][k] for k in range(c)]
        support = [sum(m[k]) for k in range(c)]                  # true count
        predicted = [sum(m[r][k] for r in range(c)) for k in range(c)]
        if self.average == "binary":
            return _score(self.kind, tp[1], predicted[1], support[1])
        if self.average == "micro":
            return _score(self.kind, sum(tp), sum(predicted), sum(support))
        # classes present in the labels or the predictions, as scikit-learn
        present = [k for k in range(c) if support[k] or predicted[k]]
        scores = [_score(self.kind, tp[k], predicted[k], support[k]) for k in present]
        if self.average == "macro":
            return sum(scores) / len(scores) if scores else 0.0
        total = sum(support[k] for k in present)
        return sum(s * support[k] for s, k in zip(scores, present, strict=True)) / (
            total or 1.0)

    def _result_labels(self, totals):
        k = len(totals) // 3
        tp, predicted, support = totals[:k], totals[k:2 * k], totals[2 * k:]
        if self.average == "micro":
            return _score(self.kind, sum(tp), sum(predicted), sum(support))
        scores = [_score(self.kind, *c) for c in zip(tp, predicted, support,
                                                     strict=True)]
        if self.average == "macro":  # every label counts (scikit-learn)
            return sum(scores) / k
        total = sum(support)
        return sum(s * n for s, n in zip(scores, support, strict=True)) / (
            total or 1.0)


def _score(kind, tp, predicted, support):
    if kind == "precision":
        return tp / predicted if predicted else 0.0
    if kind == "recall":
        return tp / support if support else 0.0
    denominator = predicted + support  # 2 tp + fp + fn
    return 2.0 * tp / denominator if denominator else 0.0


class ROCAUC(Metric):
    """Area under the ROC curve of a binary task, exact (the Mann-Whitney
    statistic with average ranks for ties, computed on the device from the
    epoch's scores: ``roc_auc_score``). Under a binary loss with ``k > 1``
    labels (axis 1) it is the mean of the labels' AUCs, as scikit-learn's
    ``average="macro"``. A NaN score is an error, as in scikit-learn."""

    name = "roc_auc"
    greater_is_better = True

    def __init__(self, binary: bool = False) -> None:
        self.binary = bool(binary)

    def reduce(self, world) -> None:
        """All the ranks' scores and labels (ranks are exact, not summable)."""
        xp, b = self.backend.xp, self.backend
        for name in ("_scores", "_labels"):
            mine = getattr(self, name)
            # flat, the number of labels first (an idle rank sends [0])
            width = [float(mine[0].shape[1])] if mine else [0.0]
            local = xp.concat([xp.asarray(width, dtype=self.dtype, device=b.device),
                               *(xp.reshape(m, (-1,)) for m in mine)])
            parts = []
            for part in world.all_gather(local):
                k = int(b.to_numpy(part[:1])[0])
                if k:
                    parts.append(xp.reshape(part[1:], (-1, k)))
            setattr(self, name, parts)

    def _start(self):
        self._scores, self._labels = [], []

    def update(self, pred, target):
        xp = namespace(pred)
        if self.binary:  # labels along axis 1, every element a sample
            score = _label_columns(pred)
            labels = _label_columns(_like(target, pred))
            self._scores.append(xp.astype(score, self.dtype))
            self._labels.append(xp.astype(xp.astype(labels, self.dtype) > 0.5,
                                          self.dtype))
            return
        if pred.ndim >= 2 and pred.shape[-1] == 2:
            score = pred[..., 1] - pred[..., 0]  # monotone in P(class 1)
            labels = xp.argmax(target, axis=-1) if target.ndim == pred.ndim else target
        elif pred.ndim == 1 or pred.shape[-1] == 1:
            score = xp.reshape(pred, (-1,))
            labels = target
        else:
            shape = tuple(pred.shape)
            msg = f"roc_auc is for binary tasks, got scores of shape {shape}"
            raise ValueError(msg)
        labels = xp.astype(xp.astype(xp.reshape(labels, (-1,)), self.dtype) > 0.5,
                           self.dtype)
        self._scores.append(xp.astype(xp.reshape(score, (-1, 1)), self.dtype))
        self._labels.append(xp.reshape(labels, (-1, 1)))

    def totals(self):
        if not self._scores:
            return [self._zero(), self._zero()]
        xp = namespace(self._scores[0])
        s, y = xp.concat(self._scores), xp.concat(self._labels)
        # one label at a time, each column a contiguous copy (for searchsorted)
        aucs = [self._auc(xp, xp.asarray(s[:, j], copy=True), y[:, j])
                for j in range(s.shape[1])]
        nans = xp.sum(xp.astype(xp.isnan(s), self.dtype))
        return [xp.mean(xp.stack(aucs)), nans]

    def result(self, totals):
        auc, nans = totals
        if nans:
            msg = (f"{self.name}: {int(nans)} predicted score(s) are NaN (the "
                   "model's output); an AUC of NaN scores is undefined, as "
                   "scikit-learn's roc_auc_score says too. Find where the model "
                   "produces NaN (check the inputs and the learning rate)")
            raise ValueError(msg)
        return auc

    def _auc(self, xp, s, y):
        ordered = xp.sort(s)
        low = xp.searchsorted(ordered, s, side="left")
        high = xp.searchsorted(ordered, s, side="right")
        ranks = (xp.astype(low, self.dtype) + xp.astype(high, self.dtype) + 1.0) / 2.0
        n_pos = xp.sum(y)
        n_neg = y.shape[0] - n_pos
        u = xp.sum(ranks * y) - n_pos * (n_pos + 1.0) / 2.0
        both = (n_pos > 0) & (n_neg > 0)
        return xp.where(both, u / xp.where(both, n_pos * n_neg, 1.0), xp.nan)


class _Errors(Metric):
    """Mean squared or absolute error over every element; the root form
    is the mean over outputs of each output's RMSE (scikit-learn's
    ``multioutput="uniform_average"``: the root of the pooled mean would
    weigh the outputs differently)."""

    _sums, _counts = ("_sum", "_kept"), ("_count", "_filtered")
    supports_mask = True

    def __init__(self, kind: str, name: str, sign: float = 1.0,
                 root: bool = False) -> None:
        self.kind, self.name, self.sign, self.root = kind, name, sign, root

    @property
    def greater_is_better(self) -> bool:
        return self.sign < 0  # the neg_* scorers

    def _start(self):
        self._sum, self._count, self._kept, self._filtered = (
            self._zero(), 0, self._zero(), 0)

    def update(self, pred, target, mask=None):
        xp = namespace(pred)
        target = _like(target, pred)
        d = xp.astype(pred, self.dtype) - xp.astype(target, self.dtype)
        e = d * d if self.kind == "squared" else xp.abs(d)
        if mask is not None:
            if self.root:
                msg = (f"{self.name}: the per-output root cannot leave out a "
                       "sequence's padded steps; use the squared error")
                raise ValueError(msg)
            real = xp.astype(_spread(xp, mask, math.prod(e.shape)), self.dtype)
            self._sum = self._sum + xp.sum(xp.reshape(e, (-1,)) * real)
            self._kept = self._kept + xp.sum(real)
            self._filtered += 1
            return
        if self.root:  # one sum per output, one count per row
            rows = int(d.shape[0]) if d.ndim else 1
            self._sum = self._sum + xp.sum(xp.reshape(e, (rows, -1)), axis=0)
            self._count += rows
        else:
            self._sum = self._sum + xp.sum(e)
            self._count += math.prod(d.shape)

    def totals(self):
        return [self._sum, self._kept]

    def result(self, totals):
        if self._filtered:
            return self.sign * totals[0] / max(totals[1], 1)
        n = max(self._count, 1)
        if self.root:  # the per-output sums; the last total is `_kept`
            sums = totals[:-1]
            return self.sign * sum(math.sqrt(t / n) for t in sums) / len(sums)
        return self.sign * totals[0] / n


class R2(Metric):
    """Coefficient of determination, averaged over outputs (scikit-learn's
    ``r2_score``). Per-output means and spreads are merged batch by batch
    (Chan et al.'s update), so the figure is exact and numerically sound."""

    name = "r2"
    greater_is_better = True

    def reduce(self, world) -> None:
        """Merge the ranks' moments (Chan et al.'s update, rank by rank)."""
        xp = self.backend.xp
        if self._mean is None:
            width = 0
        else:
            width = self._mean.shape[0]
        parts = world.all_gather(xp.concat([
            xp.asarray([float(self._n)], dtype=self.dtype, device=self.backend.device),
            self._mean, self._m2, self._res]) if width else xp.zeros(
                (1,), dtype=self.dtype, device=self.backend.device))
        self._start()
        for part in parts:
            n = int(self.backend.to_numpy(part[:1])[0])
            if n == 0:
                continue
            d = (part.shape[0] - 1) // 3
            self._merge(n, part[1:1 + d], part[1 + d:1 + 2 * d], part[1 + 2 * d:])

    def _merge(self, n_b, mean_b, m2_b, res_b):
        if self._mean is None:
            self._n, self._mean, self._m2, self._res = n_b, mean_b, m2_b, res_b
            return
        n = self._n + n_b
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (n_b / n)
        self._m2 = self._m2 + m2_b + delta * delta * (self._n * n_b / n)
        self._res = self._res + res_b
        self._n = n

    def _start(self):
        self._n = 0
        self._mean = self._m2 = self._res = None

    def update(self, pred, target):
        xp = namespace(pred)
        if target.ndim != pred.ndim:
            target = xp.reshape(target, tuple(pred.shape))
        n_b = int(pred.shape[0])
        y = xp.reshape(xp.astype(target, self.dtype), (n_b, -1))
        d = y - xp.reshape(xp.astype(pred, self.dtype), (n_b, -1))
        mean_b = xp.mean(y, axis=0)
        m2_b = xp.sum((y - mean_b) ** 2, axis=0)
        self._merge(n_b, mean_b, m2_b, xp.sum(d * d, axis=0))

    def totals(self):
        if self._mean is None:
            return [self._zero()]
        xp = namespace(self._m2)
        # scikit-learn: a constant output scores 1 if fitted exactly, else 0
        safe = xp.where(self._m2 > 0, self._m2, 1.0)
        per = xp.where(self._m2 > 0, 1.0 - self._res / safe,
                       xp.astype(self._res == 0, self._res.dtype))
        return [xp.mean(per)]


class Mean(Metric):
    """The epoch mean of ``fn(pred, target)``, a batch-mean figure (weighted
    by batch size, so a per-sample mean is exact)."""

    _sums, _counts = ("_sum",), ("_count",)

    def __init__(self, fn, name: str | None = None) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "metric")

    def _start(self):
        self._sum, self._count = self._zero(), 0

    def update(self, pred, target):
        xp = namespace(pred)
        value = xp.astype(xp.asarray(self.fn(pred, target)), self.dtype)
        size = int(pred.shape[0])
        self._sum = self._sum + value * size
        self._count += size

    def totals(self):
        return [self._sum]

    def result(self, totals):
        return totals[0] / max(self._count, 1)


_TOP_K = re.compile(r"^top_(\d+)_accuracy$")
_CONFUSION = re.compile(r"^(precision|recall|f1)(?:_(macro|micro|weighted))?$")


def get(name, threshold: float = 0.5, binary: bool = False,
        ignore_index: int | None = None) -> Metric:
    """A metric from a scikit-learn scorer name, a Metric or a callable.

    Parameters
    ----------
    name : str, Metric or callable
    threshold : float
        Decision threshold of binary outputs (0 for logits).
    binary : bool
        The loss is binary (BCE/BCEWithLogits): outputs are element-wise
        binary decisions, with labels along axis 1 (see the module notes).
    ignore_index : int, optional
        The loss's ``ignore_index``: positions labelled so are left out.

    Examples
    --------
    >>> get("f1_macro").name, get("top_5_accuracy").k
    ('f1_macro', 5)
    """
    if isinstance(name, Metric):
        return name
    if callable(name):
        return Mean(name)
    if not isinstance(name, str):
        msg = f"a metric is a name, a Metric or a function, got {name!r}"
        raise TypeError(msg)
    if name in ("accuracy", "acc"):
        return Accuracy(threshold, binary=binary, ignore_index=ignore_index)
    if name == "top_k_accuracy":  # scikit-learn's default k
        return TopKAccuracy(2, name, ignore_index=ignore_index)
    if m := _TOP_K.match(name):
        return TopKAccuracy(int(m.group(1)), name, ignore_index=ignore_index)
    if m := _CONFUSION.match(name):
        return _Confusion(m.group(1), m.group(2) or "binary", threshold, name,
                          binary=binary, ignore_index=ignore_index)
    table = {
        "roc_auc": lambda: ROCAUC(binary),
        "r2": lambda: R2(),
        "neg_mean_squared_error": lambda: _Errors("squared", name, -1.0),
        "mean_squared_error": lambda: _Errors("squared", name),
        "mse": lambda: _Errors("squared", name),
        "neg_root_mean_squared_error": lambda: _Errors("squared", name, -1.0, True),
        "root_mean_squared_error": lambda: _Errors("squared", name, 1.0, True),
        "neg_mean_absolute_error": lambda: _Errors("absolute", name, -1.0),
        "mean_absolute_error": lambda: _Errors("absolute", name),
        "mae": lambda: _Errors("absolute", name),
    }
    if name in table:
        return table[name]()
    msg = (
        f"unknown metric {name!r}; choose accuracy, top_k_accuracy, top_<k>_accuracy, "
        "precision/recall/f1[_macro|_micro|_weighted], roc_auc, r2, "
        "[neg_]mean_squared_error, [neg_]mean_absolute_error, "
        "[neg_]root_mean_squared_error, or pass a Metric or a function"
    )
    raise ValueError(msg)


def get_metrics(metrics, loss) -> list[Metric]:
    """The metrics of a `fit`/`evaluate` call: ``"auto"`` (accuracy for
    classification losses), None, one or a list of names/Metrics/callables."""
    from .. import losses as losses_mod

    threshold = 0.0 if isinstance(loss, losses_mod.BCEWithLogits) else 0.5
    binary = isinstance(loss, (losses_mod.BCE, losses_mod.BCEWithLogits))
    ignore = getattr(loss, "ignore_index", None)
    classification = (losses_mod.CrossEntropy, losses_mod.BCE,
                      losses_mod.BCEWithLogits)
    if metrics == "auto":
        if not isinstance(loss, classification):
            return []
        metrics = [Accuracy(threshold, binary=binary, ignore_index=ignore)]
    if metrics is None:
        return []
    items = [metrics] if isinstance(metrics, (str, Metric)) or callable(metrics) else (
        list(metrics))
    out = [get(item, threshold, binary, ignore) for item in items]
    if getattr(loss, "axis", -1) != -1:  # classes on another axis
        out = [ClassAxis(m, loss) for m in out]
    names = [m.name for m in out]
    if len(set(names)) != len(names):
        msg = f"metric names must be unique, got {names}"
        raise ValueError(msg)
    return out


def greater_is_better(name: str) -> bool:
    """Whether a logged figure improves by growing, from the metric's own
    definition (scikit-learn's scorers: accuracies, precision, recall, F1,
    AUC, R2 and the ``neg_*`` errors grow; losses and plain errors shrink).
    ``val_`` and output-name prefixes (``head_f1_macro``) are looked
    through; a name no metric owns (a user's function) grows only if it
    names an accuracy, Keras's rule.

    Examples
    --------
    >>> names = ("val_roc_auc", "val_loss", "neg_mean_absolute_error", "mse")
    >>> [greater_is_better(n) for n in names]
    [True, False, True, False]
    """
    base = name[4:] if name.startswith("val_") else name
    parts = base.split("_")
    for i in range(len(parts)):  # longest known suffix first
        tail = "_".join(parts[i:])
        if tail == "loss":
            return False
        try:
            metric = get(tail)
        except (ValueError, TypeError):
            continue
        if metric.greater_is_better is not None:
            return metric.greater_is_better
    return "acc" in base


class _Wrapped(Metric):
    """A metric that hands a wrapped metric the part of each batch it
    reads: the sums, the reduction and the figure are the wrapped one's."""

    metric: Metric

    @property
    def greater_is_better(self):
        return self.metric.greater_is_better

    def reset(self, backend) -> None:
        self.backend = backend
        self.metric.reset(backend)

    def totals(self) -> list:
        return self.metric.totals()

    def result(self, totals):
        return self.metric.result(totals)

    def reduce(self, world) -> None:
        self.metric.reduce(world)


class OutputMetric(_Wrapped):
    """A metric of one of a model's several outputs, logged as
    ``<output>_<metric>`` (Keras's history keys)."""

    def __init__(self, metric: Metric, index: int, output: str) -> None:
        self.metric, self.index, self.output = metric, index, output
        self.name = f"{output}_{metric.name}"

    supports_mask = True  # where this output has a mask, its metric must

    def update(self, pred, target, mask=None) -> None:
        from ..data.structure import leaves

        own = None if mask is None else leaves(mask)[self.index]
        if own is not None and not self.metric.supports_mask:
            refuse_mask(self.metric)
        if own is None:
            self.metric.update(leaves(pred)[self.index], leaves(target)[self.index])
        else:
            self.metric.update(leaves(pred)[self.index], leaves(target)[self.index],
                               mask=own)

    def fresh(self) -> OutputMetric:
        return OutputMetric(self.metric.fresh(), self.index, self.output)


class OutputLoss(Metric):
    """One output's loss, averaged over the epoch's samples, logged as
    ``<output>_loss``: read from what the model's MultiLoss computed for
    the batch (no second evaluation)."""

    greater_is_better = False
    supports_mask = True  # the loss left the padded steps out already
    _sums, _counts = ("_sum",), ("_count",)

    def __init__(self, loss, index: int, output: str) -> None:
        self.loss, self.index, self.output = loss, index, output
        self.name = f"{output}_loss"

    def _start(self):
        self._sum, self._count = self._zero(), 0

    def update(self, pred, target, mask=None) -> None:
        from ..data.sources import batch_rows

        xp = self.backend.xp
        rows = batch_rows(pred)
        value = self.loss.values[self.index]
        self._sum = self._sum + xp.astype(value, self.dtype) * rows
        self._count += rows

    def totals(self):
        return [self._sum]

    def result(self, totals):
        return totals[0] / max(self._count, 1)

    def fresh(self) -> OutputLoss:
        return OutputLoss(self.loss, self.index, self.output)


class ClassAxis(_Wrapped):
    """A metric of a loss whose classes lie on another axis
    (``CrossEntropy(axis=1)``): the predictions' class axis is moved last,
    where the metrics read it."""

    def __init__(self, metric: Metric, loss) -> None:
        self.metric, self.loss = metric, loss
        self.name = metric.name

    @property
    def supports_mask(self):
        return self.metric.supports_mask

    def update(self, pred, target, mask=None) -> None:
        pred, target = self.loss.to_last(pred, target)
        if mask is None:
            self.metric.update(pred, target)
        else:
            self.metric.update(pred, target, mask=mask)

    def fresh(self) -> ClassAxis:
        return ClassAxis(self.metric.fresh(), self.loss)


def refuse_mask(metric) -> None:
    """`metric` cannot leave out an output's padded steps."""
    msg = (f"the metric {metric.name!r} cannot leave out padded steps: the model's "
           "output carries a mask (Embedding(mask_zero=True)); use accuracy, "
           "top-k accuracy, precision, recall, F1 or the mean errors, or use the "
           "mask up before the output")
    raise ValueError(msg)


def output_metrics(metrics, loss) -> list[Metric]:
    """The metrics of a model with several outputs: each output's loss,
    then `metrics` for each output (a list for all of them, a dict by output
    name; ``"auto"``: accuracy for classification outputs)."""
    names = loss.names
    if isinstance(metrics, dict):
        unknown = [k for k in metrics if k not in names]
        if unknown:
            msg = f"metrics names outputs {unknown}; the outputs are {names}"
            raise ValueError(msg)
    out: list[Metric] = [OutputLoss(loss, i, n) for i, n in enumerate(names)]
    for i, (name, own) in enumerate(zip(names, loss.losses, strict=True)):
        spec = metrics.get(name) if isinstance(metrics, dict) else metrics
        out.extend(OutputMetric(m, i, name) for m in get_metrics(spec, own))
    return out
