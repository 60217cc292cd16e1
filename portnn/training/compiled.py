"""The training step compiled as one program (``compile(jit_compile=...)``).

portnn's step is ordinary eager code: layers keep their caches on
themselves, parameters and optimizer state are attributes that the step
rebinds. A compiler that traces Python (``jax.jit``) sees that code run once
on placeholder arrays and records every array operation it issues; what it
needs is a *pure* function of arrays. :class:`CompiledStep` makes one
without a second implementation of anything: the step's state (every
parameter, every buffer such as BatchNorm's running statistics, the
optimizer's moments, counters and learning rate, the step guard's flags,
the loss scaler, the random generators' counters) is listed once as
*places*; the pure function writes its array arguments into those places,
runs :meth:`portnn.Model.train_step` as it is, and returns what the places
hold afterwards. The compiled program then runs every later step with no
Python in between, and the outputs are written back, so between steps the
objects look exactly as after an eager step.

What the step must not do is read a device value on the host (``bool``,
``float``): the sync-free loop already keeps such reads out of it, and on
an asynchronous backend (JAX) the optimizer selects its update on the
device (:meth:`portnn.optim.Optimizer.step`). Python numbers in
the state (the learning rate, step counts, the guard's batch index, the
generators' counters) become 0-d arrays for the duration of the fit, so a
schedule's new rate or the next batch's index is an input, not a constant
baked into the program; they are Python numbers again when the fit ends.

A data-parallel fit makes two programs, :meth:`portnn.Model.
compute_gradients` and :meth:`portnn.Model.apply_gradients`, and calls the
engine's all-reduce between them (:class:`CompiledDataParallelStep`).

A backend that can compile registers a native ``jit`` (a function taking
the pure step and returning the compiled one): JAX's is ``jax.jit``;
torch's traces the step on fake tensors and hands the graph to
``torch.compile`` (``portnn.backends.torch_compile``).
"""

from __future__ import annotations

import warnings
from typing import Any

from .._namespace import tracing
from .._validation import validated_data
from ..layers.base import no_grad, walk_layers
from ..random import Generator, global_generator

#: jit_compile values compile() accepts
MODES = (False, True, "auto")


def can_compile(backend) -> bool:
    """Whether `backend` registered a compiler for the step."""
    return backend.native.get("jit") is not None


def check_mode(mode, backend) -> bool:
    """Whether ``jit_compile=mode`` compiles on `backend`; a clear error
    for a mode the backend cannot honour."""
    if mode not in MODES:
        msg = f"jit_compile must be False, True or 'auto', got {mode!r}"
        raise ValueError(msg)
    if mode is True and not can_compile(backend):
        from .. import backends

        able = [name for name in backends.names() if _native_jit(name)]
        msg = (
            f"jit_compile=True: the {backend.name} backend cannot compile the "
            f"training step; backends that can: {', '.join(able) or 'none here'} "
            "(jit_compile='auto' runs eagerly where compiling is not possible)"
        )
        raise ValueError(msg)
    return bool(mode) and can_compile(backend)


def _native_jit(name: str) -> bool:
    from .. import backends

    try:
        return backends.get(name).native.get("jit") is not None
    except (backends.BackendUnavailableError, ValueError):
        return False


class _Place:
    """One slot of training state: ``owner.name`` or ``owner[name]``."""

    __slots__ = ("owner", "name", "item", "number")

    def __init__(self, owner, name, item: bool = False) -> None:
        self.owner, self.name, self.item = owner, name, item
        value = self.get()
        # a Python number: int or float, restored as such at the end
        self.number = (type(value) if isinstance(value, (int, float))
                       and not isinstance(value, bool) else None)

    def get(self):
        return self.owner[self.name] if self.item else getattr(self.owner, self.name)

    def set(self, value) -> None:
        if self.item:
            self.owner[self.name] = value
        else:
            setattr(self.owner, self.name, value)


def weight_places(model) -> list[_Place]:
    """The places a forward pass reads: every parameter and buffer."""
    places = [_Place(p, "value") for p in model.parameters()]
    for layer in walk_layers(model):
        buffers = getattr(layer, "_buffers", None) or {}
        places += [_Place(buffers, k, item=True) for k in sorted(buffers)]
    return places


