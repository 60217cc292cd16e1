"""The loss, optimizer and metrics a call uses: the ones given, the
model's (from `compile`, an earlier `fit` or a checkpoint), or new ones."""

from __future__ import annotations

from .. import losses as losses_mod
from .. import optim as optim_mod
from ..losses.multi import MultiLoss, multi_loss
from .metrics import Metric, get_metrics, output_metrics


def resolve_loss(model, loss, loss_weights=None):
    outputs = model.output_structure
    if outputs.single:
        if loss_weights is not None:
            msg = "loss_weights is for models with several outputs"
            raise ValueError(msg)
        if loss is not None:
            return losses_mod.get(loss)
    elif loss is not None and not isinstance(loss, MultiLoss):
        return multi_loss(loss, loss_weights, outputs, losses_mod.get)
    elif loss is None and loss_weights is not None and isinstance(
            model.loss, MultiLoss):
        return multi_loss(model.loss.losses, loss_weights, outputs,
                          losses_mod.get)
    elif loss is not None:
        return loss
    if model.loss is None:
        msg = "no loss: pass loss=... or call model.compile(loss=...) first"
        raise ValueError(msg)
    return model.loss


def resolve_optimizer(model, optimizer):
    if optimizer is None:
        return (model.optimizer if model.optimizer is not None
                else optim_mod.get("adam", model.parameters()))
    if isinstance(optimizer, str):
        kept = model.optimizer
        if (kept is not None and type(kept) is optim_mod.resolve(optimizer)
                and not untrained_by(model, kept)):
            return kept  # made once: its moments and step count go on
        # new, over today's trainable parameters (after an unfreeze too)
        return optim_mod.get(optimizer, model.parameters())
    if not isinstance(optimizer, optim_mod.Optimizer):
        return optim_mod.get(optimizer, model.parameters())
    mine = {id(p) for p in model.parameters()}
    foreign = [p for p in optimizer.params if id(p) not in mine]
    if foreign:
        msg = (
            f"the optimizer holds {len(foreign)} parameter(s) that are not "
            f"this model's ({foreign[0]!r}, ...): it would train another "
            "model. Build it from this model: "
            f"portnn.{type(optimizer).__name__}(model.parameters(), ...)"
        )
        raise ValueError(msg)
    return optimizer

def untrained_by(model, optimizer) -> list:
    """Trainable parameters `optimizer` does not update."""
    held = {id(p) for p in optimizer.params}
    return [p for p in model.parameters() if p.trainable and id(p) not in held]

def warn_untrained(model, optimizer) -> None:
    missed = untrained_by(model, optimizer)
    if missed:
        import warnings

        msg = (
            f"{len(missed)} trainable parameter(s) ({missed[0]!r}, ...) are not "
            f"in the optimizer's list, so fit leaves them as they are (a layer "
            "unfrozen after the optimizer was made?). Recompile "
            "(model.compile(optimizer='adam')) or pass an optimizer over "
            "model.parameters(); freeze them (trainable=False) if intended"
        )
        warnings.warn(msg, UserWarning, stacklevel=4)


def metrics_of(model, metrics, loss, compiled=True) -> list[Metric]:
    if compiled and metrics == "auto" and model.metrics is not None:
        return [m.fresh() for m in model.metrics]
    if isinstance(loss, MultiLoss):
        return output_metrics(metrics, loss)
    return get_metrics(metrics, loss)
