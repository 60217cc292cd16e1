"""`Model`: a layer that can train itself with `fit`, Keras style."""

from __future__ import annotations

import contextlib

from .. import distributed
from .. import losses as losses_mod
from .. import optim as optim_mod
from .._validation import validated_data
from ..data.sources import batch_rows, concat_rows, shard_rows, take_rows
from ..data.structure import Structure, leaves, map_structure
from ..distributed.data_parallel import (
    all_reduce_gradients,
    average_buffers,
    broadcast_state,
)
from ..distributed.shuffle import shuffle_generator
from ..layers.base import Layer, check_registered, free_caches, no_grad
from ..losses.multi import MultiLoss, multi_loss
from .callbacks import Callback, LRSchedulerCallback, ProgressBar
from .guard import StepGuard, TrainingDivergedError
from .history import History
from .inputs import ClassWeights, Inputs, refuse_text, validation_pair
from .meters import Meters
from .metrics import Metric, get_metrics, output_metrics
from .precision import Precision

__all__ = ["Model", "TrainingDivergedError"]


_CLASSIFICATION = (losses_mod.CrossEntropy, losses_mod.BCE, losses_mod.BCEWithLogits)
_FLOAT32 = Precision("float32", None)


class Model(Layer):
    """A layer with a training loop: :meth:`compile`, :meth:`fit`,
    :meth:`evaluate`, :meth:`predict` and the single :meth:`train_step`
    they are built on.

    Subclass it (or use :class:`portnn.Sequential`) and implement
    ``forward``/``backward``.
    """

    def __new__(cls, *args, **kwargs):
        # Model(inputs=..., outputs=...) is a graph model, as in Keras
        if cls is Model and ("inputs" in kwargs or "outputs" in kwargs):
            from ..layers.graph import Functional

            return super().__new__(Functional)
        return super().__new__(cls)

    stop_training = False
    loss = None
    optimizer = None
    #: the float16 loss scaler, kept between fits and in checkpoints
    loss_scaler = None
    #: metrics set by :meth:`compile` (``None``: chosen per loss)
    metrics = None

    # -- once, Keras style ----------------------------------------------------
    def compile(self, loss=None, optimizer="adam", metrics="auto",
                loss_weights=None) -> Model:
        """Set the loss, the optimizer and the metrics that `fit` and
        `evaluate` use when not given them.

        Parameters
        ----------
        loss : Loss or str, optional
            With several outputs: one for all, a list in the outputs' order
            or a dict by output name.
        optimizer : Optimizer or str, default "adam"
            A name makes the optimizer now, over the trainable parameters; it
            is kept across `fit` calls (its moments and step count go on).
        metrics : "auto", list of str, Metric or callable, or None
            See :func:`portnn.training.metrics.get`. With several outputs a
            list applies to every output and a dict gives each its own.
        loss_weights : list or dict of float, optional
            With several outputs: each output's loss weight (default 1).

        Returns
        -------
        Model
            This model (for chaining).

        Examples
        --------
        >>> import portnn
        >>> model = portnn.Sequential(portnn.Dense(4, 3)).compile(
        ...     loss="cross_entropy", optimizer="adam",
        ...     metrics=["accuracy", "f1_macro"])
        >>> type(model.optimizer).__name__, [m.name for m in model.metrics]
        ('Adam', ['accuracy', 'f1_macro'])
        """
        loss = (self._resolve_loss(loss, loss_weights) if loss is not None
                 else self.loss)
        optimizer = self._resolve_optimizer(optimizer)
        metric_list = (self._metrics(metrics, loss, compiled=False)
                       if loss is not None or metrics != "auto" else None)
        self.loss, self.optimizer = loss, optimizer
        self.metrics = metric_list if metrics != "auto" else None
        return self

    # -- what goes in and comes out -------------------------------------------
    @property
    def input_structure(self) -> Structure:
        """How the model takes its inputs: one array (a graph model: a list
        or a dict, as its ``Model(inputs=...)``)."""
        return Structure()

    @property
    def output_structure(self) -> Structure:
        """How the model gives its outputs: one array, or a list or a dict."""
        return Structure()

    # -- one step: the whole algorithm ---------------------------------------
    def train_step(self, x, y, loss, optimizer, guard=None, precision=None,
                   sample_weight=None):
        """Forward, loss, backward, optimizer step, zero_grad.

        Parameters
        ----------
        guard : StepGuard, optional
            Decides on the device whether the step may update the weights
            (``fit`` passes one); without it the step runs unless a float16
            loss scale overflowed.
        precision : Precision, optional
            The mixed-precision policy (default float32).
        sample_weight : array, optional
            One weight per sample of the batch.

        Returns
        -------
        (loss value, predictions)
            The 0-d loss and the batch predictions (for metrics), both still
            on the device and in float32.
        """
        policy = precision or _FLOAT32
        world = distributed.current()
        rows = batch_rows(x)
        if rows:
            with policy.weights(self):  # half copies of the weights, if mixed
                pred = policy.output(self.forward(policy.input(x), training=True))
                value = (loss.forward(pred, y) if sample_weight is None
                         else loss.forward(pred, y, sample_weight=sample_weight))
                # no d loss / d input needed
                self.backward_params(policy.loss_gradient(loss.backward()))
        else:  # a rank with no rows of a short last batch: no gradient of its own
            pred, value = x, self.backend.xp.zeros((), device=self.backend.device)
        policy.to_master(optimizer.params)  # float32 gradients
        # Gradients are complete and the step has not run: the one place
        # where data-parallel training makes them the exact global mean.
        if world.size > 1:
            all_reduce_gradients(world, optimizer.params, rows,
                                 self.backend)
        finite = policy.unscale(optimizer.params)  # unscaled; finite (float16)?
        if guard is not None:
            scaler = policy.scaler
            guard.step(optimizer, value, finite, overflow_skips=scaler is not None,
                       stalled=policy.stalled(finite),
                       bad_param=scaler._first_bad_now if scaler else None)
        else:
            optimizer.step(where=finite)
        policy.update(finite)
        optimizer.zero_grad()
        return value, pred

    # -- the Keras-style loop -------------------------------------------------
    def fit(self, x, y=None, *, loss=None, optimizer=None, epochs: int = 1,
            batch_size: int = 32, validation_data=None,
            validation_split: float = 0.0, shuffle: bool = True,
            callbacks=None, metrics="auto", verbose="auto", rng=None,
            precision: str = "float32", sample_weight=None, class_weight=None,
            lr_schedule=None, steps_per_epoch: int | None = None,
            validation_steps: int | None = None, prefetch: bool = True,
            loss_weights=None) -> History:
        """Train with mini-batch gradient descent.

        Parameters
        ----------
        x, y : array_like, Dataset or iterable of batches
            Arrays (NumPy, lists, arrays of any backend; moved to the
            model's device once, floating data cast to the model's dtype), a
            :class:`portnn.data.Dataset` (memory-mapped files, lists of
            samples: read a batch at a time), or an iterable of ``(x, y)``
            or ``(x, y, sample_weight)`` batches (`y` is then None). A
            dataset or iterable is prepared a batch ahead in a background
            thread (`prefetch`).
        loss : Loss or str, optional
            For example ``portnn.CrossEntropy()`` or ``"mse"``; default the
            loss given to :meth:`compile`.
        optimizer : Optimizer or str, optional
            An optimizer over this model's parameters (all or some), or its
            name. Default: the model's optimizer (from :meth:`compile`, an
            earlier `fit` or a checkpoint), else a new Adam. A name matching
            the model's optimizer keeps it (and its state).
        epochs, batch_size : int
            Passes over the data and samples per gradient step.
        validation_data : (x_val, y_val[, w_val]), Dataset or iterable, optional
            Evaluated after every epoch (``val_loss``, ``val_accuracy``).
        validation_split : float, default 0
            Fraction of the training arrays, taken from the end before any
            shuffling, held out for validation instead.
        shuffle : bool, default True
            Reshuffle every epoch (from `rng`, so ``portnn.seed`` fixes it;
            a Dataset gets the same order arrays would).
        callbacks : list of Callback, optional
            For example ``[portnn.EarlyStopping(patience=3)]``.
        metrics : "auto", list of str, Metric or callable, or None
            Names as scikit-learn's scorers spell them (``"f1_macro"``,
            ``"roc_auc"``, ``"r2"``, ``"top_5_accuracy"``, ...).
            ``"auto"``: those of :meth:`compile`, else ``"accuracy"`` for
            classification losses.
        verbose : "auto", 0, 1 or 2
            0 silent; 1 a live progress bar on a terminal (tqdm's widget in
            Jupyter) and one line per epoch elsewhere (a log file, CI); 2
            one line per epoch; ``"auto"`` is 1.
        rng : portnn.random.Generator, optional
            Source of the shuffles (default: the context's generator).
        precision : {"float32", "mixed_float16", "mixed_bfloat16"}
            Keras's policy names. The mixed ones compute the layers in the
            half type, keep float32 master weights and optimizer state,
            compute losses, softmaxes and normalization statistics in
            float32, and (float16) scale the loss dynamically as
            ``torch.amp.GradScaler`` does. Evaluation runs in float32.
            On NumPy, float16 matrix products have no BLAS: it is for
            checking numerics, not for speed.
        sample_weight : array, optional
            One weight per training sample (Keras's semantics: each
            sample's loss is scaled; the mean is over the batch).
        class_weight : dict, optional
            ``{class index: weight}``; multiplies into the sample weights.
        lr_schedule : LRScheduler or callable, optional
            A schedule made for the optimizer, or ``f(epoch) -> lr``. A
            schedule already made for the optimizer (``optimizer.scheduler``)
            is stepped too. The rate of each epoch is logged as ``lr``.
        steps_per_epoch, validation_steps : int, optional
            Batches per epoch from an iterable (an endless generator needs
            them).
        prefetch : bool, default True
            Prepare the next batch of a dataset or iterable in a background
            thread while the current one trains.
        loss_weights : list or dict of float, optional
            With several outputs: each output's loss weight (default 1); the
            history then holds ``<output>_loss`` and ``<output>_<metric>``.

        Returns
        -------
        History
            Per-epoch loss, metrics and ``lr``.

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
        and token-id ranges are checked once, on the whole arrays (batch by
        batch on the host for datasets and iterables).

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
        with self._tentative_build():  # lazy layers: built only if valid
            epochs = _positive_int("epochs", epochs)
            batch_size = _positive_int("batch_size", batch_size)
            check_registered(self)
            steps_per_epoch = _steps("steps_per_epoch", steps_per_epoch)
            validation_steps = _steps("validation_steps", validation_steps)
            loss = self._resolve_loss(loss, loss_weights)
            optimizer = self._resolve_optimizer(optimizer)
            self._warn_untrained(optimizer)
            metric_list = self._metrics(metrics, loss)
            policy = Precision(precision, self.backend, scaler=self.loss_scaler)
            world = distributed.current()
            rng = rng or shuffle_generator(world)
            callbacks = _checked_callbacks(callbacks)
            _check_verbose(verbose)
            self._check_head(loss)
            inputs = Inputs(self, loss, prefetch=prefetch, shard=_shard(world))
            if policy.input_limit is not None:
                inputs.input_limit = (policy.input_limit, precision)
            if validation_split and validation_data is None:
                (x, y, sample_weight), validation_data = inputs.split(
                    x, y, sample_weight, validation_split)
            source = inputs.source(x, y, sample_weight, batch_size=batch_size,
                                   shuffle=shuffle, rng=rng, steps=steps_per_epoch)
            validation = None
            if validation_data is not None:
                vx, vy, vw = validation_pair(validation_data)
                validation = inputs.source(vx, vy, vw,
                                           batch_size=max(batch_size, 256),
                                           steps=validation_steps)
            _check_shards(self, source, world)
            weigh = None
            if class_weight is not None:
                weigh = ClassWeights(class_weight, loss, inputs.sample_pred,
                                     self.backend)
            schedule = _schedule_callback(lr_schedule, optimizer, callbacks)
            if schedule is not None:
                callbacks.insert(0, schedule)
            if verbose and world.rank == 0:  # only the main rank prints
                callbacks.append(ProgressBar(epochs, source.n_batches,
                                             live=verbose != 2))
            if world.size > 1:  # every rank the same job, before any collective
                _check_same_job(world, "fit", self, source, validation, {
                    "epochs": epochs, "batch_size": batch_size,
                    "shuffle": bool(shuffle), "precision": precision,
                    "optimizer": type(optimizer).__name__,
                    "loss": type(loss).__name__})

        # -- train ---------------------------------------------------------------
        self.loss, self.optimizer = loss, optimizer
        if policy.scaler is not None:  # training state: the next fit goes on
            self.loss_scaler = policy.scaler
        if world.size > 1:  # every rank starts from rank 0's weights and state
            broadcast_state(world, self, optimizer)
        for cb in callbacks:
            cb.model = self
        meters = Meters(self.backend, metric_list)
        guard = StepGuard(self.backend, names=_parameter_names(self, optimizer),
                          policy=precision)
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
                    for b, (xb, yb, wb) in enumerate(source.batches()):
                        if weigh is not None:
                            wb = weigh(yb, wb)
                        value, pred = self.train_step(xb, yb, loss, optimizer, guard,
                                                      policy, sample_weight=wb)
                        meters.update(value, pred, yb)
                        batch_logs = {"loss": value, "size": batch_rows(xb)}
                        for cb in callbacks:
                            cb.on_batch_end(b, batch_logs)
                    meters.reduce(world)  # data-parallel: over every rank
                    # the epoch's one host read: figures and the guard's verdict
                    logs, verdict = meters.read(guard.totals())
                    guard.check(verdict, epoch=epoch, batches=guard.batch,
                                lr=optimizer.lr, history=history)
                    if world.size > 1:
                        average_buffers(world, self)  # one model on every rank
                    if validation is not None:
                        val = self._evaluate(validation, loss, metric_list)
                        logs.update({f"val_{k}": v for k, v in val.items()})
                    logs["lr"] = optimizer.lr  # the rate this epoch ran at
                    for cb in callbacks:
                        cb.on_epoch_end(epoch, logs)
                    history.append(epoch, logs)  # last, so callbacks may add figures
                    if self.stop_training:
                        break
        except SystemExit as exc:
            if world.size > 1:  # skips the abort hook: the others would wait
                _abort_world(world, exc)
            raise
        finally:
            free_caches(loss)  # the last batch's predictions and targets
            for cb in callbacks:  # also when training fails: files close
                cb.on_train_end()
        return history

    def evaluate(self, x, y=None, *, loss=None, batch_size: int = 256,
                 metrics="auto", sample_weight=None, steps: int | None = None,
                 prefetch: bool = True) -> dict[str, float]:
        """Loss and metrics on `x`, `y` in evaluation mode.

        `x` may be arrays, a Dataset or an iterable of ``(x, y)`` batches,
        as for :meth:`fit`.

        Returns
        -------
        dict
            ``{"loss": ..., "accuracy": ...}`` over all samples, read from
            the device once.
        """
        batch_size = _positive_int("batch_size", batch_size)
        steps = _steps("steps", steps)
        loss = self._resolve_loss(loss)
        metric_list = self._metrics(metrics, loss)
        refuse_text(y)
        world = distributed.current()
        with self._tentative_build():
            source = Inputs(self, loss, prefetch=prefetch,
                            shard=_shard(world)).source(
                x, y, sample_weight, batch_size=batch_size, steps=steps)
        if world.size > 1:
            _check_same_job(world, "evaluate", self, source, None,
                            {"batch_size": batch_size, "loss": type(loss).__name__})
        with validated_data():
            return self._evaluate(source, loss, metric_list)

    def _evaluate(self, source, loss, metric_list):
        meters = Meters(self.backend, [m.fresh() for m in metric_list])
        with no_grad():
            for xb, yb, wb in source.batches():
                pred = self.forward(xb, training=False)
                value = (loss.forward(pred, yb) if wb is None
                         else loss.forward(pred, yb, sample_weight=wb))
                meters.update(value, pred, yb)
        free_caches(loss)
        meters.reduce(distributed.current())
        logs, _ = meters.read()
        return logs

    def predict(self, x, batch_size: int | None = None, steps: int | None = None,
                prefetch: bool = True):
        """Outputs for `x` in evaluation mode, as one array on the model's
        device; `x` may be arrays (in batches if `batch_size`), a Dataset or
        an iterable of batches (their ``x``)."""
        if batch_size is not None:
            batch_size = _positive_int("batch_size", batch_size)
        steps = _steps("steps", steps)
        with self._tentative_build():  # a failed call leaves lazy layers unbuilt
            return self._predict(x, batch_size, steps, prefetch)

    def _predict(self, x, batch_size, steps, prefetch):
        world = distributed.current()
        xp = self.backend.xp
        if world.size > 1 and not _is_stream(x):
            # each rank its contiguous share of the rows; gathered in order
            x = self._as_input(x)
            from ..data.sources import ArraySource

            n = batch_rows(x)
            _check_same_job(world, "predict", self, ArraySource(
                x, batch_size=batch_size or n or 1, backend=self.backend), None,
                {"batch_size": batch_size})
            mine = take_rows(x, shard_rows(n, world.rank, world.size))
            with distributed.single():
                part = self.predict(mine, batch_size=batch_size, prefetch=prefetch)
            return map_structure(
                lambda p: xp.concat(world.all_gather(p), axis=0), part)
        if batch_size is None and not _is_stream(x):
            x = self._as_input(x)
            self._build_lazy(take_rows(x, slice(0, 1)))
            with no_grad():  # nothing of x stays on the layers
                return self.forward(x, training=False)
        source = Inputs(self, prefetch=prefetch).source(
            x, batch_size=batch_size or 256, steps=steps, targets=False)
        with no_grad():
            parts = [self.forward(batch.x, training=False)
                     for batch in source.batches()]
        return concat_rows(parts, xp)

    # -- shapes ---------------------------------------------------------------
    def build(self, input_shape) -> Model:
        """Build the lazy layers (``Dense(64)``, ``Conv2D(out_channels=32,
        kernel_size=3)``) by running one sample of `input_shape` through the
        model, in evaluation mode. `input_shape` is the shape of one sample
        (``(784,)``, ``(1, 28, 28)``); a leading ``None`` for the batch is
        allowed, as in Keras.

        Returns
        -------
        Model
            This model (for chaining).

        Examples
        --------
        >>> import portnn
        >>> model = portnn.Sequential(portnn.Dense(32), portnn.ReLU(), portnn.Dense(10))
        >>> model.build((None, 784)).num_parameters()
        25450
        """
        shape = tuple(input_shape)
        if shape and shape[0] is None:
            shape = shape[1:]
        if not all(isinstance(s, int) and s > 0 for s in shape):
            msg = f"build: input_shape must be positive ints, got {input_shape!r}"
            raise ValueError(msg)
        xp, b = self.backend.xp, self.backend
        dtype = xp.int64 if self.integer_input else self._model_dtype()
        with self._tentative_build():
            self._build_lazy(xp.zeros((1, *shape), dtype=dtype, device=b.device))
        self._input_shape = shape
        return self

    @contextlib.contextmanager
    def _tentative_build(self):
        """Lazy layers built inside are unbuilt again if the block fails
        (a bad input must not leave them sized for it), and the generator
        goes back to where it was (a retry draws the same weights)."""
        if not any(None in p.shape for p in self.parameters()):
            yield
            return
        from ..layers.base import walk_layers
        from ..random import global_generator

        generator = global_generator()
        rng = generator.get_state()
        saved = []
        for layer in walk_layers(self):
            params = [(p, {k: getattr(p, k) for k in p.__slots__})
                      for p in getattr(layer, "_params", {}).values()]
            saved.append((layer, dict(layer.__dict__), params))
        try:
            yield
        except BaseException:
            for layer, attrs, params in saved:
                layer.__dict__.clear()
                layer.__dict__.update(attrs)
                for p, slots in params:
                    for k, v in slots.items():
                        setattr(p, k, v)
            generator.set_state(rng)
            raise

    def _build_lazy(self, x) -> None:
        """Size the lazy layers on `x` (one sample), then draw their weights
        in the order the same model with its sizes given would have: one
        seed gives the same weights, lazy or not."""
        if not any(None in p.shape for p in self.parameters()):
            return
        from ..layers.base import shape_pass
        from ..layers.dense import replay_draws

        with no_grad(), shape_pass():
            self.forward(x, training=False)
        replay_draws(self)

    def summary(self, print_fn=print) -> str:
        """Print (with `print_fn`; ``None`` to only return) a table of the
        layers: output shapes (known once built, from :meth:`build` or the
        first data `fit` saw), parameter counts, trainable and frozen, and
        the size of the weights.

        Examples
        --------
        >>> import portnn
        >>> model = portnn.Sequential(portnn.Dense(4, 8), portnn.ReLU(),
        ...                           portnn.Dense(8, 2)).build((4,))
        >>> print(model.summary(print_fn=None))  # doctest: +NORMALIZE_WHITESPACE
        Model: Sequential
         #  Layer          Output shape        Params  Frozen
         0  Dense(4, 8)    (None, 8)               40       0
         1  ReLU           (None, 8)                0       0
         2  Dense(8, 2)    (None, 2)               18       0
        Total params: 58 (232 B); trainable: 58; frozen: 0
        """
        from .summary import summarize

        return summarize(self, print_fn)

    def _totals_line(self) -> str:
        from .summary import totals_line

        return totals_line(self)

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
    def _resolve_loss(self, loss, loss_weights=None):
        outputs = self.output_structure
        if outputs.single:
            if loss_weights is not None:
                msg = "loss_weights is for models with several outputs"
                raise ValueError(msg)
            if loss is not None:
                return losses_mod.get(loss)
        elif loss is not None and not isinstance(loss, MultiLoss):
            return multi_loss(loss, loss_weights, outputs, losses_mod.get)
        elif loss is None and loss_weights is not None and isinstance(
                self.loss, MultiLoss):
            return multi_loss(self.loss.losses, loss_weights, outputs,
                              losses_mod.get)
        elif loss is not None:
            return loss
        if self.loss is None:
            msg = "no loss: pass loss=... or call model.compile(loss=...) first"
            raise ValueError(msg)
        return self.loss

    def _model_dtype(self):
        params = self.parameters()
        return params[0].dtype if params else None

    def _as_input(self, x, what="x"):
        structure = self.input_structure
        if structure.single:
            return self._as_one_input(x, what, self.integer_input)
        _refuse_unsupported(x, what)
        parts = structure.flatten(x, what)
        integer = self.integer_inputs
        parts = [self._as_one_input(p, f"{what}[{i}]", integer[i])
                 for i, p in enumerate(parts)]
        rows = {int(p.shape[0]) if p.ndim else -1 for p in parts}
        if len(rows) != 1:
            shapes = [tuple(p.shape) for p in parts]
            msg = f"{what}: the inputs hold different numbers of samples: {shapes}"
            raise ValueError(msg)
        return structure.rebuild(parts)

    @property
    def integer_inputs(self) -> list[bool]:
        """Whether each input takes integers (token ids)."""
        return [self.integer_input] * self.input_structure.n

    def _as_one_input(self, x, what, integer: bool):
        xp = self.backend.xp
        _refuse_unsupported(x, what)
        _refuse_objects(x, what)
        x = self.backend.asarray(x)
        dtype = self._model_dtype()
        if dtype is None or x.dtype == dtype:
            return x
        if xp.isdtype(x.dtype, "real floating") or (
            not integer and xp.isdtype(x.dtype, ("integral", "bool"))
        ):
            x = xp.astype(x, dtype)
        return x

    def _as_data(self, x, y, loss=None):
        """`x` and `y` as arrays on the model's device (moved once)."""
        if y is None:
            msg = ("y is None: fit and evaluate need targets (y=...), or a "
                   "Dataset or iterable of (x, y) batches as x")
            raise ValueError(msg)
        x = self._as_input(x)
        outputs = self.output_structure
        if outputs.single:
            y = self._as_target(y, loss, "y")
        else:
            losses = (loss.losses if isinstance(loss, MultiLoss)
                      else [loss] * outputs.n)
            y = outputs.rebuild([self._as_target(t, lo, f"y[{name}]") for t, lo, name
                                 in zip(outputs.flatten(y, "y"), losses,
                                        outputs.names(), strict=True)])
        n_x = {int(a.shape[0]) if a.ndim else -1 for a in leaves(x)}
        n_y = {int(a.shape[0]) if a.ndim else -1 for a in leaves(y)}
        if len(n_x | n_y) != 1 or -1 in n_x | n_y:
            shapes = ([tuple(a.shape) for a in leaves(x)],
                      [tuple(a.shape) for a in leaves(y)])
            msg = (
                f"x and y must hold the same number of samples in axis 0; got "
                f"x of shape {_one(shapes[0])} and y of shape {_one(shapes[1])}"
            )
            raise ValueError(msg)
        if batch_rows(x) == 0:
            msg = "no samples: x is empty"
            raise ValueError(msg)
        return x, y

    def _as_target(self, y, loss, what):
        """One output's targets on the model's device, in the dtype its
        loss takes (integer class labels stay integers)."""
        xp = self.backend.xp
        _refuse_unsupported(y, what)
        refuse_text(y)
        _refuse_objects(y, what)
        y = self.backend.asarray(y)
        if xp.isdtype(y.dtype, "bool"):  # True/False: classes or targets 1/0
            y = xp.astype(y, xp.int64 if isinstance(
                loss, losses_mod.CrossEntropy) else self._model_dtype() or xp.float32)
        dtype = self._model_dtype()
        labels = isinstance(loss, losses_mod.CrossEntropy) and not xp.isdtype(
            y.dtype, "real floating")
        if dtype is not None and y.dtype != dtype and not labels:
            y = xp.astype(y, dtype)  # regression and binary targets
        return y

    def _check_head(self, loss) -> None:
        """Refuse a loss that does not match the model's last activation."""
        from .heads import check_head

        check_head(self, loss)

    def _resolve_optimizer(self, optimizer):
        if optimizer is None:
            return (self.optimizer if self.optimizer is not None
                    else optim_mod.get("adam", self.parameters()))
        if isinstance(optimizer, str):
            kept = self.optimizer
            if (kept is not None and type(kept) is optim_mod.resolve(optimizer)
                    and not self._untrained_by(kept)):
                return kept  # made once: its moments and step count go on
            # new, over today's trainable parameters (after an unfreeze too)
            return optim_mod.get(optimizer, self.parameters())
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

    def _untrained_by(self, optimizer) -> list:
        """Trainable parameters `optimizer` does not update."""
        held = {id(p) for p in optimizer.params}
        return [p for p in self.parameters() if p.trainable and id(p) not in held]

    def _warn_untrained(self, optimizer) -> None:
        missed = self._untrained_by(optimizer)
        if missed:
            import warnings

            msg = (
                f"{len(missed)} trainable parameter(s) ({missed[0]!r}, ...) are not "
                f"in the optimizer's list, so fit leaves them as they are (a layer "
                "unfrozen after the optimizer was made?). Recompile "
                "(model.compile(optimizer='adam')) or pass an optimizer over "
                "model.parameters(); freeze them (trainable=False) if intended"
            )
            warnings.warn(msg, UserWarning, stacklevel=3)

    def _metrics(self, metrics, loss, compiled=True) -> list[Metric]:
        if compiled and metrics == "auto" and self.metrics is not None:
            return [m.fresh() for m in self.metrics]
        if isinstance(loss, MultiLoss):
            return output_metrics(metrics, loss)
        return get_metrics(metrics, loss)


