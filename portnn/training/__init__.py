"""The training loop: `Model.fit`, callbacks, metrics and `History`."""

from __future__ import annotations

from .callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LRSchedulerCallback,
    ModelCheckpoint,
    ProgressBar,
    ReduceLROnPlateau,
)
from .history import History
from .metrics import accuracy
from .model import Model, TrainingDivergedError
from .tensorboard import TensorBoard

__all__ = ["Model", "History", "Callback", "EarlyStopping", "LRSchedulerCallback",
           "ModelCheckpoint", "CSVLogger", "ReduceLROnPlateau",
           "ProgressBar", "TensorBoard",
           "TrainingDivergedError", "accuracy"]
