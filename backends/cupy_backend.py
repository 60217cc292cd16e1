"""CuPy on an NVIDIA GPU.

Importing cupy works without a GPU; creating an array does not. The factory
asks the CUDA runtime for a device only when the backend is requested, and
turns CUDA's own message into a `BackendUnavailableError`.
"""

from __future__ import annotations

from .base import Backend, BackendUnavailableError, InvalidDeviceError, add_into_views

INSTALL_HINT = ("pip install cupy-cuda12x  (cupy-cuda13x for CUDA 13; from a "
                "checkout: pip install -e '.[cuda12]')")


def _scatter_add(target, indices, values):
    import cupyx

    cupyx.scatter_add(target, indices, values)
    return target


def _to_numpy(x):
    return x.get()


def _version(code: int) -> str:
    """CUDA's integer version (12040) as text ("12.4")."""
    return f"{code // 1000}.{code % 1000 // 10}"


def device_info(index: int) -> dict:
    """Name, memory, compute capability and CUDA versions of device `index`."""
    import cupy

    rt = cupy.cuda.runtime
    props = rt.getDeviceProperties(index)
    name = props["name"]
    return {
        "name": name.decode() if isinstance(name, bytes) else str(name),
        "memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
        "compute_capability": f"{props['major']}.{props['minor']}",
        "cuda_runtime": _version(rt.runtimeGetVersion()),
        "cuda_driver": _version(rt.driverGetVersion()),
        "cupy": cupy.__version__,
    }


def make_cupy_backend(device=None) -> Backend:
    """Build the CuPy backend on CUDA device `device` (default 0)."""
    try:
        import array_api_compat.cupy as xp
        import cupy
    except ImportError as exc:
        if getattr(exc, "name", None) == "cupy":
            msg = f"CuPy is not installed; {INSTALL_HINT}"
        else:  # cupy is there, but it or a library it needs fails to import
            msg = (
                f"CuPy is installed but cannot be imported ({exc}); reinstall it "
                "with its dependencies: pip install --force-reinstall cupy-cuda12x"
            )
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
    try:
        index = 0 if device is None else int(str(device).removeprefix("cuda:"))
    except ValueError:
        msg = f"{device!r} is not a CUDA device; use a number such as cupy:0"
        raise InvalidDeviceError(msg) from None
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
        device_info=lambda: device_info(index),
    )
