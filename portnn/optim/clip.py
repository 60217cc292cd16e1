"""Gradient clipping, without a device-to-host sync."""

from __future__ import annotations

from .._namespace import namespace


def clip_grad_norm(params, max_norm: float, eps: float = 1e-6):
    """Scale all gradients together so their global L2 norm is at most
    `max_norm` (as ``torch.nn.utils.clip_grad_norm_``).

    Returns
    -------
    array
        The total norm before clipping, a 0-d array.

    Examples
    --------
    >>> import portnn
    >>> layer = portnn.Dense(2, 2)
    >>> xp = portnn.get_backend().xp
    >>> layer.W.grad = xp.full((2, 2), 10.0, dtype=layer.W.dtype)
    >>> round(float(portnn.clip_grad_norm(layer.parameters(), 1.0)), 3)
    20.0
    """
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return None
    xp = namespace(grads[0].grad)
    total = xp.sqrt(sum(xp.sum(p.grad * p.grad) for p in grads))
    # NOTE: multiplying by min(1, ...) always, instead of testing the norm
    # on the host, keeps the GPU from waiting.
    coef = xp.clip(max_norm / (total + eps), None, 1.0)
    for p in grads:
        p.grad = p.grad * xp.astype(coef, p.grad.dtype)
    return total


def clip_grad_value(params, clip_value: float) -> None:
    """Clip every gradient element into ``[-clip_value, clip_value]``.

    Examples
    --------
    >>> import portnn
    >>> layer = portnn.Dense(2, 1)
    >>> layer.W.grad = portnn.asarray([[5.0, -0.5]])
    >>> portnn.clip_grad_value(layer.parameters(), 1.0)
    >>> layer.W.grad.tolist()
    [[1.0, -0.5]]
    """
    for p in params:
        if p.grad is not None:
            p.grad = namespace(p.grad).clip(p.grad, -clip_value, clip_value)
