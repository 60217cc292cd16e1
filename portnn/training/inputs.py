"""What `fit`, `evaluate` and `predict` are given, turned into validated
batch sources on the model's device.

Arrays are moved to the device once and checked whole, up front (a label
range is one host read). A :class:`~portnn.data.Dataset` or an iterable of
batches is checked batch by batch on the host, before the copy to the
device, in the prefetch thread: host checks cost the device nothing.
"""

from __future__ import annotations

import math

from .. import losses as losses_mod
from .._host import read_scalars
from .._namespace import namespace
from ..backends import backend_of, get
from ..data.dataset import Dataset
from ..data.sources import (
    ArraySource,
    Batch,
    DatasetSource,
    IterableSource,
    as_batch,
    batch_rows,
    take_rows,
)
from ..data.structure import leaves, map_structure
from ..layers.base import no_grad
from ..losses.multi import MultiLoss


def is_batch_stream(x) -> bool:
    """Whether `x` is an iterable of batches (a generator, an iterator, a
    DataLoader-like object, a list of ``(x, y[, w])`` tuples of arrays)
    rather than array data (arrays, nested lists of numbers)."""
    if isinstance(x, (list, tuple)):
        return bool(x) and all(_is_batch(item) for item in x)
    if isinstance(x, (str, bytes, dict, Dataset)) or x is None:
        return False  # a dict is a graph model's named inputs
    if backend_of(x) is not None or any(hasattr(x, a) for a in (
            "__array_namespace__", "__array__", "__dlpack__", "shape")):
        return False
    return hasattr(x, "__iter__") or hasattr(x, "__next__")


def _is_batch(item) -> bool:
    """``(x, y)`` or ``(x, y, w)`` with array parts (not a row of numbers)."""
    return (isinstance(item, (tuple, list)) and len(item) in (2, 3)
            and all(getattr(part, "ndim", 0) >= 1 or part is None for part in item)
            and getattr(item[0], "ndim", 0) >= 1)


def is_stream(x) -> bool:
    """Whether `x` is read a batch at a time: a Dataset or a batch stream."""
    return isinstance(x, Dataset) or is_batch_stream(x)


def refuse_text(y) -> None:
    """String labels: say to encode them."""
    if _is_text(y):
        msg = (
            "the labels are strings; encode them as integers 0..C-1 first "
            "(numpy.unique(y, return_inverse=True), or scikit-learn's "
            "LabelEncoder) and keep the classes to decode predictions"
        )
        raise TypeError(msg)


def _is_text(data) -> bool:
    """Strings, as a NumPy string/object array or nested lists."""
    kind = getattr(getattr(data, "dtype", None), "kind", None)  # NumPy's
    if kind in ("U", "S"):
        return True
    if kind == "O":
        data = data.ravel()[:1].tolist() if data.size else []
    elif kind is not None:
        return False
    while isinstance(data, (list, tuple)) and data:
        data = data[0]
    return isinstance(data, (str, bytes))


def integral_labels(y, pred):
    """Float class labels (one per prediction row, as pandas often gives)
    become integers when they are whole numbers; otherwise say so."""
    xp = namespace(y)
    if not xp.isdtype(y.dtype, "real floating") or (
            tuple(y.shape[1:]) != tuple(pred.shape[1:-1])):
        return y
    finite, whole = read_scalars([xp.all(xp.isfinite(y)), xp.all(y == xp.round(y))])
    if not finite:
        msg = (f"CrossEntropy: y holds NaN or infinite labels (floats of shape "
               f"{tuple(y.shape)}); class labels are whole numbers 0..C-1")
        raise ValueError(msg)
    if not whole:
        msg = (
            f"CrossEntropy: y holds floats of shape {tuple(y.shape)}, one per "
            "sample, so they are class labels, but not all are whole numbers; "
            "pass integer labels 0..C-1, or one-hot/probability targets of shape "
            f"(N, {pred.shape[-1]})"
        )
        raise ValueError(msg)
    return xp.astype(y, xp.int64)


def _host(v):
    """`v` as an array: a backend's array as it is, anything else on the host."""
    if v is None or backend_of(v) is not None:
        return v
    return get("numpy").asarray(v)


