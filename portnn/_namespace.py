"""Find the array-API namespace of an array, fast.

`array_api_compat.array_namespace` inspects its argument each call; layers
call this helper in every forward, so the answer is cached per array type.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

_by_type: dict[type, Any] = {}


#: True while a compiled step is traced (:mod:`portnn.training.compiled`):
#: its arrays are placeholders, and a value read on the host would be
#: baked into the program (or fail), so device-side choices are taken
tracing: ContextVar[bool] = ContextVar("portnn_tracing", default=False)


def is_traced(x: Any) -> bool:
    """Whether `x` is a placeholder of a compiled step (anything made while
    one is traced; a traced JAX array also has no device of its own). A
    layer must not memoize such an array beyond the step: it would leak
    into the next program."""
    return tracing.get() or getattr(x, "device", None) is None


def namespace(x: Any):
    """The array-API namespace of `x` (cached by ``type(x)``)."""
    t = type(x)
    xp = _by_type.get(t)
    if xp is None:
        from array_api_compat import array_namespace

        xp = array_namespace(x)
        _by_type[t] = xp
    return xp
