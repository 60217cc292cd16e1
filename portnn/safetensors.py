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

import contextlib
import json
import os
import re
import secrets
import signal
import stat
import threading
from typing import Any

__all__ = ["CheckpointError", "SafetensorsFile", "check_destination", "read",
           "write_atomic"]

#: a temporary file of write_atomic: ``.portnn-<pid>-<12 hex>.tmp``
_TMP = re.compile(r"^\.portnn-(\d+)-[0-9a-f]{12}\.tmp$")

_MAX_HEADER = 100_000_000  # the reference implementation's limit


# bytes per element of each safetensors dtype code
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "I64": 8, "I32": 4, "I16": 2,
             "I8": 1, "U8": 1, "BOOL": 1}


def _host():
    from .backends import get

    return get("numpy")


class CheckpointError(ValueError):
    """A file is not a readable safetensors checkpoint (truncated, corrupted
    or of another kind); the message says which.

    Examples
    --------
    >>> import os, tempfile
    >>> import portnn
    >>> path = os.path.join(tempfile.mkdtemp(), "not-a-checkpoint.safetensors")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(b"hello")
    >>> try:
    ...     portnn.load(path)
    ... except portnn.checkpoint.CheckpointError:
    ...     print("refused")
    refused
    """


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

    A new file gets the mode an ordinary ``open(path, "wb")`` would give it
    (0666 less the umask), an existing one keeps its mode, and a symbolic
    link is written through: its target is replaced, the link stays.

    Parameters
    ----------
    path : str or os.PathLike
        Destination.
    tensors : dict of str to array
        Named host (NumPy) arrays.
    metadata : dict of str to str, optional
        Stored in the header's ``__metadata__``.

    Raises
    ------
    FileNotFoundError
        If the folder of `path` does not exist (the message names it).
    """
    target, folder = check_destination(path)
    parts = _encode(tensors, dict(metadata or {}))
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = None  # a new file: os.open applies the umask to 0o666
    remove_stale_temporaries(folder)
    tmp = os.path.join(folder, f".portnn-{os.getpid()}-{secrets.token_hex(6)}.tmp")
    with _termination_raises():
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                for part in parts:
                    f.write(part)
                f.flush()
                if mode is not None:
                    os.chmod(tmp, mode)
                os.fsync(f.fileno())
            os.replace(tmp, target)
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


def check_destination(path) -> tuple[str, str]:
    """Check that a file can be written at `path` (before a long run that
    ends in a save): its folder exists and is writable, and `path` is not a
    folder. Returns the real target (through symbolic links) and its folder.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        Naming the path and what to do.
    """
    shown = os.fspath(path)
    target = os.path.realpath(shown)  # through symbolic links
    folder = os.path.dirname(target)
    if os.path.isdir(target):
        msg = f"cannot save to {shown!r}: it is a folder; give a file name in it"
        raise IsADirectoryError(msg)
    if not os.path.isdir(folder):
        msg = (f"cannot save {shown!r}: the folder {folder!r} does not exist; "
               "create it first (os.makedirs)")
        raise FileNotFoundError(msg)
    if not os.access(folder, os.W_OK | os.X_OK):
        msg = f"cannot save {shown!r}: the folder {folder!r} is not writable"
        raise PermissionError(msg)
    return target, folder


def remove_stale_temporaries(folder) -> list[str]:
    """Delete the temporary files of saves whose process is gone (killed in
    the middle of a save); returns their names. A live process's, this
    process's included, are left alone."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = _TMP.match(name)
        if m is None or int(m.group(1)) == os.getpid() or _alive(int(m.group(1))):
            continue
        try:
            os.unlink(os.path.join(folder, name))
            removed.append(name)
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's (or not a pid we can ask about): keep it
    return True


class _Terminated(BaseException):
    """A termination signal arrived during a save."""