class Inputs:
    """Turns what a call is given into batch sources for one model and loss.

    Parameters
    ----------
    model : Model
    loss : Loss or None
        None for `predict` (no targets).
    prefetch : bool
        Prepare the next batches of a dataset or iterable in a thread.
    """

    def __init__(self, model, loss=None, *, prefetch: bool = True,
                 shard=None) -> None:
        self.model, self.loss, self.prefetch = model, loss, prefetch
        self.shard = shard  # (rank, size) in data-parallel training
        self.sample_pred = None  # one sample's prediction: the output shape
        #: (the largest |x| the compute type holds, the policy) under float16
        self.input_limit = None

    # -- arrays -------------------------------------------------------------------
    def arrays(self, x, y, w=None, *, check=True):
        """`x`, `y` (and weights) on the device, checked whole."""
        x, y = self.model._as_data(x, y, self.loss)
        if check:
            y = self.check(x, y)
        return x, y, self.weights(w, batch_rows(x))

    def check(self, x, y, *, run=True):
        """Check whole arrays (or one batch): the model takes `x` (one
        sample run in evaluation mode, if `run`), ids and labels are in
        range, targets fit; returns `y`, float labels that are whole numbers
        made integers. Batches checked in the prefetch thread do not run
        the model (its layers belong to the training thread)."""
        if run:
            self._run_one(x)
        self.model.check_input(x)
        for part in leaves(x):
            self._check_range(part)
        if self.loss is None:
            return y
        if isinstance(self.loss, MultiLoss):  # one loss and target per output
            s = self.loss.structure
            y = s.rebuild([integral_labels(t, p) if isinstance(
                lo, losses_mod.CrossEntropy) else t for lo, t, p in zip(
                    self.loss.losses, s.flatten(y, "y"),
                    s.flatten(self.sample_pred, "predictions"), strict=True)])
        elif isinstance(self.loss, losses_mod.CrossEntropy):
            y = integral_labels(y, self.sample_pred)
        self.loss.check_target(self.sample_pred, y)
        return y

    def _check_range(self, x) -> None:
        """Under float16, inputs beyond its range would become inf in the
        first layer: say so (once per array, per batch for streams)."""
        if self.input_limit is None:
            return
        limit, policy = self.input_limit
        xp = namespace(x)
        if not xp.isdtype(x.dtype, "real floating") or x.size == 0:
            return
        largest = read_scalars([xp.max(xp.abs(x))])[0]
        if largest > limit:
            msg = (f"x holds values up to {largest:.6g}, beyond float16's range "
                   f"(+-{limit:g}): under precision={policy!r} they become inf in "
                   "the first layer. Scale the inputs (portnn.data.Standardizer) "
                   "or use precision='mixed_bfloat16' or 'float32'")
            raise ValueError(msg)

    def weights(self, w, n):
        """Sample weights as ``(n,)`` floats on the device, or None; checked
        finite and >= 0 where they are (on the host for host data, once per
        array or batch, as labels are). A model with several outputs may
        take a list or a dict of them, one per output (a list in the
        outputs' order: an output left out weighs every sample 1)."""
        if w is None:
            return None
        if isinstance(w, (list, tuple, dict)):
            return self._output_weights(w, n)
        model = self.model
        w = _host(w)
        xp = namespace(w)
        if w.ndim < 1 or int(w.shape[0]) != n:
            msg = (f"sample_weight must hold one weight per sample, shape ({n},), "
                   f"or per step, ({n}, T), got {tuple(w.shape)}")
            raise ValueError(msg)
        if not xp.isdtype(w.dtype, ("real floating", "integral", "bool")):
            msg = f"sample_weight must be numbers, got dtype {w.dtype}"
            raise TypeError(msg)
        bad = int(xp.sum(xp.astype(~(w >= 0), xp.int64)))
        if not bad and xp.isdtype(w.dtype, "real floating"):
            bad = int(xp.sum(xp.astype(~xp.isfinite(w), xp.int64)))
        if bad:
            msg = (f"sample_weight holds {bad} negative or non-finite value(s); "
                   "weights must be finite and >= 0 (a negative weight trains "
                   "by gradient ascent)")
            raise ValueError(msg)
        w = model.backend.asarray(w)
        dtype = model._model_dtype()
        if dtype is not None:
            w = model.backend.xp.astype(w, dtype)
        return w

    def _output_weights(self, w, n) -> list:
        if not isinstance(self.loss, MultiLoss):
            msg = ("sample_weight is a list or dict (one per output), but the "
                   "model has one output: give one array")
            raise ValueError(msg)
        names = self.loss.names
        if isinstance(w, dict):
            unknown = [k for k in w if k not in names]
            if unknown:
                msg = (f"sample_weight names outputs {unknown}; the outputs are "
                       f"{names}")
                raise ValueError(msg)
            given = [w.get(name) for name in names]
        else:
            if len(w) != len(names):
                msg = (f"sample_weight has {len(w)} entries for {len(names)} "
                       f"outputs ({names}); give one per output, or a dict by name")
                raise ValueError(msg)
            given = list(w)
        out = [self.weights(one, n) for one in given]
        like = next((a for a in out if a is not None), None)
        if like is None:
            return None
        xp = namespace(like)  # every output's, so batches slice alike
        return [xp.ones((n,), dtype=like.dtype, device=like.device) if a is None
                else a for a in out]

    # -- any data -------------------------------------------------------------------
    def source(self, x, y=None, w=None, *, batch_size, shuffle=False, rng=None,
               steps=None, targets=True):
        """A batch source over arrays, a Dataset or an iterable of batches."""
        if isinstance(x, Dataset) or is_batch_stream(x):
            if y is not None or w is not None:
                msg = (
                    "a Dataset or an iterable of batches carries its targets: "
                    "give (x, y) or (x, y, sample_weight) batches, not y= or "
                    "sample_weight="
                )
                raise ValueError(msg)
            prepare = self._prepare_with_targets if targets else self._prepare_x
            if isinstance(x, Dataset):
                if steps is not None:
                    msg = "steps is for iterables of batches, not for a Dataset"
                    raise ValueError(msg)
                source = DatasetSource(x, batch_size=batch_size, shuffle=shuffle,
                                       rng=rng, prepare=prepare,
                                       prefetch=self.prefetch, shard=self.shard)
            else:
                source = IterableSource(x, steps=steps, prepare=prepare,
                                        prefetch=self.prefetch)
            self._check_first(as_batch(source.first()), targets)
            return source
        if steps is not None:
            msg = ("steps_per_epoch/steps are for iterables of batches; arrays are "
                   "split by batch_size")
            raise ValueError(msg)
        if targets:
            refuse_text(y)
            x, y, w = self.arrays(x, y, w)
        else:
            x = self.model._as_input(x)
        return ArraySource(x, y, w, batch_size=batch_size, shuffle=shuffle, rng=rng,
                           backend=self.model.backend, shard=self.shard)

    def _run_one(self, x):
        """One sample through the model: it takes `x`, and the output shape
        the targets must fit (kept from the first data seen)."""
        one = self.model._as_input(take_rows(x, slice(0, 1)))
        self.model._build_lazy(one)
        with no_grad():
            pred = self.model.forward(one, training=False)
        if self.sample_pred is None:
            self.sample_pred = pred
            if not isinstance(x, (list, tuple, dict)):
                self.model._input_shape = tuple(x.shape[1:])  # for summary()

    def _check_first(self, batch, targets):
        if targets and batch.y is None:
            msg = ("the data gave x alone; fit and evaluate need (x, y) batches "
                   "(or (x, y, sample_weight))")
            raise ValueError(msg)
        self._run_one(map_structure(_host, batch.x))

    def _prepare_with_targets(self, item) -> Batch:
        batch = as_batch(item)
        if batch.y is None:
            msg = "a batch gave x alone; fit and evaluate need (x, y) batches"
            raise ValueError(msg)
        refuse_text(batch.y)
        x, y = map_structure(_host, batch.x), map_structure(_host, batch.y)
        if batch_rows(x) == 0:  # an idle rank's share of a short last batch
            return Batch(self.model._as_input(x),
                         map_structure(self.model.backend.asarray, y))
        y = self.check(x, y, run=False)  # on the host, before the copy: free
        x, y = self.model._as_data(x, y, self.loss)
        return Batch(x, y, self.weights(batch.w, batch_rows(x)))

    def _prepare_x(self, item) -> Batch:
        batch = as_batch(item)
        x = map_structure(_host, batch.x)
        self.model.check_input(x)
        return Batch(self.model._as_input(x))

    # -- validation data ----------------------------------------------------------
    def split(self, x, y, w, validation_split):
        """Hold out the tail of array data for validation (before any
        shuffle); returns the training part and the held-out part."""
        if not 0.0 < validation_split < 1.0:
            msg = f"validation_split must be in (0, 1), got {validation_split!r}"
            raise ValueError(msg)
        if isinstance(x, Dataset) or is_batch_stream(x):
            msg = ("validation_split needs arrays; with a Dataset or an iterable, "
                   "pass validation_data")
            raise ValueError(msg)
        refuse_text(y)
        x, y, w = self.arrays(x, y, w, check=False)  # each part is checked later
        n = batch_rows(x)
        n_val = int(math.ceil(n * validation_split))
        if n_val >= n:
            msg = f"validation_split={validation_split} leaves no training data"
            raise ValueError(msg)
        keep = slice(0, n - n_val)
        held = slice(n - n_val, n)
        train = (take_rows(x, keep), take_rows(y, keep),
                 None if w is None else take_rows(w, keep))
        val = (take_rows(x, held), take_rows(y, held),
               None if w is None else take_rows(w, held))
        return train, val


