"""`Dataset`: samples indexed in batches, for data that need not fit in
memory.

A dataset has a length and returns a whole batch for an array of sample
indices: ``ds[indices] -> (x, y)`` (or ``(x, y, sample_weight)``, or ``x``
alone for prediction). Batches are host arrays (NumPy) or anything a
backend's ``asarray`` takes; `fit` checks them on the host and moves them
to the device in a background thread while the previous batch trains.

This module is host-side I/O, so it may use NumPy (the host format).
"""

from __future__ import annotations

import os


class Dataset:
    """Base class of datasets: implement ``__len__`` and ``__getitem__``.

    ``__getitem__`` receives a 1-D NumPy array of sample indices (a batch,
    in the order `fit` wants them) and returns ``(x, y)``, ``(x, y, w)`` or
    ``x``, each with one row per index.

    Examples
    --------
    >>> import numpy as np
    >>> from portnn.data import Dataset
    >>> ds = Dataset.from_arrays(np.arange(10.0).reshape(5, 2), np.arange(5))
    >>> len(ds), ds[np.array([3, 1])][1].tolist()
    (5, [3, 1])
    """

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")

    def __getitem__(self, indices):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def release(self) -> None:
        """Drop what the dataset holds in memory that it can read again
        (pages of memory-mapped files); called between batches."""

    # -- adapters ---------------------------------------------------------------
    @staticmethod
    def from_arrays(x, y=None, sample_weight=None) -> ArrayDataset:
        """A dataset over arrays with one row per sample: NumPy arrays,
        ``numpy.memmap`` or arrays opened with ``numpy.load(...,
        mmap_mode="r")`` (read a batch at a time), or backend arrays. `x`
        and `y` may be lists or dicts of such arrays (a graph model's
        inputs and outputs); batches come back in the same arrangement."""
        return ArrayDataset(x, y, sample_weight)

    @staticmethod
    def from_npy(x, y=None, sample_weight=None, mmap_mode: str = "r") -> ArrayDataset:
        """A dataset over ``.npy`` files, memory-mapped: only the rows of
        the current batches are read, so a file larger than memory trains.

        Parameters
        ----------
        x, y, sample_weight : str or os.PathLike
            Paths of ``.npy`` files (`y` and `sample_weight` optional).
        mmap_mode : {"r", "c"}
            As in ``numpy.load``: ``"r"`` read-only (the default), ``"c"``
            copy-on-write (changes stay in memory, and are what training
            reads). Modes that write the file (``"r+"``, ``"w+"``: the
            latter truncates it) are refused.

        Raises
        ------
        ValueError
            A write mode, or a file that is not a ``.npy`` array of at least
            one dimension (an ``.npz`` archive, text, a 0-d array).
        """
        import numpy

        if mmap_mode not in ("r", "c"):
            msg = (f"Dataset.from_npy: mmap_mode must be 'r' or 'c' (read modes), "
                   f"got {mmap_mode!r}; 'w+' would truncate the file and 'r+' "
                   "write to it")
            raise ValueError(msg)

        def open_(path):
            if path is None:
                return None
            path = os.fspath(path)
            _check_npy(path)
            array = numpy.load(path, mmap_mode=mmap_mode)
            if array.ndim == 0:
                msg = (f"Dataset.from_npy: {path!r} holds a 0-d array; a dataset "
                       "needs one row per sample (axis 0)")
                raise ValueError(msg)
            return array

        return ArrayDataset(open_(x), open_(y), open_(sample_weight))

    @staticmethod
    def from_list(samples, targets=None) -> ListDataset:
        """A dataset over a sequence of samples (anything with ``len`` and
        integer indexing, a PyTorch-style dataset too): ``samples[i]`` is
        one ``x`` or one ``(x, y)`` pair; a batch stacks them."""
        return ListDataset(samples, targets)


def _check_npy(path) -> None:
    """Refuse what ``numpy.load`` would open as something else, by name."""
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic.startswith(b"PK"):
        msg = (f"Dataset.from_npy: {path!r} is an .npz archive, not an .npy file; "
               "load it (arrays = numpy.load(path)) and pass "
               "Dataset.from_arrays(arrays['x'], arrays['y']), or save each "
               "array with numpy.save")
        raise ValueError(msg)
    if magic != b"\x93NUMPY":
        msg = (f"Dataset.from_npy: {path!r} is not an .npy file (no NumPy header); "
               "write it with numpy.save, or load text with numpy.loadtxt and "
               "pass Dataset.from_arrays")
        raise ValueError(msg)


