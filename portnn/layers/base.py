"""The `Layer` base: forward, a hand-written backward, and named parameters."""

from __future__ import annotations

from collections.abc import Iterator
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
    :meth:`state_dict` list them in a fixed order.

    Examples
    --------
    A layer that scales its input by a learned vector:

    >>> import portnn
    >>> class Scale(portnn.Layer):
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

    def __init__(self, backend=None) -> None:
        self._params: dict[str, Parameter] = {}
        self._buffers: dict[str, Any] = {}
        self.backend = get_backend() if backend is None else _resolve(backend)

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

    def __call__(self, x: Any, training: bool = False) -> Any:
        return self.forward(x, training=training)

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
        """Yield ``(dotted name, Parameter)`` pairs in a fixed order."""
        for name, p in self._params.items():
            yield prefix + name, p
        for i, child in enumerate(self.children()):
            yield from child.named_parameters(f"{prefix}{i}.")

    def parameters(self) -> list[Parameter]:
        """All trainable parameters of this layer and its children."""
        return [p for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        """Forget accumulated gradients (sets every ``grad`` to ``None``)."""
        for p in self.parameters():
            p.grad = None

    def num_parameters(self) -> int:
        """Number of trainable scalars."""
        return sum(p.size for p in self.parameters())

    # -- state ----------------------------------------------------------------
    def _named_state(self, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
        # (name, owner, key) so that load can write back parameters and buffers
        for name, p in self._params.items():
            yield prefix + name, p, None
        for name in self._buffers:
            yield prefix + name, self, name
        for i, child in enumerate(self.children()):
            yield from child._named_state(f"{prefix}{i}.")

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

    # -- helpers for subclasses -----------------------------------------------
    def _check_backend(self, x: Any, param: Parameter) -> None:
        if type(x) is not type(param.value):
            check_same_backend(param.value, x, where=type(self).__name__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


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
