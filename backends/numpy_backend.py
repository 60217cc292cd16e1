"""NumPy on the CPU: the default backend."""

from __future__ import annotations

from .base import Backend, InvalidDeviceError, add_into_views
from .host_memory import keep_freed_memory
from .numpy_threads import PoolAwareMatmul, ThreadedConv2d, ThreadedMaxPool2d


def _scatter_add(target, indices, values):
    # numpy.add.at accumulates repeated indices, unlike target[idx] += v.
    import numpy

    numpy.add.at(target, indices, values)
    return target


# safetensors dtype codes <-> little-endian NumPy dtypes
_CODES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
          "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


def _to_bytes(x):
    """``(dtype code, shape, little-endian C-order bytes)`` of a host array."""
    import numpy

    arr = numpy.asarray(x)
    for code, name in _CODES.items():
        dtype = numpy.dtype(name)
        if arr.dtype.newbyteorder("<") == dtype:
            return code, tuple(arr.shape), arr.astype(dtype, copy=False).tobytes()
    msg = f"dtype {arr.dtype} cannot be stored in safetensors"
    raise TypeError(msg)


def _from_bytes(data, code, shape):
    """A NumPy array from the raw bytes of one safetensors tensor: a view
    of a `bytearray` (which it then owns), a copy of anything else."""
    import numpy

    flat = numpy.frombuffer(data, dtype=numpy.dtype(_CODES[code]))
    out = flat.reshape(shape)
    return out if isinstance(data, bytearray) else out.copy()


def _quiet_overflow():
    # float16 overflow is expected under loss scaling: the scaler sees it
    import numpy

    return numpy.errstate(over="ignore", invalid="ignore")


def make_numpy_backend(device=None) -> Backend:
    """Build the NumPy backend (always usable once numpy is installed)."""
    import array_api_compat.numpy as xp
    import numpy

    if device not in (None, "cpu"):
        msg = f"the numpy backend runs on the CPU only, got device {device!r}"
        raise InvalidDeviceError(msg)
    keep_freed_memory()
    return Backend(
        "numpy",
        xp,
        device="cpu",
        to_numpy=numpy.asarray,
        array_types=(numpy.ndarray, numpy.generic),
        # to_bytes/from_bytes: the host format of checkpoints (safetensors)
        native={"scatter_add": _scatter_add, "add_into_views": add_into_views,
                "to_bytes": _to_bytes, "from_bytes": _from_bytes,
                "quiet_overflow": _quiet_overflow, "conv2d": ThreadedConv2d(),
                "max_pool2d": ThreadedMaxPool2d(),
                "matmul": PoolAwareMatmul().as_function(),
                # numpy.sum's own reduction, without its Python wrapper
                "sum": numpy.add.reduce},
        install_hint="pip install numpy",
        single_device=True,
        synchronous=True,
    )
