"""Every rank given the same job: a cheap fingerprint compared at the start.

Data-parallel training assumes that every rank holds the same data and the
same model and makes the same calls; it shards each batch itself. A rank
given other rows of the same length would train on a silent mixture, and
one with other layer sizes would end in the engine's own error ("Message
truncated"). So `fit`, `evaluate` and `predict` first gather a small
description from every rank (row counts, shapes, dtypes, a checksum of the
first rows, the parameters' shapes, the call's arguments) and every rank
raises the same error, naming what differs, before any other collective.
"""

from __future__ import annotations

import json
import zlib

from ..data.structure import leaves

#: rows of the data hashed into the checksum
_ROWS = 64


def data_fingerprint(source) -> dict:
    """Rows, batches per epoch, dtypes and sample shapes, and a checksum of
    the first rows of what a batch source reads (the stream's own first
    batch's shapes for an iterable, which each rank may fill itself)."""
    from ..data.sources import ArraySource, DatasetSource, as_batch

    out = {"batches per epoch": source.n_batches}
    if isinstance(source, ArraySource):
        out["rows"] = source.n
        arrays = [a for part in (source.x, source.y, source.w) if part is not None
                  for a in leaves(part)]
        out["arrays"] = [_describe(a) for a in arrays]
        rows = min(source.n, _ROWS)  # strict arrays refuse slices past the end
        out["checksum of the first rows"] = _checksum(
            [source.backend.to_numpy(a[:rows, ...]) for a in arrays])
    elif isinstance(source, DatasetSource):
        from .. import backends

        out["rows"] = source.n
        host = backends.get("numpy")
        first = as_batch(source.dataset[host.xp.arange(min(source.n, _ROWS))])
        parts = [_to_host(a) for p in (first.x, first.y, first.w) if p is not None
                 for a in leaves(p)]
        out["arrays"] = [_describe(p) for p in parts]
        out["checksum of the first rows"] = _checksum(parts)
    else:  # an iterable: each rank's stream; its shapes must agree
        first = as_batch(source.first())
        parts = [_to_host(a) for p in (first.x, first.y, first.w) if p is not None
                 for a in leaves(p)]
        out["sample shapes"] = [_describe(p)[1:] for p in parts]
    return out


def model_fingerprint(model) -> dict:
    """The parameters' names, shapes and dtypes."""
    return {"parameters": [f"{name} {tuple(p.shape)} {_dtype(p.dtype)}"
                           for name, p in model.named_parameters()]}


def check_same(world, call: str, fingerprint: dict) -> None:
    """Raise the same ValueError on every rank if the ranks' fingerprints
    differ, naming what differs on which rank (one gather)."""
    if world.size == 1:
        return
    b = world.backend
    text = json.dumps(fingerprint, sort_keys=True, default=str).encode()
    mine = b.asarray(list(text), dtype=_float(b))
    parts = [json.loads(bytes(int(v) for v in b.to_numpy(p).tolist()))
             for p in world.all_gather(mine)]
    reference = parts[0]
    lines = []
    for rank, other in enumerate(parts[1:], start=1):
        for key in sorted(set(reference) | set(other)):
            ours, theirs = reference.get(key), other.get(key)
            if ours != theirs:
                lines.append(f"{key}: rank 0 has {_first_difference(ours, theirs)}"
                             f", rank {rank} has {_first_difference(theirs, ours)}")
    if lines:
        msg = (
            f"data-parallel ranks were given different {call} calls: "
            + "; ".join(lines[:4])
            + ". Every rank must build the same model and pass the same whole "
            f"data and arguments to {call} (it shards each batch itself)"
        )
        raise ValueError(msg)


def _first_difference(a, b):
    """`a`, or its first entry that differs from `b`'s (long lists)."""
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for x, y in zip(a, b, strict=True):
            if x != y:
                return x
    return a


def _describe(array) -> list:
    return [_dtype(array.dtype), *[int(s) for s in array.shape[1:]]]


def _dtype(dtype) -> str:
    return str(dtype).rsplit(".", 1)[-1]


def _to_host(part):
    from ..backends import backend_of, get

    backend = backend_of(part)
    if backend is not None:
        return backend.to_numpy(part)
    return get("numpy").asarray(part)


def _checksum(host_arrays) -> int:
    crc = 0
    for a in host_arrays:
        crc = zlib.crc32(memoryview(_contiguous(a)).cast("B"), crc)
    return crc


def _contiguous(a):
    from .. import backends

    return backends.get("numpy").xp.asarray(a, copy=True)


def _float(backend):
    try:
        return backend.dtype("float64")
    except TypeError:
        return backend.dtype("float32")