def validation_pair(validation_data):
    """``(x, y)`` or ``(x, y, w)`` arrays, or a Dataset/iterable, as
    ``(x, y, w)``."""
    if isinstance(validation_data, Dataset) or is_batch_stream(validation_data):
        return validation_data, None, None
    if not (isinstance(validation_data, (tuple, list))
            and len(validation_data) in (2, 3)):
        msg = (
            "validation_data must be (x_val, y_val), (x_val, y_val, "
            "sample_weight), a Dataset or an iterable of batches, got "
            f"{type(validation_data).__name__}"
        )
        raise ValueError(msg)
    return (*validation_data, None)[:3]


class ClassWeights:
    """Keras's ``class_weight``: each sample weighed by its class's weight,
    on the device (``take`` of a weight vector by the labels)."""

    def __init__(self, class_weight: dict, loss, sample_pred, backend) -> None:
        if not isinstance(class_weight, dict) or not class_weight:
            msg = ("class_weight must be a dict {class index: weight}, got "
                   f"{class_weight!r}")
            raise TypeError(msg)
        if not isinstance(loss, (losses_mod.CrossEntropy, losses_mod.BCE,
                                 losses_mod.BCEWithLogits)):
            msg = (f"class_weight is for classification losses, not "
                   f"{type(loss).__name__}; use sample_weight")
            raise ValueError(msg)
        self.binary = not isinstance(loss, losses_mod.CrossEntropy)
        n_classes = 2 if self.binary else int(sample_pred.shape[-1])
        keys = {_class_index(k, n_classes): v for k, v in class_weight.items()}
        bad = [k for k, k_int in zip(class_weight, keys, strict=True) if k_int is None]
        if bad:
            msg = (f"class_weight keys must be class indices 0..{n_classes - 1}, "
                   f"got {bad}")
            raise ValueError(msg)
        negative = {k: v for k, v in class_weight.items()
                    if not (isinstance(v, (int, float)) or hasattr(v, "__float__"))
                    or not math.isfinite(float(v)) or float(v) < 0}
        if negative:
            msg = (f"class_weight values must be finite numbers >= 0, got "
                   f"{negative} (a negative weight trains by gradient ascent)")
            raise ValueError(msg)
        class_weight = keys
        if not self.binary and sample_pred.ndim != 2:
            msg = ("class_weight weighs whole samples, one label each; for "
                   "sequence labels use CrossEntropy(weight=...)")
            raise ValueError(msg)
        xp = backend.xp
        values = [float(class_weight.get(c, 1.0)) for c in range(n_classes)]
        self.vector = xp.asarray(values, dtype=sample_pred.dtype, device=backend.device)

    def __call__(self, y, w):
        """Per-sample weights for labels `y`, times `w` if given."""
        xp = namespace(y)
        if self.binary:
            labels = xp.astype(xp.reshape(y, (y.shape[0], -1))[:, 0] > 0.5, xp.int64)
        elif xp.isdtype(y.dtype, "integral"):
            labels = y
        else:
            labels = xp.argmax(y, axis=-1)
        weights = xp.take(self.vector, labels)
        return weights if w is None else weights * w