#: the attributes :class:`CompiledStep` carries as state, per owner kind:
#: not settings, so not part of :func:`step_key`
_STATE_ATTRS = {
    "optimizer": ("lr", "steps"),
    "guard": ("healthy", "first_bad", "bad_loss", "stalled", "batch"),
    "scaler": ("scale", "growth_tracker", "skipped", "first_bad"),
    "generator": ("counter",),
    "layer": ("stop_training",),  # the loop's flag, not the step's
}


def _settings(obj, state=()) -> tuple:
    """The plain settings of `obj` (numbers, strings, flags, tuples of
    them): what a trace bakes into the program as constants."""
    plain = (bool, int, float, str, type(None))

    def is_plain(v):
        return isinstance(v, plain) or (
            isinstance(v, tuple) and all(isinstance(e, plain) for e in v))

    return (type(obj).__qualname__,) + tuple(sorted(
        (k, v) for k, v in vars(obj).items() if k not in state and is_plain(v)))


def _generators(model) -> dict[int, Generator]:
    """The random generators a step of `model` draws from."""
    generators = {id(global_generator()): global_generator()}
    for layer in walk_layers(model):
        rng = getattr(layer, "rng", None)
        if isinstance(rng, Generator):
            generators[id(rng)] = rng
    return generators


def forward_key(model) -> tuple:
    """What a compiled forward pass depends on beyond the weights: the
    layers and parameters (by identity) and the layers' plain settings (a
    slope, an epsilon, a frozen flag)."""
    # a layer's caches and per-call outputs (what a forward keeps for
    # backward, a final state) are not settings: a None set by the first
    # call changes no program
    return (tuple((id(la), _settings(la, (*_STATE_ATTRS["layer"],
                                          *type(la)._cache_attrs,
                                          *type(la)._call_outputs)))
                  for la in walk_layers(model)),
            tuple(map(id, model.parameters())))


def step_key(model, loss, optimizer, policy) -> tuple:
    """What a compiled step depends on beyond its state arrays: the
    layers, parameters, loss and optimizer (by identity) and every plain
    setting of theirs, the precision and the generators' keys. A fit whose
    key equals the last one's reuses its program; any change (a layer
    unfrozen, a dropout rate, ``portnn.seed``, a new optimizer) traces
    again, so no stale constant is ever used."""
    scaler = policy.scaler
    return (
        forward_key(model),
        id(loss), _settings(loss),
        id(optimizer), _settings(optimizer, _STATE_ATTRS["optimizer"]),
        _settings(policy),
        None if scaler is None else _settings(scaler, _STATE_ATTRS["scaler"]),
        tuple(_settings(g, _STATE_ATTRS["generator"])
              for g in _generators(model).values()),
    )


def step_function(model, loss, optimizer, guard, policy, world):
    """What `fit` calls per batch, ``step(x, y, w) -> (loss, predictions,
    output mask)``: :meth:`portnn.Model.train_step` as it is, or compiled
    (``compile(jit_compile=...)``): one program, or two around the
    gradients' all-reduce when data-parallel; the last fit's programs while
    its :func:`step_key` holds."""
    if check_mode(model.jit_compile, model.backend):
        synced = [la for la in walk_layers(model) if getattr(la, "sync", False)]
        if world.size > 1 and synced:
            warnings.warn(
                f"jit_compile: {type(synced[0]).__name__}(sync=True) all-reduces "
                "inside the forward pass, which a compiled program cannot call; "
                "this data-parallel fit runs its steps eagerly", stacklevel=4)
            return EagerStep(model, loss, optimizer, guard, policy)
        key = (step_key(model, loss, optimizer, policy), world.size)
        kept = model.__dict__.get("_compiled_step")
        if kept is not None and kept[0] == key:
            kept[1].rebind(guard, policy, world)
            return kept[1]
        kind = CompiledStep if world.size == 1 else CompiledDataParallelStep
        step = kind(model, loss, optimizer, guard, policy)
        step.world = world
        model._compiled_step = (key, step)
        return step
    return EagerStep(model, loss, optimizer, guard, policy)


