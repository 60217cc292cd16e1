"""Moving arrays between backends: DLPack first, a host copy otherwise."""

from __future__ import annotations

from typing import Any

from .backends import backend_of


def move(x: Any, target) -> Any:
    """`x` as an array of backend `target`.

    Zero-copy through DLPack where both libraries share the device (NumPy
    and PyTorch CPU tensors, for example); otherwise a copy through the
    host (a CuPy array onto a laptop's NumPy).
    """
    if target.owns(x):
        return x
    if isinstance(x, target.array_types):  # same library, another device
        return target.to_device(x)
    if hasattr(x, "__dlpack__"):
        try:
            out = target.xp.from_dlpack(x)
        except (TypeError, ValueError, BufferError, RuntimeError, AttributeError):
            pass  # another device, or a library that refuses foreign arrays
        else:
            return out if target.owns(out) else target.to_device(out)
    source = backend_of(x)
    host = source.to_numpy(x) if source is not None else x
    return target.asarray(host, copy=True)
