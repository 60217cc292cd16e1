"""The training loop: `Model.fit`, callbacks, metrics and `History`."""

from __future__ import annotations

from .callbacks import Callback, EarlyStopping, LRSchedulerCallback, ProgressBar
from .history import History
from .metrics import accuracy
from .model import Model, TrainingDivergedError

__all__ = ["Model", "History", "Callback", "EarlyStopping", "LRSchedulerCallback",
           "ProgressBar",
           "TrainingDivergedError", "accuracy"]
