"""PyTorch tensors (CPU or CUDA) through array-api-compat; no autograd is used."""

from __future__ import annotations

from .base import Backend, BackendUnavailableError, add_into_views


def _to_numpy(x):
    return x.detach().cpu().numpy()


def _scatter_add(target, indices, values):
    target.index_add_(0, indices, values)
    return target


def make_torch_backend(device=None) -> Backend:
    """Build the torch backend; `device` is ``"cpu"`` (default) or ``"cuda[:N]"``."""
    try:
        import array_api_compat.torch as xp
        import torch
    except ImportError as exc:
        msg = f"PyTorch is not installed ({exc})"
        raise BackendUnavailableError(msg) from exc
    dev = torch.device(device or "cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        msg = "PyTorch is installed but no CUDA device is available to it"
        raise BackendUnavailableError(msg)
    if dev.type == "cuda" and dev.index is None:
        # "cuda" and "cuda:0" must compare equal when arrays are checked
        dev = torch.device("cuda", torch.cuda.current_device())
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else None
    return Backend(
        "torch",
        xp,
        device=dev,
        to_numpy=_to_numpy,
        array_types=(torch.Tensor,),
        native={"scatter_add": _scatter_add, "add_into_views": add_into_views},
        synchronize=sync,
        synchronous=dev.type == "cpu",
        install_hint="pip install torch==2.13.0  (CPU build)",
    )
