"""Array helpers: mini-batches, scaling fitted on training data, one-hot,
train/test split. They work on arrays of any backend."""

from __future__ import annotations

import math

from .._namespace import namespace
from ..backends import backend_of, get_backend
from ..random import global_generator


def _backend(x):
    return backend_of(x) or get_backend()


def batches(x, y=None, batch_size: int = 32, shuffle: bool = False, rng=None):
    """Yield mini-batches ``(xb, yb)`` (or ``xb`` when `y` is None).

    Examples
    --------
    >>> import portnn
    >>> xp = portnn.get_backend().xp
    >>> x = xp.reshape(xp.arange(10.0), (5, 2))
    >>> [xb.shape[0] for xb in portnn.data.batches(x, batch_size=2)]
    [2, 2, 1]
    """
    if batch_size < 1:
        msg = f"batch_size must be >= 1, got {batch_size!r}"
        raise ValueError(msg)
    xp = namespace(x)
    n = x.shape[0]
    if y is not None and y.shape[0] != n:
        msg = f"x has {n} samples but y has {y.shape[0]}"
        raise ValueError(msg)
    if shuffle:
        perm = (rng or global_generator()).permutation(n, backend=_backend(x))
        x = xp.take(x, perm, axis=0)
        y = None if y is None else xp.take(y, perm, axis=0)
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)  # out-of-bounds stops are not standard
        xb = x[lo:hi, ...]
        yield xb if y is None else (xb, y[lo:hi, ...])


class Standardizer:
    """Scale features to zero mean and unit variance, with statistics fitted
    on the training data only (constant features are left centred, not
    divided by zero).

    Examples
    --------
    >>> import portnn
    >>> b = portnn.get_backend()
    >>> s = portnn.data.Standardizer().fit(b.asarray([[0.0], [2.0]]))
    >>> s.transform(b.asarray([[4.0]])).tolist()
    [[3.0]]
    """

    def fit(self, x) -> Standardizer:
        xp = namespace(x)
        self.mean_ = xp.mean(x, axis=0)
        std = xp.std(x, axis=0)
        self.scale_ = xp.where(std > 0, std, xp.ones_like(std))
        return self

    def transform(self, x):
        self._check_fitted()
        return (x - self.mean_) / self.scale_

    def fit_transform(self, x):
        return self.fit(x).transform(x)

    def inverse_transform(self, x):
        self._check_fitted()
        return x * self.scale_ + self.mean_

    def _check_fitted(self):
        if not hasattr(self, "mean_"):
            msg = f"{type(self).__name__} is not fitted: call fit(x_train) first"
            raise RuntimeError(msg)


class MinMaxScaler(Standardizer):
    """Scale features into ``feature_range`` using the training minimum and
    maximum.

    Examples
    --------
    >>> import portnn
    >>> scaler = portnn.data.MinMaxScaler()
    >>> scaler.fit_transform(portnn.asarray([[0.0], [5.0], [10.0]])).tolist()
    [[0.0], [0.5], [1.0]]
    """

    def __init__(self, feature_range=(0.0, 1.0)) -> None:
        self.feature_range = feature_range

    def fit(self, x) -> MinMaxScaler:
        xp = namespace(x)
        lo, hi = self.feature_range
        xmin, xmax = xp.min(x, axis=0), xp.max(x, axis=0)
        span = xmax - xmin
        span = xp.where(span > 0, span, xp.ones_like(span))
        self.scale_ = span / (hi - lo)
        self.mean_ = xmin - lo * self.scale_  # offset, so transform is shared
        return self


def one_hot(labels, num_classes: int | None = None, dtype=None):
    """One-hot encode integer labels into shape ``(..., num_classes)``.

    Examples
    --------
    >>> import portnn
    >>> portnn.data.one_hot(portnn.get_backend().asarray([0, 2]), 3).tolist()
    [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    """
    from .. import config

    xp = namespace(labels)
    if num_classes is None:
        num_classes = int(xp.max(labels)) + 1
    if bool(xp.any((labels < 0) | (labels >= num_classes))):
        msg = f"one_hot: labels must lie in [0, {num_classes})"
        raise ValueError(msg)
    if dtype is None:
        dtype = config.float_dtype(_backend(labels))
    classes = xp.arange(num_classes, dtype=labels.dtype, device=labels.device)
    return xp.astype(xp.expand_dims(labels, axis=-1) == classes, dtype)


def train_test_split(x, y, test_size: float = 0.2, stratify: bool = False,
                     rng=None):
    """Shuffle and split into ``x_train, x_test, y_train, y_test``.

    Parameters
    ----------
    test_size : float
        Fraction of the samples in the test split.
    stratify : bool
        Keep each class's share of `y` (integer labels) in both splits.
    rng : portnn.random.Generator, optional
        Source of the shuffle (default: the global generator).

    Examples
    --------
    >>> import portnn
    >>> x = portnn.asarray([[float(i)] for i in range(10)])
    >>> y = portnn.asarray(list(range(10)))
    >>> x_train, x_test, y_train, y_test = portnn.data.train_test_split(
    ...     x, y, test_size=0.2)
    >>> x_train.shape, x_test.shape
    ((8, 1), (2, 1))
    """
    if not 0.0 < test_size < 1.0:
        msg = f"test_size must be in (0, 1), got {test_size!r}"
        raise ValueError(msg)
    xp = namespace(x)
    backend = _backend(x)
    rng = rng or global_generator()
    n = x.shape[0]
    if y.shape[0] != n:
        msg = f"x has {n} samples but y has {y.shape[0]}"
        raise ValueError(msg)
    if not stratify:
        perm = rng.permutation(n, backend=backend)
        n_test = int(math.ceil(n * test_size))
        test, train = perm[:n_test], perm[n_test:]
    else:
        train_parts, test_parts = [], []
        for c in xp.unique_values(y):
            idx = xp.nonzero(y == c)[0]
            idx = xp.take(idx, rng.permutation(idx.shape[0], backend=backend))
            k = int(round(idx.shape[0] * test_size))
            test_parts.append(idx[:k])
            train_parts.append(idx[k:])
        # Mix the classes again so batches are not sorted by label.
        train = xp.concat(train_parts)
        test = xp.concat(test_parts)
        train = xp.take(train, rng.permutation(train.shape[0], backend=backend))
        test = xp.take(test, rng.permutation(test.shape[0], backend=backend))
    return (xp.take(x, train, axis=0), xp.take(x, test, axis=0),
            xp.take(y, train, axis=0), xp.take(y, test, axis=0))
