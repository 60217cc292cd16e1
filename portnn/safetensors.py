"""The safetensors file format, read and written by hand (host side, NumPy).

Layout: an 8-byte little-endian header length ``N``, ``N`` bytes of JSON
(``{name: {"dtype", "shape", "data_offsets"}, "__metadata__": {str: str}}``)
and the tensors' raw little-endian bytes, back to back. It holds no code, so
reading a file can never execute anything; PyTorch users read it with
``safetensors.torch.load_file``.

This module is the file format only, in the standard library. Tensors
cross the host through the NumPy backend's native ``to_bytes`` and
``from_bytes`` paths (the host format lives in its adapter).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

__all__ = ["CheckpointError", "read", "write_atomic"]

_MAX_HEADER = 100_000_000  # the reference implementation's limit


# bytes per element of each safetensors dtype code
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "I64": 8, "I32": 4, "I16": 2,
             "I8": 1, "U8": 1, "BOOL": 1}


def _host():
    from .backends import get

    return get("numpy")


class CheckpointError(ValueError):
    """A file is not a readable safetensors checkpoint (truncated, corrupted
    or of another kind); the message says which."""


def _encode(tensors, metadata: dict[str, str]) -> list:
    to_bytes = _host().native["to_bytes"]
    header: dict[str, Any] = {"__metadata__": metadata}
    chunks, offset = [], 0
    for name, arr in tensors.items():
        try:
            code, shape, data = to_bytes(arr)
        except TypeError as exc:
            raise TypeError(f"tensor {name!r}: {exc}") from None
        header[name] = {"dtype": code, "shape": list(shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # align the data to 8 bytes
    return [len(raw).to_bytes(8, "little"), raw, *chunks]


def write_atomic(path, tensors,
                 metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file so that `path` is always either the old file
    or the complete new one: temporary file, fsync, rename, fsync the folder.

    Parameters
    ----------
    path : str or os.PathLike
        Destination.
    tensors : dict of str to array
        Named host (NumPy) arrays.
    metadata : dict of str to str, optional
        Stored in the header's ``__metadata__``.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    parts = _encode(tensors, dict(metadata or {}))
    fd, tmp = tempfile.mkstemp(prefix=".portnn-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read(path) -> tuple[dict, dict[str, str]]:
    """Read a safetensors file, checking every offset and size first.

    Returns
    -------
    tensors : dict of str to array
        Host (NumPy) arrays.
    metadata : dict of str to str

    Raises
    ------
    CheckpointError
        For a truncated, corrupted or non-safetensors file.
    """
    from_bytes = _host().native["from_bytes"]
    path = os.fspath(path)
    with open(path, "rb") as f:
        blob = f.read()
    where = f"{path!r}"
    if len(blob) < 8:
        msg = f"{where} is not a safetensors file: only {len(blob)} bytes"
        raise CheckpointError(msg)
    n = int.from_bytes(blob[:8], "little")
    if n > min(_MAX_HEADER, len(blob) - 8) or n < 2:
        msg = (
            f"{where} is not a safetensors file or is truncated: header length "
            f"{n} does not fit in {len(blob)} bytes"
        )
        raise CheckpointError(msg)
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{where} is not a safetensors file: its header is not JSON ({exc})"
        raise CheckpointError(msg) from None
    if not isinstance(header, dict):
        msg = f"{where}: the safetensors header is not a JSON object"
        raise CheckpointError(msg)
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
            isinstance(v, str) for v in metadata.values()):
        msg = f"{where}: __metadata__ must map strings to strings"
        raise CheckpointError(msg)
    data = memoryview(blob)[8 + n:]
    tensors, spans = {}, []
    for name, info in header.items():
        try:
            code = info["dtype"]
            itemsize = _ITEMSIZE[code]
            shape = tuple(int(s) for s in info["shape"])
            begin, end = (int(v) for v in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            msg = f"{where}: tensor {name!r} has a malformed header entry {info!r}"
            raise CheckpointError(msg) from None
        size = itemsize
        for s in shape:
            size *= s
        if any(s < 0 for s in shape) or begin < 0 or end - begin != size:
            msg = f"{where}: tensor {name!r} has inconsistent shape and offsets"
            raise CheckpointError(msg)
        if end > len(data):
            msg = (
                f"{where} is truncated: tensor {name!r} ends at byte {end} of a "
                f"{len(data)}-byte data section"
            )
            raise CheckpointError(msg)
        spans.append((begin, end))
        tensors[name] = from_bytes(data[begin:end], code, shape)
    spans.sort()
    covered = 0
    for begin, end in spans:
        if begin != covered:
            msg = f"{where}: tensor data overlaps or leaves a gap at byte {covered}"
            raise CheckpointError(msg)
        covered = end
    if covered != len(data):
        msg = (
            f"{where}: {len(data) - covered} bytes after the last tensor; the file "
            "is corrupted"
        )
        raise CheckpointError(msg)
    return tensors, metadata
