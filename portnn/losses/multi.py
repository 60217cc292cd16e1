"""`MultiLoss`: a model with several outputs trains on one number, the
weighted sum of one loss per output, and its gradient is each output's
loss gradient times its weight (the chain rule of a sum)."""

from __future__ import annotations

from ..data.structure import Structure
from .base import Loss
from .registry import loss_class


class MultiLoss(Loss):
    """``sum_i w_i * loss_i(pred_i, target_i)`` over a model's outputs.

    `fit` and `compile` make one from ``loss=`` (one loss for every output,
    a list in the outputs' order or a dict by output name) and
    ``loss_weights=``; predictions and targets are a list or a dict, as the
    model's outputs are.

    Parameters
    ----------
    losses : list of Loss
        One per output, in the outputs' order.
    weights : list of float
        One per output.
    structure : Structure
        How the outputs are arranged (a list, or a dict and its keys).

    Examples
    --------
    >>> import portnn
    >>> from portnn.data.structure import Structure
    >>> xp = portnn.get_backend().xp
    >>> loss = MultiLoss([portnn.MSE(), portnn.MAE()], [1.0, 0.5],
    ...                  Structure("list", 2))
    >>> pred = [xp.asarray([[1.0]]), xp.asarray([[2.0]])]
    >>> float(loss.forward(pred, [xp.asarray([[0.0]]), xp.asarray([[0.0]])]))
    2.0
    """

    _cache_attrs = ("values",)

    def __init__(self, losses, weights, structure=None, keys=None) -> None:
        super().__init__()
        if structure is None:  # rebuilt from a checkpoint's config
            structure = Structure(keys if keys is not None else "list", len(losses))
        losses = [_rebuild(lo) for lo in losses]
        if len(losses) != structure.n or len(weights) != structure.n:
            msg = (f"MultiLoss: {structure.n} outputs need {structure.n} losses and "
                   f"weights, got {len(losses)} and {len(weights)}")
            raise ValueError(msg)
        self.losses, self.weights = list(losses), [float(w) for w in weights]
        self.structure = structure

    @property
    def names(self) -> list[str]:
        return self.structure.names()

    def forward(self, pred, target, sample_weight=None):
        preds = self.structure.flatten(pred, "predictions")
        targets = self.structure.flatten(target, "y")
        total = None
        self.values = []  # each output's loss, for `<output>_loss`
        # one weight array for every output, or (masked outputs) one each
        per_output = (sample_weight if isinstance(sample_weight, list)
                      else [sample_weight] * len(self.losses))
        for loss, w, p, t, sw in zip(self.losses, self.weights, preds, targets,
                                     per_output, strict=True):
            value = (loss.forward(p, t) if sw is None
                     else loss.forward(p, t, sample_weight=sw))
            self.values.append(value)
            total = w * value if total is None else total + w * value
        return total

    def backward(self):
        return self.structure.rebuild([w * loss.backward() for loss, w
                                       in zip(self.losses, self.weights,
                                              strict=True)])

    def check_target(self, pred, target) -> None:
        """Each output's targets against its loss."""
        for loss, p, t in zip(self.losses, self.structure.flatten(pred, "predictions"),
                              self.structure.flatten(target, "y"), strict=True):
            loss.check_target(p, t)

    def get_config(self) -> dict:
        """Each output's loss (class and config), the weights and the
        outputs' keys: plain data a checkpoint stores."""
        return {"losses": [{"class": type(lo).__name__, "config": lo.get_config()}
                           for lo in self.losses],
                "weights": self.weights, "keys": self.structure.keys}

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}: {w:g} * {loss!r}" for n, w, loss
                          in zip(self.names, self.weights, self.losses, strict=True))
        return f"MultiLoss({parts})"


def _rebuild(entry):
    """A Loss, or one from its ``{"class", "config"}`` entry (a checkpoint)."""
    if isinstance(entry, Loss):
        return entry
    if not (isinstance(entry, dict) and isinstance(entry.get("class"), str)
            and isinstance(entry.get("config", {}), dict)):
        msg = f"MultiLoss: a loss entry must be a Loss or a saved one, got {entry!r}"
        raise TypeError(msg)
    cls = loss_class(entry["class"])
    if cls is None:
        msg = f"MultiLoss: unknown loss class {entry['class']!r}"
        raise TypeError(msg)
    return cls(**entry.get("config", {}))


def multi_loss(loss, loss_weights, structure: Structure, resolve) -> MultiLoss:
    """A MultiLoss from what ``fit``/``compile`` were given: one loss for
    every output, a list in order or a dict by output name; weights
    likewise (default 1). `resolve` turns a name into a Loss."""
    names, n = structure.names(), structure.n

    def per_output(value, what, default=None):
        if isinstance(value, dict):
            unknown = [k for k in value if k not in names]
            missing = [k for k in names if k not in value]
            if unknown or (missing and default is None):
                msg = (f"{what} is keyed by output name: the outputs are {names}; "
                       f"unknown {unknown}, missing {missing}")
                raise ValueError(msg)
            return [value.get(k, default) for k in names]
        if isinstance(value, (list, tuple)):
            if len(value) != n:
                msg = (f"{what} has {len(value)} entries for {n} outputs "
                       f"({names}); give one per output, or a dict by name")
                raise ValueError(msg)
            return list(value)
        if value is None and default is not None:
            return [default] * n
        return [value] * n

    losses = per_output(loss, "loss")
    losses = [resolve(v) if not isinstance(v, Loss) else v for v in losses]
    if loss is not None and not isinstance(loss, (list, tuple, dict)) and n > 1:
        # one loss for every output: a copy each (a loss caches its batch)
        import copy

        losses = [losses[0]] + [copy.copy(losses[0]) for _ in range(n - 1)]
    weights = per_output(loss_weights, "loss_weights", default=1.0)
    return MultiLoss(losses, weights, structure)
