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
#: op name -> {array type: the path the op calls}
_paths: dict[str, dict] = {}


def paths(name: str) -> dict:
    """Op `name`'s memo of resolved paths, keyed by array type alone (the
    smallest networks call matmul six times a step: a read keyed by the
    type, with no tuple to build, is a third of the wrapper's cost);
    cleared with the registry's other memos."""
    memo = _paths.get(name)
    if memo is None:
        memo = _paths[name] = {}
        _backends._cache.memos.append(memo)
    return memo



def resolved(x, name: str, portable):
    """The native path `name` for `x`'s backend, else `portable`: what an
    op calls, memoized per array type in :func:`paths` (where the type
    alone decides the backend, as in :func:`native`)."""
    memo = paths(name)
    found = memo.get(type(x))
    if found is not None:
        return found
    impl = native(x, name) or portable
    if (type(x), name) in _memo:  # the type alone decides: keep it
        memo[type(x)] = impl
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
