"""`StepGuard`: a bad batch never reaches the weights.

After the backward pass, the guard decides on the device whether the step
may run: the loss and the gradients must be finite. A bad batch skips the
update there (the optimizer keeps both outcomes and selects, as
``torch.amp.GradScaler`` skips a step) and marks the epoch, so every later
step of it is skipped too; the loop raises :class:`TrainingDivergedError`
when it next reads the device, at the end of the epoch, with the model
still holding the weights from before the bad batch.
"""

from __future__ import annotations

from .._host import accumulator_dtype
from .._namespace import namespace


class TrainingDivergedError(FloatingPointError):
    """The loss or a gradient became NaN or infinite.

    ``history`` holds the epochs completed before; the model keeps the
    weights from before the bad batch.

    Examples
    --------
    A learning rate far too large makes the loss overflow:

    >>> import portnn
    >>> model = portnn.Sequential(portnn.Dense(1, 1))
    >>> _ = model.compile(optimizer=portnn.SGD(model.parameters(), lr=1e30),
    ...                   loss="mse")
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's overflow
    ...     try:
    ...         model.fit([[1e3]], [[1e3]], epochs=5, verbose=0)
    ...     except portnn.TrainingDivergedError as err:
    ...         print(len(err.history.history["loss"]) < 5)
    True
    """

    def __init__(self, msg: str, history) -> None:
        super().__init__(msg)
        self.history = history


def grad_sq_norm(params):
    """``sum(g . g)`` over every gradient, a 0-d array (one dot product per
    parameter, read once per array): NaN or inf if any gradient element is,
    or if the norm itself overflows."""
    total = None
    for p in params:
        g = p.grad
        if g is None:
            continue
        flat = namespace(g).reshape(g, (-1,))
        sq = flat @ flat
        total = sq if total is None else total + sq
    return total


class StepGuard:
    """Runs the optimizer step only while the epoch is healthy.

    Parameters
    ----------
    backend : Backend
        Where the guard's flags live (the model's device).

    Examples
    --------
    >>> import portnn
    >>> layer = portnn.Dense(2, 1)
    >>> opt = portnn.SGD(layer.parameters(), lr=0.1)
    >>> guard = StepGuard(layer.backend)
    >>> xp = layer.backend.xp
    >>> layer.W.grad = xp.ones((2, 1), dtype=layer.W.dtype)
    >>> guard.step(opt, xp.asarray(float("nan")))   # a NaN loss: skipped
    >>> guard.batch, opt.steps
    (1, 0)
    """

    def __init__(self, backend, names=None, policy: str = "float32") -> None:
        self.backend = backend
        self.names = list(names or [])  # the optimizer's parameters, named
        self.policy = policy
        self.reset()

    def reset(self) -> None:
        """Start an epoch: healthy, no bad batch seen."""
        xp, b = self.backend.xp, self.backend
        acc = accumulator_dtype(b)
        self.healthy = xp.asarray(True, device=b.device)
        self.first_bad = xp.asarray(-1.0, dtype=acc, device=b.device)
        self.bad_loss = xp.asarray(0.0, dtype=acc, device=b.device)
        self.stalled = xp.asarray(-1.0, dtype=acc, device=b.device)
        self.batch = 0

    def step(self, optimizer, value, finite_grads=None,
             overflow_skips: bool = False, stalled=None, bad_param=None) -> None:
        """Step `optimizer` if the loss `value` and the gradients are finite
        and no earlier batch of the epoch was bad; record the first bad one.

        Parameters
        ----------
        finite_grads : 0-d boolean array, optional
            Finiteness of the gradients when the caller already knows it (a
            loss scaler's unscale); computed here otherwise.
        overflow_skips : bool
            With dynamic loss scaling, non-finite gradients are an overflow
            of the scale: the step is skipped but the run is not diverged.
        stalled, bad_param : 0-d arrays, optional
            The loss scaler has skipped too many steps in a row: the run is
            diverged after all; `bad_param` indexes the first parameter
            whose gradient was non-finite.
        """
        xp = self.backend.xp
        if finite_grads is None:
            sq = grad_sq_norm(optimizer.params)
            finite_grads = xp.asarray(True, device=self.backend.device) if (
                sq is None) else xp.isfinite(sq)
        finite_loss = xp.isfinite(value)
        bad = ~finite_loss if overflow_skips else ~(finite_loss & finite_grads)
        if stalled is not None:
            bad = bad | stalled
        first = self.healthy & bad
        # a Python int, or a device scalar while the step is compiled
        batch = (float(self.batch) if isinstance(self.batch, int)
                 else xp.astype(self.batch, self.first_bad.dtype))
        self.first_bad = xp.where(first, batch, self.first_bad)
        self.bad_loss = xp.where(first, xp.astype(value, self.bad_loss.dtype),
                                 self.bad_loss)
        if stalled is not None:
            self.stalled = xp.where(first & stalled,
                                    xp.astype(bad_param, self.stalled.dtype),
                                    self.stalled)
        self.healthy = self.healthy & ~bad
        optimizer.step(where=self.healthy & finite_grads)
        self.batch += 1

    def totals(self) -> list:
        """The device values :meth:`check` needs, read with the epoch's figures."""
        return [self.first_bad, self.bad_loss, self.stalled]

    def check(self, totals, *, epoch, batches, lr, history) -> None:
        """Raise :class:`TrainingDivergedError` if the host values of
        :meth:`totals` name a bad batch."""
        first_bad, bad_loss, stalled = totals
        if first_bad < 0:
            return
        what = (f"the loss became {bad_loss}" if bad_loss != bad_loss
                or abs(bad_loss) == float("inf")
                else f"a gradient became NaN or infinite (loss {bad_loss:.4g})")
        if stalled >= 0:
            k = int(stalled)
            name = self.names[k] if k < len(self.names) else f"parameter {k}"
            from .precision import LossScaler

            what = (
                f"under {self.policy} no step succeeded for "
                f"{LossScaler.stall_limit} batches in a row: the gradients are "
                f"not finite at any loss scale (first non-finite: {name}), so "
                "this is NaN, not a float16 overflow"
            )
        msg = (
            f"training diverged: {what} at epoch {epoch + 1}, batch "
            f"{int(first_bad) + 1} of {batches}; the weights are those from "
            f"before that batch. Lower the learning rate (now {lr:g}) or clip "
            "gradients (portnn.clip_grad_norm), and check the data for NaN/inf."
        )
        raise TrainingDivergedError(msg, history)


def parameter_names(model, optimizer) -> list[str]:
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
