"""Checkpoints: a model's weights, architecture, optimizer state and RNG
state in one safetensors file.

Tensors are named ``model.<state key>`` and ``optimizer.<i>.<key>``; the
architecture, the optimizer's hyper-parameters and the generator state are
JSON in the header's metadata. Layers and losses are rebuilt only from
classes in their registries (:mod:`portnn.layers.registry` and
:mod:`portnn.losses.registry`: built-ins, plus what :func:`register_layer`
and :func:`register_loss` add), so loading a file never runs code named by
the file. This module only reads and writes files.
"""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

from . import init as init_mod
from . import losses as losses_mod
from . import optim as optim_mod
from . import random as random_mod
from .backends import backend_of, get, get_backend, use_backend
from .layers.base import Layer
from .layers.registry import layer_from_json, layer_to_json, register_layer
from .losses.registry import loss_class, register_loss
from .safetensors import CheckpointError, SafetensorsFile, read, write_atomic
from .training.model import Model

__all__ = ["CheckpointError", "load", "read_tensors", "register_layer",
           "register_loss", "save"]

FORMAT = "portnn-checkpoint"
VERSION = 1
def _host(x):
    """A device array as a host (NumPy) array, for writing."""
    return (backend_of(x) or get_backend()).to_numpy(x)


def save(model: Layer, path, optimizer=None, metadata: dict | None = None) -> None:
    """Write `model` (and `optimizer`, its learning-rate schedule, and the
    RNG state) to `path`.

    The write is atomic: a crash leaves the previous file intact. A new file
    gets the mode an ordinary write would give it (the umask applies); an
    existing one keeps its mode; a symbolic link is written through to its
    target.

    Parameters
    ----------
    model : Layer
        Built from registered layers (all built-ins are).
    path : str or os.PathLike
        Usually ending in ``.safetensors``.
    optimizer : Optimizer, optional
        Defaults to ``model.optimizer`` (set by ``fit``) when there is one;
        it may hold all of the model's parameters or some of them.
    metadata : dict of str to str, optional
        Extra user metadata (default: ``model.metadata``, if any), stored
        under ``user.<key>``; :func:`load` gives it back as
        ``model.metadata``.

    Examples
    --------
    >>> import os, tempfile
    >>> import portnn
    >>> model = portnn.Sequential(portnn.Dense(3, 2))
    >>> _ = model.compile(optimizer="adam", loss="mse")
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> portnn.checkpoint.save(model, path, optimizer=model.optimizer,
    ...                        metadata={"epoch": 3})
    >>> type(portnn.load(path).optimizer).__name__
    'Adam'
    """
    state = model.state_dict()
    if any(isinstance(v, init_mod.Unallocated) for v in state.values()):
        msg = ("the model is not built: its lazy layers have no weights yet; call "
               "model.build(input_shape) or run it on data before saving")
        raise ValueError(msg)
    tensors = {f"model.{k}": _host(v) for k, v in state.items()}
    meta = {
        "format": FORMAT,
        "portnn.version": str(VERSION),
        "portnn.architecture": json.dumps(layer_to_json(model)),
        "portnn.rng": json.dumps(random_mod.get_state()),
        "portnn.backend": model.backend.name,
    }
    loss = getattr(model, "loss", None)
    if isinstance(loss, losses_mod.Loss):
        entry = _loss_entry(loss)
        if entry is not None:
            meta["portnn.loss"] = entry
    if optimizer is None:
        optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        positions = {id(p): i for i, p in enumerate(model.parameters())}
        indices = [positions.get(id(p)) for p in optimizer.params]
        if None in indices:
            msg = "the optimizer holds parameters that are not this model's"
            raise ValueError(msg)
        state = optimizer.state_dict()
        scalars = []
        for i, entry in enumerate(state["state"]):
            scalars.append({k: v for k, v in entry.items() if not hasattr(v, "shape")})
            for k, v in entry.items():
                if hasattr(v, "shape"):
                    tensors[f"optimizer.{i}.{k}"] = _host(v)
        meta["portnn.optimizer"] = json.dumps({
            "class": type(optimizer).__name__,
            "config": optimizer.get_config(),
            "steps": state["steps"],
            "scalars": scalars,
            "params": indices,
        })
        scheduler = getattr(optimizer, "scheduler", None)
        if scheduler is not None and scheduler.serializable:
            meta["portnn.scheduler"] = json.dumps({
                "class": type(scheduler).__name__,
                "config": scheduler.get_config(),
                "state": scheduler.state_dict(),
            })
    scaler = getattr(model, "loss_scaler", None)
    if scaler is not None:  # mixed_float16 training state
        meta["portnn.loss_scale"] = json.dumps(scaler.state_dict())
    if metadata is None:
        metadata = getattr(model, "metadata", None)
    for k, v in (metadata or {}).items():
        meta[f"user.{k}"] = str(v)
    write_atomic(path, tensors, meta)


