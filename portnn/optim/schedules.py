"""Learning-rate schedules: call ``step()`` once per epoch (or per batch).

`fit` steps a schedule made for its optimizer by itself, every epoch or
every batch as the schedule's ``interval`` says.
"""

from __future__ import annotations

import math


class LRScheduler:
    """Base class: sets ``optimizer.lr = lr_at(t)`` on each ``step()``.

    The learning rate in force at construction is the base rate; ``t``
    counts calls to ``step()``, starting at 0. The schedule registers
    itself as ``optimizer.scheduler``, so checkpoints save it with the
    optimizer and :func:`portnn.load` brings it back where it stopped.

    ``scale`` multiplies every rate the schedule sets (1 unless
    :class:`portnn.ReduceLROnPlateau` reduced it): a plateau's reductions
    compose with the schedule instead of being overwritten at its next step.

    Examples
    --------
    Halve the rate every 2 steps, written as a schedule:

    >>> import portnn
    >>> class Halving(portnn.optim.LRScheduler):
    ...     def lr_at(self, t):
    ...         return self.base_lr * 0.5 ** (t // 2)
    >>> opt = portnn.SGD(portnn.Dense(1, 1).parameters(), lr=1.0)
    >>> schedule = Halving(opt)
    >>> rates = []
    >>> for _ in range(4):
    ...     _ = schedule.step()
    ...     rates.append(opt.lr)
    >>> rates
    [1.0, 0.5, 0.5, 0.25]
    """

    #: the plateau reductions' product, applied to every rate set
    scale = 1.0

    #: when `fit` steps it: after every "epoch" or every "batch"
    interval = "epoch"
    #: whether checkpoints can store it (a schedule of arbitrary code cannot)
    serializable = True

    def __init__(self, optimizer) -> None:
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.t = 0
        optimizer.lr = self.lr_at(0)
        optimizer.scheduler = self

    def get_config(self) -> dict:
        """Constructor arguments other than the optimizer."""
        import inspect

        names = list(inspect.signature(type(self).__init__).parameters)[2:]
        return {k: getattr(self, k) for k in names if hasattr(self, k)}

    def lr_at(self, t: int) -> float:
        """The learning rate after `t` steps."""
        raise NotImplementedError

    def step(self) -> float:
        """Advance one step and return the new learning rate."""
        self.t += 1
        self.optimizer.lr = self.lr_at(self.t) * self.scale
        return self.optimizer.lr

    def rescale(self, factor: float, min_lr: float = 0.0) -> float:
        """Multiply every rate from now on by `factor` (a plateau's
        reduction), keeping today's rate at `min_lr` or above; returns it."""
        scheduled = self.lr_at(self.t)
        scale = self.scale * float(factor)
        if scheduled > 0 and scheduled * scale < min_lr:
            scale = min_lr / scheduled
        self.scale = scale
        self.optimizer.lr = scheduled * scale
        return self.optimizer.lr

    def state_dict(self) -> dict:
        """Step count, base rate and the plateau scale."""
        return {"t": self.t, "base_lr": self.base_lr, "scale": self.scale}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (and the rate it implies)."""
        t, base_lr = int(state["t"]), float(state["base_lr"])
        scale = float(state.get("scale", 1.0))  # older checkpoints: none
        if t < 0 or not math.isfinite(base_lr) or base_lr < 0 or not (
                math.isfinite(scale) and scale > 0):
            msg = f"{type(self).__name__}: invalid state {state!r}"
            raise ValueError(msg)
        self.t, self.base_lr, self.scale = t, base_lr, scale
        self.optimizer.lr = self.lr_at(self.t) * self.scale


class StepLR(LRScheduler):
    """Multiply the rate by `gamma` every `step_size` steps
    (``torch.optim.lr_scheduler.StepLR``).

    Examples
    --------
    >>> import portnn
    >>> opt = portnn.SGD(portnn.Dense(2, 1).parameters(), lr=1.0)
    >>> sched = portnn.optim.StepLR(opt, step_size=2, gamma=0.5)
    >>> [sched.step() for _ in range(4)]
    [1.0, 0.5, 0.5, 0.25]
    """

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1) -> None:
        if step_size < 1:
            msg = f"StepLR: step_size must be >= 1, got {step_size!r}"
            raise ValueError(msg)
        self.step_size = int(step_size)
        self.gamma = float(gamma)
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        return self.base_lr * self.gamma ** (t // self.step_size)


class ExponentialLR(LRScheduler):
    """Multiply the rate by `gamma` every step.

    Examples
    --------
    >>> import portnn
    >>> opt = portnn.SGD(portnn.Dense(1, 1).parameters(), lr=1.0)
    >>> schedule = portnn.optim.ExponentialLR(opt, gamma=0.5)
    >>> _ = schedule.step(); _ = schedule.step()
    >>> opt.lr
    0.25
    """

    def __init__(self, optimizer, gamma: float) -> None:
        self.gamma = float(gamma)
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        return self.base_lr * self.gamma**t


class CosineWithWarmup(LRScheduler):
    """A linear warm-up over `warmup_steps`, then a cosine decay from the
    base rate to `min_lr` at `total_steps` (held there afterwards).

    The warm-up climbs in equal steps of ``base_lr / (warmup_steps + 1)``,
    starting one step above 0 (at construction), so no step runs at rate 0.

    Examples
    --------
    >>> import portnn
    >>> opt = portnn.SGD(portnn.Dense(1, 1).parameters(), lr=1.0)
    >>> schedule = portnn.optim.CosineWithWarmup(opt, total_steps=4,
    ...                                          warmup_steps=2)
    >>> rates = [round(opt.lr, 3)]
    >>> for _ in range(4):
    ...     _ = schedule.step()
    ...     rates.append(round(opt.lr, 3))
    >>> rates
    [0.333, 0.667, 1.0, 0.5, 0.0]
    """

    def __init__(self, optimizer, total_steps: int, warmup_steps: int = 0,
                 min_lr: float = 0.0) -> None:
        if not 0 <= warmup_steps < total_steps:
            msg = (
                "CosineWithWarmup: need 0 <= warmup_steps < total_steps, got "
                f"warmup_steps={warmup_steps}, total_steps={total_steps}"
            )
            raise ValueError(msg)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.min_lr = float(min_lr)
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        if t < self.warmup_steps:
            return self.base_lr * (t + 1) / (self.warmup_steps + 1)
        span = self.total_steps - self.warmup_steps
        progress = min(1.0, (t - self.warmup_steps) / span)
        cos = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr + (self.base_lr - self.min_lr) * cos


class LinearWarmup(LRScheduler):
    """Ramp the rate linearly from ``start_factor * lr`` to ``lr`` over
    `warmup_steps` steps, then hold it (``torch.optim.lr_scheduler.LinearLR``
    with ``end_factor=1``).

    Examples
    --------
    >>> import portnn
    >>> opt = portnn.SGD(portnn.Dense(2, 1).parameters(), lr=1.0)
    >>> sched = portnn.optim.LinearWarmup(opt, warmup_steps=4, start_factor=0.2)
    >>> [round(sched.step(), 2) for _ in range(5)]
    [0.4, 0.6, 0.8, 1.0, 1.0]
    """

    def __init__(self, optimizer, warmup_steps: int, start_factor: float = 1.0 / 3,
                 interval: str = "batch") -> None:
        if warmup_steps < 1 or not 0.0 < start_factor <= 1.0:
            msg = (
                "LinearWarmup: need warmup_steps >= 1 and 0 < start_factor <= 1, "
                f"got {warmup_steps}, {start_factor}"
            )
            raise ValueError(msg)
        self.warmup_steps = int(warmup_steps)
        self.start_factor = float(start_factor)
        self.interval = _interval(interval)
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        progress = min(t, self.warmup_steps) / self.warmup_steps
        return self.base_lr * (self.start_factor + (1.0 - self.start_factor) * progress)


class OneCycle(LRScheduler):
    """The one-cycle policy (``torch.optim.lr_scheduler.OneCycleLR``, cosine
    annealing): from ``max_lr / div_factor`` up to `max_lr` over the first
    `pct_start` of `total_steps`, then down to ``max_lr / div_factor /
    final_div_factor``. Stepped every batch.

    Parameters
    ----------
    optimizer : Optimizer
    total_steps : int
        Batches in the whole run (epochs times batches per epoch).
    max_lr : float, optional
        The peak (default: the optimizer's rate).
    pct_start, div_factor, final_div_factor : float
        As in PyTorch.

    Raises
    ------
    ValueError
        When stepped more than `total_steps` times, as PyTorch does (the
        cosine would start over): make it for the whole run.

    Examples
    --------
    >>> import portnn
    >>> opt = portnn.SGD(portnn.Dense(1, 1).parameters(), lr=0.1)
    >>> schedule = portnn.optim.OneCycle(opt, total_steps=100, max_lr=1.0)
    >>> round(opt.lr, 3)
    0.04
    """

    interval = "batch"

    def __init__(self, optimizer, total_steps: int, max_lr: float | None = None,
                 pct_start: float = 0.3, div_factor: float = 25.0,
                 final_div_factor: float = 1e4) -> None:
        if total_steps < 2 or not 0.0 < pct_start < 1.0:
            msg = (f"OneCycle: need total_steps >= 2 and 0 < pct_start < 1, got "
                   f"{total_steps}, {pct_start}")
            raise ValueError(msg)
        self.total_steps = int(total_steps)
        self.max_lr = float(max_lr if max_lr is not None else optimizer.lr)
        self.pct_start = float(pct_start)
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)
        super().__init__(optimizer)

    def step(self) -> float:
        if self.t + 1 > self.total_steps:
            msg = (f"OneCycle was stepped {self.t + 1} times, past its "
                   f"total_steps={self.total_steps}; make it with total_steps = "
                   "epochs * batches per epoch of the whole run. A finished "
                   "schedule stays on its optimizer (optimizer.scheduler): to "
                   "train on, make a new schedule for the new run, or set "
                   "optimizer.scheduler = None to keep the last rate")
            raise ValueError(msg)
        return super().step()

    def lr_at(self, t: int) -> float:
        initial = self.max_lr / self.div_factor
        final = initial / self.final_div_factor
        peak = float(self.pct_start * self.total_steps) - 1.0
        phases = ((peak, initial, self.max_lr),
                  (self.total_steps - 1.0, self.max_lr, final))
        start = 0.0
        for i, (end, lo, hi) in enumerate(phases):
            if t <= end or i == len(phases) - 1:
                pct = (t - start) / (end - start)
                return hi + (lo - hi) / 2.0 * (math.cos(math.pi * pct) + 1.0)
            start = end
        return final  # pragma: no cover


class FunctionLR(LRScheduler):
    """The rate ``fn(t)`` for step `t` (Keras's ``LearningRateScheduler``;
    what ``fit(lr_schedule=fn)`` makes). Its code cannot be saved in a
    checkpoint: a resumed run passes `fn` again.

    Examples
    --------
    >>> import portnn
    >>> opt = portnn.SGD(portnn.Dense(2, 1).parameters(), lr=1.0)
    >>> sched = portnn.optim.FunctionLR(opt, lambda epoch: 0.1 / (1 + epoch))
    >>> opt.lr, sched.step()
    (0.1, 0.05)
    """

    serializable = False

    def __init__(self, optimizer, fn, interval: str = "epoch") -> None:
        if not callable(fn):
            msg = f"FunctionLR needs a function of the step, got {fn!r}"
            raise TypeError(msg)
        self.fn = fn
        self.interval = _interval(interval)
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        lr = float(self.fn(t))
        if not math.isfinite(lr) or lr < 0:
            msg = f"the learning-rate function gave {lr!r} at step {t}"
            raise ValueError(msg)
        return lr


def _interval(value: str) -> str:
    if value not in ("epoch", "batch"):
        msg = f"interval must be 'epoch' or 'batch', got {value!r}"
        raise ValueError(msg)
    return value
