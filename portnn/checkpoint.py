"""Checkpoints: a model's weights, architecture, optimizer state and RNG
state in one safetensors file.

Tensors are named ``model.<state key>`` and ``optimizer.<i>.<key>``; the
architecture, the optimizer's hyper-parameters and the generator state are
JSON in the header's metadata. Layers are rebuilt only from classes in the
registry below (built-ins, plus what :func:`register_layer` adds), so
loading a file never runs code named by the file.
"""

from __future__ import annotations

import json
from typing import Any

from . import losses as losses_mod
from . import optim as optim_mod
from . import random as random_mod
from .backends import backend_of, get, get_backend
from .layers.base import Layer
from .safetensors import CheckpointError, read, write_atomic

__all__ = ["CheckpointError", "load", "read_tensors", "register_layer", "save"]

FORMAT = "portnn-checkpoint"
VERSION = 1
_LAYERS: dict[str, type] = {}


def register_layer(cls: type, name: str | None = None) -> type:
    """Allow checkpoints to rebuild layers of class `cls` (usable as a
    decorator). The class must implement ``get_config()``.

    Examples
    --------
    >>> import portnn
    >>> @portnn.checkpoint.register_layer
    ... class Twice(portnn.Identity):
    ...     def forward(self, x, training=False):
    ...         return 2 * x
    ...     def backward(self, dy):
    ...         return 2 * dy
    """
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        msg = f"register_layer takes a Layer subclass, got {cls!r}"
        raise TypeError(msg)
    _LAYERS[name or cls.__name__] = cls
    return cls


def _builtin_layers() -> dict[str, type]:
    if "Dense" not in _LAYERS:
        from . import layers

        for name in layers.__all__:
            cls = getattr(layers, name)
            if name != "Layer":
                _LAYERS.setdefault(name, cls)
    return _LAYERS


def layer_to_json(layer: Layer, _shared: dict | None = None) -> dict[str, Any]:
    """The architecture of `layer` (and its children) as plain JSON data.

    A layer that appears more than once (shared weights) is written in full
    at its first place, with an ``"id"``, and as ``{"same_as": id}`` after.
    """
    if _shared is None:
        _shared = {}
    if id(layer) in _shared:
        return {"same_as": _shared[id(layer)]}
    name = type(layer).__name__
    if _builtin_layers().get(name) is not type(layer):
        msg = (
            f"{name} is not registered for checkpoints: decorate the class with "
            "@portnn.checkpoint.register_layer (and implement get_config)"
        )
        raise TypeError(msg)
    out = {"class": name, "config": layer.get_config()}
    if layer._uses > 1:
        out["id"] = _shared[id(layer)] = len(_shared)
    children = layer.children()
    if children and not layer.owns_children:
        out["children"] = [layer_to_json(c, _shared) for c in children]
    return out


def layer_from_json(spec: dict[str, Any], backend, _shared: dict | None = None
                    ) -> Layer:
    """Rebuild a layer from :func:`layer_to_json` output, on `backend`."""
    if _shared is None:
        _shared = {}
    if isinstance(spec, dict) and "same_as" in spec:
        try:
            return _shared[spec["same_as"]]
        except (KeyError, TypeError):
            msg = f"checkpoint architecture refers to an unknown shared layer: {spec!r}"
            raise CheckpointError(msg) from None
    try:
        name, config = spec["class"], dict(spec.get("config", {}))
    except (TypeError, KeyError):
        msg = f"malformed layer entry in checkpoint architecture: {spec!r}"
        raise CheckpointError(msg) from None
    cls = _builtin_layers().get(name)
    if cls is None:
        msg = (
            f"the checkpoint needs layer class {name!r}, which is not registered; "
            "import the code that defines it and decorate it with "
            "@portnn.checkpoint.register_layer"
        )
        raise CheckpointError(msg)
    for key, value in config.items():
        if isinstance(value, dict) and "class" in value:
            config[key] = layer_from_json(value, backend, _shared)
    children = [layer_from_json(c, backend, _shared)
                for c in spec.get("children", [])]
    try:
        layer = cls(*children, **config) if children else cls(**config)
    except TypeError as exc:
        msg = f"cannot rebuild {name} from config {config!r}: {exc}"
        raise CheckpointError(msg) from None
    if "id" in spec:
        _shared[spec["id"]] = layer
    return layer


def _host(x):
    """A device array as a host (NumPy) array, for writing."""
    return (backend_of(x) or get_backend()).to_numpy(x)