def _check_shards(model, source, world) -> None:
    """Synchronized BatchNorm needs rows on every rank in every batch (its
    statistics are collectives): say so before training, on every rank."""
    from ..layers.base import walk_layers

    if world.size == 1 or not any(getattr(layer, "sync", False)
                                  for layer in walk_layers(model)):
        return
    n, size = getattr(source, "n", None), getattr(source, "batch_size", None)
    if n is None:
        return
    last = n % size or size
    if min(size, last) < world.size:
        msg = (
            f"BatchNorm(sync=True) needs a row on each of the {world.size} ranks in "
            f"every batch, but batches of {size} leave a last batch of {last}; "
            "change batch_size or drop the last few samples"
        )
        raise ValueError(msg)


def _parameter_names(model, optimizer) -> list[str]:
    """``"<dotted name> (<layer class>)"`` of each of the optimizer's
    parameters, for error messages."""
    from ..layers.base import walk_layers

    owners = {}
    for layer in walk_layers(model):
        for p in getattr(layer, "_params", {}).values():
            owners.setdefault(id(p), type(layer).__name__)
    names = {id(p): f"{n} ({owners.get(id(p), '?')})"
             for n, p in model.named_parameters()}
    return [names.get(id(p), repr(p)) for p in optimizer.params]


def _check_same_job(world, call, model, source, validation, arguments) -> None:
    """Every rank was given the same data, model and arguments (named
    error on every rank otherwise; one gather)."""
    from ..distributed.fingerprint import (
        check_same,
        data_fingerprint,
        model_fingerprint,
    )

    fingerprint = {**data_fingerprint(source), **model_fingerprint(model),
                   **arguments}
    if validation is not None:
        fingerprint["validation data"] = data_fingerprint(validation)
    check_same(world, call, fingerprint)


