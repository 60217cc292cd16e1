"""Callbacks: hooks `fit` calls at the start and end of training, epochs and
batches."""

from __future__ import annotations

import math
import sys
import time


class Callback:
    """Base class; override the hooks you need. ``self.model`` is set by `fit`.

    ``logs`` holds the figures so far: ``loss`` (and metrics) for a batch or
    an epoch, ``val_*`` at epoch end.
    """

    model = None

    def on_train_begin(self, logs=None):
        """Called once before the first epoch."""

    def on_train_end(self, logs=None):
        """Called once after the last epoch (also after an early stop)."""

    def on_epoch_begin(self, epoch, logs=None):
        """Called before each epoch (numbered from 0)."""

    def on_epoch_end(self, epoch, logs=None):
        """Called after each epoch with its training and validation figures."""

    def on_batch_end(self, batch, logs=None):
        """Called after each optimizer step with the batch's figures."""


class EarlyStopping(Callback):
    """Stop training when `monitor` has not improved for `patience` epochs.

    Parameters
    ----------
    monitor : str, default "val_loss"
        A key of the epoch logs (``"loss"`` if there is no validation data).
    patience : int, default 5
        Epochs without improvement before stopping.
    min_delta : float, default 0
        Smallest change that counts as an improvement.
    mode : {"auto", "min", "max"}
        ``"auto"`` maximizes names containing ``"acc"`` and minimizes the rest.
    restore_best_weights : bool, default False
        Put back the weights of the best epoch when stopping.

    Examples
    --------
    >>> import portnn
    >>> stop = portnn.EarlyStopping(monitor="val_loss", patience=3)
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5,
                 min_delta: float = 0.0, mode: str = "auto",
                 restore_best_weights: bool = False) -> None:
        if mode not in ("auto", "min", "max"):
            msg = f"EarlyStopping: mode must be 'auto', 'min' or 'max', got {mode!r}"
            raise ValueError(msg)
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.monitor = monitor
        self.patience = int(patience)
        self.min_delta = abs(float(min_delta))
        self.mode = mode
        self.restore_best_weights = restore_best_weights

    def on_train_begin(self, logs=None):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.best_epoch = None
        self.stopped_epoch = None
        self._best_state = None

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            msg = (
                f"EarlyStopping: monitored value {self.monitor!r} is not among the "
                f"logged figures {sorted(logs)}; pass validation data or monitor "
                "'loss'"
            )
            raise KeyError(msg)
        value = logs[self.monitor]
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                xp = self.model.backend.xp
                self._best_state = {
                    k: xp.asarray(v, copy=True)
                    for k, v in self.model.state_dict().items()
                }
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = epoch
                self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self._best_state is not None:
            self.model.load_state_dict(self._best_state)


class LRSchedulerCallback(Callback):
    """Step a learning-rate schedule from `fit`, after every epoch or batch.

    Examples
    --------
    >>> import portnn
    >>> model = portnn.Sequential(portnn.Dense(2, 1))
    >>> opt = portnn.SGD(model.parameters(), lr=0.1)
    >>> sched = portnn.optim.StepLR(opt, step_size=10, gamma=0.5)
    >>> cb = LRSchedulerCallback(sched, every="epoch")
    """

    def __init__(self, scheduler, every: str = "epoch") -> None:
        if every not in ("epoch", "batch"):
            msg = f"every must be 'epoch' or 'batch', got {every!r}"
            raise ValueError(msg)
        self.scheduler = scheduler
        self.every = every

    def on_batch_end(self, batch, logs=None):
        if self.every == "batch":
            self.scheduler.step()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = self.scheduler.optimizer.lr
        if self.every == "epoch":
            self.scheduler.step()


def _fmt(logs: dict) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in logs.items())


class ProgressBar(Callback):
    """A one-line progress display per epoch, with running loss and speed.

    It redraws in place on a terminal; elsewhere (a log file, CI) it prints
    one summary line per epoch, or nothing with ``quiet_off_terminal=True``.
    """

    def __init__(self, epochs: int, batches: int, stream=None,
                 quiet_off_terminal: bool = False, width: int = 24) -> None:
        self.epochs = epochs
        self.batches = batches
        self.stream = stream or sys.stderr
        self.width = width
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.live = bool(isatty)
        self.silent = quiet_off_terminal and not self.live

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.t0 = time.perf_counter()
        self.samples = 0

    def on_batch_end(self, batch, logs=None):
        if not self.live:
            return
        logs = logs or {}
        self.samples += logs.get("size", 0)
        done = (batch + 1) / self.batches
        bar = "#" * int(done * self.width)
        rate = self.samples / max(time.perf_counter() - self.t0, 1e-9)
        self.stream.write(
            f"\repoch {self.epoch + 1}/{self.epochs} [{bar:<{self.width}}] "
            f"{batch + 1}/{self.batches}  loss {logs.get('loss', math.nan):.4f}  "
            f"{rate:,.0f} samples/s"
        )
        self.stream.flush()

    def on_epoch_end(self, epoch, logs=None):
        if self.silent:
            return
        seconds = time.perf_counter() - self.t0
        prefix = "\r" if self.live else ""
        self.stream.write(
            f"{prefix}epoch {epoch + 1}/{self.epochs}  {_fmt(logs or {})}  "
            f"({seconds:.2f} s)\x1b[K\n" if self.live else
            f"epoch {epoch + 1}/{self.epochs}  {_fmt(logs or {})}  ({seconds:.2f} s)\n"
        )
        self.stream.flush()