def _rows(array):
    return int(array.shape[0]) if hasattr(array, "shape") else len(array)


class ArrayDataset(Dataset):
    """Arrays with one row per sample; see :meth:`Dataset.from_arrays`.

    A memory-mapped ``.npy`` array (``numpy.load(path, mmap_mode="r")``) is
    read with positioned reads of the rows a batch needs (``os.preadv`` on
    its file), not through the mapping: a shuffled pass would otherwise map
    the pages around every row it touches, and the file would end up
    counted whole in the process's memory.

    Examples
    --------
    >>> import portnn
    >>> ds = portnn.data.Dataset.from_arrays([[0.0], [1.0], [2.0]], [0, 1, 0])
    >>> type(ds).__name__, len(ds)
    ('ArrayDataset', 3)
    """

    #: bytes read through a mapping between releases of its pages
    release_every = 64 * 2**20

    def __init__(self, x, y=None, sample_weight=None) -> None:
        if x is None:
            msg = "Dataset.from_arrays needs x"
            raise ValueError(msg)
        from .structure import Structure

        # one array, or a list or dict of them for x and y: flattened here,
        # arranged again per batch
        self._parts = []
        self.arrays = []
        for part in (x, y, sample_weight):
            if part is None:
                continue
            structure, arrays = (Structure.of(part) if isinstance(part, (list, dict))
                                 and part and all(hasattr(a, "shape") for a in (
                                     part.values() if isinstance(part, dict)
                                     else part)) else (Structure(), [part]))
            self._parts.append((structure, len(self.arrays), len(arrays)))
            self.arrays.extend(arrays)
        lengths = {_rows(a) for a in self.arrays}
        if len(lengths) != 1:
            msg = (
                "Dataset.from_arrays: x, y and sample_weight must have the same "
                f"number of rows, got {[_rows(a) for a in self.arrays]}"
            )
            raise ValueError(msg)
        self._n = lengths.pop()
        self._has_y = y is not None
        self._read = 0
        self._readers = [_RowReader.of(a) for a in self.arrays]
        # pages to drop between batches: never a copy-on-write map's, whose
        # changed pages exist nowhere else (MADV_DONTNEED would revert them)
        self._mapped = [m for a, r in zip(self.arrays, self._readers, strict=True)
                        if r is None and (m := _mapping(a)) is not None
                        and _map_mode(a) != "c"]

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, indices):
        rows = [r(indices) if r is not None else _take(a, indices)
                for a, r in zip(self.arrays, self._readers, strict=True)]
        if self._mapped:
            self._read += sum(getattr(p, "nbytes", 0) for p in rows)
            if self._read >= self.release_every:
                self.release()
        parts = tuple(structure.rebuild(rows[start:start + n])
                      for structure, start, n in self._parts)
        return parts if len(parts) > 1 else parts[0]

    def release(self) -> None:
        """Unmap the pages read so far from memory-mapped arrays: they stay
        in the OS page cache, but no longer count in this process's memory."""
        import mmap

        self._read = 0
        for mapping in self._mapped:
            try:
                mapping.madvise(mmap.MADV_DONTNEED)
            except (AttributeError, OSError, ValueError):
                pass  # not on this platform; the OS reclaims the pages anyway


