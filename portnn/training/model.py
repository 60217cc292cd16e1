"""`Model`: a layer that can train itself with `fit`, Keras style."""

from __future__ import annotations

import math
import sys

from .. import losses as losses_mod
from .. import optim as optim_mod
from ..layers.base import Layer
from ..random import global_generator
from .callbacks import Callback, ProgressBar
from .history import History
from .metrics import accuracy


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite; ``history`` holds the epochs before."""

    def __init__(self, msg: str, history: History) -> None:
        super().__init__(msg)
        self.history = history


_CLASSIFICATION = (losses_mod.CrossEntropy, losses_mod.BCE, losses_mod.BCEWithLogits)


class Model(Layer):
    """A layer with a training loop: :meth:`fit`, :meth:`evaluate`,
    :meth:`predict` and the single :meth:`train_step` they are built on.

    Subclass it (or use :class:`portnn.Sequential`) and implement
    ``forward``/``backward``.
    """

    stop_training = False
    loss = None
    optimizer = None

    # -- one step: the whole algorithm ---------------------------------------
    def train_step(self, x, y, loss, optimizer):
        """Forward, loss, backward, optimizer step, zero_grad.

        Returns
        -------
        (loss value, predictions)
            The 0-d loss and the batch predictions (for metrics).
        """
        pred = self.forward(x, training=True)
        value = loss.forward(pred, y)
        self.backward_params(loss.backward())  # no d loss / d input needed
        # Gradients are complete and the step has not run: this is the one
        # place where data-parallel training all-reduces them across ranks.
        optimizer.step()
        optimizer.zero_grad()
        return value, pred

    # -- the Keras-style loop -------------------------------------------------
    def fit(self, x, y, *, loss, optimizer="adam", epochs: int = 1,
            batch_size: int = 32, validation_data=None,
            validation_split: float = 0.0, shuffle: bool = True,
            callbacks=None, metrics="auto", verbose="auto", rng=None) -> History:
        """Train with mini-batch gradient descent.

        Parameters
        ----------
        x, y : array_like
            Training inputs and targets (any array the backend can take:
            NumPy, lists, arrays of the model's backend). Floating data is
            cast to the model's dtype.
        loss : Loss or str
            For example ``portnn.CrossEntropy()`` or ``"mse"``.
        optimizer : Optimizer or str, default "adam"
            An optimizer over ``self.parameters()``, or its name.
        epochs, batch_size : int
            Passes over the data and samples per gradient step.
        validation_data : (x_val, y_val), optional
            Evaluated after every epoch (``val_loss``, ``val_accuracy``).
        validation_split : float, default 0
            Fraction of the training data, taken from the end before any
            shuffling, held out for validation instead.
        shuffle : bool, default True
            Reshuffle every epoch (from `rng`, so ``portnn.seed`` fixes it).
        callbacks : list of Callback, optional
            For example ``[portnn.EarlyStopping(patience=3)]``.
        metrics : "auto", list of str, or None
            ``"auto"`` adds ``"accuracy"`` for classification losses.
        verbose : "auto", 0, 1 or 2
            0 silent; 1 a live progress bar (one line per epoch off a
            terminal); 2 one line per epoch; ``"auto"`` is 1 on a terminal
            and 0 otherwise.
        rng : portnn.random.Generator, optional
            Source of the shuffles (default: the global generator).

        Returns
        -------
        History
            Per-epoch loss and metrics.

        Raises
        ------
        TrainingDivergedError
            If the loss becomes NaN or infinite (names the epoch and batch).

        Examples
        --------
        >>> import portnn
        >>> portnn.seed(0)
        >>> model = portnn.Sequential(portnn.Dense(2, 8), portnn.Tanh(),
        ...                           portnn.Dense(8, 1))
        >>> x = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
        >>> y = [[0.0], [1.0], [1.0], [0.0]]
        >>> opt = portnn.Adam(model.parameters(), lr=0.05)
        >>> h = model.fit(x, y, loss="mse", optimizer=opt, epochs=300,
        ...               batch_size=4, verbose=0)
        >>> h["loss"][-1] < 0.01
        True
        """
        _check_positive_int("epochs", epochs)
        _check_positive_int("batch_size", batch_size)
        loss = losses_mod.get(loss)
        optimizer = optim_mod.get(optimizer, self.parameters())
        self.loss, self.optimizer = loss, optimizer
        metric_names = self._metric_names(metrics, loss)
        rng = rng or global_generator()
        xp = self.backend.xp

        x, y = self._as_data(x, y, loss)
        n = x.shape[0]
        if validation_data is None and validation_split:
            if not 0.0 < validation_split < 1.0:
                msg = f"validation_split must be in (0, 1), got {validation_split!r}"
                raise ValueError(msg)
            n_val = int(math.ceil(n * validation_split))
            if n_val >= n:
                msg = f"validation_split={validation_split} leaves no training data"
                raise ValueError(msg)
            validation_data = (x[n - n_val:, ...], y[n - n_val:, ...])
            x, y = x[: n - n_val, ...], y[: n - n_val, ...]
            n = n - n_val
        if validation_data is not None:
            validation_data = self._as_data(*validation_data, loss)

        n_batches = -(-n // batch_size)
        callbacks = list(callbacks or [])
        if verbose == "auto":
            verbose = 1 if _isatty(sys.stderr) else 0
        if verbose:
            callbacks.append(ProgressBar(epochs, n_batches))
        for cb in callbacks:
            if not isinstance(cb, Callback):
                msg = f"callbacks must be Callback instances, got {type(cb).__name__}"
                raise TypeError(msg)
            cb.model = self

        history = History()
        self.stop_training = False
        for cb in callbacks:
            cb.on_train_begin()
        for epoch in range(epochs):
            for cb in callbacks:
                cb.on_epoch_begin(epoch)
            if shuffle:
                perm = rng.permutation(n, backend=self.backend)
                xs, ys = xp.take(x, perm, axis=0), xp.take(y, perm, axis=0)
            else:
                xs, ys = x, y
            totals = dict.fromkeys(["loss", *metric_names], 0.0)
            for b in range(n_batches):
                lo, hi = b * batch_size, min(n, (b + 1) * batch_size)
                xb, yb = xs[lo:hi, ...], ys[lo:hi, ...]
                value, pred = self.train_step(xb, yb, loss, optimizer)
                v = float(value)
                if not math.isfinite(v):
                    msg = (
                        f"training diverged: the loss became {v} at epoch "
                        f"{epoch + 1}, batch {b + 1} of {n_batches}. Lower the "
                        f"learning rate (now {optimizer.lr:g}) or clip gradients "
                        "(portnn.clip_grad_norm), and check the data for NaN/inf."
                    )
                    raise TrainingDivergedError(msg, history)
                size = hi - lo
                batch_logs = {"loss": v, "size": size}
                totals["loss"] += v * size
                for name in metric_names:
                    m = self._metric(name, pred, yb, loss)
                    batch_logs[name] = m
                    totals[name] += m * size
                for cb in callbacks:
                    cb.on_batch_end(b, batch_logs)
            logs = {k: t / n for k, t in totals.items()}
            if validation_data is not None:
                val = self.evaluate(*validation_data, loss=loss,
                                    batch_size=max(batch_size, 256),
                                    metrics=metric_names)
                logs.update({f"val_{k}": v for k, v in val.items()})
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            history.append(epoch, logs)  # last, so callbacks may add figures
            if self.stop_training:
                break
        for cb in callbacks:
            cb.on_train_end()
        return history

    def evaluate(self, x, y, *, loss=None, batch_size: int = 256,
                 metrics="auto") -> dict[str, float]:
        """Loss and metrics on `x`, `y` in evaluation mode.

        Returns
        -------
        dict
            ``{"loss": ..., "accuracy": ...}`` averaged over samples.
        """
        loss = losses_mod.get(loss if loss is not None else self._require_loss())
        names = self._metric_names(metrics, loss)
        x, y = self._as_data(x, y, loss)
        n = x.shape[0]
        totals = dict.fromkeys(["loss", *names], 0.0)
        for lo in range(0, n, batch_size):
            hi = min(n, lo + batch_size)
            xb, yb = x[lo:hi, ...], y[lo:hi, ...]
            pred = self.forward(xb, training=False)
            totals["loss"] += float(loss.forward(pred, yb)) * (hi - lo)
            for name in names:
                totals[name] += self._metric(name, pred, yb, loss) * (hi - lo)
        return {k: t / n for k, t in totals.items()}

    def predict(self, x, batch_size: int | None = None):
        """Outputs for `x` in evaluation mode, in batches if `batch_size`."""
        x = self._as_input(x)
        if batch_size is None or x.shape[0] <= batch_size:
            return self.forward(x, training=False)
        xp = self.backend.xp
        n = x.shape[0]
        parts = [self.forward(x[i:min(n, i + batch_size), ...], training=False)
                 for i in range(0, n, batch_size)]
        return xp.concat(parts, axis=0)

    # -- checkpoints ----------------------------------------------------------
    def save(self, path, optimizer=None, metadata=None) -> None:
        """Save weights, architecture, optimizer state and RNG state to a
        safetensors file, atomically; reload with :func:`portnn.load`.

        Examples
        --------
        >>> import portnn, tempfile, os
        >>> model = portnn.Sequential(portnn.Dense(4, 2), portnn.ReLU())
        >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
        >>> model.save(path)
        >>> portnn.load(path)[0].W.shape
        (4, 2)
        """
        from ..checkpoint import save

        save(self, path, optimizer=optimizer, metadata=metadata)

    # -- helpers ----------------------------------------------------------------
    def _require_loss(self):
        if self.loss is None:
            msg = "no loss given: pass loss=... or call fit(...) first"
            raise ValueError(msg)
        return self.loss

    def _model_dtype(self):
        params = self.parameters()
        return params[0].dtype if params else None

    def _as_input(self, x):
        xp = self.backend.xp
        x = self.backend.asarray(x)
        dtype = self._model_dtype()
        if dtype is None or x.dtype == dtype:
            return x
        if xp.isdtype(x.dtype, "real floating") or (
            not self.integer_input and xp.isdtype(x.dtype, ("integral", "bool"))
        ):
            x = xp.astype(x, dtype)
        return x

    def _as_data(self, x, y, loss=None):
        xp = self.backend.xp
        x = self._as_input(x)
        y = self.backend.asarray(y)
        dtype = self._model_dtype()
        labels = isinstance(loss, losses_mod.CrossEntropy) and not xp.isdtype(
            y.dtype, "real floating")
        if dtype is not None and y.dtype != dtype and not labels:
            y = xp.astype(y, dtype)  # regression and binary targets
        if y.ndim == 0 or x.ndim == 0 or x.shape[0] != y.shape[0]:
            msg = (
                f"x and y must hold the same number of samples in axis 0; got "
                f"x of shape {tuple(x.shape)} and y of shape {tuple(y.shape)}"
            )
            raise ValueError(msg)
        if x.shape[0] == 0:
            msg = "no samples: x is empty"
            raise ValueError(msg)
        return x, y

    @staticmethod
    def _metric_names(metrics, loss) -> list[str]:
        if metrics == "auto":
            return ["accuracy"] if isinstance(loss, _CLASSIFICATION) else []
        if metrics is None:
            return []
        names = [metrics] if isinstance(metrics, str) else list(metrics)
        for name in names:
            if name not in ("accuracy", "acc"):
                msg = f"unknown metric {name!r}; available: 'accuracy'"
                raise ValueError(msg)
        return ["accuracy" for _ in names]

    @staticmethod
    def _metric(name, pred, target, loss) -> float:
        threshold = 0.0 if isinstance(loss, losses_mod.BCEWithLogits) else 0.5
        return accuracy(pred, target, threshold=threshold)


def _check_positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        msg = f"{name} must be a positive int, got {value!r}"
        raise ValueError(msg)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
