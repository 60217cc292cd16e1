"""array-api-strict: the reference namespace that rejects anything non-standard.

Every test runs on it, so code that strays outside the array API fails here
before it fails on somebody's GPU.
"""

from __future__ import annotations

from .base import Backend, BackendUnavailableError, InvalidDeviceError


def _to_numpy(x):
    import array_api_strict as xp
    import numpy

    # an explicit copy to the host first, as CuPy's .get() is on a GPU
    return numpy.from_dlpack(x.to_device(xp.asarray(0).device))


def make_array_api_strict_backend(device=None) -> Backend:
    """Build the array-api-strict backend (CPU, standard-only)."""
    try:
        import array_api_strict as xp
    except ImportError as exc:
        msg = f"array-api-strict is not installed ({exc})"
        raise BackendUnavailableError(msg) from exc
    try:
        dev = xp.asarray(0).device if device is None else xp.Device(device)
    except ValueError as exc:
        names = [d.__repr__() for d in xp.__array_namespace_info__().devices()]
        msg = f"{exc} array-api-strict's devices are {names}"
        raise InvalidDeviceError(msg) from None
    return Backend(
        "array_api_strict",
        xp,
        device=dev,
        to_numpy=_to_numpy,
        array_types=(type(xp.asarray(0)),),
        install_hint="pip install array-api-strict",
    )