class EagerStep:
    """``model.train_step``, one array operation at a time (the reference,
    and the text to read): ``step(x, y, w) -> (loss, predictions, output
    mask)``."""

    def __init__(self, model, loss, optimizer, guard, policy) -> None:
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.guard, self.policy = guard, policy

    def __call__(self, x, y, w=None):
        value, pred = self.model.train_step(x, y, self.loss, self.optimizer,
                                            self.guard, self.policy,
                                            sample_weight=w)
        return value, pred, self.model.compute_mask(x, None)

    def close(self) -> None:
        """Nothing to undo."""


class CompiledStep(EagerStep):
    """``model.train_step`` as one compiled program of the step's state.

    Parameters
    ----------
    model, loss, optimizer, guard, policy
        What ``fit`` passes to :meth:`portnn.Model.train_step`.

    Notes
    -----
    The program cannot check data on the host: call it inside
    :func:`portnn._validation.validated_data` after checking the whole
    arrays, as ``fit`` does. One program per input shape and dtype: a fit
    whose last batch is short compiles twice. An optimizer whose state does
    not exist yet (Adam before its first step) takes that first step
    eagerly, so that the state the program carries has its final structure.
    """

    def __init__(self, model, loss, optimizer, guard, policy) -> None:
        super().__init__(model, loss, optimizer, guard, policy)
        self.backend = model.backend
        self._jit = self.backend.native["jit"]
        self.world = None  # fit's (step_function sets it)
        self._compiled = None
        self._places: list[_Place] | None = None

    def _collect(self) -> list[_Place]:
        """Every place the step reads and writes, in a fixed order."""
        model, opt = self.model, self.optimizer
        places = weight_places(model)
        generators = _generators(model)
        for p in opt.params:
            if not any(p is q.owner for q in places):
                places.append(_Place(p, "value"))  # an optimizer over others
        xp, dev = self.backend.xp, self.backend.device
        for p, state in zip(opt.params, opt.state, strict=True):
            for key, value in state.items():
                if not hasattr(value, "shape"):
                    # a step count: a device scalar of the parameter's
                    # dtype, as the eager device-side step makes it
                    state[key] = xp.asarray(float(value), dtype=p.value.dtype,
                                            device=dev)
            places += [_Place(state, k, item=True) for k in sorted(state)]
        places += [_Place(opt, "steps"), _Place(opt, "lr")]
        guard = self.guard
        if guard is not None:
            places += [_Place(guard, k) for k in _STATE_ATTRS["guard"]]
        scaler = self.policy.scaler
        if scaler is not None:
            places += [_Place(scaler, k) for k in _STATE_ATTRS["scaler"]]
        places += [_Place(g, "counter") for g in generators.values()]
        return places

    def rebind(self, guard, policy, world=None) -> None:
        """Serve another `fit` of the same model, loss and optimizer (equal
        :func:`step_key`): its guard and precision policy are new objects,
        so the places are listed again; the compiled programs stay."""
        self.guard, self.policy, self.world = guard, policy, world
        if self._places is not None:
            self._places = self._collect()

    def _read(self) -> list[Any]:
        xp, dev = self.backend.xp, self.backend.device
        out = []
        for place in self._places:
            value = place.get()
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                kind = xp.int64 if place.number is int else xp.float32
                if place.number is float and place.owner is self.optimizer:
                    # the rate in the parameters' own precision
                    kind = self.optimizer.params[0].value.dtype
                value = xp.asarray(value, dtype=kind, device=dev)
            out.append(value)
        return out

    def _write(self, values) -> None:
        for place, value in zip(self._places, values, strict=True):
            place.set(value)

    def _pure(self, state, x, y, w):
        token = tracing.set(True)  # device-side choices; no memoized arrays
        try:
            self._write(state)
            value, pred, mask = EagerStep.__call__(self, x, y, w)
            return value, pred, mask, self._read()
        finally:
            tracing.reset(token)

    def __call__(self, x, y, w=None):
        """One training step: ``(loss, predictions, output mask)``."""
        opt = self.optimizer
        if opt.keeps_state and any(not s for p, s in zip(opt.params, opt.state,
                                                         strict=True)
                                   if p.trainable):
            # state made on the first step (Adam's moments): eager, once
            return EagerStep.__call__(self, x, y, w)
        if self._places is None:
            self._places = self._collect()
            self._compiled = self._programs()
        before = self._read()
        try:
            value, pred, mask, state = self._run(before, x, y, w)
        except BaseException:
            # not the placeholders of a failed trace: the state before the
            # step, which starts with no gradients
            self._write(before)
            self._set_grads([None] * len(opt.params))
            raise
        self._write(state)
        return value, pred, mask

    def _programs(self):
        return self._jit(self._pure)

    def _run(self, before, x, y, w):
        """The step's programs on the state `before`: ``(loss, predictions,
        output mask, state after)``."""
        return self._compiled(before, x, y, w)

    def _grads(self) -> list[Any]:
        return [p.grad for p in self.optimizer.params]

    def _set_grads(self, grads) -> None:
        for p, g in zip(self.optimizer.params, grads, strict=True):
            p.grad = g

    def close(self) -> None:
        """The Python numbers of the state are Python numbers again (the
        rate a schedule reads, the step count a checkpoint stores)."""
        for place in self._places or ():
            value = place.get()
            if place.number is not None and not isinstance(value, (int, float)):
                place.set(place.number(value))