def read_tensors(path, backend=None) -> dict[str, Any]:
    """Every tensor of a safetensors file (portnn's or anybody's) as arrays
    of `backend` (default: the current one).

    Examples
    --------
    >>> import os, tempfile
    >>> import portnn
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> portnn.Sequential(portnn.Dense(3, 2)).save(path)
    >>> {name: tuple(t.shape) for name, t in
    ...  portnn.checkpoint.read_tensors(path).items()}
    {'model.0.W': (3, 2), 'model.0.b': (2,)}
    """
    backend = get(backend) if backend is not None else get_backend()
    tensors, _ = read(path)
    return {k: backend.asarray(v) for k, v in tensors.items()}


def load(path, backend=None, restore_rng: bool = False):
    """Rebuild the model saved at `path`, with its optimizer if one was saved.

    Everything in the file is checked before anything is allocated: the
    header, the metadata, and every stored shape against the architecture
    (built with placeholder weights, no random draws). The tensors are then
    read one at a time straight into their places, so a load needs little
    more memory than the tensors themselves.

    Parameters
    ----------
    path : str or os.PathLike
    backend : str or Backend, optional
        Where to load it (default: the current backend); any backend can
        load a checkpoint saved on any other.
    restore_rng : bool, default False
        Also restore the generator of the current context, so that dropout
        masks and shuffles continue exactly where the saved run stopped
        (resume).

    Returns
    -------
    Model
        With ``model.optimizer`` (and its learning-rate ``scheduler``),
        ``model.loss`` and ``model.metadata`` (the user metadata given to
        ``save``) set when saved.

    Raises
    ------
    CheckpointError
        For anything wrong with the file (truncated, corrupted, foreign,
        hostile, or naming an unregistered layer); the message names the
        file.
    OSError
        If the file cannot be read.

    Examples
    --------
    >>> import os, tempfile
    >>> import portnn
    >>> model = portnn.Sequential(portnn.Dense(3, 2), portnn.ReLU())
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> model.save(path)
    >>> again = portnn.load(path)
    >>> x = [[1.0, 2.0, 3.0]]
    >>> bool((again.predict(x) == model.predict(x)).all())
    True
    """
    backend = get(backend) if backend is not None else get_backend()
    with SafetensorsFile(path) as f:
        where = repr(f.path)
        if f.metadata.get("format") != FORMAT:
            msg = (
                f"{where} is a safetensors file but not a portnn checkpoint (no "
                "portnn metadata); read its tensors with "
                "portnn.checkpoint.read_tensors"
            )
            raise CheckpointError(msg)
        meta = f.metadata
        arch = _json(meta, "portnn.architecture", where, required=True)
        rng_state = _rng_state(_json(meta, "portnn.rng", where, required=True), where)
        opt_spec = _json(meta, "portnn.optimizer", where)
        loss_spec = meta.get("portnn.loss")  # parsed where it may fail alone
        sched_spec = _json(meta, "portnn.scheduler", where)
        scaler = _loss_scaler(_json(meta, "portnn.loss_scale", where), backend, where)
        with use_backend(backend), init_mod.deferred():
            model = _build(arch, backend, where)
        entries = _model_entries(model, f, where)
        loss = _build_loss(loss_spec, where)
        optimizer, pending = (_build_optimizer(opt_spec, f, model, where)
                              if opt_spec is not None else (None, []))
        if optimizer is not None and sched_spec is not None:
            _build_scheduler(sched_spec, optimizer, where)
        # Everything checked: now read the tensors, one at a time.
        for name, (owner, key, dtype) in entries.items():
            value = backend.asarray(f.read(f"model.{name}"), dtype=dtype)
            if key is None:
                owner.value = value
            else:
                owner._buffers[key] = value
        for index, key, stored in pending:
            dtype = optimizer.params[index].value.dtype
            optimizer.state[index][key] = backend.asarray(f.read(stored), dtype=dtype)
        if optimizer is not None:
            model.optimizer = optimizer
        if loss is not None:
            model.loss = loss
        if scaler is not None:
            model.loss_scaler = scaler
        model.metadata = {k[len("user."):]: v for k, v in meta.items()
                          if k.startswith("user.")}
    if restore_rng:
        random_mod.set_state(rng_state)
    return model


