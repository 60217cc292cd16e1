"""Data: datasets that need not fit in memory, the batches `fit` draws
from them, and array helpers (scaling, one-hot, splits).

`fit`, `evaluate` and `predict` take arrays, a :class:`Dataset` (anything
with ``len`` and batch indexing: arrays, ``.npy`` files opened with
``mmap_mode``, lists of samples) or any iterable of ``(x, y)`` batches.
"""

from __future__ import annotations

from .dataset import ArrayDataset, Dataset, ListDataset
from .preprocessing import (
    MinMaxScaler,
    Standardizer,
    batches,
    one_hot,
    train_test_split,
)

__all__ = ["Dataset", "ArrayDataset", "ListDataset", "batches", "Standardizer",
           "MinMaxScaler", "one_hot", "train_test_split"]
