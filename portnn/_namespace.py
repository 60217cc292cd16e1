"""Find the array-API namespace of an array, fast.

`array_api_compat.array_namespace` inspects its argument each call; layers
call this helper in every forward, so the answer is cached per array type.
"""

from __future__ import annotations

from typing import Any

_by_type: dict[type, Any] = {}


def is_traced(x: Any) -> bool:
    """Whether `x` is a placeholder of a compiled step (a traced JAX array:
    it has no device of its own). A layer must not memoize such an array
    beyond the step: it would leak into the next program."""
    return getattr(x, "device", None) is None


def namespace(x: Any):
    """The array-API namespace of `x` (cached by ``type(x)``)."""
    t = type(x)
    xp = _by_type.get(t)
    if xp is None:
        from array_api_compat import array_namespace

        xp = array_namespace(x)
        _by_type[t] = xp
    return xp
