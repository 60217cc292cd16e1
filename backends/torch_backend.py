"""PyTorch tensors (CPU or CUDA) through array-api-compat; no autograd is used."""

from __future__ import annotations

from .base import Backend, BackendUnavailableError, InvalidDeviceError, add_into_views
from .host_memory import keep_freed_memory
from .torch_adam import torch_adam_step
from .torch_axpy import torch_sub_scaled
from .torch_compile import compile_step
from .torch_conv import TorchConv2d
from .torch_gelu import TorchGelu
from .torch_lstm import TorchLstmGates, TorchLstmLayer
from .torch_pool import TorchMaxPool2d
from .torch_relu import TorchReLU


def _to_numpy(x):
    return x.detach().cpu().numpy()


def _scatter_add(target, indices, values):
    target.index_add_(0, indices, values)
    return target


def device_info(dev) -> dict:
    """Name, memory, compute capability and CUDA runtime of a CUDA device."""
    import torch

    if dev.type != "cuda":
        return {}
    props = torch.cuda.get_device_properties(dev)
    return {
        "name": props.name,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "compute_capability": f"{props.major}.{props.minor}",
        "cuda_runtime": torch.version.cuda,
        "torch": torch.__version__,
    }


def make_torch_backend(device=None) -> Backend:
    """Build the torch backend; `device` is ``"cpu"`` (default) or ``"cuda[:N]"``."""
    try:
        import array_api_compat.torch as xp
        import torch
    except ImportError as exc:
        msg = f"PyTorch is not installed ({exc})"
        raise BackendUnavailableError(msg) from exc
    try:
        dev = torch.device(device or "cpu")
    except RuntimeError as exc:
        msg = f"{device!r} is not a PyTorch device ({exc}); try 'cpu' or 'cuda:0'"
        raise InvalidDeviceError(msg) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        msg = "PyTorch is installed but no CUDA device is available to it"
        raise BackendUnavailableError(msg)
    try:  # a device type torch knows but cannot use here (mps on Linux)
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError) as exc:
        msg = f"PyTorch cannot use device {str(dev)!r} here: {exc}"
        raise BackendUnavailableError(msg) from None
    if dev.type == "cuda" and dev.index is None:
        # "cuda" and "cuda:0" must compare equal when arrays are checked
        dev = torch.device("cuda", torch.cuda.current_device())
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else None
    if dev.type == "cpu":
        keep_freed_memory()
    _conv2d = TorchConv2d()
    return Backend(
        "torch",
        xp,
        device=dev,
        to_numpy=_to_numpy,
        array_types=(torch.Tensor,),
        native={"scatter_add": _scatter_add, "add_into_views": add_into_views,
                "conv2d": _conv2d,
                "conv_transpose2d": _conv2d.transpose, "max_pool2d": TorchMaxPool2d(),
                "relu": TorchReLU(), "lstm_gates": TorchLstmGates(),
                "gelu": TorchGelu(), "sub_scaled": torch_sub_scaled,
                "adam_step": torch_adam_step, "lstm_layer": TorchLstmLayer(),
                "erf": torch.special.erf, "jit": compile_step},
        synchronize=sync,
        synchronous=dev.type == "cpu",
        device_info=lambda: device_info(dev),
        install_hint="pip install torch  (CPU only: pip install torch --index-url "
                     "https://download.pytorch.org/whl/cpu)",
    )
