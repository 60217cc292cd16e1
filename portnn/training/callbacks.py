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

    Examples
    --------
    >>> import portnn
    >>> class Losses(portnn.Callback):
    ...     def __init__(self):
    ...         self.seen = []
    ...     def on_epoch_end(self, epoch, logs):
    ...         self.seen.append(epoch)
    >>> model = portnn.Sequential(portnn.Dense(2, 1))
    >>> _ = model.compile(optimizer="sgd", loss="mse")
    >>> losses = Losses()
    >>> _ = model.fit([[0.0, 1.0]], [[1.0]], epochs=3, verbose=0,
    ...               callbacks=[losses])
    >>> losses.seen
    [0, 1, 2]
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
        """Called after each optimizer step with the batch's figures:
        ``loss`` (a 0-d array still on the model's device: ``float()`` of
        it waits for the device) and ``size`` (an int)."""


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
        ``"auto"`` takes the direction from the monitored metric's own
        definition (:func:`portnn.training.metrics.greater_is_better`:
        accuracies, F1, AUC, R2 and ``neg_*`` errors are maximized, losses
        and plain errors minimized).
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
            from .metrics import greater_is_better

            mode = "max" if greater_is_better(monitor) else "min"
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
    """Step a learning-rate schedule from `fit`, after every epoch or batch
    (default: the schedule's ``interval``).

    Examples
    --------
    >>> import portnn
    >>> model = portnn.Sequential(portnn.Dense(2, 1))
    >>> opt = portnn.SGD(model.parameters(), lr=0.1)
    >>> sched = portnn.optim.StepLR(opt, step_size=10, gamma=0.5)
    >>> cb = LRSchedulerCallback(sched, every="epoch")
    """

    def __init__(self, scheduler, every: str | None = None) -> None:
        every = every or getattr(scheduler, "interval", "epoch")
        if every not in ("epoch", "batch"):
            msg = f"every must be 'epoch' or 'batch', got {every!r}"
            raise ValueError(msg)
        self.scheduler = scheduler
        self.every = every

    def on_batch_end(self, batch, logs=None):
        if self.every == "batch":
            self.scheduler.step()

    def on_epoch_end(self, epoch, logs=None):
        if self.every == "epoch":
            self.scheduler.step()


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by `factor` when `monitor` has not improved
    for `patience` epochs (Keras's semantics). With a learning-rate schedule
    on the optimizer the reduction scales the schedule (every later rate it
    sets is multiplied by the factors so far), so the two compose.

    Parameters
    ----------
    monitor : str, default "val_loss"
    factor : float, default 0.1
        New rate = rate * factor (in (0, 1)).
    patience : int, default 10
        Epochs without improvement before a reduction.
    mode : {"auto", "min", "max"}
    min_delta : float, default 1e-4
        An improvement must beat the best by more than this.
    cooldown : int, default 0
        Epochs to wait after a reduction before counting again.
    min_lr : float, default 0
        The rate never goes below this.

    Examples
    --------
    >>> import portnn
    >>> cb = portnn.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2)
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1,
                 patience: int = 10, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0) -> None:
        if not 0.0 < factor < 1.0:
            msg = f"ReduceLROnPlateau: factor must be in (0, 1), got {factor!r}"
            raise ValueError(msg)
        self._tracker = EarlyStopping(monitor, patience=patience, mode=mode,
                                      min_delta=min_delta)
        self.monitor, self.factor = monitor, float(factor)
        self.patience, self.cooldown = int(patience), int(cooldown)
        self.min_lr = float(min_lr)

    def on_train_begin(self, logs=None):
        self._tracker.on_train_begin()
        self.wait = self.cooldown_left = 0
        self.reductions: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            msg = (f"ReduceLROnPlateau: {self.monitor!r} is not among the logged "
                   f"figures {sorted(logs)}")
            raise KeyError(msg)
        value = logs[self.monitor]
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if self._tracker._improved(value):
            self._tracker.best, self.wait = value, 0
        elif self.cooldown_left == 0:
            self.wait += 1
            optimizer = self.model.optimizer
            if self.wait >= self.patience and optimizer.lr > self.min_lr:
                schedule = getattr(optimizer, "scheduler", None)
                if schedule is not None:  # scale the schedule, do not fight it
                    schedule.rescale(self.factor, self.min_lr)
                else:
                    optimizer.lr = max(optimizer.lr * self.factor, self.min_lr)
                self.reductions.append(epoch)
                self.cooldown_left, self.wait = self.cooldown, 0


def _fmt(logs: dict) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in logs.items())


