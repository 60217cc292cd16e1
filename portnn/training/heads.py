"""The loss against the model's last activation: a softmax head under a
logits loss trains a double softmax, and the reverse learns nothing."""

from __future__ import annotations

from .. import losses as losses_mod
from ..losses.multi import MultiLoss


def check_head(model, loss) -> None:
    """Refuse a loss that does not match the model's last activation: a
    softmax head under a logits loss trains a double softmax."""
    if isinstance(loss, MultiLoss):
        return  # a graph's heads: not a chain to walk
    head = _output_activation(model)
    name = type(head).__name__ if head is not None else None
    fix = None
    if isinstance(loss, losses_mod.CrossEntropy):
        if loss.from_logits and name == "Softmax":
            fix = ("CrossEntropy() expects logits, but the model ends in a "
                   "softmax: that trains a double softmax. Remove the final "
                   "softmax (CrossEntropy fuses it, the stable way) or use "
                   "CrossEntropy(from_logits=False) / "
                   "loss='categorical_crossentropy'")
        elif not loss.from_logits and head is None and _ends_linear(model):
            fix = ("CrossEntropy(from_logits=False) expects probabilities, but "
                   "the model ends in a linear layer (logits). Use "
                   "CrossEntropy() (from logits) or end the model in a softmax")
    elif isinstance(loss, losses_mod.BCEWithLogits) and name == "Sigmoid":
        fix = ("BCEWithLogits expects logits, but the model ends in a sigmoid. "
               "Remove the final sigmoid or use BCE() on probabilities")
    if fix:
        raise ValueError(fix)


def _last_layer(model):
    layer = model
    while True:
        children = getattr(layer, "layers", None)
        if not children:
            return layer
        layer = children[-1]


def _output_activation(model):
    """The activation a Sequential ends in (a layer, or a Dense/Conv's
    ``activation=``), or None."""
    from ..layers.activations import Activation

    last = _last_layer(model)
    act = getattr(last, "activation", None)
    if isinstance(act, Activation):
        return act
    return last if type(last).__name__ in ("Softmax", "Sigmoid") else None


def _ends_linear(model) -> bool:
    last = _last_layer(model)
    return type(last).__name__ in ("Dense", "Conv1D", "Conv2D") and (
        last.activation is None)