@contextlib.contextmanager
def _termination_raises():
    """Within, SIGTERM and SIGHUP raise (so the temporary file is removed),
    then are delivered again to the handler they had: the process ends as
    it would have, without leaving a file behind. Only the main thread can
    set handlers; elsewhere the next save cleans up instead."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum, frame):
        received.append(signum)
        raise _Terminated(signum)

    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        try:
            previous[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):
            pass
    try:
        yield
    except _Terminated:
        pass  # re-delivered below
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        if received:
            os.kill(os.getpid(), received[0])
    if received:  # a handler that lets the process go on: the save did not
        msg = (f"the save was interrupted by signal {received[0]}; the file was "
               "not written (the previous one, if any, is intact)")
        raise InterruptedError(msg)


#: valid safetensors dtypes that portnn does not load
_UNSUPPORTED = ("BF16", "U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "F8_E8M0",
                "F4", "F6_E2M3", "F6_E3M2", "C64", "F128")


class SafetensorsFile:
    """An open safetensors file whose header has been validated in full.

    Nothing but the header is read on opening: every entry's dtype, shape
    and offsets are checked against each other and against the file's size
    first, so a hostile or truncated file is refused before any tensor is
    allocated. :meth:`read` then reads one tensor at a time.

    Parameters
    ----------
    path : str or os.PathLike

    Raises
    ------
    CheckpointError
        For a truncated, corrupted or non-safetensors file (the message
        names the file and the problem).
    OSError
        If the file cannot be opened.
    """

    def __init__(self, path) -> None:
        self.path = os.fspath(path)
        self._file = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        try:
            self._read_header()
        except BaseException:
            self._file.close()
            raise

    def _fail(self, problem: str):
        return CheckpointError(f"{self.path!r}: {problem}")

    def _read_header(self) -> None:
        f = self._file
        size = os.fstat(f.fileno()).st_size
        prefix = f.read(8)
        if len(prefix) < 8:
            msg = f"{self.path!r} is not a safetensors file: only {size} bytes"
            raise CheckpointError(msg)
        n = int.from_bytes(prefix, "little")
        if n > min(_MAX_HEADER, size - 8) or n < 2:
            msg = (
                f"{self.path!r} is not a safetensors file or is truncated: header "
                f"length {n} does not fit in {size} bytes"
            )
            raise CheckpointError(msg)
        raw = f.read(n)
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            # ValueError covers bad JSON and integers of over 4300 digits
            msg = (f"{self.path!r} is not a safetensors file: its header is not "
                   f"JSON that portnn reads ({type(exc).__name__}: {exc})")
            raise CheckpointError(msg) from None
        if not isinstance(header, dict):
            raise self._fail("the safetensors header is not a JSON object")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise self._fail("__metadata__ must map strings to strings")
        self.metadata: dict[str, str] = metadata
        self._data_start = 8 + n
        data_size = size - self._data_start
        self.entries: dict[str, tuple[str, tuple[int, ...], int, int]] = {}
        for name, info in header.items():
            self.entries[name] = self._entry(name, info, data_size)
        spans = sorted((b, e) for _, _, b, e in self.entries.values())
        covered = 0
        for begin, end in spans:
            if begin != covered:
                raise self._fail(
                    f"tensor data overlaps or leaves a gap at byte {covered}")
            covered = end
        if covered != data_size:
            raise self._fail(
                f"{data_size - covered} bytes after the last tensor; the file is "
                "corrupted")

    def _entry(self, name, info, data_size):
        if not (isinstance(info, dict) and {"dtype", "shape", "data_offsets"}
                <= set(info)):
            raise self._fail(f"tensor {name!r} has a malformed header entry {info!r}")
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if code in _UNSUPPORTED:
            raise self._fail(
                f"tensor {name!r} has dtype {code}, a valid safetensors dtype that "
                f"portnn does not load (it loads {', '.join(_ITEMSIZE)})")
        if code not in _ITEMSIZE:
            raise self._fail(f"tensor {name!r} has an unknown dtype {code!r}")
        if not (isinstance(shape, list) and all(_is_count(s) for s in shape)):
            raise self._fail(
                f"tensor {name!r}: shape must be a list of non-negative ints, "
                f"got {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(_is_count(v) for v in offsets)):
            raise self._fail(
                f"tensor {name!r}: data_offsets must be two non-negative ints, "
                f"got {offsets!r}")
        begin, end = offsets
        nbytes = _ITEMSIZE[code]
        for s in shape:
            nbytes *= s
        if end - begin != nbytes:
            raise self._fail(
                f"tensor {name!r} has inconsistent shape {shape} and offsets "
                f"{offsets} ({nbytes} bytes needed)")
        if end > data_size:
            msg = (
                f"{self.path!r} is truncated: tensor {name!r} ends at byte {end} "
                f"of a {data_size}-byte data section"
            )
            raise CheckpointError(msg)
        return code, tuple(shape), begin, end

    def shape(self, name: str) -> tuple[int, ...]:
        """The stored shape of tensor `name`."""
        return self.entries[name][1]

    def read(self, name: str):
        """Tensor `name` as a host (NumPy) array that owns its memory."""
        code, shape, begin, end = self.entries[name]
        buf = bytearray(end - begin)
        self._file.seek(self._data_start + begin)
        if self._file.readinto(buf) != len(buf):
            raise self._fail(f"tensor {name!r} could not be read in full")
        return _host().native["from_bytes"](buf, code, shape)

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> SafetensorsFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def read(path) -> tuple[dict, dict[str, str]]:
    """Read a whole safetensors file, every offset and size checked first.

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
    with SafetensorsFile(path) as f:
        return {name: f.read(name) for name in f.entries}, f.metadata