# -- validation of what a file says ------------------------------------------------

_MAX_DEPTH = 100  # nesting of layers in an architecture


def _json(meta, key, where, required=False):
    if key not in meta:
        if required:
            msg = f"{where}: portnn metadata {key!r} is missing"
            raise CheckpointError(msg)
        return None
    try:
        return json.loads(meta[key])
    except (ValueError, RecursionError) as exc:
        msg = f"{where}: portnn metadata {key!r} is corrupted ({type(exc).__name__}: "
        msg += f"{str(exc)[:200]})"
        raise CheckpointError(msg) from None


def _loss_scaler(spec, backend, where):
    """The float16 loss scaler a checkpoint holds, checked, or None."""
    if spec is None:
        return None
    from .training.precision import LossScaler

    ok = (isinstance(spec, dict) and set(spec) == {"scale", "growth_tracker"}
          and isinstance(spec["scale"], (int, float))
          and not isinstance(spec["scale"], bool)
          and _is_count(spec["growth_tracker"]) and spec["growth_tracker"] < 2**31)
    scaler = LossScaler(backend)
    try:
        if not ok:
            raise ValueError
        scaler.load_state_dict(spec)
    except (ValueError, OverflowError):
        msg = f"{where}: malformed loss-scale state {str(spec)[:200]}"
        raise CheckpointError(msg) from None
    return scaler


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _rng_state(state, where):
    if not (isinstance(state, dict) and set(state) == {"seed", "counter"}
            and _is_count(state["seed"]) and state["seed"] < 2**64
            and _is_count(state["counter"])
            and state["counter"] < random_mod.MAX_COUNTER):
        msg = (f"{where}: the RNG state must be {{'seed': int in [0, 2**64), "
               f"'counter': int in [0, 2**62)}}, got {str(state)[:200]}")
        raise CheckpointError(msg)
    return state


def _build(arch, backend, where):
    try:
        _check_layer_spec(arch, where, 0)
        return layer_from_json(arch, backend)
    except CheckpointError as exc:
        if str(exc).startswith(where):
            raise
        raise CheckpointError(f"{where}: {exc}") from None
    except (TypeError, ValueError, KeyError, IndexError, OverflowError,
            RecursionError, AttributeError) as exc:
        msg = (f"{where}: the architecture cannot be built ({type(exc).__name__}: "
               f"{str(exc)[:300]})")
        raise CheckpointError(msg) from None


