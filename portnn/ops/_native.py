"""The one lookup every op makes: the native path a backend registered
under a name, for the backend of the arrays at hand."""

from __future__ import annotations

from .. import backends as _backends
from ..backends import backend_of

#: (array type, name) -> native path or None, for array types one backend
#: owns whole (the registry's memo); cleared when the registry changes.
#: The smallest networks make ten lookups a step: this keeps each one a
#: dictionary read.
_memo: dict = {}
_backends._cache.memos.append(_memo)
_MISSING = object()


def resolved(x, name: str, portable):
    """The native path `name` for `x`'s backend, else `portable`: what an
    op calls, memoized per array type like :func:`native`."""
    key = (type(x), name, "resolved")
    found = _memo.get(key)
    if found is not None:
        return found
    impl = native(x, name) or portable
    if (type(x), name) in _memo:  # the type alone decides: keep it
        _memo[key] = impl
    return impl


def native(x, name: str):
    """The callable or object registered as `name` by the backend owning
    `x`, or ``None`` (no backend owns `x`, or it registered none)."""
    key = (type(x), name)
    found = _memo.get(key, _MISSING)
    if found is not _MISSING:
        return found
    backend = backend_of(x)
    found = backend.native.get(name) if backend is not None else None
    if _backends._by_type.get(type(x)) is backend and backend is not None:
        _memo[key] = found  # the type alone decides the backend
    return found
