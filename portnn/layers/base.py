"""The `Layer` base: forward, a hand-written backward, and named parameters."""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from ..backends import check_same_backend, get_backend
from ..parameter import Parameter


class Layer:
    """Base class of every layer and container.

    A subclass implements ``forward(x, training=False)``, caching what its
    backward needs, and ``backward(dy)``, which returns ``dx`` and adds the
    parameter gradients into each ``Parameter.grad``.

    Subclasses register parameters with :meth:`add_parameter` and child
    layers by overriding :meth:`children`, so that :meth:`parameters` and
    :meth:`state_dict` list them in a fixed order. They list the attributes
    their forward caches in ``_cache_attrs``: containers free those after
    the backward pass and under :func:`no_grad`, pickles leave them out,
    and a layer used twice in a model (shared weights) keeps one set per
    call. A container calls its children through :meth:`forward_child`
    and :meth:`backward_child`, which do that bookkeeping.

    Examples
    --------
    A layer that scales its input by a learned vector:

    >>> import portnn
    >>> class Scale(portnn.Layer):
    ...     _cache_attrs = ("_x",)
    ...     def __init__(self, n):
    ...         super().__init__()
    ...         b = portnn.get_backend()
    ...         self.s = self.add_parameter("s", b.xp.ones(n, device=b.device))
    ...     def forward(self, x, training=False):
    ...         self._x = x
    ...         return x * self.s.value
    ...     def backward(self, dy):
    ...         self.s.accumulate(self.backend.xp.sum(dy * self._x, axis=0))
    ...         return dy * self.s.value
    >>> layer = Scale(3)
    >>> [p.shape for p in layer.parameters()]
    [(3,)]
    """

    #: True for layers that take integer input (token ids); `fit` casts
    #: integer data to the model's float dtype otherwise.
    integer_input = False

    #: True for layers that build their sub-layers from their own config
    #: (checkpoints then store the config only, not the children).
    owns_children = False

    #: Attributes `forward` sets for `backward` (the input, masks, ...).
    #: They are not state: containers free them after `backward` and under
    #: :func:`no_grad`, pickles leave them out, and a layer used twice in a
    #: model keeps one set per call. A custom layer lists its own here.
    _cache_attrs: tuple[str, ...] = ()

    #: Per-call results a layer exposes (an RNN's ``final_state``): kept
    #: after `backward`, but never pickled (they derive from the data).
    _call_outputs: tuple[str, ...] = ()

    #: How many containers hold this layer; above 1 its weights are shared.
    _uses = 0

    #: Masks (which steps of a padded sequence are real, ``(batch, time)``
    #: booleans, True for a real step) travel with the tensors through
    #: containers and graphs. A layer that works on each step alone (Dense,
    #: activations, Dropout, LayerNorm) passes the mask on unchanged; one
    #: whose ``forward`` takes ``mask=`` uses it (RNNs, attention, pooling
    #: over time); one that makes a mask starts it (``Embedding(...,
    #: mask_zero=True)``, ``Masking``). Any other layer refuses a mask, so
    #: a padded step never leaks into a result in silence.
    supports_masking = False
    uses_mask = False
    makes_mask = False

    _trainable = True

    def __init__(self, backend=None) -> None:
        self._params: dict[str, Parameter] = {}
        self._buffers: dict[str, Any] = {}
        self.backend = get_backend() if backend is None else _resolve(backend)

    def __getattr__(self, name: str):
        # Only reached when normal lookup fails: free on the normal path.
        cls = type(self).__name__
        if name in type(self)._cache_attrs:
            msg = (
                f"{cls}.backward needs what its forward caches ({name!r}), and "
                "there is none: call forward(x, training=True) first. Each "
                "forward serves one backward (the cache is freed after it)."
            )
            raise AttributeError(msg)
        if name in ("_params", "_buffers", "backend"):
            msg = (
                f"{cls} has no {name!r}: its __init__ must call "
                "super().__init__() before registering parameters"
            )
            raise AttributeError(msg)
        raise AttributeError(f"{cls!r} object has no attribute {name!r}")

    def __getstate__(self):
        # Caches and per-call outputs hold (functions of) the last batch:
        # never part of a pickle.
        state = self.__dict__.copy()
        for name in (*type(self)._cache_attrs, *type(self)._call_outputs,
                     "_child_calls", *_DIRECT_CALL_ATTRS):
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    # -- the two methods a layer writes -------------------------------------
    def forward(self, x: Any, training: bool = False) -> Any:
        """Compute the output for `x`, caching what `backward` needs."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def backward(self, dy: Any) -> Any:
        """Given d loss / d output, accumulate parameter gradients and return
        d loss / d input."""
        raise NotImplementedError(f"{type(self).__name__} must implement backward")

    def backward_params(self, dy: Any) -> None:
        """Backward pass for parameter gradients only.

        The first layer of a model has no use for d loss / d input; layers
        override this to skip computing it (Dense saves a third of its
        backward GEMMs). The default runs `backward` and drops the result.
        """
        self.backward(dy)

    def __call__(self, x: Any, *args, training: bool = False, **kwargs) -> Any:
        """``forward(x, training=training)``; on symbolic tensors
        (:func:`portnn.Input`) it records a node of a graph model instead.
        `training` is keyword-only: ``layer(x, training=True)``."""
        if args:
            raise_extra_inputs(self, args)
        if isinstance(x, _maybe_symbolic) and is_symbolic(x):
            from .symbolic import call_symbolic

            return call_symbolic(self, x, kwargs)
        if _grad_enabled.get():
            d = self.__dict__  # _count_direct_call's common case, inline
            calls = d.get("_direct_calls")
            if calls is not None and "_spent" not in d:
                d["_direct_calls"] = calls + 1
            else:
                _count_direct_call(self)
        if kwargs:
            return self.forward(x, training=training, **kwargs)
        return self.forward(x, training)

    def compute_mask(self, x: Any, mask: Any) -> Any:
        """The mask of this layer's output, given its input `x` and the
        input's `mask` (None: no mask). The default passes the mask on
        where the layer `supports_masking` (or `uses_mask` and keeps the
        time axis); a layer that changes the time axis returns what fits
        its output, or None where the mask has been used up."""
        return mask

    def check_input(self, x: Any) -> None:
        """Validate a whole input array once, before a loop over its batches
        (``fit`` and ``evaluate`` call it; token-id ranges, for example).
        Checks that read device values belong here rather than in every
        ``forward``. The default checks nothing."""

    # -- parameters and children --------------------------------------------
    def add_parameter(self, name: str, value: Any) -> Parameter:
        """Register a trainable array under `name` and return its Parameter."""
        p = Parameter(value, name)
        self._params[name] = p
        return p

    def add_buffer(self, name: str, value: Any) -> None:
        """Register non-trainable state saved in ``state_dict`` (running stats)."""
        self._buffers[name] = value

    def children(self) -> list[Layer]:
        """Sub-layers in forward order (none for a plain layer)."""
        return []

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Yield ``(dotted name, Parameter)`` pairs in a fixed order; a
        parameter shared by several layers comes once, under its first name."""
        seen: set[int] = set()
        for name, p in self._all_parameters(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def _all_parameters(self, prefix):
        for name, p in self._params.items():
            yield prefix + name, p
        for i, child in enumerate(self.children()):
            yield from child._all_parameters(f"{prefix}{i}.")

    def parameters(self) -> list[Parameter]:
        """All parameters of this layer and its children, frozen ones too
        (each shared one once)."""
        return [p for _, p in self.named_parameters()]

    def trainable_parameters(self) -> list[Parameter]:
        """The parameters an optimizer should update (not frozen)."""
        return [p for p in self.parameters() if p.trainable]

    @property
    def trainable(self) -> bool:
        """False freezes the layer and everything in it (Keras's semantics):
        its parameters get no gradient and no update, a frozen BatchNorm
        normalizes with its running statistics, and `backward` skips what
        the chain rule no longer needs. Saved in checkpoints.

        Examples
        --------
        >>> import portnn
        >>> model = portnn.Sequential(portnn.Dense(4, 4), portnn.Dense(4, 2))
        >>> model[0].trainable = False
        >>> len(model.parameters()), len(model.trainable_parameters())
        (4, 2)
        """
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        for layer in walk_layers(self):
            layer._trainable = bool(value)
            for p in layer._params.values():
                p.trainable = bool(value)

    def has_trainable(self) -> bool:
        """Whether any parameter in this layer (or below) is trainable."""
        return any(p.trainable for p in self.parameters())

    def zero_grad(self) -> None:
        """Forget accumulated gradients (sets every ``grad`` to ``None``)."""
        for p in self.parameters():
            p.grad = None

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of scalars in the parameters (only trainable ones if
        `trainable_only`)."""
        params = self.trainable_parameters() if trainable_only else self.parameters()
        if any(None in p.shape for p in params):
            msg = (f"{type(self).__name__} is not built: a lazy layer learns its "
                   "input size at its first call; call model.build(input_shape)")
            raise ValueError(msg)
        return sum(p.size for p in params)

    # -- state ----------------------------------------------------------------
    def _named_state(self, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
        # (name, owner, key) so that load can write back parameters and
        # buffers; shared ones once, under their first name
        seen: set[tuple[int, Any]] = set()
        for name, owner, key in self._all_state(prefix):
            if (id(owner), key) not in seen:
                seen.add((id(owner), key))
                yield name, owner, key

    def _all_state(self, prefix):
        for name, p in self._params.items():
            yield prefix + name, p, None
        for name in self._buffers:
            yield prefix + name, self, name
        for i, child in enumerate(self.children()):
            yield from child._all_state(f"{prefix}{i}.")

    def state_dict(self) -> dict[str, Any]:
        """Name -> array for every parameter and buffer.

        Examples
        --------
        >>> import portnn
        >>> sorted(portnn.Dense(2, 3).state_dict())
        ['W', 'b']
        """
        out = {}
        for name, owner, key in self._named_state():
            out[name] = owner.value if key is None else owner._buffers[key]
        return out

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Copy arrays from `state` into this layer's parameters and buffers.

        Arrays are converted to this layer's backend and to the dtype of the
        array they replace. Missing or unexpected keys raise ``KeyError``
        when `strict`; a shape mismatch always raises ``ValueError``.
        """
        entries = {name: (owner, key) for name, owner, key in self._named_state()}
        if strict:
            missing = sorted(set(entries) - set(state))
            unexpected = sorted(set(state) - set(entries))
            if missing or unexpected:
                msg = (
                    f"state dict does not match {type(self).__name__}: "
                    f"missing keys {missing}, unexpected keys {unexpected}"
                )
                raise KeyError(msg)
        for name, (owner, key) in entries.items():
            if name not in state:
                continue
            old = owner.value if key is None else owner._buffers[key]
            # a copy: in-place optimizer steps must not write into `state`
            new = self.backend.asarray(state[name], dtype=old.dtype, copy=True)
            if tuple(new.shape) != tuple(old.shape):
                msg = (
                    f"{name!r}: expected shape {tuple(old.shape)}, "
                    f"got {tuple(new.shape)}"
                )
                raise ValueError(msg)
            if key is None:
                owner.value = new
            else:
                owner._buffers[key] = new

    # -- architecture ------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this layer (JSON-serializable).

        Checkpoints store it so that :func:`portnn.load` can rebuild the
        model without the user's code. A custom layer implements it and is
        registered with :func:`portnn.checkpoint.register_layer`.
        """
        msg = (
            f"{type(self).__name__} does not implement get_config(); implement it "
            "(constructor arguments as a dict) and register the class with "
            "portnn.checkpoint.register_layer to save it in a checkpoint"
        )
        raise NotImplementedError(msg)

    def to(self, backend) -> Layer:
        """Move every parameter and buffer to `backend` (a name or Backend),
        zero-copy through DLPack where the libraries allow it; returns self."""
        from ..backends import get
        from ..transfer import move

        target = get(backend)
        for layer in _walk(self):
            if "backend" in vars(layer):
                layer.backend = target
            for p in layer._params.values():
                p.value = move(p.value, target)
                p.grad = None if p.grad is None else move(p.grad, target)
            for k, v in layer._buffers.items():
                layer._buffers[k] = move(v, target)
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None:
            optimizer.to(target)
        return self

    # -- calling children (containers and custom models) ---------------------------
    def _owned_layers(self) -> tuple[Layer, ...]:
        """Sub-layers without parameters of their own that this layer calls
        (a Dense's activation); they are not children, but their caches are
        this layer's."""
        return ()

    def forward_child(self, child: Layer, x: Any, training: bool = False,
                      **kwargs):
        """Run `child` forward, keeping what its backward needs: nothing
        under :func:`no_grad`, and one set of caches per call where the
        child may be called more than once (a shared layer; any child of a
        custom model), so each call's backward gets its own.

        The way a model calls its children: its ``forward`` starts with
        :meth:`begin_calls` and calls each child with ``forward_child``;
        its ``backward`` calls :meth:`backward_child` for each call, a
        child called twice in the reverse order of its calls.

        Examples
        --------
        A custom model that applies one layer twice (its gradients add up):

        >>> import portnn
        >>> class Twice(portnn.Model):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.block = portnn.Dense(4, 4, activation="tanh")
        ...     def children(self):
        ...         return [self.block]
        ...     def forward(self, x, training=False):
        ...         self.begin_calls()
        ...         h = self.forward_child(self.block, x, training)
        ...         return self.forward_child(self.block, h, training)
        ...     def backward(self, dy):
        ...         dh = self.backward_child(self.block, dy)   # the 2nd call
        ...         return self.backward_child(self.block, dh)  # the 1st
        >>> x = portnn.get_backend().xp.ones((2, 4), dtype="float64")
        >>> with portnn.default_dtype("float64"):
        ...     model = Twice()
        >>> portnn.gradcheck(model, x).ok
        True
        """
        try:
            y = child.forward(x, training, **kwargs)
        except (TypeError, RuntimeError) as exc:
            _name_dtype_error(child, "forward", exc)
            raise
        if _recording_shapes.get():  # model.summary() wants output shapes
            child._output_shape = (None, *tuple(y.shape[1:]))
        if not _grad_enabled.get():
            free_caches(child)
        elif child._uses != 1:  # not the one call of a plain container's child
            self.__dict__.setdefault("_child_calls", []).append(save_caches(child))
        return y

    def forward_chain(self, children, x: Any, training: bool = False,
                      mask: Any = None):
        """:meth:`forward_child` over `children` in order, each fed the
        previous one's output (and its mask); returns the last output and
        its mask. The same as the loop written out, with the context
        (gradients on, shapes recorded) read once: a child called once per
        forward, with no mask, is then called directly (a tenth of the
        smallest network's step went to the per-child bookkeeping)."""
        plain = _grad_enabled.get() and not _recording_shapes.get()
        for child in children:
            if mask is not None or child.makes_mask:
                x, mask = self._forward_masked(child, x, training, mask)
            elif plain and child._uses == 1:
                try:
                    x = child.forward(x, training)
                except (TypeError, RuntimeError) as exc:
                    _name_dtype_error(child, "forward", exc)
                    raise
            else:
                x = self.forward_child(child, x, training)
        return x, mask

    def backward_chain(self, children, dy: Any):
        """:meth:`backward_child` over `children` in reverse order (they are
        given in forward order, as to :meth:`forward_chain`), each fed the
        gradient the next one returned; returns d loss / d input."""
        for child in reversed(children):
            if child._uses != 1:
                restore_caches(self._last_call_of(child))
            try:
                dy = child.backward(dy)
            except (TypeError, RuntimeError) as exc:
                _name_dtype_error(child, "backward", exc)
                raise
            free_caches(child)
        return dy

    def _forward_masked(self, child: Layer, x: Any, training: bool, mask: Any,
                        **kwargs):
        """:meth:`forward_child` for an input that carries a mask (or a
        child that makes one): the child gets ``mask=`` where it uses
        masks; returns the output and its mask. A child that can neither
        use nor pass on a mask refuses it, naming the fix."""
        if mask is not None and not (child.uses_mask or child.supports_masking):
            refuse_mask(child)
        if mask is not None and child.uses_mask:
            kwargs["mask"] = mask
        y = self.forward_child(child, x, training, **kwargs)
        return y, child.compute_mask(x, mask)

    def _keep_mask(self, mask: Any) -> None:
        """A container keeps its output's mask for :meth:`compute_mask`
        (a per-call output; nothing is kept without a mask)."""
        if mask is None:
            self.__dict__.pop("_out_mask", None)
        else:
            self._out_mask = mask

    def skip_child(self, child: Layer) -> None:
        """A child whose output got no gradient (a graph branch that does
        not reach the loss): drop its caches, keeping the order of the
        shared children's snapshots."""
        if child._uses != 1:
            self._last_call_of(child, required=False)
        free_caches(child)

    def begin_calls(self) -> None:
        """Start a forward pass: forget the caches of earlier calls that
        had no backward (see :meth:`forward_child`)."""
        self.__dict__.pop("_child_calls", None)

    def _last_call_of(self, child: Layer, required: bool = True):
        """Take the caches of `child`'s latest call still waiting for its
        backward (None if there is none and not `required`)."""
        calls = self.__dict__.get("_child_calls") or []
        for i in range(len(calls) - 1, -1, -1):
            if calls[i][0][0] is child:
                snapshot = calls.pop(i)
                if not calls:
                    del self._child_calls
                return snapshot
        if required:
            msg = (
                f"{type(self).__name__}.backward: no forward call of "
                f"{type(child).__name__} is waiting for its backward (one "
                "backward_child per forward_child, a child called twice in the "
                "reverse order of its calls); call forward(x, training=True) "
                "first"
            )
            raise RuntimeError(msg)
        return None

    def backward_child(self, child: Layer, dy: Any, params_only: bool = False):
        """Run `child` backward for its latest call that is still waiting for
        one (calls of one child go back in reverse order), then free its
        caches; `params_only` skips d loss / d input (returns None). See
        :meth:`forward_child`."""
        if child._uses != 1:
            restore_caches(self._last_call_of(child))
        try:
            if params_only:
                child.backward_params(dy)
                dx = None
            else:
                dx = child.backward(dy)
        except (TypeError, RuntimeError) as exc:
            _name_dtype_error(child, "backward", exc)
            raise
        free_caches(child)
        return dx

    # -- helpers for subclasses -----------------------------------------------
    def _check_backend(self, x: Any, param: Parameter) -> None:
        if type(x) is not type(param.value):
            check_same_backend(param.value, x, where=type(self).__name__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_grad_enabled: ContextVar[bool] = ContextVar("portnn_grad_enabled", default=True)
#: the mixed-precision policy of the step running (None: float32)
mixed_policy: ContextVar[str | None] = ContextVar("portnn_mixed_policy",
                                                  default=None)
_DTYPE_WORDS = ("dtype", "Half", "BFloat16", "float16", "bfloat16", "Float")


class MixedPrecisionError(TypeError):
    """A layer mixed dtypes while computing in a half type."""


def _name_dtype_error(layer, phase: str, exc: BaseException) -> None:
    """Under a mixed policy, a dtype error from inside `layer` becomes one
    that names the layer and the policy (once: the innermost container)."""
    policy = mixed_policy.get()
    if policy is None or isinstance(exc, MixedPrecisionError) or not any(
            w in str(exc) for w in _DTYPE_WORDS):
        return
    msg = (
        f"{layer!r} {phase} failed under precision={policy!r}: {exc}. Layers "
        "compute in the half type here: create constants and buffers in the "
        "input's dtype (xp.asarray(c, dtype=x.dtype)), not float32, or train "
        "this model with precision='float32'"
    )
    raise MixedPrecisionError(msg) from exc
_recording_shapes: ContextVar[bool] = ContextVar("portnn_recording_shapes",
                                                 default=False)
_shape_pass: ContextVar[bool] = ContextVar("portnn_shape_pass", default=False)


def in_shape_pass() -> bool:
    """True while a model runs a first sample to size its lazy layers."""
    return _shape_pass.get()


@contextlib.contextmanager
def shape_pass() -> Iterator[None]:
    """Lazy layers built inside take zero weights and draw nothing: the
    model draws them afterwards, in eager order (``replay_draws``)."""
    token = _shape_pass.set(True)
    try:
        yield
    finally:
        _shape_pass.reset(token)


def grad_enabled() -> bool:
    """False inside :func:`no_grad`: layers keep nothing for a backward pass."""
    return _grad_enabled.get()


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Forward passes inside the block keep no caches for `backward`
    (``predict`` and ``evaluate`` run so): less memory, nothing of the data
    left on the layers.

    Examples
    --------
    >>> import portnn
    >>> model = portnn.Sequential(portnn.Dense(2, 2), portnn.ReLU())
    >>> with portnn.no_grad():
    ...     y = model(portnn.get_backend().xp.ones((1, 2)))
    >>> hasattr(model[0], "_x")
    False
    """
    token = _grad_enabled.set(False)
    try:
        yield
    finally:
        _grad_enabled.reset(token)


def walk_layers(layer):
    """`layer`, its children and the layers they own, once each."""
    seen: set[int] = set()
    stack = [layer]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(current._owned_layers())
        stack.extend(current.children())


_symbolic_type: list = []  # graph.SymbolicTensor, found on first use
#: what a layer call's input must be for it to be symbolic: layers/symbolic.py
#: adds SymbolicTensor when it is imported (none exists before), so an array
#: input costs one isinstance
_maybe_symbolic: tuple = (list, tuple)


def is_symbolic(x) -> bool:
    """Whether `x` is a symbolic tensor (or a list of them) of a graph
    (every layer call asks: one isinstance for an array)."""
    if not _symbolic_type:
        from .symbolic import SymbolicTensor

        _symbolic_type.append(SymbolicTensor)
    kind = _symbolic_type[0]
    if isinstance(x, (list, tuple)):
        return bool(x) and any(isinstance(v, kind) for v in x)
    return isinstance(x, kind)


def raise_extra_inputs(layer, args) -> None:
    """A second positional argument: `training` is keyword-only, and
    several inputs go in one list."""
    name = type(layer).__name__
    msg = (
        f"{name} was called with {1 + len(args)} positional arguments; it takes "
        f"one input. training is keyword-only ({name.lower()}(x, training=True)), "
        "and a layer with several inputs takes them in one list "
        "(Concatenate()([a, b]))"
    )
    raise TypeError(msg)


#: what `_count_direct_call` puts on a layer called directly
_DIRECT_CALL_ATTRS = ("_direct_calls", "_spent", "backward", "backward_params")


def _count_direct_call(layer) -> None:
    """A layer called directly (``layer(x)``, not by a container's
    forward_child) keeps one set of caches: that of its last call. Count
    the calls, and watch its next backward: it serves the last call, and a
    further backward on the same caches (meant for an earlier call) would
    silently get the last call's, so it raises instead. Layers that are
    never called directly (a container's children) pay nothing."""
    d = layer.__dict__
    calls = d.get("_direct_calls")
    if calls is None:  # watched from now on (two attributes: cheap after)
        d["backward"] = types.MethodType(_watched_backward, layer)
        d["backward_params"] = types.MethodType(_watched_backward_params, layer)
        calls = 0
    elif "_spent" in d:  # a new round of calls
        del d["_spent"]
        calls = 0
    d["_direct_calls"] = calls + 1


def _caches_of(layer) -> list:
    """The objects `layer` and its sub-layers cache now (to tell whether a
    forward ran since)."""
    return [current.__dict__.get(name) for current in walk_layers(layer)
            for name in (*type(current)._cache_attrs, "_child_calls")]


def _watched_backward(layer, dy):
    d = layer.__dict__
    if d.get("_direct_calls", 0) <= 1:  # the common case, inline: one call
        d["_direct_calls"] = 0
        return type(layer).backward(layer, dy)
    return _watched(layer, "backward", dy)


def _watched_backward_params(layer, dy):
    return _watched(layer, "backward_params", dy)


def _watched(layer, name: str, dy):
    d = layer.__dict__
    calls = d.get("_direct_calls", 0)
    if calls <= 1:  # one call, one backward (or one more): nothing to fear
        d["_direct_calls"] = 0
        return getattr(type(layer), name)(layer, dy)
    spent = d.get("_spent")
    if spent is not None and all(a is b for a, b in zip(
            spent, _caches_of(layer), strict=False)):
        cls = type(layer).__name__
        msg = (
            f"{cls}.{name}: this layer was called more than once before its "
            "backward and keeps the caches of its last call only, which an earlier "
            "backward has used: this backward would get them for an earlier call "
            "and give wrong gradients. To call a layer more than once in a "
            "custom model, call it with self.forward_child(layer, x, training) "
            "and go back with self.backward_child(layer, dy), which keep one set "
            "of caches per call (see Layer.forward_child)"
        )
        raise RuntimeError(msg)
    before = _caches_of(layer) if spent is None else None
    result = getattr(type(layer), name)(layer, dy)
    if before is None:  # a forward ran since (not through __call__): plain again
        d.pop("_spent", None)
        d["_direct_calls"] = 0
    else:  # the last call's backward ran; the earlier calls have no caches
        d["_spent"] = before
    return result


def refuse_mask(layer) -> None:
    """`layer` got a mask it can neither use nor pass on."""
    msg = (
        f"{layer!r} does not support masking, but its input carries a mask (from "
        "Embedding(mask_zero=True) or Masking). Use the mask up before it (an "
        "RNN, LSTM or GRU with return_sequences=False, GlobalAvgPool1D), or "
        "build the model without mask_zero"
    )
    raise TypeError(msg)


def any_mask(masks) -> bool:
    """Whether a mask, or any mask of a list of them, is given."""
    if isinstance(masks, (list, tuple)):
        return any(m is not None for m in masks)
    return masks is not None


def check_registered(model) -> None:
    """Refuse a Parameter kept as a plain attribute of a layer without
    being registered anywhere in `model` (``self.w = Parameter(...)``, as
    in PyTorch), and a layer with parameters kept as an attribute (or in a
    list) but not listed in `children()`: either would be neither trained
    nor saved."""
    layers = list(walk_layers(model))
    registered = {id(p) for layer in layers for p in layer._params.values()}
    stray = [f"{type(layer).__name__}.{name}" for layer in layers
             for name, value in vars(layer).items()
             if isinstance(value, Parameter) and id(value) not in registered]
    if stray:
        first = stray[0].split(".")[-1]
        msg = (
            f"{', '.join(stray)}: a Parameter kept as an attribute without being "
            "registered, so it would be neither trained nor saved. Register it "
            f"in __init__: self.{first} = self.add_parameter({first!r}, value)"
        )
        raise TypeError(msg)
    known = {id(layer) for layer in layers}
    for layer in layers:
        for name, value in vars(layer).items():
            items = value if isinstance(value, (list, tuple)) else (value,)
            lost = [v for v in items if isinstance(v, Layer) and id(v) not in known
                    and v.parameters()]
            if lost:
                cls = type(layer).__name__
                msg = (
                    f"{cls}.{name} holds a {type(lost[0]).__name__} that is not among "
                    f"{cls}'s children, so its parameters would be neither trained "
                    f"nor saved. List it in {cls}.children() (return [self.{name}, "
                    "...]), in forward order"
                )
                raise TypeError(msg)


def free_caches(layer) -> None:
    """Drop what `layer` (and the layers it owns) cached in forward; works
    for losses too."""
    plan = _FREE_PLANS.get(type(layer))
    if plan is None:
        plan = _free_plan(type(layer))
    names, owns = plan
    d = layer.__dict__
    for name in names:
        if name in d:  # a test is cheaper than pop(name, None)
            del d[name]
    if owns == "activation":
        if layer.activation is not None:
            free_caches(layer.activation)
    elif owns:
        for current in layer._owned_layers():
            free_caches(current)


#: class -> (attributes to drop, whether it may own layers): every
#: container frees every child after its backward, so this runs often
_FREE_PLANS: dict[type, tuple] = {}


def owns_activation(layer) -> tuple:
    """``_owned_layers`` of a layer whose only owned layer is its fused
    ``activation`` (Dense, the convolutions): ``(activation,)`` or ``()``.
    :func:`free_caches` reads the attribute directly for these layers."""
    return () if layer.activation is None else (layer.activation,)


def _free_plan(cls) -> tuple:
    owns = issubclass(cls, Layer) and cls._owned_layers is not Layer._owned_layers
    if owns and cls._owned_layers is owns_activation:
        owns = "activation"  # no call to ask: a third of a Dense's free
    plan = _FREE_PLANS[cls] = ((*cls._cache_attrs, "_child_calls"), owns)
    return plan


def save_caches(layer: Layer) -> list:
    """The caches of `layer` and everything below it, for one call."""
    return [(current, {name: current.__dict__[name]
                       for name in (*type(current)._cache_attrs, "_child_calls")
                       if name in current.__dict__})
            for current in walk_layers(layer)]


def restore_caches(snapshot) -> None:
    """Put back what :func:`save_caches` took."""
    for current, caches in snapshot:
        current.__dict__.update(caches)


def float_dtype(backend, dtype):
    """The backend dtype object a layer's weights use: the default float
    dtype when `dtype` is None, a name looked up on `backend`, or as given."""
    from ..config import float_dtype as default_float_dtype

    dtype = default_float_dtype(backend) if dtype is None else dtype
    return backend.dtype(dtype) if isinstance(dtype, str) else dtype


def is_half(xp, dtype) -> bool:
    """Whether `dtype` is a 16-bit float type (float16, bfloat16)."""
    return xp.isdtype(dtype, "real floating") and dtype not in (xp.float32,
                                                                 xp.float64)


def upcast(xp, x):
    """`x` in float32 if it is a half type (else unchanged): statistics,
    softmaxes and random draws under mixed precision are computed in float32."""
    return xp.astype(x, xp.float32) if is_half(xp, x.dtype) else x


def dtype_name(dtype) -> str:
    """``"float32"`` etc. for any library's dtype object (for configs)."""
    for name in ("float32", "float64", "float16", "bfloat16"):
        if name in str(dtype):
            return name
    return str(dtype)


def _walk(layer):
    yield layer
    for child in layer.children():
        yield from _walk(child)


def _resolve(backend):
    from ..backends import get

    return get(backend)
