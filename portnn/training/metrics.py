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
"""

from __future__ import annotations

import copy
import math
import re

from .._host import accumulator_dtype
from .._namespace import namespace


def _labels_and_guesses(pred, target, threshold):
    """Integer true classes and predicted classes, flattened."""
    xp = namespace(pred)
    if pred.ndim >= 2 and pred.shape[-1] > 1:
        guess = xp.argmax(pred, axis=-1)
        if target.ndim == pred.ndim:
            target = xp.argmax(target, axis=-1)
        truth = xp.astype(target, guess.dtype)
    else:
        if target.ndim != pred.ndim:
            target = xp.reshape(target, tuple(pred.shape))
        guess = xp.astype(pred > threshold, xp.int64)
        truth = xp.astype(xp.astype(target, pred.dtype) > 0.5, xp.int64)
    return xp.reshape(truth, (-1,)), xp.reshape(guess, (-1,))


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

    def update(self, pred, target) -> None:
        """Add one batch (no host read)."""
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
    _sums, _counts = ("_correct",), ("_count",)

    def __init__(self, threshold: float = 0.5, name: str = "accuracy") -> None:
        self.threshold = float(threshold)
        self.name = name

    def _start(self):
        self._correct, self._count = self._zero(), 0

    def update(self, pred, target):
        xp = namespace(pred)
        truth, guess = _labels_and_guesses(pred, target, self.threshold)
        self._correct = self._correct + xp.sum(xp.astype(truth == guess, self.dtype))
        self._count += math.prod(truth.shape)

    def totals(self):
        return [self._correct]

    def result(self, totals):
        return totals[0] / max(self._count, 1)


class TopKAccuracy(Metric):
    """Fraction of samples whose true class is among the `k` highest scores
    (scikit-learn's ``top_k_accuracy_score``)."""

    _sums, _counts = ("_hits",), ("_count",)

    def __init__(self, k: int = 5, name: str | None = None) -> None:
        self.k = int(k)
        self.name = name or f"top_{self.k}_accuracy"

    def _start(self):
        self._hits, self._count = self._zero(), 0

    def update(self, pred, target):
        xp = namespace(pred)
        if pred.ndim != 2 or pred.shape[-1] < 2:
            msg = f"{self.name} needs (N, C) class scores, got shape {tuple(pred.shape)}"
            raise ValueError(msg)
        if target.ndim == 2:
            target = xp.argmax(target, axis=-1)
        truth = xp.astype(target, xp.int64)
        own = xp.take_along_axis(pred, xp.reshape(truth, (-1, 1)), axis=1)
        above = xp.sum(xp.astype(pred > own, xp.int64), axis=1)  # classes ranked higher
        self._hits = self._hits + xp.sum(xp.astype(above < self.k, self.dtype))
        self._count += int(pred.shape[0])

    def totals(self):
        return [self._hits]

    def result(self, totals):
        return totals[0] / max(self._count, 1)


class _Confusion(Metric):
    """Precision, recall or F1 from the epoch's confusion matrix (counts on
    the device, ``C x C``), with scikit-learn's averages and
    ``zero_division=0``."""

    _sums = ("_matrix",)

    def reduce(self, world) -> None:
        # a rank that saw no batch has no matrix yet: everyone sends one
        if self._matrix is None:
            return
        self._matrix = world.all_reduce(self._matrix)

    def __init__(self, kind: str, average: str, threshold: float = 0.5,
                 name: str | None = None) -> None:
        if kind not in ("precision", "recall", "f1"):
            raise ValueError(f"unknown confusion metric {kind!r}")
        if average not in ("binary", "macro", "micro", "weighted"):
            raise ValueError(f"unknown average {average!r}")
        self.kind, self.average, self.threshold = kind, average, float(threshold)
        self.name = name or (kind if average == "binary" else f"{kind}_{average}")

    def _start(self):
        self._matrix = None

    def update(self, pred, target):
        xp = namespace(pred)
        n_classes = int(pred.shape[-1]) if pred.ndim >= 2 and pred.shape[-1] > 1 else 2
        if self.average == "binary" and n_classes != 2:
            msg = (f"{self.name} is for binary tasks; with {n_classes} classes use "
                   f"{self.kind}_macro, _micro or _weighted")
            raise ValueError(msg)
        truth, guess = _labels_and_guesses(pred, target, self.threshold)
        classes = xp.arange(n_classes, dtype=truth.dtype, device=truth.device)
        true_hot = xp.astype(xp.expand_dims(truth, 1) == classes, self.dtype)
        guess_hot = xp.astype(xp.expand_dims(guess, 1) == classes, self.dtype)
        counts = xp.matrix_transpose(true_hot) @ guess_hot  # [true, predicted]
        self._matrix = counts if self._matrix is None else self._matrix + counts

    def totals(self):
        return [] if self._matrix is None else [self._matrix]

    def result(self, totals):
        if not totals:
            return 0.0
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
    epoch's scores: ``roc_auc_score``)."""

    name = "roc_auc"

    def reduce(self, world) -> None:
        """All the ranks' scores and labels (ranks are exact, not summable)."""
        xp = self.backend.xp
        empty = xp.zeros((0,), dtype=self.dtype, device=self.backend.device)
        for name in ("_scores", "_labels"):
            mine = getattr(self, name)
            local = xp.concat(mine) if mine else empty
            setattr(self, name, [p for p in world.all_gather(local) if p.shape[0]])

    def _start(self):
        self._scores, self._labels = [], []

    def update(self, pred, target):
        xp = namespace(pred)
        if pred.ndim >= 2 and pred.shape[-1] == 2:
            score = pred[..., 1] - pred[..., 0]  # monotone in P(class 1)
            labels = xp.argmax(target, axis=-1) if target.ndim == pred.ndim else target
        elif pred.ndim == 1 or pred.shape[-1] == 1:
            score = xp.reshape(pred, (-1,))
            labels = target
        else:
            msg = f"roc_auc is for binary tasks, got scores of shape {tuple(pred.shape)}"
            raise ValueError(msg)
        labels = xp.astype(xp.astype(xp.reshape(labels, (-1,)), self.dtype) > 0.5,
                           self.dtype)
        self._scores.append(xp.astype(xp.reshape(score, (-1,)), self.dtype))
        self._labels.append(labels)

    def totals(self):
        if not self._scores:
            return [self._zero()]
        xp = namespace(self._scores[0])
        s, y = xp.concat(self._scores), xp.concat(self._labels)
        ordered = xp.sort(s)
        low = xp.searchsorted(ordered, s, side="left")
        high = xp.searchsorted(ordered, s, side="right")
        ranks = (xp.astype(low, self.dtype) + xp.astype(high, self.dtype) + 1.0) / 2.0
        n_pos = xp.sum(y)
        n_neg = y.shape[0] - n_pos
        u = xp.sum(ranks * y) - n_pos * (n_pos + 1.0) / 2.0
        both = (n_pos > 0) & (n_neg > 0)
        return [xp.where(both, u / xp.where(both, n_pos * n_neg, 1.0), xp.nan)]


class _Errors(Metric):
    """Mean squared or absolute error over every element."""

    _sums, _counts = ("_sum",), ("_count",)

    def __init__(self, kind: str, name: str, sign: float = 1.0,
                 root: bool = False) -> None:
        self.kind, self.name, self.sign, self.root = kind, name, sign, root

    def _start(self):
        self._sum, self._count = self._zero(), 0

    def update(self, pred, target):
        xp = namespace(pred)
        if target.ndim != pred.ndim:
            target = xp.reshape(target, tuple(pred.shape))
        d = xp.astype(pred, self.dtype) - xp.astype(target, self.dtype)
        self._sum = self._sum + xp.sum(d * d if self.kind == "squared" else xp.abs(d))
        self._count += math.prod(d.shape)

    def totals(self):
        return [self._sum]

    def result(self, totals):
        mean = totals[0] / max(self._count, 1)
        return self.sign * (math.sqrt(mean) if self.root else mean)


class R2(Metric):
    """Coefficient of determination, averaged over outputs (scikit-learn's
    ``r2_score``). Per-output means and spreads are merged batch by batch
    (Chan et al.'s update), so the figure is exact and numerically sound."""

    name = "r2"

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


def get(name, threshold: float = 0.5) -> Metric:
    """A metric from a scikit-learn scorer name, a Metric or a callable.

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
        return Accuracy(threshold)
    if name == "top_k_accuracy":
        return TopKAccuracy(2, name)  # scikit-learn's default k
    if m := _TOP_K.match(name):
        return TopKAccuracy(int(m.group(1)), name)
    if m := _CONFUSION.match(name):
        return _Confusion(m.group(1), m.group(2) or "binary", threshold, name)
    table = {
        "roc_auc": lambda: ROCAUC(),
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
    classification = (losses_mod.CrossEntropy, losses_mod.BCE,
                      losses_mod.BCEWithLogits)
    if metrics == "auto":
        return [Accuracy(threshold)] if isinstance(loss, classification) else []
    if metrics is None:
        return []
    items = [metrics] if isinstance(metrics, (str, Metric)) or callable(metrics) else (
        list(metrics))
    out = [get(item, threshold) for item in items]
    names = [m.name for m in out]
    if len(set(names)) != len(names):
        msg = f"metric names must be unique, got {names}"
        raise ValueError(msg)
    return out