def save(model: Layer, path, optimizer=None, metadata: dict | None = None) -> None:
    """Write `model` (and `optimizer`, and the global RNG state) to `path`.

    The write is atomic: a crash leaves the previous file intact.

    Parameters
    ----------
    model : Layer
        Built from registered layers (all built-ins are).
    path : str or os.PathLike
        Usually ending in ``.safetensors``.
    optimizer : Optimizer, optional
        Defaults to ``model.optimizer`` (set by ``fit``) when there is one.
    metadata : dict of str to str, optional
        Extra user metadata, stored under ``user.<key>``.
    """
    tensors = {f"model.{k}": _host(v) for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT,
        "portnn.version": str(VERSION),
        "portnn.architecture": json.dumps(layer_to_json(model)),
        "portnn.rng": json.dumps(random_mod.get_state()),
        "portnn.backend": model.backend.name,
    }
    loss = getattr(model, "loss", None)
    if isinstance(loss, losses_mod.Loss):
        meta["portnn.loss"] = json.dumps({"class": type(loss).__name__,
                                          "config": loss.get_config()})
    if optimizer is None:
        optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        params = {id(p): i for i, p in enumerate(model.parameters())}
        if [params.get(id(p)) for p in optimizer.params] != list(range(len(params))):
            msg = "the optimizer does not hold exactly this model's parameters"
            raise ValueError(msg)
        scalars = []
        for i, state in enumerate(optimizer.state_dict()["state"]):
            scalars.append({k: v for k, v in state.items() if not hasattr(v, "shape")})
            for k, v in state.items():
                if hasattr(v, "shape"):
                    tensors[f"optimizer.{i}.{k}"] = _host(v)
        meta["portnn.optimizer"] = json.dumps({
            "class": type(optimizer).__name__,
            "config": optimizer.get_config(),
            "steps": optimizer.steps,
            "scalars": scalars,
        })
    for k, v in (metadata or {}).items():
        meta[f"user.{k}"] = str(v)
    write_atomic(path, tensors, meta)


def read_tensors(path, backend=None) -> dict[str, Any]:
    """Every tensor of a safetensors file (portnn's or anybody's) as arrays
    of `backend` (default: the current one)."""
    backend = get(backend) if backend is not None else get_backend()
    tensors, _ = read(path)
    return {k: backend.asarray(v, copy=True) for k, v in tensors.items()}


def load(path, backend=None, restore_rng: bool = False):
    """Rebuild the model saved at `path`, with its optimizer if one was saved.

    Parameters
    ----------
    path : str or os.PathLike
    backend : str or Backend, optional
        Where to load it (default: the current backend); any backend can
        load a checkpoint saved on any other.
    restore_rng : bool, default False
        Also restore the global generator, so that dropout masks and
        shuffles continue exactly where the saved run stopped (resume).

    Returns
    -------
    Model
        With ``model.optimizer`` (and ``model.loss``) set when saved.

    Raises
    ------
    CheckpointError
        Truncated, corrupted or foreign files, and unknown layer classes.
    """
    backend = get(backend) if backend is not None else get_backend()
    tensors, meta = read(path)
    if meta.get("format") != FORMAT:
        msg = (
            f"{str(path)!r} is a safetensors file but not a portnn checkpoint (no "
            "portnn metadata); read its tensors with portnn.checkpoint.read_tensors"
        )
        raise CheckpointError(msg)
    try:
        arch = json.loads(meta["portnn.architecture"])
        rng_state = json.loads(meta["portnn.rng"])
        opt_spec = json.loads(meta["portnn.optimizer"]) if (
            "portnn.optimizer" in meta) else None
        loss_spec = json.loads(meta["portnn.loss"]) if "portnn.loss" in meta else None
    except (KeyError, json.JSONDecodeError) as exc:
        msg = f"{str(path)!r}: portnn metadata is missing or corrupted ({exc})"
        raise CheckpointError(msg) from None
    from .backends import use_backend

    saved_rng = random_mod.get_state()
    try:
        with use_backend(backend):
            model = layer_from_json(arch, backend)
    finally:
        random_mod.set_state(saved_rng)  # building drew initial weights
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{str(path)!r}: {exc}") from None
    if loss_spec is not None:
        cls = getattr(losses_mod, loss_spec.get("class", ""), None)
        if isinstance(cls, type) and issubclass(cls, losses_mod.Loss):
            model.loss = cls(**loss_spec.get("config", {}))
    if opt_spec is not None:
        model.optimizer = _load_optimizer(opt_spec, tensors, model, backend, path)
    if restore_rng:
        random_mod.set_state(rng_state)
    return model


def _load_optimizer(spec, tensors, model, backend, path):
    classes = {c.__name__: c for c in vars(optim_mod).values()
               if isinstance(c, type) and issubclass(c, optim_mod.Optimizer)}
    cls = classes.get(spec.get("class"))
    if cls is None or cls is optim_mod.Optimizer:
        msg = f"{str(path)!r}: unknown optimizer class {spec.get('class')!r}"
        raise CheckpointError(msg)
    config = dict(spec.get("config", {}))
    if "betas" in config:
        config["betas"] = tuple(config["betas"])
    opt = cls(model.parameters(), **config)
    opt.steps = int(spec.get("steps", 0))
    for i, state in enumerate(opt.state):
        state.update(spec["scalars"][i] if i < len(spec.get("scalars", [])) else {})
        prefix = f"optimizer.{i}."
        for k, v in tensors.items():
            if k.startswith(prefix):
                state[k[len(prefix):]] = backend.asarray(v, copy=True)
    return opt