class CompiledDataParallelStep(CompiledStep):
    """:class:`CompiledStep` for a data-parallel fit: two programs with the
    gradients' all-reduce between them, where :meth:`portnn.Model.
    train_step` has it. The first runs :meth:`~portnn.Model.
    compute_gradients` and returns the gradients with the state; the
    engine sums them across ranks (eagerly: MPI, NCCL and
    torch.distributed are calls a compiled program cannot make); the
    second runs :meth:`~portnn.Model.apply_gradients`."""

    def _pure_compute(self, state, x, y, w):
        token = tracing.set(True)
        try:
            self._write(state)
            value, pred, _ = self.model.compute_gradients(x, y, self.loss,
                                                          self.policy, w)
            mask = self.model.compute_mask(x, None)
            return value, pred, mask, self._grads(), self._read()
        finally:
            tracing.reset(token)

    def _pure_apply(self, state, grads, value):
        token = tracing.set(True)
        try:
            self._write(state)
            self._set_grads(grads)
            self.model.apply_gradients(value, self.optimizer, self.guard,
                                       self.policy)
            return self._read()
        finally:
            tracing.reset(token)

    def _programs(self):
        return self._jit(self._pure_compute), self._jit(self._pure_apply)

    def _run(self, before, x, y, w):
        from ..data.sources import batch_rows
        from ..distributed.data_parallel import all_reduce_gradients

        compute, apply = self._compiled
        value, pred, mask, grads, state = compute(before, x, y, w)
        self._write(state)
        self._set_grads(grads)
        # between the programs, as in train_step: the exact global mean
        all_reduce_gradients(self.world, self.optimizer.params, batch_rows(x),
                             self.backend)
        return value, pred, mask, apply(self._read(), self._grads(), value)


class EagerForward:
    """What ``evaluate`` and ``predict`` run per batch, ``forward(x) ->
    (outputs, output mask)``, in evaluation mode with no caches kept."""

    def __init__(self, model) -> None:
        self.model = model

    def __call__(self, x):
        with no_grad():
            y = self.model.forward(x, training=False)
        return y, self.model.compute_mask(x, None)


class CompiledForward(EagerForward):
    """:class:`EagerForward` as one compiled program of the weights and
    buffers (``compile(jit_compile=...)``); one program per input shape.
    Range checks that read the host (token ids) run on each batch before
    the program, which has none."""

    def __init__(self, model) -> None:
        super().__init__(model)
        self.places = weight_places(model)
        self._compiled = model.backend.native["jit"](self._pure)

    def _pure(self, state, x):
        token = tracing.set(True)
        try:
            for place, value in zip(self.places, state, strict=True):
                place.set(value)
            return EagerForward.__call__(self, x)
        finally:
            tracing.reset(token)

    def __call__(self, x):
        self.model.check_input(x)
        before = [place.get() for place in self.places]
        try:
            with validated_data():
                return self._compiled(before, x)
        finally:  # the weights, not a trace's placeholders
            for place, value in zip(self.places, before, strict=True):
                place.set(value)