def _abort_world(world, exc) -> None:
    """End every rank: this one leaves fit with `exc` (``sys.exit`` in a
    callback), which the other ranks would wait for in their next collective."""
    import sys
    import time

    print(f"portnn: rank {world.rank} of {world.size} left fit with "
          f"SystemExit({exc.code!r}) (sys.exit in a callback?); ending the job, "
          "since the other ranks would wait for it forever. To stop training "
          "on every rank, set model.stop_training = True instead",
          file=sys.stderr, flush=True)
    time.sleep(0.5)  # the launcher forwards stderr: let it pass the line on
    world.abort(1)


def _shard(world):
    """This rank's place in the world, or None when training alone."""
    return None if world.size == 1 else (world.rank, world.size)


def _is_stream(x) -> bool:
    from ..data.dataset import Dataset
    from .inputs import is_batch_stream

    return isinstance(x, Dataset) or is_batch_stream(x)


def _checked_callbacks(callbacks) -> list:
    callbacks = list(callbacks or [])
    for cb in callbacks:
        if not isinstance(cb, Callback):
            msg = f"callbacks must be Callback instances, got {type(cb).__name__}"
            raise TypeError(msg)
    return callbacks


def _check_verbose(verbose) -> None:
    if verbose not in ("auto", 0, 1, 2) or isinstance(verbose, bool):
        msg = f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}"
        raise ValueError(msg)