def in_notebook() -> bool:
    """Whether Python runs in a Jupyter kernel (tqdm then draws a widget)."""
    shell = sys.modules.get("IPython")
    try:
        ip = shell.get_ipython() if shell is not None else None
    except Exception:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


class ProgressBar(Callback):
    """A one-line progress display per epoch, with the loss and speed.

    On a terminal it redraws in place (through tqdm when it is installed;
    in Jupyter, tqdm's notebook widget) at most every `refresh` seconds:
    each redraw reads the latest batch loss from the device, so a GPU is
    not made to wait on every batch. Elsewhere (a log file, CI), or with
    ``live=False``, it reads nothing per batch and prints one summary line
    per epoch, or nothing with ``quiet_off_terminal=True``.

    Examples
    --------
    ``fit(verbose=1)`` makes one; to draw into a stream of your own:

    >>> import io
    >>> import portnn
    >>> model = portnn.Sequential(portnn.Dense(2, 1))
    >>> _ = model.compile(optimizer="sgd", loss="mse")
    >>> stream = io.StringIO()
    >>> bar = portnn.training.ProgressBar(epochs=1, batches=1, stream=stream)
    >>> _ = model.fit([[0.0, 1.0]], [[1.0]], epochs=1, verbose=0,
    ...               callbacks=[bar])
    >>> "loss" in stream.getvalue()
    True
    """

    def __init__(self, epochs: int, batches: int, stream=None,
                 quiet_off_terminal: bool = False, width: int = 24,
                 refresh: float = 0.2, clock=time.perf_counter,
                 live: bool = True) -> None:
        self.epochs = epochs
        self.batches = batches
        self.stream = stream or sys.stderr
        self.width = width
        self.refresh = float(refresh)
        self.clock = clock
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.notebook = stream is None and in_notebook()
        self.live = live and (bool(isatty) or self.notebook)
        self.silent = quiet_off_terminal and not self.live
        self.draws = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.t0 = self.clock()
        self._drawn_at = -math.inf
        self._drawn_batch = 0
        self.samples = 0
        self._tqdm = None
        if self.live:
            try:
                from tqdm.auto import tqdm  # the notebook widget in Jupyter
            except ImportError:
                return
            stream = None if self.notebook else self.stream
            self._tqdm = tqdm(total=self.batches, file=stream, leave=False,
                              unit="batch", desc=f"epoch {epoch + 1}/{self.epochs}")

    def on_batch_end(self, batch, logs=None):
        logs = logs or {}
        self.samples += logs.get("size", 0)
        if not self.live:
            return
        now = self.clock()
        if now - self._drawn_at < self.refresh and batch + 1 < self.batches:
            return
        self._drawn_at = now
        self.draws += 1
        loss = float(logs.get("loss", math.nan))  # the one device read of a redraw
        rate = self.samples / max(now - self.t0, 1e-9)
        if self._tqdm is not None:
            self._tqdm.set_postfix(loss=f"{loss:.4f}", samples_s=f"{rate:,.0f}",
                                   refresh=False)
            self._tqdm.update(batch + 1 - self._drawn_batch)
            self._drawn_batch = batch + 1
            return
        done = (batch + 1) / self.batches
        bar = "#" * int(done * self.width)
        self.stream.write(
            f"\repoch {self.epoch + 1}/{self.epochs} [{bar:<{self.width}}] "
            f"{batch + 1}/{self.batches}  loss {loss:.4f}  "
            f"{rate:,.0f} samples/s"
        )
        self.stream.flush()

    def on_epoch_end(self, epoch, logs=None):
        if getattr(self, "_tqdm", None) is not None:
            self._tqdm.close()
            self._tqdm = None
        if self.silent:
            return
        seconds = self.clock() - self.t0
        speed = ""
        if self.samples:
            speed = f", {self.samples / max(seconds, 1e-9):,.0f} samples/s"
        line = (f"epoch {epoch + 1}/{self.epochs}  {_fmt(logs or {})}  "
                f"({seconds:.2f} s{speed})")
        self.stream.write(f"\r{line}\x1b[K\n" if self.live else f"{line}\n")
        self.stream.flush()


