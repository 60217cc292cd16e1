"""NumPy on the CPU: the default backend."""

from __future__ import annotations

from .base import Backend


def _scatter_add(target, indices, values):
    # numpy.add.at accumulates repeated indices, unlike target[idx] += v.
    import numpy

    numpy.add.at(target, indices, values)
    return target


def make_numpy_backend(device=None) -> Backend:
    """Build the NumPy backend (always usable once numpy is installed)."""
    import array_api_compat.numpy as xp
    import numpy

    if device not in (None, "cpu"):
        msg = f"the numpy backend runs on the CPU only, got device {device!r}"
        raise ValueError(msg)
    return Backend(
        "numpy",
        xp,
        device="cpu",
        to_numpy=numpy.asarray,
        array_types=(numpy.ndarray, numpy.generic),
        native={"scatter_add": _scatter_add},
        install_hint="pip install numpy",
    )
