"""CuPy on an NVIDIA GPU.

Importing cupy works without a GPU; creating an array does not. The factory
asks the CUDA runtime for a device only when the backend is requested, and
turns CUDA's own message into a `BackendUnavailableError`.
"""

from __future__ import annotations

from .base import Backend, BackendUnavailableError, add_into_views

INSTALL_HINT = "pip install 'portnn[cuda12]'  (or 'portnn[cuda13]' for CUDA 13)"


def _scatter_add(target, indices, values):
    import cupyx

    cupyx.scatter_add(target, indices, values)
    return target


def _to_numpy(x):
    return x.get()


def make_cupy_backend(device=None) -> Backend:
    """Build the CuPy backend on CUDA device `device` (default 0)."""
    try:
        import array_api_compat.cupy as xp
        import cupy
    except ImportError as exc:
        msg = f"CuPy is not installed ({exc}); {INSTALL_HINT}"
        raise BackendUnavailableError(msg) from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError, or a missing driver library
        msg = (
            f"CuPy is installed but CUDA reports no usable device: {exc}. "
            "The cupy backend needs an NVIDIA GPU with a driver that matches "
            "the installed cupy-cudaXXx package"
        )
        raise BackendUnavailableError(msg) from exc
    index = 0 if device is None else int(str(device).removeprefix("cuda:"))
    if not 0 <= index < count:
        msg = f"CUDA device {index} requested, but CuPy sees {count} device(s)"
        raise BackendUnavailableError(msg)
    dev = cupy.cuda.Device(index)
    return Backend(
        "cupy",
        xp,
        device=dev,
        to_numpy=_to_numpy,
        array_types=(cupy.ndarray,),
        native={"scatter_add": _scatter_add, "add_into_views": add_into_views},
        synchronize=dev.synchronize,
        install_hint=INSTALL_HINT,
    )
