"""The `Optimizer` base: parameters, per-parameter state, a step counter."""

from __future__ import annotations

from typing import Any

from ..parameter import Parameter


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
    """

    def __init__(self, params, lr: float) -> None:
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
        if lr < 0:
            msg = f"{type(self).__name__}: learning rate must be >= 0, got {lr!r}"
            raise ValueError(msg)
        self.params = params
        self.lr = float(lr)
        self.state: list[dict[str, Any]] = [{} for _ in params]
        self.steps = 0

    def step(self) -> None:
        """Apply one update to every parameter that has a gradient."""
        self.steps += 1
        for p, state in zip(self.params, self.state, strict=True):
            if p.grad is not None:
                self.update(p, p.grad, state)

    def update(self, p: Parameter, g: Any, state: dict[str, Any]) -> None:
        """Update one parameter (implemented by each optimizer)."""
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Set every parameter's gradient to ``None``."""
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict[str, Any]:
        """Hyper-parameters, step count and per-parameter state arrays."""
        return {
            "lr": self.lr,
            "steps": self.steps,
            "state": [dict(s) for s in self.state],
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
        return {k: getattr(self, k) for k in names if hasattr(self, k)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr={self.lr})"


def zeros_like(x):
    from .._namespace import namespace

    return namespace(x).zeros_like(x)
