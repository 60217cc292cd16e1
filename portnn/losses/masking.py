"""The loss of a masked output: padded steps out of the mean.

A model whose output carries a mask (``Embedding(mask_zero=True)`` and
the layers after it) is scored on its real steps only. Keras's rule: the
mask becomes temporal sample weights, scaled so that the mean runs over
the real steps (``sum(loss * mask) / sum(mask)``, not over every step).
"""

from __future__ import annotations

from .._namespace import namespace
from .base import _size
from .multi import MultiLoss


def masked_loss(loss, pred, target, sample_weight=None, mask=None):
    """``loss.forward(pred, target, sample_weight)`` leaving out the steps
    the output's `mask` marks as padding (True: a real step).

    Parameters
    ----------
    loss : Loss
    pred, target : array, or their structure for a MultiLoss
    sample_weight : array or list, optional
        ``(N,)`` or ``(N, T)`` (a list: one per output of a MultiLoss);
        multiplies into the mask's weights.
    mask : array or structure, optional
        ``(N, T)`` booleans (one per output, None where an output has
        none), as ``model.compute_mask`` gives after a forward pass.

    Returns
    -------
    array
        The 0-d loss.

    Notes
    -----
    A loss with ``ignore_index`` (:class:`CrossEntropy`) takes the mask as
    ignored targets instead, so its mean runs over the steps that are
    neither ignored nor padded (PyTorch's semantics), not normalized twice.
    """
    if mask is not None:
        if isinstance(loss, MultiLoss):
            masks = loss.structure.flatten(mask, "masks") if isinstance(
                mask, (list, dict)) else [mask]
            preds = loss.structure.flatten(pred, "predictions")
            targets = loss.structure.flatten(target, "y")
            shared = not isinstance(sample_weight, list)  # else one per output
            per_output = [sample_weight] * len(preds) if shared else sample_weight
            weights, new_targets = [], []
            for one, p, t, m, sw in zip(loss.losses, preds, targets, masks,
                                        per_output, strict=True):
                w, t = _fold(one, p, t, sw, m)
                weights.append(w)
                new_targets.append(t)
            target = loss.structure.rebuild(new_targets)
            sample_weight = weights if any(w is not None for w in weights) else None
        else:
            sample_weight, target = _fold(loss, pred, target, sample_weight, mask)
    if sample_weight is None:
        return loss.forward(pred, target)
    return loss.forward(pred, target, sample_weight=sample_weight)


def _fold(loss, pred, target, sample_weight, mask):
    """(weights, target) for one output: the mask folded into either."""
    if mask is None:
        return sample_weight, target
    xp = namespace(pred)
    if tuple(mask.shape) != tuple(pred.shape[:mask.ndim]):
        msg = (f"{type(loss).__name__}: the output's mask has shape "
               f"{tuple(mask.shape)}, which does not lead its shape "
               f"{tuple(pred.shape)}: a layer changed the time axis without "
               "using the mask up")
        raise ValueError(msg)
    ignore = getattr(loss, "ignore_index", None)
    if ignore is not None and xp.isdtype(target.dtype, "integral") and tuple(
            target.shape[:mask.ndim]) == tuple(mask.shape):
        return sample_weight, xp.where(
            xp.reshape(mask, tuple(mask.shape) + (1,) * (target.ndim - mask.ndim)),
            target, xp.asarray(ignore, dtype=target.dtype, device=target.device))
    w = xp.astype(mask, pred.dtype)
    if getattr(loss, "reduction", "mean") == "mean":
        # Keras's rule: the mean over the real steps, not every step (a
        # batch with none: weights 0, not 0/0)
        real = xp.sum(w)
        w = w * xp.where(real > 0, _size(w) / xp.where(real > 0, real, 1.0), 0.0)
    if sample_weight is not None:
        sw = xp.astype(sample_weight, pred.dtype)
        w = w * xp.reshape(sw, tuple(sw.shape) + (1,) * (w.ndim - sw.ndim))
    return w, target

