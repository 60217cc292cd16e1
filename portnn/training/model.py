"""`Model`: a layer that can train itself with `fit`, Keras style."""

from __future__ import annotations

from .. import distributed
from .. import losses as losses_mod
from .._namespace import tracing
from .._validation import validated_data
from ..data.sources import batch_rows
from ..data.structure import Structure
from ..distributed.checks import abort_world, check_same_job, check_shards
from ..distributed.data_parallel import (
    all_reduce_gradients,
    average_buffers,
    broadcast_state,
)
from ..distributed.shuffle import shuffle_generator
from ..layers.base import Layer, check_registered, free_caches
from ..losses.masking import masked_loss
from .arguments import (
    check_verbose,
    checked_callbacks,
    positive_int,
    schedule_callback,
    steps_argument,
)
from .callbacks import ProgressBar
from .choices import resolve_optimizer, warn_untrained
from .compiled import check_mode, step_function
from .guard import StepGuard, TrainingDivergedError, parameter_names
from .heads import check_head
from .history import History
from .inference import Inference, _shard
from .inputs import Inputs, class_weighting, validation_pair
from .meters import Meters
from .metrics import Metric
from .precision import Precision

__all__ = ["Model", "TrainingDivergedError"]


_CLASSIFICATION = (losses_mod.CrossEntropy, losses_mod.BCE, losses_mod.BCEWithLogits)
_FLOAT32 = Precision("float32", None)


