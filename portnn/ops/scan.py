"""A loop over time steps that a compiler can keep a loop.

A recurrent layer's forward and backward run one small step per time step.
Eagerly, the Python loop is the reference and costs nothing more than the
steps. Traced into one program (``compile(jit_compile=True)``), a Python
loop is unrolled: fifty copies of the step, which XLA compiles slowly and
runs slowly on a CPU. A backend whose compiler has a loop registers a
native ``scan`` (JAX: ``jax.lax.scan``), taken only while a step is traced:
the step function is traced once and runs as the compiler's loop. Both run
the same step functions, and a test compares the two.
"""

from __future__ import annotations

from .._namespace import tracing
from ._native import native


def native_scan(x):
    """The backend's scan for arrays like `x` while a step is traced, else
    None (run the Python loop).

    The scan is ``scan(step, carry, xs, reverse=False) -> (carry, ys)``:
    ``step(carry, x_t) -> (carry, y_t)`` over axis 0 of every array of the
    pytree `xs`, the ``y_t`` stacked on axis 0 (``jax.lax.scan``'s
    contract)."""
    if not tracing.get():
        return None
    return native(x, "scan")


def scan_portable(step, carry, xs, reverse=False):
    """:func:`native_scan`'s contract in a Python loop over standard ops
    (for tests: the layers' own loops are the eager path)."""
    from .._namespace import namespace

    leaves = [a for a in _leaves(xs) if a is not None]
    steps = int(leaves[0].shape[0])
    order = reversed(range(steps)) if reverse else range(steps)
    ys = [None] * steps
    for t in order:
        carry, ys[t] = step(carry, _index(xs, t))
    xp = namespace(leaves[0])
    return carry, _stack(xp, ys)


def _leaves(tree):
    if isinstance(tree, (tuple, list)):
        return [leaf for item in tree for leaf in _leaves(item)]
    return [tree]


def _index(tree, t):
    if tree is None:
        return None
    if isinstance(tree, (tuple, list)):
        return type(tree)(_index(item, t) for item in tree)
    return tree[t]


def _stack(xp, items):
    first = items[0]
    if first is None:
        return None
    if isinstance(first, (tuple, list)):
        return type(first)(_stack(xp, [item[i] for item in items])
                           for i in range(len(first)))
    return xp.stack(items, axis=0)
