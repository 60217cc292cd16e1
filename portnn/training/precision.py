"""Mixed precision: Keras's policy names, ``torch.amp.GradScaler``'s loss
scaling.

Under ``"mixed_float16"`` or ``"mixed_bfloat16"`` each training step
computes the layers in the half type: the float32 master weights are cast
to half copies for the forward and backward passes, the input is cast, and
the prediction is cast back to float32 for the loss. Normalization
statistics and softmaxes are computed in float32 inside their layers; the
optimizer updates the float32 masters with float32 gradients and keeps its
state in float32, so checkpoints hold float32 weights and load anywhere.

float16 overflows beyond 65504, so its gradients are scaled: the loss
gradient is multiplied by a scale before the backward pass and the weight
gradients divided by it after; a step whose gradients overflow is skipped
(on the device) and the scale halved; after 2000 good steps in a row it is
doubled. bfloat16 has float32's range and needs no scaling. The scaler is
training state: it stays on the model between `fit` calls
(``model.loss_scaler``) and in checkpoints. 32 skipped steps in a row are
not an overflow any more (NaN gradients, or a forward pass beyond float16's
range): the run stops with :class:`TrainingDivergedError`.
"""

from __future__ import annotations

import contextlib

from ..data.structure import map_structure
from ..layers.base import is_half, mixed_policy
from .guard import grad_sq_norm

#: Keras's policy names -> the half type the layers compute in
POLICIES = {"float32": None, "mixed_float16": "float16",
            "mixed_bfloat16": "bfloat16"}


def quiet_overflow(backend):
    """A context without the backend's floating-point overflow warnings
    (NumPy's ``errstate``), where overflow is expected and handled."""
    quiet = backend.native.get("quiet_overflow")
    return quiet() if quiet is not None else contextlib.nullcontext()