class ModelCheckpoint(Callback):
    """Save the model (with its optimizer) during `fit`.

    Parameters
    ----------
    path : str
        File to write; may contain ``{epoch}`` (1-based) and any logged
        figure, e.g. ``"ckpt-{epoch:03d}-{val_loss:.3f}.safetensors"``.
    monitor : str, default "val_loss"
        Figure that decides "best" when `save_best_only`.
    save_best_only : bool, default False
        Save only when `monitor` improves.
    every : int, default 1
        Save every `every` epochs (ignored with `save_best_only`).
    mode : {"auto", "min", "max"}
        As in :class:`EarlyStopping`.

    Examples
    --------
    >>> import portnn
    >>> cb = portnn.ModelCheckpoint("best.safetensors", save_best_only=True)
    """

    def __init__(self, path, monitor: str = "val_loss", save_best_only: bool = False,
                 every: int = 1, mode: str = "auto") -> None:
        if every < 1:
            msg = f"ModelCheckpoint: every must be >= 1, got {every!r}"
            raise ValueError(msg)
        _check_template(str(path))
        self.path = str(path)
        self.monitor = monitor
        self.save_best_only = save_best_only
        self.every = int(every)
        self._stopper = EarlyStopping(monitor, patience=1, mode=mode)
        self.saved: list[str] = []

    def on_train_begin(self, logs=None):
        self._stopper.on_train_begin()

    def on_epoch_end(self, epoch, logs=None):
        from .. import distributed

        logs = logs or {}
        if not distributed.is_main():  # one writer in data-parallel training
            return
        if self.save_best_only:
            if self.monitor not in logs:
                msg = (
                    f"ModelCheckpoint: {self.monitor!r} is not among the logged "
                    f"figures {sorted(logs)}"
                )
                raise KeyError(msg)
            if not self._stopper._improved(logs[self.monitor]):
                return
            self._stopper.best = logs[self.monitor]
        elif (epoch + 1) % self.every:
            return
        path = self.path.format(epoch=epoch + 1, **logs)
        self.model.save(path)
        self.saved.append(path)


def _check_template(path: str) -> None:
    """Refuse a path template that cannot be filled (bad braces, a format
    spec that fits no number) now, not after the first epoch's training."""
    import string

    try:
        fields = [f for _, f, spec, _ in string.Formatter().parse(path)
                  if f is not None]
        dummy = {f.split(".")[0].split("[")[0]: 1 if f == "epoch" else 0.5
                 for f in fields if f}
        if any(not f for f in fields):
            raise ValueError("positional fields {} are not allowed; name them")
        path.format(**dummy)
    except (ValueError, IndexError, KeyError, AttributeError) as exc:
        msg = (f"ModelCheckpoint: the path template {path!r} cannot be filled "
               f"({exc}); use fields such as {{epoch:03d}} and "
               "{val_loss:.3f}")
        raise ValueError(msg) from None


class CSVLogger(Callback):
    """Write one CSV row of figures per epoch (flushed as it goes).

    With ``append=True`` rows go under an existing file's header; when this
    run logs figures that header lacks (or lacks ones it has), the file is
    rewritten once with the union of the columns, old rows kept and the
    missing cells left empty, so every row stays under its own names.

    Examples
    --------
    >>> import portnn
    >>> logger = portnn.CSVLogger("training.csv")
    """

    def __init__(self, path, append: bool = False, separator: str = ",") -> None:
        self.path = str(path)
        self.append = append
        self.separator = separator
        self._file = None
        self._keys = None

    def on_train_begin(self, logs=None):
        import os

        from .. import distributed

        self._file = None
        if not distributed.is_main():  # one writer in data-parallel training
            return
        exists = self.append and os.path.exists(self.path) and (
            os.path.getsize(self.path) > 0)
        self._old_header = self._read_header() if exists else None
        self._file = open(self.path, "a" if self.append else "w",  # noqa: SIM115
                          newline="", encoding="utf-8")
        self._keys = None
        self._header_written = exists

    def _read_header(self):
        import csv

        with open(self.path, newline="", encoding="utf-8") as f:
            return next(csv.reader(f, delimiter=self.separator), None)

    def _merge_columns(self, keys):
        """Rewrite the existing file under the union of its columns and
        `keys` (atomically); returns the columns to write under."""
        import csv
        import os

        old = self._old_header or []
        columns = old + [k for k in keys if k not in old]
        self._file.close()
        with open(self.path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter=self.separator))
        tmp = f"{self.path}.tmp-{os.getpid()}"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, columns, delimiter=self.separator,
                                    restval="", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)
        self._file = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        return columns

    def on_epoch_end(self, epoch, logs=None):
        import csv

        if self._file is None:
            return
        logs = logs or {}
        if self._keys is None:
            self._keys = ["epoch", *logs]
            if self._old_header is not None and self._old_header != self._keys:
                self._keys = self._merge_columns(self._keys)
        writer = csv.writer(self._file, delimiter=self.separator)
        if not self._header_written:
            writer.writerow(self._keys)
            self._header_written = True
        row = {"epoch": epoch + 1, **logs}
        writer.writerow([row.get(k, "") for k in self._keys])
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None