class OutputClassWeights:
    """``class_weight`` of a model with several outputs: a dict by output
    name of ``{class index: weight}`` dicts; each named output's samples
    weighed by their class there, the others by `sample_weight` alone."""

    def __init__(self, class_weight: dict, loss, sample_pred, backend) -> None:
        names = loss.names
        if not (isinstance(class_weight, dict) and class_weight
                and all(isinstance(v, dict) for v in class_weight.values())):
            msg = ("with several outputs, class_weight is a dict by output name of "
                   "{class index: weight} dicts, e.g. {" + repr(names[0]) +
                   ": {0: 1.0, 1: 5.0}}")
            raise TypeError(msg)
        unknown = [k for k in class_weight if k not in names]
        if unknown:
            msg = f"class_weight names outputs {unknown}; the outputs are {names}"
            raise ValueError(msg)
        preds = loss.structure.flatten(sample_pred, "predictions")
        self.structure = loss.structure
        self.per_output = [
            ClassWeights(class_weight[name], one, pred, backend)
            if name in class_weight else None
            for name, one, pred in zip(names, loss.losses, preds, strict=True)]

    def __call__(self, y, w):
        """One weight array per output (None where neither weighs)."""
        targets = self.structure.flatten(y, "y")
        shared = not isinstance(w, list)
        return [(ws if cw is None else cw(t, ws))
                for cw, t, ws in zip(self.per_output, targets,
                                     [w] * len(targets) if shared else w,
                                     strict=True)]


def class_weighting(class_weight, loss, sample_pred, backend):
    """What turns a batch's labels into class weights: for one output or,
    with a MultiLoss, for several."""
    if isinstance(loss, MultiLoss):
        return OutputClassWeights(class_weight, loss, sample_pred, backend)
    return ClassWeights(class_weight, loss, sample_pred, backend)


def _class_index(key, n_classes):
    """`key` as a class index (NumPy integers too, as Keras accepts), or
    None if it is not one."""
    import operator

    if isinstance(key, bool):
        return None
    try:
        k = operator.index(key)
    except TypeError:
        return None
    return k if 0 <= k < n_classes else None