def _schedule_callback(lr_schedule, optimizer, callbacks):
    """The callback stepping the learning-rate schedule of this run: the one
    given, else the one made for the optimizer, unless a callback already
    steps it."""
    from ..optim.schedules import FunctionLR, LRScheduler

    stepped = {id(cb.scheduler) for cb in callbacks
               if isinstance(cb, LRSchedulerCallback)}
    if lr_schedule is not None:
        if isinstance(lr_schedule, LRScheduler):
            if lr_schedule.optimizer is not optimizer:
                msg = ("lr_schedule was made for another optimizer; make it for "
                       "the one fit uses (model.optimizer)")
                raise ValueError(msg)
            schedule = lr_schedule
        elif callable(lr_schedule):
            schedule = FunctionLR(optimizer, lr_schedule)
        else:
            msg = (f"lr_schedule must be an LRScheduler or a function of the "
                   f"epoch, got {type(lr_schedule).__name__}")
            raise TypeError(msg)
    else:
        schedule = optimizer.scheduler
    if schedule is None or id(schedule) in stepped:
        return None
    return LRSchedulerCallback(schedule)


def _refuse_unsupported(data, what):
    """Iterators are not arrays: say what arrays are expected instead of
    failing inside an array library."""
    if hasattr(data, "__next__") or type(data).__name__ == "generator":
        msg = (
            f"{what} is a {type(data).__name__} where arrays are expected; an "
            "iterable of (x, y) batches goes in x alone (fit(batches), with "
            "steps_per_epoch for an endless one)"
        )
        raise TypeError(msg)


def _one(shapes):
    return shapes[0] if len(shapes) == 1 else shapes


def _refuse_objects(data, what):
    """NumPy object arrays (mixed types, None, nested sequences): name the
    problem instead of failing deep inside a ufunc."""
    if getattr(getattr(data, "dtype", None), "kind", None) != "O":
        return
    try:
        data.astype("float64")
    except (TypeError, ValueError) as exc:
        msg = (f"{what} is an object array that does not convert to numbers "
               f"({exc}); look for None, strings or ragged rows, and pass a "
               f"numeric array (numpy.asarray({what}, dtype=numpy.float32))")
        raise TypeError(msg) from None
    msg = (f"{what} is an object array (dtype object); pass a numeric array: "
           f"numpy.asarray({what}, dtype=numpy.float32), or int64 for labels")
    raise TypeError(msg)


def _steps(name, value):
    """None, or batches per epoch of an iterable: a positive int."""
    if value is None:
        return None
    try:
        return _positive_int(name, value)
    except ValueError:
        msg = (f"{name} must be a positive int (batches taken from an iterable "
               f"each epoch) or None (all of it), got {value!r}")
        raise ValueError(msg) from None


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


