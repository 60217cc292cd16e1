"""One Adam step on one parameter, in place where arrays are mutable::

    m = b1 m + (1 - b1) g
    v = b2 v + (1 - b2) g**2
    p -= step * m / (sqrt(v) * inv_c2 + eps)

with ``step = lr / (1 - b1**t)`` and ``inv_c2 = (1 - b2**t) ** -0.5``
(:class:`portnn.Adam` computes both). The portable path keeps the
arithmetic of the textbook form in that order, with three temporaries
instead of eight. A backend may register a native ``adam_step`` (a callable
of the same arguments): the torch adapter's is PyTorch's own single-tensor
Adam arithmetic (``mul_``/``add_``, ``addcmul_``, ``addcdiv_``), seven passes
where the portable path makes thirteen. Every native path is tested against
this one.
"""

from __future__ import annotations

from .._namespace import namespace
from ._native import native as native_path


def adam_step(p, g, m, v, b1, b2, step, inv_c2, eps):
    """One Adam step; returns ``(p, m, v)`` (the arrays given, updated, on
    backends with mutable arrays).

    Parameters
    ----------
    p, g, m, v : array
        The parameter, its gradient and the two moment estimates.
    b1, b2, eps : float
        Adam's betas and epsilon.
    step, inv_c2 : float or 0-d array
        ``lr / (1 - b1**t)`` and ``(1 - b2**t) ** -0.5`` (device scalars
        after guarded steps on accelerators).

    Returns
    -------
    tuple of arrays
        ``(p, m, v)`` after the step.
    """
    native = native_path(p, "adam_step")
    fn = adam_step_portable if native is None else native
    return fn(p, g, m, v, b1, b2, step, inv_c2, eps)


def adam_step_portable(p, g, m, v, b1, b2, step, inv_c2, eps):
    """:func:`adam_step` in standard ops (immutable arrays rebind)."""
    xp = namespace(v)
    m *= b1
    m += (1.0 - b1) * g
    v *= b2
    v += (1.0 - b2) * (g * g)
    q = xp.sqrt(v)
    q *= inv_c2
    q += eps
    q = m / q
    q *= step
    p -= q
    return p, m, v
