"""The layer registry, and a layer's architecture as JSON data and back.

Checkpoints, the scikit-learn estimators' clones and layers that hold a
layer in their config (a Dense's activation) all go through here. A layer
is rebuilt only from a class in the registry (every built-in, plus what
:func:`register_layer` adds), never from code a file names.
"""

from __future__ import annotations

from typing import Any

from ..safetensors import CheckpointError
from .base import Layer

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


def register_builtins(classes) -> None:
    """Register the built-in layer classes (:mod:`portnn.layers` does, as
    it defines them; what :func:`register_layer` added first stays)."""
    for cls in classes:
        if cls is not Layer:
            _LAYERS.setdefault(cls.__name__, cls)


def builtin_layers() -> dict[str, type]:
    """Name -> class of every layer a file may name."""
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
    if builtin_layers().get(name) is not type(layer):
        msg = (
            f"{name} is not registered for checkpoints: decorate the class with "
            "@portnn.checkpoint.register_layer (and implement get_config)"
        )
        raise TypeError(msg)
    out = {"class": name, "config": layer.get_config()}
    if not layer.trainable:
        out["trainable"] = False
    frozen = [k for k, p in layer._params.items() if not p.trainable]
    if frozen and layer.trainable:
        out["frozen"] = frozen
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
    cls = builtin_layers().get(name)
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
    if spec.get("trainable") is False:
        layer.trainable = False
    for key in spec.get("frozen", []):
        if key in layer._params:
            layer._params[key].trainable = False
    if "id" in spec:
        _shared[spec["id"]] = layer
    return layer
