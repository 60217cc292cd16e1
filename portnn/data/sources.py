"""Where `fit`, `evaluate` and `predict` take each epoch's batches from.

- :class:`ArraySource`: arrays already on the device, shuffled there with
  portnn's counter-based generator and sliced (nothing to prefetch).
- :class:`DatasetSource`: a :class:`~portnn.data.Dataset`; the epoch's
  permutation is drawn on the host from the same generator (so the order
  is the one an array would get, on every backend), batches are assembled
  on the host and made ready (checked, moved to the device) by `prepare`.
- :class:`IterableSource`: any iterable of batches, re-iterated each epoch,
  or `steps` batches an epoch from an endless generator.

The last two prefetch: a background thread prepares the next batches while
the current one trains (:func:`prefetched`). NumPy releases the GIL in its
copies and a GPU copy runs while Python waits, so the host work overlaps.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from ..backends import get
from .structure import Structure, leaves, map_structure


class Batch(NamedTuple):
    """One batch: inputs, targets (or None) and sample weights (or None)."""

    x: Any
    y: Any = None
    w: Any = None


def as_batch(item) -> Batch:
    """A batch from what a dataset or an iterable gives: ``x``, ``(x, y)``
    or ``(x, y, sample_weight)``."""
    if isinstance(item, Batch):
        return item
    if isinstance(item, (tuple, list)):
        if not 1 <= len(item) <= 3:
            msg = (
                "a batch is x, (x, y) or (x, y, sample_weight); got a "
                f"{type(item).__name__} of {len(item)} items"
            )
            raise ValueError(msg)
        return Batch(*item)
    return Batch(item)


def batch_rows(data) -> int:
    """Rows (samples) of one array or of a list or dict of arrays."""
    first = leaves(data)[0]
    return int(first.shape[0])


def take_rows(data, rows):
    """``a[rows, ...]`` of every array of one, a list or a dict of arrays."""
    return map_structure(lambda a: a[rows, ...], data)


def concat_rows(parts: list, xp):
    """Batches of outputs (each one array, a list or a dict) joined along
    the rows."""
    if len(parts) == 1:
        return parts[0]
    structure, _ = Structure.of(parts[0])
    columns = zip(*(leaves(p) for p in parts), strict=True)
    return structure.rebuild([xp.concat(list(c), axis=0) for c in columns])


class ArraySource:
    """Device arrays, shuffled on the device and sliced into batches; `x`,
    `y` and `w` may each be one array or a list or dict of arrays (a graph
    model's inputs and outputs), sliced alike."""

    def __init__(self, x, y=None, w=None, *, batch_size: int, shuffle: bool = False,
                 rng=None, backend=None, shard=None) -> None:
        self.x, self.y, self.w = x, y, w
        self.batch_size, self.shuffle = batch_size, shuffle
        self.rng, self.backend = rng, backend
        self.shard = shard  # (rank, size): this rank's rows of each batch
        self.n = batch_rows(x)

    @property
    def n_batches(self) -> int:
        return -(-self.n // self.batch_size)

    def batches(self) -> Iterator[Batch]:
        x, y, w = self.x, self.y, self.w
        if self.shuffle:
            xp = self.backend.xp
            perm = self.rng.permutation(self.n, backend=self.backend)
            x, y, w = (None if a is None else map_structure(
                lambda v: xp.take(v, perm, axis=0), a) for a in (x, y, w))
        for lo in range(0, self.n, self.batch_size):
            hi = min(self.n, lo + self.batch_size)
            rows = slice(lo, hi) if self.shard is None else _shifted(
                shard_rows(hi - lo, *self.shard), lo)
            yield Batch(take_rows(x, rows), None if y is None else take_rows(y, rows),
                        None if w is None else take_rows(w, rows))


def shard_rows(n: int, rank: int, size: int) -> slice:
    """The rows of a batch of `n` that `rank` of `size` takes: contiguous,
    the first ``n % size`` ranks one row more (none if ``n < size`` leaves
    none)."""
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def _shifted(rows: slice, by: int) -> slice:
    return slice(rows.start + by, rows.stop + by)


class DatasetSource:
    """Batches of a Dataset, assembled on the host and prefetched."""

    def __init__(self, dataset, *, batch_size: int, shuffle: bool = False, rng=None,
                 prepare: Callable[[Any], Batch], prefetch: bool = True,
                 shard=None) -> None:
        self.dataset = dataset
        self.batch_size, self.shuffle, self.rng = batch_size, shuffle, rng
        self.shard = shard
        self.prepare, self.prefetch = prepare, prefetch
        self.n = len(dataset)
        if self.n == 0:
            msg = "the dataset is empty"
            raise ValueError(msg)

    @property
    def n_batches(self) -> int:
        return -(-self.n // self.batch_size)

    def first(self):
        """The first sample, as the dataset gives it (for up-front checks)."""
        return self.dataset[_host_indices(0, 1)]

    def batches(self) -> Iterator[Batch]:
        host = get("numpy")
        if self.shuffle:
            order = self.rng.permutation(self.n, backend=host)
        else:
            order = host.xp.arange(self.n, dtype=host.xp.int64)
        chunks = (order[lo:min(self.n, lo + self.batch_size)]
                  for lo in range(0, self.n, self.batch_size))
        if self.shard is not None:  # this rank's rows of every global batch
            chunks = (c[shard_rows(c.shape[0], *self.shard)] for c in chunks)
        items = (self.dataset[idx] for idx in chunks)
        try:
            yield from prefetched(items, self.prepare, enabled=self.prefetch)
        finally:
            self.dataset.release()


def _host_indices(lo, hi):
    host = get("numpy")
    return host.xp.arange(lo, hi, dtype=host.xp.int64)


def _len(iterable):
    try:
        return len(iterable)
    except TypeError:
        return None


class IterableSource:
    """Batches from an iterable: all of it each epoch, or `steps` batches an
    epoch from an endless (or one-shot) iterator."""

    def __init__(self, iterable: Iterable, *, steps: int | None = None,
                 prepare: Callable[[Any], Batch], prefetch: bool = True) -> None:
        self.iterable, self.steps = iterable, steps
        self.prepare, self.prefetch = prepare, prefetch
        self.one_shot = iter(iterable) is iterable
        self._it = None
        self._peeked = []
        self._epochs = 0

    @property
    def n_batches(self) -> int | None:
        if self.steps is not None:
            return self.steps
        try:
            return len(self.iterable)
        except TypeError:
            return None

    def first(self):
        """The first batch, kept to be trained on (for up-front checks)."""
        size = self.n_batches if self.steps is None else _len(self.iterable)
        if self.steps is not None and size is not None and size < self.steps:
            msg = (f"steps_per_epoch={self.steps} but the iterable holds {size} "
                   f"batches; pass steps_per_epoch={size} or fewer (or None: all "
                   "of it each epoch)")
            raise ValueError(msg)
        if not self._peeked:
            self._it = iter(self.iterable)
            try:
                self._peeked.append(next(self._it))
            except StopIteration:
                msg = "the iterable of batches is empty"
                raise ValueError(msg) from None
        return self._peeked[0]

    def _items(self):
        if self._it is None or (self.steps is None and not self.one_shot
                                and not self._peeked):
            self._it = iter(self.iterable)
        count = 0
        while self.steps is None or count < self.steps:
            if self._peeked:
                item = self._peeked.pop()
            else:
                try:
                    item = next(self._it)
                except StopIteration:
                    if self.steps is not None and count:
                        msg = (f"the iterable ended after {count} batches of an "
                               f"epoch of steps_per_epoch={self.steps}: make it "
                               "endless (a generator with a while loop) or pass "
                               f"steps_per_epoch={count}")
                        raise ValueError(msg) from None
                    break
            count += 1
            yield item
        if count == 0:
            msg = (
                "the iterable gave no batch this epoch: a generator is used up "
                "after one pass; pass steps_per_epoch (and make it endless) or "
                "a re-iterable object (a list, a Dataset)"
            )
            raise ValueError(msg)

    def batches(self) -> Iterator[Batch]:
        self._epochs += 1
        yield from prefetched(self._items(), self.prepare, enabled=self.prefetch)


_END = object()


class _Raised(NamedTuple):
    error: BaseException


def prefetched(items: Iterable, prepare: Callable[[Any], Any], *,
               enabled: bool = True, depth: int = 2) -> Iterator[Any]:
    """``prepare(item)`` for each item, computed up to `depth` items ahead in
    a background thread (errors are raised here, in order). The thread runs
    in a copy of the caller's context: the backend set with ``set_backend``
    and the generator seeded with ``portnn.seed`` are the caller's.

    Examples
    --------
    >>> list(prefetched(range(4), lambda i: i * i))
    [0, 1, 4, 9]
    """
    if not enabled:
        for item in items:
            yield prepare(item)
        return
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(value) -> bool:
        while not stop.is_set():
            try:
                ready.put(value, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in items:
                if not put(prepare(item)):
                    return
        except BaseException as exc:  # handed to the consumer, in order
            put(_Raised(exc))
            return
        put(_END)

    # the caller's context: its backend, default dtype and generator (the
    # generator is shared, so draws made here advance the caller's stream)
    context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(work,),
                              name="portnn-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            value = ready.get()
            if value is _END:
                return
            if isinstance(value, _Raised):
                raise value.error
            yield value
    finally:
        stop.set()
        worker.join(timeout=5)
