"""Symbolic tensors: what calling a layer on ``portnn.Input`` records.

``x = portnn.Input((784,))`` is a placeholder with a shape; calling a layer
on placeholders records a node (the layer, its inputs) and returns the
output's placeholder, its shape found by running the layer on zeros.
:class:`portnn.layers.graph.Functional` turns the recorded nodes into a
model. This module knows layers, not models, so every layer can call it.
"""

from __future__ import annotations

from . import base as _base
from .base import Layer, any_mask, no_grad, refuse_mask


class SymbolicTensor:
    """A placeholder for an array in a graph: its shape (``None`` for the
    batch and any size only known at run time) and dtype, and where it
    comes from. Made by :func:`Input` and by calling layers on such
    tensors.

    Examples
    --------
    >>> import portnn
    >>> x = portnn.Input((8,))
    >>> h = portnn.Dense(8, 4)(x)
    >>> h.shape, h.dtype
    ((None, 4), 'float32')
    """

    def __init__(self, shape, dtype: str, source, name: str | None = None,
                 masked: bool = False) -> None:
        self.shape = tuple(shape)
        self.dtype = dtype
        self.source = source  # ("input", InputSpec) or ("node", _Node)
        self.name = name
        #: whether the array will carry a mask (padded steps of a sequence)
        self.masked = masked

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        name = f", name={self.name!r}" if self.name else ""
        return f"SymbolicTensor(shape={self.shape}, dtype={self.dtype}{name})"


# a layer call tests its input against these before asking is_symbolic
_base._maybe_symbolic = (list, tuple, SymbolicTensor)


class _Node:
    """One call of a layer on symbolic tensors."""

    def __init__(self, layer: Layer, inputs: list, is_list: bool, kwargs: dict):
        self.layer, self.inputs, self.is_list = layer, inputs, is_list
        self.kwargs = kwargs
        self.output: SymbolicTensor | None = None


def Input(shape, dtype: str | None = None, name: str | None = None) -> SymbolicTensor:  # noqa: N802 - Keras's spelling
    """A symbolic input of a graph model: the shape of one sample.

    Parameters
    ----------
    shape : tuple of int or None
        One sample's shape (``(784,)``, ``(None, 16)`` for sequences of any
        length); the batch axis is implied.
    dtype : str, optional
        ``"int64"`` for token ids; default the default float dtype.
    name : str, optional
        The input's name (dict inputs are keyed by it).

    Examples
    --------
    >>> import portnn
    >>> x = portnn.Input((4,))
    >>> h = portnn.Dense(4, 8)(x)
    >>> model = portnn.Model(inputs=x, outputs=portnn.Dense(8, 2)(h))
    >>> model(portnn.get_backend().xp.ones((3, 4))).shape
    (3, 2)
    """
    from ..config import get_default_dtype

    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    if not all(s is None or (isinstance(s, int) and not isinstance(s, bool)
                             and s > 0) for s in shape):
        msg = f"Input: shape must hold positive ints or None, got {shape!r}"
        raise ValueError(msg)
    return SymbolicTensor((None, *shape), dtype or get_default_dtype(),
                          ("input", None), name)


def call_symbolic(layer: Layer, x, kwargs: dict) -> SymbolicTensor:
    """Record `layer` called on symbolic `x` (one tensor or a list) and
    return its output's symbolic tensor (shape found by running the layer
    on zeros: twice, with other sizes where the input has None)."""
    is_list = isinstance(x, (list, tuple))
    inputs = list(x) if is_list else [x]
    for t in inputs:
        if not isinstance(t, SymbolicTensor):
            msg = (f"{type(layer).__name__} got a {type(t).__name__} among symbolic "
                   "tensors: in a graph every input is a portnn.Input or the "
                   "output of a layer called on one")
            raise TypeError(msg)
    for key, value in kwargs.items():
        if not (value is None or isinstance(value, (bool, int, float, str))):
            msg = (f"{type(layer).__name__}: keyword {key}={type(value).__name__} "
                   "cannot be part of a graph (only plain values are recorded)")
            raise TypeError(msg)
    if any(t.masked for t in inputs) and not (layer.uses_mask
                                              or layer.supports_masking):
        refuse_mask(layer)  # at the call that builds the graph, not in fit
    node = _Node(layer, inputs, is_list, dict(kwargs))
    shape, dtype, masked = output_shape(layer, inputs, is_list, kwargs)
    node.output = SymbolicTensor(shape, dtype, ("node", node), masked=masked)
    layer._uses += 1
    return node.output


def output_shape(layer, inputs, is_list, kwargs):
    """Run `layer` on zeros of the inputs' shapes (batch 1, unknown sizes
    2, then 3): the sizes that change with them are unknown in the output.
    Masked inputs get all-True masks, to learn whether the output is
    masked too. Returns the shape, the dtype and that."""
    runs = []
    for size in (2, 3):
        arrays, masks = [], []
        xp, b = layer.backend.xp, layer.backend
        for t in inputs:
            shape = tuple(size if s is None else s for s in t.shape)
            arrays.append(xp.zeros(shape, dtype=b.dtype(t.dtype), device=b.device))
            masks.append(xp.ones(shape[:2], dtype=xp.bool, device=b.device)
                         if t.masked else None)
        mask = (masks if any_mask(masks) else None) if is_list else masks[0]
        extra = {"mask": mask} if mask is not None and layer.uses_mask else {}
        with no_grad():
            try:
                arg = arrays if is_list else arrays[0]
                y = layer.forward(arg, training=False, **kwargs, **extra)
                out_mask = (layer.compute_mask(arg, mask)
                            if mask is not None or layer.makes_mask else None)
            except (TypeError, ValueError) as exc:
                shapes = [t.shape for t in inputs]
                msg = (f"{type(layer).__name__} cannot take inputs of shape "
                       f"{shapes[0] if not is_list else shapes}: {exc}")
                raise ValueError(msg) from exc
        if isinstance(y, (list, tuple)):
            msg = (f"{type(layer).__name__} returns several arrays; graph nodes "
                   "with several outputs are not supported yet")
            raise TypeError(msg)
        runs.append(y)
    a, b = runs
    shape = tuple(None if (i == 0 or p != q) else int(p)
                  for i, (p, q) in enumerate(zip(a.shape, b.shape, strict=True)))
    from .base import dtype_name

    return shape, dtype_name(a.dtype), out_mask is not None