class _RowReader:
    """Rows of a whole-file, C-ordered memory-mapped ``.npy`` array, read
    from its file with ``os.preadv`` (contiguous runs of rows in one call)."""

    def __init__(self, filename, offset, shape, dtype) -> None:
        self.filename, self.offset = filename, int(offset)
        self.shape, self.dtype = tuple(shape), dtype
        self.row_bytes = dtype.itemsize
        for s in self.shape[1:]:
            self.row_bytes *= int(s)
        self._fd = None
        # the file whose header gave shape and dtype: a file replaced or
        # rewritten later would be read as garbage rows
        self.identity = _identity(os.stat(filename))

    @classmethod
    def of(cls, array):
        import mmap

        import numpy

        # only read-only maps: a copy-on-write map ("c") keeps its changes
        # in private pages the file never sees, and a writable one ("r+")
        # is read through its mapping, where its writes are
        if not (isinstance(array, numpy.memmap) and hasattr(os, "preadv")
                and getattr(array, "mode", None) == "r"
                and isinstance(array.base, mmap.mmap)  # the whole mapping
                and array.flags.c_contiguous and array.filename
                and array.ndim >= 1 and array.dtype.itemsize):
            return None
        return cls(array.filename, array.offset, array.shape, array.dtype)

    def _check_identity(self) -> None:
        if _identity(os.fstat(self._fd)) != self.identity:
            msg = (f"{self.filename!r} changed on disk after the Dataset was made "
                   "(its size, modification time or inode differ), so its rows no "
                   "longer match the header read then; make the Dataset again")
            raise OSError(msg)

    def __call__(self, indices):
        import numpy

        if self._fd is None:
            self._fd = os.open(self.filename, os.O_RDONLY)
        self._check_identity()  # one fstat a batch
        indices = numpy.asarray(indices, dtype=numpy.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= self.shape[0]):
            msg = f"row indices out of range for {self.shape[0]} rows"
            raise IndexError(msg)
        out = numpy.empty((indices.size, *self.shape[1:]), dtype=self.dtype)
        if indices.size == 0:
            return out
        raw = out.reshape(indices.size, -1).view(numpy.uint8)
        start = 0
        while start < indices.size:  # one read per run of consecutive rows
            stop = start + 1
            while stop < indices.size and indices[stop] == indices[stop - 1] + 1:
                stop += 1
            view = raw[start:stop].reshape(-1)
            at = self.offset + int(indices[start]) * self.row_bytes
            if os.preadv(self._fd, [view], at) != view.size:
                msg = f"{self.filename!r} is shorter than its header says"
                raise OSError(msg)
            start = stop
        return out

    def __del__(self):
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fd"] = None  # a descriptor is per process
        return state


def _map_mode(array):
    """The mode of the NumPy memmap behind `array` (a view of one too)."""
    while array is not None:
        mode = getattr(array, "mode", None)
        if isinstance(mode, str):
            return mode
        array = getattr(array, "base", None)
    return None


def _identity(st) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _mapping(array):
    """The mmap object behind a NumPy memmap (or a view of one), if any."""
    while array is not None:
        mm = getattr(array, "_mmap", None)
        if mm is not None:
            return mm
        array = getattr(array, "base", None)
    return None


def _take(array, indices):
    import numpy

    if isinstance(array, numpy.ndarray):
        return array[indices]  # fancy indexing: a memmap reads these rows only
    from ..backends import backend_of

    backend = backend_of(array)
    if backend is None:  # a list or another sequence
        return numpy.asarray([array[int(i)] for i in indices])
    return backend.xp.take(array, backend.asarray(indices), axis=0)


class ListDataset(Dataset):
    """A sequence of samples, stacked per batch; see :meth:`Dataset.from_list`.

    Examples
    --------
    >>> import portnn
    >>> ds = portnn.data.Dataset.from_list([[0.0, 1.0], [2.0, 3.0]], [0, 1])
    >>> type(ds).__name__, len(ds)
    ('ListDataset', 2)
    """

    def __init__(self, samples, targets=None) -> None:
        if targets is not None and len(targets) != len(samples):
            msg = (f"Dataset.from_list: {len(samples)} samples but "
                   f"{len(targets)} targets")
            raise ValueError(msg)
        self.samples, self.targets = samples, targets

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, indices):
        import numpy

        items = [self.samples[int(i)] for i in indices]
        if self.targets is not None:
            ys = [self.targets[int(i)] for i in indices]
            return numpy.stack([numpy.asarray(x) for x in items]), numpy.asarray(ys)
        if items and isinstance(items[0], tuple):
            columns = list(zip(*items, strict=True))
            return tuple(numpy.stack([numpy.asarray(v) for v in col])
                         for col in columns)
        return numpy.stack([numpy.asarray(x) for x in items])
