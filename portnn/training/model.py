"""`Model`: a layer that can train itself with `fit`, Keras style."""

from __future__ import annotations

import math

from .. import data as data_mod
from .. import losses as losses_mod
from .. import optim as optim_mod
from .._host import read_scalars
from .._namespace import namespace
from .._validation import validated_data
from ..layers.base import Layer, free_caches, no_grad
from ..random import global_generator
from .callbacks import Callback, ProgressBar
from .guard import StepGuard, TrainingDivergedError
from .history import History
from .meters import Meters
from .metrics import Accuracy, Metric
from .precision import Precision

__all__ = ["Model", "TrainingDivergedError"]


_CLASSIFICATION = (losses_mod.CrossEntropy, losses_mod.BCE, losses_mod.BCEWithLogits)
_FLOAT32 = Precision("float32", None)


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
    def train_step(self, x, y, loss, optimizer, guard=None, precision=None):
        """Forward, loss, backward, optimizer step, zero_grad.

        Parameters
        ----------
        guard : StepGuard, optional
            Decides on the device whether the step may update the weights
            (``fit`` passes one); without it the step runs unless a float16
            loss scale overflowed.
        precision : Precision, optional
            The mixed-precision policy (default float32).

        Returns
        -------
        (loss value, predictions)
            The 0-d loss and the batch predictions (for metrics), both still
            on the device and in float32.
        """
        policy = precision or _FLOAT32
        with policy.weights(self):  # half copies of the weights, if mixed
            pred = policy.output(self.forward(policy.input(x), training=True))
            value = loss.forward(pred, y)
            # no d loss / d input needed
            self.backward_params(policy.loss_gradient(loss.backward()))
        finite = policy.unscale(optimizer.params)  # float32, unscaled gradients
        # Gradients are complete and the step has not run: this is the one
        # place where data-parallel training all-reduces them across ranks.
        if guard is not None:
            guard.step(optimizer, value, finite,
                       overflow_skips=policy.scaler is not None)
        else:
            optimizer.step(where=finite)
        policy.update(finite)
        optimizer.zero_grad()
        return value, pred

    # -- the Keras-style loop -------------------------------------------------
    def fit(self, x, y, *, loss, optimizer="adam", epochs: int = 1,
            batch_size: int = 32, validation_data=None,
            validation_split: float = 0.0, shuffle: bool = True,
            callbacks=None, metrics="auto", verbose="auto", rng=None,
            precision: str = "float32") -> History:
        """Train with mini-batch gradient descent.

        Parameters
        ----------
        x, y : array_like
            Training inputs and targets (any array the backend can take:
            NumPy, lists, arrays of the model's backend). They are moved to
            the model's device once; floating data is cast to the model's
            dtype.
        loss : Loss or str
            For example ``portnn.CrossEntropy()`` or ``"mse"``.
        optimizer : Optimizer or str, default "adam"
            An optimizer over this model's parameters (all or some), or its
            name.
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
        metrics : "auto", list of str or Metric, or None
            ``"auto"`` adds ``"accuracy"`` for classification losses.
        verbose : "auto", 0, 1 or 2
            0 silent; 1 a live progress bar on a terminal (tqdm's widget in
            Jupyter) and one line per epoch elsewhere (a log file, CI); 2
            one line per epoch; ``"auto"`` is 1.
        rng : portnn.random.Generator, optional
            Source of the shuffles (default: the global generator).
        precision : {"float32", "mixed_float16", "mixed_bfloat16"}
            Keras's policy names. The mixed ones compute the layers in the
            half type, keep float32 master weights and optimizer state,
            compute losses, softmaxes and normalization statistics in
            float32, and (float16) scale the loss dynamically as
            ``torch.amp.GradScaler`` does. Evaluation runs in float32.
            On NumPy, float16 matrix products have no BLAS: it is for
            checking numerics, not for speed.

        Returns
        -------
        History
            Per-epoch loss and metrics.

        Raises
        ------
        TrainingDivergedError
            If the loss or a gradient becomes NaN or infinite (names the
            epoch and batch; that batch and the rest of its epoch do not
            change the weights).

        Notes
        -----
        Everything is validated before anything changes: a bad argument
        leaves the model, its optimizer and its loss as they were. The loss
        and metrics of an epoch are summed on the device and read once at
        its end, so a GPU never waits for the host between batches; label
        and token-id ranges are checked once, on the whole arrays.

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
        # -- validate everything before changing anything --------------------
        epochs = _positive_int("epochs", epochs)
        batch_size = _positive_int("batch_size", batch_size)
        loss = losses_mod.get(loss)
        optimizer = self._resolve_optimizer(optimizer)
        metric_list = self._metrics(metrics, loss)
        policy = Precision(precision, self.backend)
        rng = rng or global_generator()
        callbacks = list(callbacks or [])
        for cb in callbacks:
            if not isinstance(cb, Callback):
                msg = f"callbacks must be Callback instances, got {type(cb).__name__}"
                raise TypeError(msg)
        self._check_head(loss)
        x, y = self._as_data(x, y, loss)
        x, y, validation_data = self._split_validation(x, y, validation_data,
                                                       validation_split, loss)
        y = self._check_data(x, y, loss)
        if validation_data is not None:
            x_val, y_val = validation_data
            validation_data = (x_val, self._check_data(x_val, y_val, loss))
        n = x.shape[0]
        n_batches = -(-n // batch_size)
        if verbose not in ("auto", 0, 1, 2) or isinstance(verbose, bool):
            msg = f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}"
            raise ValueError(msg)
        if verbose:
            callbacks.append(ProgressBar(epochs, n_batches, live=verbose != 2))

        # -- train ---------------------------------------------------------------
        self.loss, self.optimizer = loss, optimizer
        for cb in callbacks:
            cb.model = self
        meters = Meters(self.backend, metric_list)
        guard = StepGuard(self.backend)
        history = History()
        self.stop_training = False
        try:
            for cb in callbacks:
                cb.on_train_begin()
            with validated_data():
                for epoch in range(epochs):
                    for cb in callbacks:
                        cb.on_epoch_begin(epoch)
                    meters.reset()
                    guard.reset()
                    for b, (xb, yb) in enumerate(data_mod.batches(
                            x, y, batch_size=batch_size, shuffle=shuffle, rng=rng)):
                        value, pred = self.train_step(xb, yb, loss, optimizer,
                                                      guard, policy)
                        meters.update(value, pred, yb)
                        batch_logs = {"loss": value, "size": int(xb.shape[0])}
                        for cb in callbacks:
                            cb.on_batch_end(b, batch_logs)
                    # the epoch's one host read: figures and the guard's verdict
                    logs, verdict = meters.read(guard.totals())
                    StepGuard.check(verdict, epoch=epoch, batches=n_batches,
                                    lr=optimizer.lr, history=history)
                    if validation_data is not None:
                        val = self._evaluate(*validation_data, loss,
                                             max(batch_size, 256), metric_list)
                        logs.update({f"val_{k}": v for k, v in val.items()})
                    for cb in callbacks:
                        cb.on_epoch_end(epoch, logs)
                    history.append(epoch, logs)  # last, so callbacks may add figures
                    if self.stop_training:
                        break
        finally:
            free_caches(loss)  # the last batch's predictions and targets
            for cb in callbacks:  # also when training fails: files close
                cb.on_train_end()
        return history

    def evaluate(self, x, y, *, loss=None, batch_size: int = 256,
                 metrics="auto") -> dict[str, float]:
        """Loss and metrics on `x`, `y` in evaluation mode.

        Returns
        -------
        dict
            ``{"loss": ..., "accuracy": ...}`` averaged over samples, read
            from the device once.
        """
        batch_size = _positive_int("batch_size", batch_size)
        loss = losses_mod.get(loss if loss is not None else self._require_loss())
        metric_list = self._metrics(metrics, loss)
        x, y = self._as_data(x, y, loss)
        y = self._check_data(x, y, loss)
        with validated_data():
            return self._evaluate(x, y, loss, batch_size, metric_list)

    def _evaluate(self, x, y, loss, batch_size, metric_list):
        meters = Meters(self.backend, metric_list)
        n = x.shape[0]
        with no_grad():
            for lo in range(0, n, batch_size):
                hi = min(n, lo + batch_size)
                xb, yb = x[lo:hi, ...], y[lo:hi, ...]
                pred = self.forward(xb, training=False)
                meters.update(loss.forward(pred, yb), pred, yb)
        free_caches(loss)
        logs, _ = meters.read()
        return logs

    def predict(self, x, batch_size: int | None = None):
        """Outputs for `x` in evaluation mode, in batches if `batch_size`,
        as an array on the model's device."""
        if batch_size is not None:
            batch_size = _positive_int("batch_size", batch_size)
        x = self._as_input(x)
        with no_grad():  # nothing of x stays on the layers
            if batch_size is None or x.shape[0] <= batch_size:
                return self.forward(x, training=False)
            n = x.shape[0]
            parts = [self.forward(x[i:min(n, i + batch_size), ...], training=False)
                     for i in range(0, n, batch_size)]
        return self.backend.xp.concat(parts, axis=0)

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

    def _as_input(self, x, what="x"):
        xp = self.backend.xp
        _refuse_unsupported(x, what)
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
        """`x` and `y` as arrays on the model's device (moved once)."""
        xp = self.backend.xp
        x = self._as_input(x)
        _refuse_unsupported(y, "y")
        if _is_text(y):
            msg = (
                "the labels are strings; encode them as integers 0..C-1 first "
                "(numpy.unique(y, return_inverse=True), or scikit-learn's "
                "LabelEncoder) and keep the classes to decode predictions"
            )
            raise TypeError(msg)
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

    def _split_validation(self, x, y, validation_data, validation_split, loss):
        if validation_data is None and validation_split:
            if not 0.0 < validation_split < 1.0:
                msg = f"validation_split must be in (0, 1), got {validation_split!r}"
                raise ValueError(msg)
            n = x.shape[0]
            n_val = int(math.ceil(n * validation_split))
            if n_val >= n:
                msg = f"validation_split={validation_split} leaves no training data"
                raise ValueError(msg)
            validation_data = (x[n - n_val:, ...], y[n - n_val:, ...])
            x, y = x[: n - n_val, ...], y[: n - n_val, ...]
        elif validation_data is not None:
            if not (isinstance(validation_data, (tuple, list))
                    and len(validation_data) == 2):
                msg = (
                    "validation_data must be a pair (x_val, y_val), got "
                    f"{type(validation_data).__name__}"
                )
                raise ValueError(msg)
            validation_data = self._as_data(*validation_data, loss)
        return x, y, validation_data

    def _check_head(self, loss) -> None:
        """Refuse a loss that does not match the model's last activation: a
        softmax head under a logits loss trains a double softmax."""
        head = _output_activation(self)
        name = type(head).__name__ if head is not None else None
        fix = None
        if isinstance(loss, losses_mod.CrossEntropy):
            if loss.from_logits and name == "Softmax":
                fix = ("CrossEntropy() expects logits, but the model ends in a "
                       "softmax: that trains a double softmax. Remove the final "
                       "softmax (CrossEntropy fuses it, the stable way) or use "
                       "CrossEntropy(from_logits=False) / "
                       "loss='categorical_crossentropy'")
            elif not loss.from_logits and head is None and _ends_linear(self):
                fix = ("CrossEntropy(from_logits=False) expects probabilities, but "
                       "the model ends in a linear layer (logits). Use "
                       "CrossEntropy() (from logits) or end the model in a softmax")
        elif isinstance(loss, losses_mod.BCEWithLogits) and name == "Sigmoid":
            fix = ("BCEWithLogits expects logits, but the model ends in a sigmoid. "
                   "Remove the final sigmoid or use BCE() on probabilities")
        if fix:
            raise ValueError(fix)

    def _check_data(self, x, y, loss):
        """Validate whole arrays once: the model takes `x` (one sample run in
        evaluation mode), token ids and labels are in range, targets fit.
        Returns `y`, with float class labels that are whole numbers turned
        into integers."""
        with no_grad():
            pred = self.forward(x[:1, ...], training=False)
        self.check_input(x)
        if isinstance(loss, losses_mod.CrossEntropy):
            y = _integral_labels(y, pred)
        loss.check_target(pred, y)
        return y

    def _resolve_optimizer(self, optimizer):
        if not isinstance(optimizer, optim_mod.Optimizer):
            return optim_mod.get(optimizer, self.parameters())
        mine = {id(p) for p in self.parameters()}
        foreign = [p for p in optimizer.params if id(p) not in mine]
        if foreign:
            msg = (
                f"the optimizer holds {len(foreign)} parameter(s) that are not "
                f"this model's ({foreign[0]!r}, ...): it would train another "
                "model. Build it from this model: "
                f"portnn.{type(optimizer).__name__}(model.parameters(), ...)"
            )
            raise ValueError(msg)
        return optimizer

    @staticmethod
    def _metrics(metrics, loss) -> list[Metric]:
        threshold = 0.0 if isinstance(loss, losses_mod.BCEWithLogits) else 0.5
        if metrics == "auto":
            return [Accuracy(threshold)] if isinstance(loss, _CLASSIFICATION) else []
        if metrics is None:
            return []
        items = [metrics] if isinstance(metrics, (str, Metric)) else list(metrics)
        out = []
        for item in items:
            if isinstance(item, Metric):
                out.append(item)
            elif item in ("accuracy", "acc"):
                out.append(Accuracy(threshold))
            else:
                msg = f"unknown metric {item!r}; available: 'accuracy'"
                raise ValueError(msg)
        return out


