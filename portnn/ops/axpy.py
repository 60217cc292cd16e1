"""``p - alpha * g``, in place where arrays are mutable: the plain SGD
update.

The portable path makes two passes (``alpha * g``, then the subtraction);
a backend may register a native ``sub_scaled`` (a callable of the same three
arguments): the torch adapter's is ``Tensor.sub_(g, alpha=...)``, one pass
(the b16 MLP's six updates: 0.18 ms of a 2 ms step on one thread). Every
native path is tested against this one.
"""

from __future__ import annotations

from ._native import paths, resolved

_paths = paths("sub_scaled")


def sub_scaled(p, g, alpha):
    """``p - alpha * g``, written into `p` where it is mutable.

    Parameters
    ----------
    p, g : array
        The parameter and its gradient, of one shape.
    alpha : float
        The step size.

    Returns
    -------
    array
        `p` itself, updated, on backends with mutable arrays; a new array
        on those without (JAX).
    """
    impl = _paths.get(type(p))
    if impl is None:
        impl = resolved(p, "sub_scaled", sub_scaled_portable)
    return impl(p, g, alpha)


def sub_scaled_path(p):
    """The callable :func:`sub_scaled` runs for arrays like `p`: a loop
    over a model's parameters resolves it once."""
    return _paths.get(type(p)) or resolved(p, "sub_scaled", sub_scaled_portable)


def scalar_like(alpha, like):
    """`alpha` as a 0-d array of `like`'s dtype, on its device.

    NumPy converts a Python float operand on every operation: ``0.1 * g``
    takes twice as long as the same product with a 0-d array for a bias
    (250 ns more, a microsecond of the smallest network's step over its
    four parameters). An optimizer converts its rate once and reuses it.
    The product is the same bit for bit: a Python float meets an array in
    the array's dtype.
    """
    from .._namespace import namespace

    return namespace(like).asarray(alpha, dtype=like.dtype, device=like.device)


def sub_scaled_portable(p, g, alpha):
    """:func:`sub_scaled` in standard ops."""
    p -= alpha * g  # immutable arrays (JAX) rebind: same result
    return p
