"""The `Optimizer` base: parameters, per-parameter state, a step counter."""

from __future__ import annotations

import math
from typing import Any

from .._namespace import tracing
from ..backends import backend_of, get_backend
from ..parameter import Parameter
from .clip import clip_grad_norm, clip_grad_value


class Optimizer:
    """Base class of the optimizers.

    Subclasses implement ``update(p, g, state)``, which changes ``p.value``
    given the gradient ``g`` and the parameter's state dict. Updates run in
    place (``p.value -= ...``); on a library without in-place operators the
    same statements rebind the arrays, so subclasses store state back with
    ``state[key] = array`` after updating it.

    Parameters
    ----------
    params : iterable of Parameter
        Usually ``model.parameters()``.
    lr : float
        Learning rate; schedulers change ``optimizer.lr``.
    clipnorm : float, optional
        Clip each parameter's gradient to this L2 norm (Keras).
    clipvalue : float, optional
        Clip every gradient element into ``[-clipvalue, clipvalue]``.
    global_clipnorm : float, optional
        Scale all gradients together to this global L2 norm at most
        (``torch.nn.utils.clip_grad_norm_``). At most one of the three.

    Examples
    --------
    Plain gradient descent, written as an optimizer:

    >>> import portnn
    >>> class Descent(portnn.optim.Optimizer):
    ...     def update(self, p, g, state):
    ...         p.value -= self.lr * g
    >>> layer = portnn.Dense(1, 1, bias=False)
    >>> layer.W.value[...] = 1.0
    >>> layer.W.grad = portnn.asarray([[2.0]])
    >>> Descent(layer.parameters(), lr=0.25).step()
    >>> layer.W.value.tolist()
    [[0.5]]
    """

    def __init__(self, params, lr: float, *, clipnorm=None, clipvalue=None,
                 global_clipnorm=None) -> None:
        params = list(params)
        if not params:
            msg = f"{type(self).__name__} got an empty parameter list"
            raise ValueError(msg)
        for p in params:
            if not isinstance(p, Parameter):
                msg = (
                    f"{type(self).__name__} takes Parameters (model.parameters()), "
                    f"got {type(p).__name__}"
                )
                raise TypeError(msg)
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr >= 0):
            msg = (f"{type(self).__name__}: learning rate must be a finite number "
                   f">= 0, got {lr!r}")
            raise ValueError(msg)
        self.params = params
        self.lr = float(lr)
        self.state: list[dict[str, Any]] = [{} for _ in params]
        self.steps = 0
        clips = {"clipnorm": clipnorm, "clipvalue": clipvalue,
                 "global_clipnorm": global_clipnorm}
        given = {k: v for k, v in clips.items() if v is not None}
        if len(given) > 1:
            msg = (f"{type(self).__name__}: set at most one of clipnorm, clipvalue "
                   f"and global_clipnorm, got {sorted(given)}")
            raise ValueError(msg)
        for key, value in given.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value)
                    and value > 0):
                msg = f"{type(self).__name__}: {key} must be > 0, got {value!r}"
                raise ValueError(msg)
        self.clipnorm, self.clipvalue, self.global_clipnorm = (
            clipnorm, clipvalue, global_clipnorm)
        #: the learning-rate schedule driving ``lr``, if one was made for it
        self.scheduler = None

    @property
    def keeps_state(self) -> bool:
        """Whether updates create per-parameter state (moments, buffers);
        a stateless update can be masked on the device from the first step."""
        return True

    def step(self, where=None) -> None:
        """Apply one update to every parameter that has a gradient.

        Parameters
        ----------
        where : 0-d boolean array, optional
            Update only if it is True; where it is False, parameters and
            optimizer state stay exactly as they were. The decision is taken
            without a device-to-host read on accelerators (both outcomes are
            computed and one is kept, on the device), and by a plain branch
            on synchronous CPU backends, where reading a value is free.
            ``fit`` passes the finiteness of the loss and gradients here.

        Examples
        --------
        >>> import portnn
        >>> layer = portnn.Dense(2, 1)
        >>> xp = portnn.get_backend().xp
        >>> layer.W.grad = xp.full((2, 1), float("nan"), dtype=layer.W.dtype)
        >>> before = layer.W.value + 0
        >>> portnn.SGD(layer.parameters(), lr=0.1).step(where=xp.asarray(False))
        >>> bool(xp.all(layer.W.value == before))
        True
        """
        if (self.clipnorm is not None or self.global_clipnorm is not None
                or self.clipvalue is not None):
            self._clip()
        if where is None:
            return self._step()
        backend = backend_of(where) or get_backend()
        if (backend.synchronous and not tracing.get()) or (self.keeps_state and any(
                not s for p, s in zip(self.params, self.state, strict=True)
                if p.grad is not None and p.trainable)):
            # Free on the CPU (unless the step is traced for a compiler);
            # elsewhere only at an optimizer's first step, before its state
            # exists (there is nothing to keep to select).
            if bool(where):
                self._step()
            return None
        return self._masked_step(where, backend)

    def _clip(self) -> None:
        """Clip the gradients as asked, on the device (no host read)."""
        if self.clipnorm is not None:
            for p in self.params:
                if p.grad is not None:
                    clip_grad_norm([p], self.clipnorm)
        elif self.global_clipnorm is not None:
            clip_grad_norm(self.params, self.global_clipnorm)
        elif self.clipvalue is not None:
            clip_grad_value(self.params, self.clipvalue)

    def _step(self) -> None:
        self.steps += 1
        for p, state in zip(self.params, self.state, strict=True):
            if p.grad is not None and p.trainable:
                self.update(p, p.grad, state)

    def _masked_step(self, ok, backend) -> None:
        """Both outcomes on the device, the one `ok` names kept: the update
        runs on copies, then every array is selected with ``where``."""
        xp = backend.xp
        self.steps += 1  # counts attempts; per-parameter counters are exact
        for p, state in zip(self.params, self.state, strict=True):
            if p.grad is None or not p.trainable:
                continue
            for key, value in state.items():
                if not hasattr(value, "shape"):
                    # step counters become device scalars of the parameter's
                    # dtype (no promotion of the update), so they can be kept too
                    state[key] = xp.asarray(float(value), dtype=p.value.dtype,
                                            device=backend.device)
            work = Parameter(_copy(xp, p.value, backend), p.name)
            new = {k: _copy(xp, v, backend) for k, v in state.items()}
            self.update(work, p.grad, new)
            p.value = xp.where(ok, work.value, p.value)
            for key, value in new.items():
                state[key] = xp.where(ok, value, state[key])

    def update(self, p: Parameter, g: Any, state: dict[str, Any]) -> None:
        """Update one parameter (implemented by each optimizer)."""
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Set every parameter's gradient to ``None``."""
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict[str, Any]:
        """Hyper-parameters, step count and per-parameter state arrays
        (step counters as Python numbers, also after device-side steps)."""
        return {
            # Python numbers, also while a compiled step keeps them on the
            # device as 0-d arrays (a checkpoint taken during a fit)
            "lr": _host(self.lr, float),
            "steps": _host(self.steps, int),
            "state": [{k: _as_number(v) for k, v in s.items()} for s in self.state],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if len(state["state"]) != len(self.params):
            msg = (
                f"{type(self).__name__}: state has {len(state['state'])} parameter "
                f"entries, this optimizer has {len(self.params)} parameters"
            )
            raise ValueError(msg)
        self.lr = float(state["lr"])
        self.steps = int(state["steps"])
        self.state = [dict(s) for s in state["state"]]

    def to(self, backend) -> Optimizer:
        """Move the state arrays to `backend` (parameters move with the model)."""
        from ..backends import get
        from ..transfer import move

        target = get(backend)
        for state in self.state:
            for k, v in state.items():
                if hasattr(v, "shape"):
                    state[k] = move(v, target)
        return self

    def get_config(self) -> dict[str, Any]:
        """Hyper-parameters: the constructor arguments other than `params`."""
        import inspect

        names = list(inspect.signature(type(self).__init__).parameters)[2:]
        config = {k: getattr(self, k) for k in names if hasattr(self, k)}
        if "lr" in config:  # a 0-d array while a compiled step runs
            config["lr"] = _host(config["lr"], float)
        return config

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr={self.lr})"


def _copy(xp, x, backend):
    # in-place updates must not reach the kept outcome; immutable arrays
    # (JAX) are rebound by the update and need no copy
    return xp.asarray(x, copy=True) if backend.inplace else x


def _host(value, kind):
    """`value` as a Python `kind` if it is a 0-d array (one host read)."""
    if hasattr(value, "shape") and tuple(value.shape) == ():
        return kind(value)
    return value


def _as_number(value):
    """A 0-d step counter as a Python number (one host read, at save time)."""
    if hasattr(value, "shape") and tuple(value.shape) == ():
        number = float(value)
        return int(number) if number.is_integer() else number
    return value


def zeros_like(x):
    from .._namespace import namespace

    return namespace(x).zeros_like(x)
