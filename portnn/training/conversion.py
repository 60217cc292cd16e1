"""What `fit`, `evaluate` and `predict` are given, as arrays on the model's
device: each input in its dtype, each output's targets in the dtype its
loss takes, and a named error for what cannot be."""

from __future__ import annotations

from .. import losses as losses_mod
from ..data.sources import batch_rows
from ..data.structure import leaves
from ..losses.multi import MultiLoss
from .inputs import refuse_text


def as_input(model, x, what="x"):
    structure = model.input_structure
    if structure.single:  # one array, or {its Input's name: array}
        return as_one_input(model, structure.flatten(x, what)[0], what,
                            model.integer_input)
    refuse_unsupported(x, what)
    parts = structure.flatten(x, what)
    integer = model.integer_inputs
    parts = [as_one_input(model, p, f"{what}[{i}]", integer[i])
             for i, p in enumerate(parts)]
    rows = {int(p.shape[0]) if p.ndim else -1 for p in parts}
    if len(rows) != 1:
        shapes = [tuple(p.shape) for p in parts]
        msg = f"{what}: the inputs hold different numbers of samples: {shapes}"
        raise ValueError(msg)
    return structure.rebuild(parts)


def as_one_input(model, x, what, integer: bool):
    xp = model.backend.xp
    refuse_unsupported(x, what)
    refuse_objects(x, what)
    x = model.backend.asarray(x)
    dtype = model._model_dtype()
    if dtype is None or x.dtype == dtype:
        return x
    if xp.isdtype(x.dtype, "real floating") or (
        not integer and xp.isdtype(x.dtype, ("integral", "bool"))
    ):
        x = xp.astype(x, dtype)
    return x


def as_data(model, x, y, loss=None):
    """`x` and `y` as arrays on the model's device (moved once)."""
    if y is None:
        msg = ("y is None: fit and evaluate need targets (y=...), or a "
               "Dataset or iterable of (x, y) batches as x")
        raise ValueError(msg)
    x = as_input(model, x)
    outputs = model.output_structure
    if outputs.single:
        y = as_target(model, y, loss, "y")
    else:
        losses = (loss.losses if isinstance(loss, MultiLoss)
                  else [loss] * outputs.n)
        y = outputs.rebuild([as_target(model, t, lo, f"y[{name}]") for t, lo, name
                             in zip(outputs.flatten(y, "y"), losses,
                                    outputs.names(), strict=True)])
    n_x = {int(a.shape[0]) if a.ndim else -1 for a in leaves(x)}
    n_y = {int(a.shape[0]) if a.ndim else -1 for a in leaves(y)}
    if len(n_x | n_y) != 1 or -1 in n_x | n_y:
        shapes = ([tuple(a.shape) for a in leaves(x)],
                  [tuple(a.shape) for a in leaves(y)])
        msg = (
            f"x and y must hold the same number of samples in axis 0; got "
            f"x of shape {_first_or_all(shapes[0])} and y of shape "
            f"{_first_or_all(shapes[1])}"
        )
        raise ValueError(msg)
    if batch_rows(x) == 0:
        msg = "no samples: x is empty"
        raise ValueError(msg)
    return x, y


def as_target(model, y, loss, what):
    """One output's targets on the model's device, in the dtype its
    loss takes (integer class labels stay integers)."""
    xp = model.backend.xp
    refuse_unsupported(y, what)
    refuse_text(y)
    refuse_objects(y, what)
    y = model.backend.asarray(y)
    if xp.isdtype(y.dtype, "bool"):  # True/False: classes or targets 1/0
        y = xp.astype(y, xp.int64 if isinstance(
            loss, losses_mod.CrossEntropy) else model._model_dtype() or xp.float32)
    dtype = model._model_dtype()
    labels = isinstance(loss, losses_mod.CrossEntropy) and not xp.isdtype(
        y.dtype, "real floating")
    if dtype is not None and y.dtype != dtype and not labels:
        y = xp.astype(y, dtype)  # regression and binary targets
    return y


def refuse_unsupported(data, what):
    """Iterators are not arrays: say what arrays are expected instead of
    failing inside an array library."""
    if hasattr(data, "__next__") or type(data).__name__ == "generator":
        msg = (
            f"{what} is a {type(data).__name__} where arrays are expected; an "
            "iterable of (x, y) batches goes in x alone (fit(batches), with "
            "steps_per_epoch for an endless one)"
        )
        raise TypeError(msg)


def _first_or_all(shapes):
    return shapes[0] if len(shapes) == 1 else shapes


def refuse_objects(data, what):
    """NumPy object arrays (mixed types, None, nested sequences): name the
    problem instead of failing deep inside a ufunc."""
    if getattr(getattr(data, "dtype", None), "kind", None) != "O":
        return
    try:
        data.astype("float64")
    except (TypeError, ValueError) as exc:
        msg = (f"{what} is an object array that does not convert to numbers "
               f"({exc}); look for None, strings or ragged rows, and pass a "
               f"numeric array (numpy.asarray({what}, dtype=numpy.float32))")
        raise TypeError(msg) from None
    msg = (f"{what} is an object array (dtype object); pass a numeric array: "
           f"numpy.asarray({what}, dtype=numpy.float32), or int64 for labels")
    raise TypeError(msg)
