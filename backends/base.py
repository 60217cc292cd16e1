"""The `Backend` object: one array library, one device, and its fast paths."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class BackendUnavailableError(RuntimeError):
    """A backend was asked for but cannot run on this machine.

    Examples
    --------
    >>> from portnn import backends
    >>> unusable = [s.name for s in backends.status() if not s.usable]
    >>> for name in unusable[:1]:
    ...     try:
    ...         backends.get(name)
    ...     except backends.BackendUnavailableError:
    ...         pass
    """


class BackendMismatchError(TypeError):
    """Arrays from two different backends met in one call.

    Examples
    --------
    >>> import portnn
    >>> from portnn import backends
    >>> a = backends.get("numpy").xp.asarray([1.0])
    >>> b = backends.get("array_api_strict").xp.asarray([1.0])
    >>> try:
    ...     backends.check_same_backend(a, b)
    ... except backends.BackendMismatchError:
    ...     print("refused")
    refused
    """


class InvalidDeviceError(ValueError):
    """A backend was asked for a device that its library does not know
    (``"torch:garbage"``); raised by adapters, reported by the registry.

    Examples
    --------
    >>> from portnn import backends
    >>> issubclass(backends.InvalidDeviceError, ValueError)
    True
    """


class Backend:
    """An array library seen through the Python array API.

    Parameters
    ----------
    name : str
        Registry name, for example ``"numpy"``.
    xp : namespace
        An array-API-compatible namespace (``array_api_compat.numpy``, ...).
    device : object, optional
        The device new arrays are created on; ``None`` means the library's
        default.
    to_numpy : callable
        Copies an array of this backend to a host NumPy array.
    array_types : tuple of type
        The array classes this backend produces, used to detect mixed calls.
    inplace : bool
        Whether arrays may be updated in place (``a -= b``, ``a[...] = b``).
        Optimizers rebind ``Parameter.value`` where this is false.
    native : dict, optional
        Native fast paths for operations the standard lacks, keyed by the
        name of the portable operation in ``portnn.ops``.
    synchronize : callable, optional
        Blocks until queued device work is done (a no-op on CPU).
    install_hint : str
        What to install to make this backend usable.
    single_device : bool
        True for libraries with one device (NumPy): arrays of the type are
        then ours without a device check.
    device_info : callable, optional
        Returns a dict describing the device (``name``, ``memory_gib``,
        ``compute_capability``, ``cuda_runtime``, ...) for ``portnn info``.
    synchronous : bool
        True where arrays live in host memory and every operation has
        finished when it returns (NumPy, PyTorch on the CPU): reading a
        value to Python then waits for nothing, so code may branch on it.
        False (the default) for accelerators and lazy libraries, where the
        core keeps decisions on the device instead.

    Examples
    --------
    >>> import portnn
    >>> b = portnn.get_backend()
    >>> x = b.asarray([[1.0, 2.0]])
    >>> b.to_numpy(x).tolist()
    [[1.0, 2.0]]
    """

    def __init__(
        self,
        name: str,
        xp: Any,
        *,
        to_numpy: Callable[[Any], Any],
        array_types: tuple[type, ...],
        device: Any = None,
        inplace: bool = True,
        native: dict[str, Callable[..., Any]] | None = None,
        synchronize: Callable[[], None] | None = None,
        install_hint: str = "",
        single_device: bool = False,
        synchronous: bool = False,
        device_info: Callable[[], dict] | None = None,
    ) -> None:
        self.name = name
        self.spec = name  # the registry sets "name:device" when one was asked for
        self.xp = xp
        self.device = device
        self.array_types = array_types
        self.inplace = inplace
        self.native = dict(native or {})
        self.install_hint = install_hint
        self.single_device = single_device
        self.synchronous = synchronous
        self._to_numpy = to_numpy
        self._synchronize = synchronize
        self._device_info = device_info

    def asarray(self, x: Any, dtype: Any = None, copy: bool | None = None) -> Any:
        """Turn `x` (a list, a NumPy array, a DLPack producer) into an array here.

        Parameters
        ----------
        x : array_like
            Data to convert.
        dtype : dtype or str, optional
            A dtype of this backend's namespace, or its name (``"float32"``).
        copy : bool, optional
            As in the array API's ``asarray``.

        Returns
        -------
        array
            An array of this backend on ``self.device``: an array of this
            library on another device is moved here (a device-to-device or
            host-to-device copy, never silently left where it was).
        """
        if isinstance(dtype, str):
            dtype = self.dtype(dtype)
        xp = self.xp
        if isinstance(x, self.array_types):
            moved = not self.owns(x)
            if moved:
                x = self.to_device(x)
            if dtype is not None and x.dtype != dtype:
                return xp.astype(x, dtype)
            return xp.asarray(x, copy=True) if copy and not moved else x
        if hasattr(x, "__dlpack__") and copy is not True:
            try:  # zero-copy where the producer shares our device
                out = xp.from_dlpack(x)
            except (TypeError, ValueError, BufferError, RuntimeError, AttributeError):
                out = None
            if out is not None:
                if not self.owns(out):  # e.g. a host array for a GPU backend
                    out = self.to_device(out)
                if dtype is not None and out.dtype != dtype:
                    out = xp.astype(out, dtype)
                return out
        try:
            return xp.asarray(x, dtype=dtype, device=self.device, copy=copy)
        except (TypeError, ValueError, BufferError, RuntimeError):
            # Host fallback for producers the library cannot read directly.
            import numpy

            host = numpy.asarray(x)
            return xp.asarray(host, dtype=dtype, device=self.device, copy=copy)

    def to_device(self, x: Any) -> Any:
        """Copy an array of this library to this backend's device."""
        from array_api_compat import to_device

        return to_device(x, self.device)

    def to_numpy(self, x: Any) -> Any:
        """Copy an array of this backend to a NumPy array on the host."""
        return self._to_numpy(x)

    def synchronize(self) -> None:
        """Wait for queued device work, so that a clock read after it is honest."""
        if self._synchronize is not None:
            self._synchronize()

    def device_info(self) -> dict:
        """What the adapter knows of the device: for a GPU its name, memory,
        compute capability and CUDA runtime version; empty on a CPU."""
        return dict(self._device_info()) if self._device_info is not None else {}

    def dtype(self, name: str) -> Any:
        """Return this namespace's dtype called `name` (``"float32"``, ``"int64"``)."""
        try:
            return getattr(self.xp, name)
        except AttributeError:
            msg = f"backend {self.name!r} has no dtype {name!r}"
            raise TypeError(msg) from None

    def owns(self, x: Any) -> bool:
        """Whether `x` is an array of this backend: its library and its device."""
        if not isinstance(x, self.array_types):
            return False
        if self.single_device or self.device is None:
            return True
        from array_api_compat import device

        where = device(x)
        # None: a traced array inside a compiled step (placed with the
        # computation, jax-ml/jax#26000)
        return where is None or where == self.device

    def __reduce__(self):
        # Pickled by registry name (namespaces are modules, which do not pickle).
        from . import get

        return (get, (self.spec,))

    def __repr__(self) -> str:
        device = "" if self.device is None else f", device={self.device!r}"
        return f"Backend({self.name!r}{device})"


def add_into_views(out, keys, pieces):
    """Native ``add_into_views`` of libraries whose basic slices are
    writable views (NumPy, CuPy, PyTorch): ``out[key] += piece`` in place,
    with no temporary the size of the slice."""
    for key, piece in zip(keys, pieces, strict=True):
        view = out[key]
        view += piece
    return out