def _refuse_unsupported(data, what):
    """Iterators are not arrays: say what `fit` takes instead of failing
    inside an array library."""
    if hasattr(data, "__next__") or type(data).__name__ == "generator":
        msg = (
            f"{what} is a {type(data).__name__}: fit, evaluate and predict take "
            "arrays (NumPy arrays, lists, or arrays of any backend). Collect "
            "the batches first (numpy.concatenate(list(...)))"
        )
        raise TypeError(msg)


def _is_text(data) -> bool:
    """Strings, as a NumPy string/object array or nested lists."""
    kind = getattr(getattr(data, "dtype", None), "kind", None)  # NumPy's
    if kind in ("U", "S"):
        return True
    if kind == "O":
        data = data.ravel()[:1].tolist() if data.size else []
    elif kind is not None:
        return False
    while isinstance(data, (list, tuple)) and data:
        data = data[0]
    return isinstance(data, (str, bytes))


def _integral_labels(y, pred):
    """Float class labels (one per prediction row, as pandas often gives)
    become integers when they are whole numbers; otherwise say so."""
    xp = namespace(y)
    if not xp.isdtype(y.dtype, "real floating") or (
            tuple(y.shape[1:]) != tuple(pred.shape[1:-1])):
        return y
    whole = read_scalars([xp.all(y == xp.round(y))])[0]
    if not whole:
        msg = (
            f"CrossEntropy: y holds floats of shape {tuple(y.shape)}, one per "
            "sample, so they are class labels, but not all are whole numbers; "
            "pass integer labels 0..C-1, or one-hot/probability targets of shape "
            f"(N, {pred.shape[-1]})"
        )
        raise ValueError(msg)
    return xp.astype(y, xp.int64)


def _last_layer(model):
    layer = model
    while True:
        children = getattr(layer, "layers", None)
        if not children:
            return layer
        layer = children[-1]


def _output_activation(model):
    """The activation a Sequential ends in (a layer, or a Dense/Conv's
    ``activation=``), or None."""
    from ..layers.activations import Activation

    last = _last_layer(model)
    act = getattr(last, "activation", None)
    if isinstance(act, Activation):
        return act
    return last if type(last).__name__ in ("Softmax", "Sigmoid") else None


def _ends_linear(model) -> bool:
    last = _last_layer(model)
    return type(last).__name__ in ("Dense", "Conv1D", "Conv2D") and (
        last.activation is None)


def _positive_int(name, value) -> int:
    """`value` as an int if it is a positive integral number (numpy ints too)."""
    import operator

    if isinstance(value, bool):
        value = None
    try:
        number = operator.index(value)
    except TypeError:
        number = None
    if number is None or number < 1:
        msg = f"{name} must be a positive int, got {value!r}"
        raise ValueError(msg)
    return number


