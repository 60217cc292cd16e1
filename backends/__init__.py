"""The backend registry: which array library portnn computes with.

Built-in backends are ``numpy`` (the default), ``cupy``, ``torch``, ``jax``
and ``array_api_strict``. Third-party packages add one through the entry-point
group ``portnn.backends`` (the entry point names a factory) or at run time
with :func:`register`. A name may carry a device: ``"torch:cuda"``,
``"cupy:1"``.

Nothing here imports an array library, or asks for a GPU, until a backend is
actually requested.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from .base import (
    Backend,
    BackendMismatchError,
    BackendUnavailableError,
    InvalidDeviceError,
)

__all__ = [
    "Backend",
    "BackendMismatchError",
    "BackendStatus",
    "BackendUnavailableError",
    "InvalidDeviceError",
    "available",
    "backend_of",
    "check_same_backend",
    "get",
    "get_backend",
    "names",
    "register",
    "set_backend",
    "status",
    "use_backend",
]

ENTRY_POINT_GROUP = "portnn.backends"
DEFAULT_BACKEND = "numpy"

# name -> (factory(device) -> Backend, install hint)
_factories: dict[str, tuple[Callable[..., Backend], str]] = {}
class _Versioned(dict):
    """A dict that counts its changes (what `backend_of` memoizes on)."""

    version = 0
    #: memos of lookups by array type, cleared on every change
    memos: list = []

    def _changed(self):
        self.version += 1
        for memo in self.memos:
            memo.clear()

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self._changed()

    def __delitem__(self, key):
        super().__delitem__(key)
        self._changed()

    def pop(self, *args):
        self._changed()
        return super().pop(*args)

    def popitem(self):
        self._changed()
        return super().popitem()

    def clear(self):
        self._changed()
        super().clear()

    def update(self, *args, **kwargs):
        self._changed()
        super().update(*args, **kwargs)

    def setdefault(self, key, default=None):
        self._changed()
        return super().setdefault(key, default)


_cache: _Versioned = _Versioned()  # (name, device) -> Backend
_failures: dict[tuple[str, str | None], str] = {}
_entry_points_loaded = False
_current: ContextVar[Backend | None] = ContextVar("portnn_backend", default=None)


def register(
    name: str, factory: Callable[..., Backend], *, install_hint: str = ""
) -> None:
    """Register a backend factory under `name`.

    Parameters
    ----------
    name : str
        The name users pass to :func:`portnn.set_backend`.
    factory : callable
        ``factory(device=None) -> Backend``; raises
        :class:`BackendUnavailableError` (with the reason) when it cannot run.
    install_hint : str, optional
        What to install when the backend is missing.

    Examples
    --------
    >>> from portnn import backends
    >>> from portnn.backends.numpy_backend import make_numpy_backend
    >>> backends.register("my_numpy", make_numpy_backend)
    >>> "my_numpy" in backends.names()
    True
    """
    if ":" in name:
        msg = f"backend names may not contain ':' (it separates the device): {name!r}"
        raise ValueError(msg)
    _factories[name] = (factory, install_hint)
    for key in [k for k in (*_cache, *_failures) if k[0] == name]:
        _cache.pop(key, None)
        _failures.pop(key, None)


def _builtin(module: str, func: str) -> Callable[..., Backend]:
    def factory(device=None):
        import importlib

        mod = importlib.import_module(f"{__name__}.{module}")
        return getattr(mod, func)(device)

    return factory


register("numpy", _builtin("numpy_backend", "make_numpy_backend"),
         install_hint="pip install numpy")
register("array_api_strict",
         _builtin("array_api_strict_backend", "make_array_api_strict_backend"),
         install_hint="pip install array-api-strict")
register("torch", _builtin("torch_backend", "make_torch_backend"),
         install_hint="pip install torch  (CPU only: pip install torch "
                      "--index-url https://download.pytorch.org/whl/cpu)")
register("cupy", _builtin("cupy_backend", "make_cupy_backend"),
         install_hint="pip install cupy-cuda12x  (or cupy-cuda13x for CUDA 13)")
register("jax", _builtin("jax_backend", "make_jax_backend"),
         install_hint="pip install jax")


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _factories:
            _factories[ep.name] = (_lazy_entry_point(ep), "")


def _lazy_entry_point(ep) -> Callable[..., Backend]:
    def factory(device=None):
        return ep.load()(device)

    factory.origin = f"entry point {ep.name!r} ({getattr(ep, 'value', '?')})"
    return factory


def names() -> list[str]:
    """Return every registered backend name, usable or not.

    Examples
    --------
    >>> from portnn import backends
    >>> "numpy" in backends.names() and "cupy" in backends.names()
    True
    """
    _load_entry_points()
    return list(_factories)


def _split(spec: str) -> tuple[str, str | None]:
    name, _, device = spec.partition(":")
    return name, (device or None)


def get(spec: str | Backend) -> Backend:
    """Return the backend called `spec` (``"numpy"``, ``"torch:cuda"``).

    Raises
    ------
    ValueError
        If no backend of that name is registered (the message lists them).
    BackendUnavailableError
        If it is registered but cannot run here (the message says why and
        what to install).

    Examples
    --------
    >>> from portnn import backends
    >>> backends.get("numpy").name
    'numpy'
    """
    if isinstance(spec, Backend):
        return spec
    if not isinstance(spec, str):
        msg = (
            f"a backend is a name such as 'numpy' or 'torch:cuda', or a Backend; "
            f"got {spec!r} ({type(spec).__name__})"
        )
        raise TypeError(msg)
    key = _split(spec)
    if key in _cache:
        return _cache[key]
    name, device = key
    known = names()
    if name not in known:
        msg = f"unknown backend {name!r}; registered backends are {sorted(known)}"
        raise ValueError(msg)
    if key in _failures:
        raise BackendUnavailableError(_failures[key])
    factory, hint = _factories[name]
    origin = getattr(factory, "origin", None)
    try:
        backend = factory(device)
    except BackendUnavailableError as exc:
        reason = f"backend {spec!r} is not usable here: {exc}"
        if (hint and isinstance(exc.__cause__, ImportError)
                and "pip install" not in reason):  # the adapter's own hint wins
            reason += f". To use it: {hint}"
        _failures[key] = reason
        raise BackendUnavailableError(reason) from exc
    except InvalidDeviceError as exc:
        msg = f"backend {spec!r}: {exc}"
        raise ValueError(msg) from None
    except (Exception, SystemExit) as exc:  # a broken plugin must not take us down
        where = origin or f"the factory registered as {name!r}"
        reason = (
            f"backend {spec!r} is not usable here: {where} raised "
            f"{type(exc).__name__}: {exc}"
        )
        _failures[key] = reason
        raise BackendUnavailableError(reason) from exc
    if not isinstance(backend, Backend):
        where = origin or f"the factory registered as {name!r}"
        reason = (
            f"backend {spec!r} is not usable here: {where} returned a "
            f"{type(backend).__name__}, not a portnn.backends.Backend"
        )
        _failures[key] = reason
        raise BackendUnavailableError(reason)
    backend.spec = spec
    _cache[key] = backend
    return backend


@dataclass(frozen=True)
class BackendStatus:
    """Whether one registered backend can run here, and if not, why.

    Examples
    --------
    >>> from portnn import backends
    >>> numpy = [s for s in backends.status() if s.name == "numpy"][0]
    >>> numpy.usable, numpy.reason
    (True, 'ok')
    """

    name: str
    usable: bool
    reason: str
    device: str = ""


def status() -> list[BackendStatus]:
    """Report every registered backend: usable or not, and the reason.

    Examples
    --------
    >>> from portnn import backends
    >>> [s.usable for s in backends.status() if s.name == "numpy"]
    [True]
    """
    report = []
    for name in names():
        try:
            b = get(name)
        except BackendUnavailableError as exc:
            report.append(BackendStatus(name, False, str(exc)))
        except (Exception, SystemExit) as exc:  # a broken plugin must not hide others
            report.append(BackendStatus(name, False, f"{type(exc).__name__}: {exc}"))
        else:
            report.append(BackendStatus(name, True, "ok", str(b.device)))
    return report


def available() -> list[str]:
    """Names of the backends usable on this machine.

    Examples
    --------
    >>> from portnn import backends
    >>> "numpy" in backends.available()
    True
    """
    return [s.name for s in status() if s.usable]


def _default() -> Backend:
    spec = os.environ.get("PORTNN_BACKEND")
    if spec is None:
        return get(DEFAULT_BACKEND)
    try:
        return get(spec)
    except (ValueError, TypeError, BackendUnavailableError) as exc:
        msg = (
            f"the environment variable PORTNN_BACKEND={spec!r} names no usable "
            f"backend: {exc}. Unset it or set it to one of {available()}"
        )
        raise type(exc)(msg) from None


def get_backend() -> Backend:
    """The backend in effect: set by `use_backend`/`set_backend`, else
    ``$PORTNN_BACKEND``, else NumPy.

    Examples
    --------
    >>> import portnn
    >>> portnn.get_backend().name
    'numpy'
    >>> with portnn.use_backend("array_api_strict"):
    ...     portnn.get_backend().name
    'array_api_strict'
    """
    backend = _current.get()
    return backend if backend is not None else _default()


def set_backend(spec: str | Backend) -> Backend:
    """Make `spec` the backend for the current context and return it.

    Examples
    --------
    >>> import portnn
    >>> portnn.set_backend("numpy").name
    'numpy'
    """
    backend = get(spec)
    _current.set(backend)
    return backend


@contextlib.contextmanager
def use_backend(spec: str | Backend) -> Iterator[Backend]:
    """Use `spec` inside a ``with`` block; the previous one returns on exit,
    also when the block raises.

    Examples
    --------
    >>> import portnn
    >>> with portnn.use_backend("numpy") as b:
    ...     b.name
    'numpy'
    """
    token = _current.set(get(spec))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


_MODULE_TO_BACKEND = {
    "numpy": "numpy",
    "cupy": "cupy",
    "torch": "torch",
    "array_api_strict": "array_api_strict",
    "jax": "jax",
    "jaxlib": "jax",
}


#: array type -> the one cached backend owning every array of that type
#: (single-device, and no other cached backend takes the type); cleared
#: whenever the cache changes. Every op asks, so it must cost a dict lookup.
_by_type: dict[type, Backend] = {}
_cache.memos.append(_by_type)


def backend_of(x: Any) -> Backend | None:
    """The backend whose arrays `x` belongs to, or ``None`` for Python scalars
    and unknown types.

    Examples
    --------
    >>> import portnn
    >>> from portnn import backends
    >>> backends.backend_of(portnn.asarray([1.0])).name
    'numpy'
    >>> backends.backend_of(1.0) is None
    True
    """
    kind = type(x)
    known = _by_type.get(kind)
    if known is not None:
        return known
    for backend in list(_cache.values()):
        if backend.owns(x):
            if backend.single_device and not any(
                    other is not backend and issubclass(kind, other.array_types)
                    for other in _cache.values()):
                _by_type[kind] = backend
            return backend
    root = type(x).__module__.partition(".")[0]
    name = _MODULE_TO_BACKEND.get(root)
    if name is None:
        return None
    try:
        backend = get(name)
    except (BackendUnavailableError, ValueError):
        return None
    return backend if backend.owns(x) else None


def _describe(x: Any) -> str:
    b = backend_of(x)
    kind = f"{type(x).__module__}.{type(x).__name__}"
    return f"{b.name} ({kind})" if b else kind


def _same_backend(a: Any, b: Any) -> bool:
    ba = backend_of(a)
    return ba is not None and ba is backend_of(b)


def check_same_backend(*arrays: Any, where: str = "") -> None:
    """Raise `BackendMismatchError` if the arrays come from different libraries.

    Parameters
    ----------
    *arrays
        Arrays (``None`` entries are ignored).
    where : str, optional
        The layer or call being checked, named in the message.

    Examples
    --------
    >>> import portnn
    >>> from portnn import backends
    >>> backends.check_same_backend(portnn.asarray([1.0]), None)  # fine
    """
    first = None
    for a in arrays:
        if a is None:
            continue
        if first is None:
            first = a
        elif type(a) is not type(first) and not _same_backend(first, a):
            prefix = f"{where}: " if where else ""
            msg = (
                f"{prefix}arrays from two backends were mixed: {_describe(first)} "
                f"and {_describe(a)}. Move them to one backend first, for example "
                "with portnn.get_backend().asarray(x) or model.to(...)."
            )
            raise BackendMismatchError(msg)
