"""The one lookup every op makes: the native path a backend registered
under a name, for the backend of the arrays at hand."""

from __future__ import annotations

from ..backends import backend_of


def native(x, name: str):
    """The callable or object registered as `name` by the backend owning
    `x`, or ``None`` (no backend owns `x`, or it registered none)."""
    backend = backend_of(x)
    return backend.native.get(name) if backend is not None else None