def _check_layer_spec(spec, where, depth):
    if depth > _MAX_DEPTH:
        msg = f"{where}: the architecture nests layers more than {_MAX_DEPTH} deep"
        raise CheckpointError(msg)
    if isinstance(spec, dict) and set(spec) == {"same_as"}:
        if not _is_count(spec["same_as"]):
            msg = f"{where}: malformed shared-layer reference {str(spec)[:200]}"
            raise CheckpointError(msg)
        return
    if not (isinstance(spec, dict) and isinstance(spec.get("class"), str)
            and set(spec) <= {"class", "config", "children", "id", "trainable",
                              "frozen"}
            and isinstance(spec.get("trainable", True), bool)
            and isinstance(spec.get("frozen", []), list)
            and isinstance(spec.get("config", {}), dict)
            and isinstance(spec.get("children", []), list)
            and _is_count(spec.get("id", 0))):
        msg = f"{where}: malformed layer entry in the architecture: {str(spec)[:200]}"
        raise CheckpointError(msg)
    for value in spec.get("config", {}).values():
        if isinstance(value, dict) and "class" in value:
            _check_layer_spec(value, where, depth + 1)
    for child in spec.get("children", []):
        _check_layer_spec(child, where, depth + 1)


def _model_entries(model, f, where):
    """Stored tensors against the built model: names and shapes, before any
    tensor is read. Returns name -> (owner, buffer key or None, dtype)."""
    entries = {}
    for name, owner, key in model._named_state():
        ref = owner.value if key is None else owner._buffers[key]
        entries[name] = (owner, key, ref.dtype)
        stored = f"model.{name}"
        if stored not in f.entries:
            msg = f"{where}: tensor {stored!r} of the architecture is missing"
            raise CheckpointError(msg)
        if f.shape(stored) != tuple(ref.shape):
            msg = (
                f"{where}: tensor {stored!r} has shape {f.shape(stored)}, but the "
                f"architecture needs {tuple(ref.shape)}"
            )
            raise CheckpointError(msg)
    extra = sorted(k for k in f.entries if k.startswith("model.")
                   and k[len("model."):] not in entries)
    foreign = sorted(k for k in f.entries
                     if not k.startswith(("model.", "optimizer.")))
    if extra or foreign:
        unknown = (extra + foreign)[:5]
        msg = f"{where}: tensors the architecture does not have: {unknown}"
        raise CheckpointError(msg)
    return entries


def _concrete(module, base, name):
    classes = {c.__name__: c for c in vars(module).values()
               if isinstance(c, type) and issubclass(c, base) and c is not base}
    return classes.get(name) if isinstance(name, str) else None


def _spec(spec, where, what):
    if not (isinstance(spec, dict) and isinstance(spec.get("class"), str)
            and isinstance(spec.get("config", {}), dict)):
        msg = f"{where}: malformed {what} entry {str(spec)[:200]}"
        raise CheckpointError(msg)
    return spec["class"], dict(spec.get("config", {}))


def _construct(cls, args, config, where, what):
    try:
        return cls(*args, **config)
    except (TypeError, ValueError, OverflowError) as exc:
        msg = f"{where}: cannot rebuild the {what} {cls.__name__}({config}): {exc}"
        raise CheckpointError(msg) from None


def _loss_entry(loss):
    """The loss as checkpoint metadata, or None (with a warning) when its
    configuration is not JSON data: the weights are saved all the same."""
    name = type(loss).__name__
    try:
        config = {k: _host(v).tolist() if hasattr(v, "shape") else v
                  for k, v in loss.get_config().items()}  # class weights
        return json.dumps({"class": name, "config": config}, allow_nan=False)
    except (TypeError, ValueError) as exc:
        warnings.warn(
            f"the loss {name} is not saved in the checkpoint (its get_config() "
            f"is not JSON data: {exc}); the model and optimizer are. Give the "
            "loss again after loading (model.compile(loss=...)), or implement "
            "get_config() with plain numbers and strings",
            UserWarning, stacklevel=3)
        return None


