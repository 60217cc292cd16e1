"""Learning-rate schedules: call ``step()`` once per epoch (or per batch)."""

from __future__ import annotations

import math


class LRScheduler:
    """Base class: sets ``optimizer.lr = lr_at(t)`` on each ``step()``.

    The learning rate in force at construction is the base rate; ``t``
    counts calls to ``step()``, starting at 0. The schedule registers
    itself as ``optimizer.scheduler``, so checkpoints save it with the
    optimizer and :func:`portnn.load` brings it back where it stopped.
    """

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
        self.optimizer.lr = self.lr_at(self.t)
        return self.optimizer.lr

    def state_dict(self) -> dict:
        """Step count and base rate."""
        return {"t": self.t, "base_lr": self.base_lr}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (and the rate it implies)."""
        t, base_lr = int(state["t"]), float(state["base_lr"])
        if t < 0 or not math.isfinite(base_lr) or base_lr < 0:
            msg = f"{type(self).__name__}: invalid state {state!r}"
            raise ValueError(msg)
        self.t, self.base_lr = t, base_lr
        self.optimizer.lr = self.lr_at(self.t)


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
    """Multiply the rate by `gamma` every step."""

    def __init__(self, optimizer, gamma: float) -> None:
        self.gamma = float(gamma)
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        return self.base_lr * self.gamma**t


class CosineWithWarmup(LRScheduler):
    """Linear warm-up from 0 over `warmup_steps`, then a cosine decay from the
    base rate to `min_lr` at `total_steps` (held there afterwards)."""

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