class LossScaler:
    """Dynamic loss scaling with the semantics of ``torch.amp.GradScaler``;
    the scale and the count of good steps live on the device.

    Parameters
    ----------
    backend : Backend
    init_scale, growth_factor, backoff_factor, growth_interval
        As in PyTorch: start at 2**16; after `growth_interval` good steps in
        a row multiply by `growth_factor` (if the result is finite); on a
        step with non-finite gradients multiply by `backoff_factor` (and the
        step is skipped).

    Examples
    --------
    >>> import portnn
    >>> xp = portnn.get_backend().xp
    >>> s = LossScaler(portnn.get_backend(), growth_interval=2)
    >>> for finite in (True, True, False):
    ...     s.update(xp.asarray(finite))
    >>> float(s.scale)
    65536.0
    """

    #: consecutive skipped steps after which the run is stuck, not
    #: overflowing: the scale has fallen from 2**16 to 2**-16, so the
    #: gradients are NaN (or the float16 forward itself overflows)
    stall_limit = 32

    def __init__(self, backend, init_scale: float = 2.0**16,
                 growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000) -> None:
        xp, dev = backend.xp, backend.device
        self.backend = backend
        self.growth_factor = float(growth_factor)
        self.backoff_factor = float(backoff_factor)
        self.growth_interval = int(growth_interval)
        self.scale = xp.asarray(float(init_scale), dtype=xp.float32, device=dev)
        self.growth_tracker = xp.asarray(0, dtype=xp.int32, device=dev)
        self.skipped = xp.asarray(0, dtype=xp.int32, device=dev)
        self.first_bad = xp.asarray(-1, dtype=xp.int32, device=dev)
        self._first_bad_now = self.first_bad

    def scale_gradient(self, dy):
        """``dy * scale`` (the loss gradient, before the backward pass)."""
        xp = self.backend.xp
        return dy * xp.astype(self.scale, dy.dtype)

    def unscale(self, params):
        """Divide every gradient by the scale; return whether all are finite
        (a 0-d boolean array, no host read). Remembers which parameter was
        the first non-finite one, for :meth:`stalled`."""
        xp, dev = self.backend.xp, self.backend.device
        inv = 1.0 / self.scale
        flags = []
        for p in params:
            if p.grad is not None:
                p.grad = p.grad * xp.astype(inv, p.grad.dtype)
                flags.append(xp.isfinite(grad_sq_norm([p])))
            else:
                flags.append(xp.asarray(True, device=dev))
        if not flags:
            return xp.asarray(True, device=dev)
        finite = xp.stack(flags)
        self._first_bad_now = xp.astype(xp.argmax(xp.astype(~finite, xp.int32)),
                                        xp.int32)
        return xp.all(finite)

    def stalled(self, finite):
        """Whether this step, skipped, makes :attr:`stall_limit` skipped
        steps in a row (a 0-d boolean, no host read)."""
        return ~finite & (self.skipped + 1 >= self.stall_limit)

    def update(self, finite) -> None:
        """Back off after an overflow, grow after `growth_interval` good
        steps, on the device (``torch._amp_update_scale_``); count the
        skipped steps in a row."""
        xp = self.backend.xp
        grown = self.growth_tracker + 1
        due = finite & (grown >= self.growth_interval)
        with quiet_overflow(self.backend):  # an inf candidate is never kept
            bigger = self.scale * self.growth_factor
        self.scale = xp.where(
            ~finite, self.scale * self.backoff_factor,
            xp.where(due & xp.isfinite(bigger), bigger, self.scale))
        self.growth_tracker = xp.where(finite & ~due, grown,
                                       xp.zeros_like(grown))
        starts = ~finite & (self.skipped == 0)  # the first skip of a run
        self.first_bad = xp.where(starts, self._first_bad_now, self.first_bad)
        self.skipped = xp.where(finite, xp.zeros_like(self.skipped),
                                self.skipped + 1)

    def state_dict(self) -> dict:
        """The scale and the good-step count, as Python numbers."""
        return {"scale": float(self.scale),
                "growth_tracker": int(self.growth_tracker)}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned.

        Raises
        ------
        ValueError
            A scale that is not a finite positive number, or a negative count.
        """
        import math

        scale, tracker = float(state["scale"]), int(state["growth_tracker"])
        if not (math.isfinite(scale) and scale > 0) or tracker < 0:
            msg = f"invalid loss-scale state {state!r}"
            raise ValueError(msg)
        xp, dev = self.backend.xp, self.backend.device
        self.scale = xp.asarray(scale, dtype=xp.float32, device=dev)
        self.growth_tracker = xp.asarray(tracker, dtype=xp.int32, device=dev)


class Precision:
    """The precision policy of a training run.

    Parameters
    ----------
    policy : {"float32", "mixed_float16", "mixed_bfloat16"}
        Keras's names. float32 changes nothing.
    backend : Backend
        The model's backend; it must have the half type.

    Raises
    ------
    ValueError
        For an unknown policy name.
    TypeError
        If the backend lacks the half type (NumPy has no bfloat16,
        array-api-strict neither half type).
    """

    def __init__(self, policy: str, backend, scaler=None) -> None:
        if policy not in POLICIES:
            msg = f"unknown precision {policy!r}; choose one of {sorted(POLICIES)}"
            raise ValueError(msg)
        self.policy = policy
        self.backend = backend
        half = POLICIES[policy]
        self.compute_dtype = None
        if half is not None:
            try:
                self.compute_dtype = backend.dtype(half)
            except TypeError:
                others = [p for p, t in POLICIES.items() if t and t != half
                          and hasattr(backend.xp, t)]
                hint = (f"use precision={others[0]!r} here, or" if others
                        else "use")
                msg = (
                    f"precision={policy!r} needs {half}, which the "
                    f"{backend.spec!r} backend does not have; {hint} the torch "
                    "or jax backend (both have float16 and bfloat16)"
                )
                raise TypeError(msg) from None
        self.scaler = None
        if half == "float16":  # the model's scaler goes on where it stopped
            self.scaler = scaler if scaler is not None else LossScaler(backend)
            if self.scaler.backend is not backend:  # the model moved
                moved = LossScaler(backend)
                moved.load_state_dict(self.scaler.state_dict())
                self.scaler = moved

    @property
    def mixed(self) -> bool:
        return self.compute_dtype is not None

    @contextlib.contextmanager
    def weights(self, model):
        """Half copies of the float32 weights for the forward and backward
        passes; the masters come back afterwards (also on an error)."""
        if not self.mixed:
            yield
            return
        xp, half = self.backend.xp, self.compute_dtype
        params = model.parameters()
        masters = [p.value for p in params]
        for p in params:
            p.value = xp.astype(p.value, half)
        token = mixed_policy.set(self.policy)  # dtype errors name the policy
        try:
            # float16 overflow is how the scaler learns its scale: no warnings
            with quiet_overflow(self.backend) if self.scaler else (
                    contextlib.nullcontext()):
                yield
        finally:
            mixed_policy.reset(token)
            for p, master in zip(params, masters, strict=True):
                p.value = master

    #: the largest finite value of each half type
    LIMITS = {"float16": 65504.0}

    @property
    def input_limit(self) -> float | None:
        """The largest magnitude an input may hold (float16: 65504), or None."""
        return self.LIMITS.get(POLICIES[self.policy])

    def input(self, x):
        """Floating input in the compute type (token ids stay integers);
        each array of a list or dict of inputs."""
        if not self.mixed:
            return x
        xp = self.backend.xp
        return map_structure(lambda v: xp.astype(v, self.compute_dtype) if (
            xp.isdtype(v.dtype, "real floating")) else v, x)

    def output(self, pred):
        """The prediction in float32, for the loss and the metrics."""
        if not self.mixed:
            return pred
        xp = self.backend.xp
        return map_structure(lambda p: xp.astype(p, xp.float32) if is_half(
            xp, p.dtype) else p, pred)

    def loss_gradient(self, dy):
        """The loss gradient, scaled (float16) and in the compute type."""
        if not self.mixed:
            return dy
        xp = self.backend.xp

        def half(g):
            if self.scaler is not None:
                g = self.scaler.scale_gradient(g)
            return xp.astype(g, self.compute_dtype)

        return map_structure(half, dy)

    def to_master(self, params) -> None:
        """The half gradients in the float32 masters' dtype (before a
        data-parallel all-reduce: sums in float32)."""
        if not self.mixed:
            return
        xp = self.backend.xp
        for p in params:
            if p.grad is not None and p.grad.dtype != p.value.dtype:
                p.grad = xp.astype(p.grad, p.value.dtype)

    def unscale(self, params):
        """float32 gradients, unscaled; their finiteness when it decides the
        step here (float16), else None (the guard checks)."""
        if not self.mixed:
            return None
        self.to_master(params)
        if self.scaler is None:
            return None
        return self.scaler.unscale(params)

    def stalled(self, finite):
        """A 0-d boolean: the loss scale has skipped too many steps in a row
        (float16; None otherwise)."""
        return None if self.scaler is None else self.scaler.stalled(finite)

    def update(self, finite) -> None:
        """Advance the loss scale after a step (float16 only)."""
        if self.scaler is not None:
            self.scaler.update(finite)

    def __repr__(self) -> str:
        return f"Precision({self.policy!r})"