def _build_loss(spec, where):
    """The saved loss, or None with a warning when it cannot be rebuilt: a
    loss never costs the user the weights."""
    if spec is None:
        return None
    try:
        spec = _json({"portnn.loss": spec}, "portnn.loss", where)
        name, config = _spec(spec, where, "loss")
        cls = loss_class(name)
        if cls is None:
            msg = (f"{name!r} is not a portnn loss; register its class with "
                   "portnn.checkpoint.register_loss before loading")
            raise CheckpointError(msg)
        return _construct(cls, (), config, where, "loss")
    except CheckpointError as exc:
        why = str(exc).removeprefix(f"{where}: ")
        warnings.warn(
            f"{where}: the model and optimizer are loaded, but not the loss: "
            f"{why}. Give the loss again (model.compile(loss=...) or "
            "fit(loss=...))", UserWarning, stacklevel=3)
        return None


def _build_optimizer(spec, f, model, where):
    name, config = _spec(spec, where, "optimizer")
    cls = _concrete(optim_mod, optim_mod.Optimizer, name)
    if cls is None:
        msg = f"{where}: unknown optimizer class {name!r}"
        raise CheckpointError(msg)
    params = model.parameters()
    indices = spec.get("params", list(range(len(params))))
    steps, scalars = spec.get("steps", 0), spec.get("scalars", [])
    if not (isinstance(indices, list) and indices
            and all(_is_count(i) and i < len(params) for i in indices)
            and len(set(indices)) == len(indices)):
        msg = f"{where}: the optimizer's parameter list is malformed"
        raise CheckpointError(msg)
    if not (_is_count(steps) and isinstance(scalars, list)
            and len(scalars) <= len(indices)
            and all(isinstance(d, dict) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool)
                and math.isfinite(v) for v in d.values()) for d in scalars)):
        msg = f"{where}: the optimizer's steps or scalar state are malformed"
        raise CheckpointError(msg)
    lr = config.get("lr")
    if not (isinstance(lr, (int, float)) and not isinstance(lr, bool)
            and math.isfinite(lr) and lr >= 0):
        msg = f"{where}: the optimizer's learning rate must be a finite number >= 0, "
        msg += f"got {lr!r}"
        raise CheckpointError(msg)
    if "betas" in config and isinstance(config["betas"], list):
        config["betas"] = tuple(config["betas"])
    mine = [params[i] for i in indices]
    opt = _construct(cls, (mine,), config, where, "optimizer")
    opt.steps = steps
    for i, state in enumerate(opt.state):
        state.update(scalars[i] if i < len(scalars) else {})
    pending = []  # (parameter index, state key, stored name), read later
    for stored in f.entries:
        if not stored.startswith("optimizer."):
            continue
        _, index, key = (stored.split(".", 2) + ["", ""])[:3]
        if not (index.isdigit() and int(index) < len(mine) and key):
            msg = f"{where}: tensor {stored!r} names no parameter of the optimizer"
            raise CheckpointError(msg)
        shape = tuple(mine[int(index)].shape)
        if f.shape(stored) != shape:
            msg = (f"{where}: optimizer state {stored!r} has shape "
                   f"{f.shape(stored)}, its parameter {shape}")
            raise CheckpointError(msg)
        pending.append((int(index), key, stored))
    return opt, pending


def _build_scheduler(spec, optimizer, where):
    name, config = _spec(spec, where, "learning-rate schedule")
    cls = _concrete(optim_mod, optim_mod.LRScheduler, name)
    if cls is None:
        msg = f"{where}: unknown learning-rate schedule {name!r}"
        raise CheckpointError(msg)
    lr = optimizer.lr
    sched = _construct(cls, (optimizer,), config, where, "learning-rate schedule")
    state = spec.get("state")
    try:
        sched.load_state_dict(state)
    except (TypeError, ValueError, KeyError, OverflowError):
        optimizer.lr = lr
        msg = f"{where}: malformed learning-rate schedule state {str(state)[:200]}"
        raise CheckpointError(msg) from None
    return sched


Model._write_checkpoint = staticmethod(save)  # model.save(path)