class Model(Inference, Layer):
    """A layer with a training loop: :meth:`compile`, :meth:`fit`,
    :meth:`evaluate`, :meth:`predict` and the single :meth:`train_step`
    they are built on.

    Subclass it (or use :class:`portnn.Sequential`) and implement
    ``forward``/``backward``.

    Examples
    --------
    A model with its own forward and backward (here one weight, ``y = w x``),
    trained by ``fit``:

    >>> import portnn
    >>> class Scale(portnn.Model):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.w = self.add_parameter("w", portnn.asarray([[0.0]]))
    ...     def forward(self, x, training=False):
    ...         self.x = x
    ...         return x * self.w.value
    ...     def backward(self, dy):
    ...         self.w.grad = (dy * self.x).sum(axis=0, keepdims=True)
    ...         return dy * self.w.value
    >>> model = Scale()
    >>> _ = model.compile(optimizer=portnn.SGD(model.parameters(), lr=0.1),
    ...                   loss="mse")
    >>> x = [[1.0], [2.0], [3.0]]
    >>> y = [[2.0], [4.0], [6.0]]
    >>> history = model.fit(x, y, epochs=50, verbose=0)
    >>> round(float(model.w.value[0, 0]), 3)
    2.0
    """

    #: The class ``Model(inputs=..., outputs=...)`` makes (a graph model,
    #: as in Keras): :mod:`portnn.layers.graph` sets it where it defines it,
    #: so that this module imports no container (containers import it).
    graph_class: type | None = None
    #: Writes a checkpoint (:func:`portnn.checkpoint.save`, which sets it:
    #: checkpoints import the layers, and so this module, not the reverse).
    _write_checkpoint = None

    def __new__(cls, *args, **kwargs):
        if cls is Model and ("inputs" in kwargs or "outputs" in kwargs):
            return super().__new__(Model.graph_class)
        return super().__new__(cls)

    stop_training = False
    loss = None
    optimizer = None
    #: the float16 loss scaler, kept between fits and in checkpoints
    loss_scaler = None
    #: metrics set by :meth:`compile` (``None``: chosen per loss)
    metrics = None
    #: whether fit, evaluate and predict compile their steps
    #: (:meth:`compile`'s ``jit_compile``)
    jit_compile = False

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_compiled_forward", None)  # programs of this process
        state.pop("_compiled_step", None)
        state.pop("_gradient_tap", None)  # a callback's, for one epoch
        return state

    # -- once, Keras style ----------------------------------------------------
    def compile(self, loss=None, optimizer="adam", metrics="auto",
                loss_weights=None, jit_compile=False) -> Model:
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
        jit_compile : bool or "auto", default False
            Keras's name: `fit` runs each training step, and `evaluate` and
            `predict` each forward pass, as one compiled program
            (:mod:`portnn.training.compiled`; ``jax.jit`` on the jax
            backend, ``torch.compile`` of the traced step on torch) instead
            of issuing its array operations one at a time.
            The program runs the same layer code; ``True`` on a backend that
            cannot compile is an error naming those that can, ``"auto"``
            compiles where possible and runs eagerly elsewhere.

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
        check_mode(jit_compile, self.backend)
        loss = (self._resolve_loss(loss, loss_weights) if loss is not None
                 else self.loss)
        optimizer = resolve_optimizer(self, optimizer)
        metric_list = (self._metrics(metrics, loss, compiled=False)
                       if loss is not None or metrics != "auto" else None)
        self.loss, self.optimizer = loss, optimizer
        self.metrics = metric_list if metrics != "auto" else None
        self.jit_compile = jit_compile
        self.__dict__.pop("_compiled_step", None)
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
        value, pred, rows = self.compute_gradients(x, y, loss, policy, sample_weight)
        # Gradients are complete and the step has not run: the one place
        # where data-parallel training makes them the exact global mean.
        if world.size > 1:
            all_reduce_gradients(world, optimizer.params, rows, self.backend)
        self.apply_gradients(value, optimizer, guard, policy)
        return value, pred

    def compute_gradients(self, x, y, loss, policy, sample_weight=None):
        """The first half of :meth:`train_step`: forward, loss and backward,
        the gradients left on the parameters in float32.

        Parameters
        ----------
        x, y, loss, sample_weight
            As :meth:`train_step`'s.
        policy : Precision
            The precision policy.

        Returns
        -------
        (loss value, predictions, rows)
            As :meth:`train_step`'s, and the batch's row count (what a
            data-parallel all-reduce weighs this rank's gradients by).
        """
        rows = batch_rows(x)
        if rows:
            with policy.weights(self):  # half copies of the weights, if mixed
                pred = policy.output(self.forward(policy.input(x), training=True))
                # padded steps (a masked output) stay out of the loss
                value = masked_loss(loss, pred, y, sample_weight,
                                    self.compute_mask(x, None))
                # no d loss / d input needed
                self.backward_params(policy.loss_gradient(loss.backward()))
        else:  # a rank with no rows of a short last batch: no gradient of its own
            pred, value = x, self.backend.xp.zeros((), device=self.backend.device)
        if policy.mixed:
            policy.to_master(self.parameters())  # float32 gradients
        return value, pred, rows

    def apply_gradients(self, value, optimizer, guard, policy) -> None:
        """The second half of :meth:`train_step`: unscale the gradients,
        decide on the device whether the step may run (the guard, the loss
        scale), update the weights and clear the gradients.

        Parameters
        ----------
        value : array
            The batch's 0-d loss (the guard checks it).
        optimizer, guard, policy
            As :meth:`train_step`'s `optimizer`, `guard` and `precision`.
        """
        finite = policy.unscale(optimizer.params)  # unscaled; finite (float16)?
        tap = self.__dict__.get("_gradient_tap")
        if tap is not None and not tracing.get():  # TensorBoard's histograms
            tap(optimizer.params)
        if guard is not None:
            scaler = policy.scaler
            guard.step(optimizer, value, finite, overflow_skips=scaler is not None,
                       stalled=policy.stalled(finite),
                       bad_param=scaler._first_bad_now if scaler else None)
        else:
            optimizer.step(where=finite)
        policy.update(finite)
        optimizer.zero_grad()

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
        sample_weight : array, list or dict, optional
            One weight per training sample (Keras's semantics: each
            sample's loss is scaled; the mean is over the batch), or per
            step ``(N, T)``. With several outputs, one array for all of
            them, or a list (outputs' order) or dict (by output name) of
            arrays, one per output (an output left out weighs 1).
        class_weight : dict, optional
            ``{class index: weight}``; multiplies into the sample weights.
            With several outputs, a dict by output name of such dicts.
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
            epochs = positive_int("epochs", epochs)
            batch_size = positive_int("batch_size", batch_size)
            check_registered(self)
            steps_per_epoch = steps_argument("steps_per_epoch", steps_per_epoch)
            validation_steps = steps_argument("validation_steps", validation_steps)
            loss = self._resolve_loss(loss, loss_weights)
            optimizer = resolve_optimizer(self, optimizer)
            warn_untrained(self, optimizer)
            metric_list = self._metrics(metrics, loss)
            policy = Precision(precision, self.backend, scaler=self.loss_scaler)
            world = distributed.current()
            rng = rng or shuffle_generator(world)
            callbacks = checked_callbacks(callbacks)
            check_verbose(verbose)
            check_head(self, loss)
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
            check_shards(self, source, world)
            weigh = None
            if class_weight is not None:
                weigh = class_weighting(class_weight, loss, inputs.sample_pred,
                                        self.backend)
            schedule = schedule_callback(lr_schedule, optimizer, callbacks)
            if schedule is not None:
                callbacks.insert(0, schedule)
            if verbose and world.rank == 0:  # only the main rank prints
                callbacks.append(ProgressBar(epochs, source.n_batches,
                                             live=verbose != 2))
            if world.size > 1:  # every rank the same job, before any collective
                check_same_job(world, "fit", self, source, validation, {
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
        guard = StepGuard(self.backend, names=parameter_names(self, optimizer),
                          policy=precision)
        step = step_function(self, loss, optimizer, guard, policy, world)
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
                        value, pred, mask = step(xb, yb, wb)
                        meters.update(value, pred, yb, mask)
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
                abort_world(world, exc)
            raise
        finally:
            step.close()  # a compiled step's numbers are Python numbers again
            free_caches(loss)  # the last batch's predictions and targets
            for cb in callbacks:  # also when training fails: files close
                cb.on_train_end()
        return history

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
        from .building import build_from_shape

        build_from_shape(self, input_shape)
        return self

    def _tentative_build(self):
        from .building import tentative_build

        return tentative_build(self)

    def _build_lazy(self, x) -> None:
        from .building import build_lazy

        build_lazy(self, x)

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
        Model._write_checkpoint(self, path, optimizer=optimizer, metadata=metadata)

    # -- helpers ----------------------------------------------------------------
    def _resolve_loss(self, loss, loss_weights=None):
        from .choices import resolve_loss

        return resolve_loss(self, loss, loss_weights)

    def _metrics(self, metrics, loss, compiled=True) -> list[Metric]:
        from .choices import metrics_of

        return metrics_of(self, metrics, loss, compiled)

    def _model_dtype(self):
        return next((p.dtype for p in self.parameters()), None)

    def _as_input(self, x, what="x"):
        from .conversion import as_input

        return as_input(self, x, what)

    def _as_data(self, x, y, loss=None):
        """`x` and `y` as arrays on the model's device (moved once)."""
        from .conversion import as_data

        return as_data(self, x, y, loss)

    @property
    def integer_inputs(self) -> list[bool]:
        """Whether each input takes integers (token ids)."""
        return [self.integer_input] * self.input_structure.n
