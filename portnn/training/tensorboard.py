"""`TensorBoard`: training figures, weight histograms and the model's
summary written for TensorBoard (Keras's callback, through tensorboardX)."""

from __future__ import annotations

import itertools
import warnings

from .callbacks import Callback

INSTALL_HINT = 'pip install tensorboardX  (or pip install -e ".[tensorboard]")'
#: numbers the event files of this process
_files = itertools.count()


class TensorBoard(Callback):
    """Write what `fit` measures as TensorBoard event files.

    Under `log_dir`, as Keras lays them out: ``train/`` holds ``epoch_loss``,
    every metric (``epoch_accuracy``, ...) and ``epoch_learning_rate`` per
    epoch, the batch losses (``batch_loss``) when `update_freq` asks for
    them, the weight and gradient histograms and the model's summary (a
    text panel);
    ``validation/`` holds the validation figures under the same names, so
    TensorBoard draws each pair on one chart. Only rank 0 writes in a
    data-parallel job. Steps count on across `fit` calls.

    Parameters
    ----------
    log_dir : str or path, default "logs"
        Where the event files go (made if missing).
    histogram_freq : int, default 0
        Every this many epochs, a histogram of each parameter (under its
        name) and of its gradient on the epoch's last batch (``<name>_grad``,
        as the optimizer received it); 0: none. Gradients are read from
        eager steps; a compiled step (``jit_compile``) keeps them inside its
        program, so only the weights are drawn then (a warning says so).
    update_freq : "epoch", "batch" or int, default "epoch"
        Also log the loss of every batch ("batch") or of every N-th batch.
        The batch losses stay on the device until the epoch ends and are
        then read in one transfer with the epoch's figures: logging them
        adds no wait on the device between batches.

    Raises
    ------
    ImportError
        If tensorboardX is not installed (the message says how to install it).

    Examples
    --------
    >>> import portnn
    >>> board = portnn.TensorBoard("runs/mlp", histogram_freq=1)  # doctest: +SKIP
    >>> model.fit(x, y, epochs=5, callbacks=[board])              # doctest: +SKIP
    """

    def __init__(self, log_dir="logs", histogram_freq: int = 0,
                 update_freq="epoch") -> None:
        if isinstance(histogram_freq, bool) or not isinstance(histogram_freq, int) \
                or histogram_freq < 0:
            msg = ("TensorBoard: histogram_freq must be an int >= 0 (every that "
                   f"many epochs; 0 for none), got {histogram_freq!r}")
            raise ValueError(msg)
        if update_freq == "epoch":
            every = 0
        elif update_freq == "batch":
            every = 1
        elif isinstance(update_freq, int) and not isinstance(update_freq, bool) \
                and update_freq > 0:
            every = update_freq
        else:
            msg = ("TensorBoard: update_freq must be 'epoch', 'batch' or a positive "
                   f"int (every that many batches), got {update_freq!r}")
            raise ValueError(msg)
        try:
            import tensorboardX  # noqa: F401 - checked now, not after training
        except ImportError as exc:
            msg = f"TensorBoard needs tensorboardX ({exc}): {INSTALL_HINT}"
            raise ImportError(msg) from exc
        self.log_dir = str(log_dir)
        self.histogram_freq = histogram_freq
        self.update_freq = update_freq
        self._every = every
        self._writers = None
        self._epoch = 0  # epochs logged so far, over every fit
        self._batch = 0  # batches seen so far, over every fit
        self._pending = []  # (step, loss on the device) until the epoch ends
        self._grads = {}  # parameter id -> its last gradient, in a histogram epoch
        self._warned_compiled = False

    def on_train_begin(self, logs=None):
        import os

        from tensorboardX import SummaryWriter

        from .. import distributed

        self._writers = None
        self._pending = []
        if not distributed.is_main():  # one writer in data-parallel training
            return
        # a file of its own per fit: tensorboardX names files by the second,
        # and a second writer of the same second would overwrite the first
        suffix = f".{os.getpid()}.{next(_files)}"
        self._writers = {run: SummaryWriter(os.path.join(self.log_dir, run),
                                            filename_suffix=suffix)
                         for run in ("train", "validation")}
        if self.model is not None:
            text = self.model.summary(print_fn=None)
            self._writers["train"].add_text("model summary", f"```\n{text}\n```",
                                            self._epoch)

    def _histogram_epoch(self) -> bool:
        return bool(self.histogram_freq) and (
            (self._epoch + 1) % self.histogram_freq == 0)

    def _tap(self, params) -> None:
        # references, not copies: zero_grad unbinds the arrays, never
        # zeroes them, so they hold this batch's values at the epoch's end
        self._grads = {id(p): p.grad for p in params if p.grad is not None}

    def on_epoch_begin(self, epoch, logs=None):
        if self._writers is not None and self._histogram_epoch():
            self.model._gradient_tap = self._tap

    def on_batch_end(self, batch, logs=None):
        self._batch += 1
        if self._writers is None or not self._every or self._batch % self._every:
            return
        self._pending.append((self._batch, (logs or {})["loss"]))

    def on_epoch_end(self, epoch, logs=None):
        if self._writers is None:
            return
        step = self._epoch
        train, validation = self._writers["train"], self._writers["validation"]
        for key, value in (logs or {}).items():
            if key.startswith("val_"):
                validation.add_scalar(f"epoch_{key[4:]}", float(value), step)
            else:
                name = "learning_rate" if key == "lr" else key
                train.add_scalar(f"epoch_{name}", float(value), step)
        if self._pending:
            values = _to_host(v for _, v in self._pending)  # one transfer
            for (at, _), value in zip(self._pending, values, strict=True):
                train.add_scalar("batch_loss", value, at)
            self._pending = []
        if self._histogram_epoch():
            self.model.__dict__.pop("_gradient_tap", None)
            backend = self.model.backend
            for name, p in self.model.named_parameters():
                train.add_histogram(name, backend.to_numpy(p.value), step)
                grad = self._grads.get(id(p))
                if grad is not None:
                    train.add_histogram(f"{name}_grad", backend.to_numpy(grad),
                                        step)
            if (not self._grads and self.model.jit_compile
                    and not self._warned_compiled):
                self._warned_compiled = True
                warnings.warn("TensorBoard: no gradient histograms: the steps "
                              "ran compiled (jit_compile), which keeps the "
                              "gradients inside the program; the weight "
                              "histograms are written", RuntimeWarning,
                              stacklevel=2)
            self._grads = {}
        for writer in self._writers.values():
            writer.flush()
        self._epoch += 1

    def on_train_end(self, logs=None):
        if self.model is not None:
            self.model.__dict__.pop("_gradient_tap", None)
        for writer in (self._writers or {}).values():
            writer.close()
        self._writers = None


def _to_host(values) -> list[float]:
    """Device scalars as floats, read in one transfer."""
    values = list(values)
    if not values or not hasattr(values[0], "shape"):
        return [float(v) for v in values]
    from .._namespace import namespace
    from ..backends import backend_of

    stacked = namespace(values[0]).stack(values)
    return [float(v) for v in backend_of(values[0]).to_numpy(stacked)]
