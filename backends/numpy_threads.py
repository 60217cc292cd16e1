"""NumPy's native convolution and max pooling, per chunk of the batch, the
chunks on a thread pool: im2col, GEMM and col2im for a convolution; the
running maximum and the routing of its gradient for pooling. And the dense
layer's products, kept off OpenBLAS's threads while the pool works.

NumPy releases the GIL in its copies, ufunc loops and BLAS calls, so the
window copies that dominate a small convolution, and the elementwise passes
of pooling (which run on one core in the portable path, whatever the BLAS's
thread count), run on every core.
Inside the pool the BLAS is held to one thread (threadpoolctl), so the
threads do not multiply. The thread count is read from the environment as
the BLAS reads it: ``PORTNN_NUM_THREADS``, ``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``, else the usable cores.
Results equal the portable path's to float rounding (tested against it).
"""

from __future__ import annotations

import contextlib
import os
import time
from concurrent.futures import ThreadPoolExecutor

# Below this many column elements per sample-chunk, threads cost more than
# they save (measured on the benchmark CNN: about 0.1 ms per pool round).
_MIN_CHUNK_WORK = 200_000
# A convolution's columns are built per chunk of about this many elements,
# used while they are in the cache and built again for the weight gradient
# rather than kept (the benchmark CNN kept 42 MB of them between passes).
_CONV_BLOCK = 1 << 19
# Pooling makes several passes over each chunk: chunks of about this many
# input elements keep them in the cache (the benchmark CNN's pooling backward
# at one thread: 8.4 ms in one piece, 4.8 ms in 1 MB chunks).
_POOL_BLOCK = 1 << 18
# After a multi-threaded call, OpenBLAS keeps its workers spinning for about
# 0.1 s, on the cores the pool's threads need: the benchmark CNN's second
# convolution took 7.2 ms with OpenBLAS idle and 14.7 ms just after the dense
# head's 2-thread GEMM, and the whole step at 2 threads was slower than at 1.
# While the pool has worked this recently, GEMMs stay off OpenBLAS's threads.
_ENGAGED_S = 1.0
# OpenBLAS runs a GEMM on one thread below this M * N * K (its interface/gemm.c:
# SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD): nothing to keep off.
_OPENBLAS_SERIAL_MNK = 65536 * 4
# Above this M * N * K a GEMM is worth splitting by rows on the pool (a pool
# round costs about 0.1 ms; a GEMM this size, about 0.4 ms on one thread).
_SPLIT_MNK = 1 << 24


def thread_count() -> int:
    """Threads for NumPy's native kernels, from the environment."""
    for name in ("PORTNN_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "MKL_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _Pool:
    """A lazily started thread pool with the BLAS held to one thread
    while it works."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._executor = None
        self._controller = None
        self._last_used = -float("inf")

    def engaged(self) -> bool:
        """Whether the pool has run work on several threads lately."""
        return time.monotonic() - self._last_used < _ENGAGED_S

    def _start(self):
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.threads,
                                                thread_name_prefix="portnn")
            try:
                from threadpoolctl import ThreadpoolController

                self._controller = ThreadpoolController()
            except ImportError:
                self._controller = False

    def blas_on_one_thread(self):
        """A context holding the BLAS to one thread (where threadpoolctl is)."""
        self._start()
        if self._controller:
            return self._controller.limit(limits=1, user_api="blas")
        return contextlib.nullcontext()

    def map(self, fn, items, blas: bool = True):
        """``[fn(item) for item in items]`` on the pool's threads; `blas`
        says whether `fn` calls the BLAS (which is then held to one thread)."""
        items = list(items)
        if len(items) == 1 or self.threads == 1:
            return [fn(item) for item in items]
        self._start()
        try:
            with self.blas_on_one_thread() if blas else contextlib.nullcontext():
                return list(self._executor.map(fn, items))
        finally:
            self._last_used = time.monotonic()

    def map_blocks(self, fn, plan, blas: bool = True):
        """`fn` over every block of a :func:`_chunks` plan, each thread
        taking its own list; results in block order."""
        parts = self.map(lambda blocks: [fn(block) for block in blocks], plan, blas)
        return [result for part in parts for result in part]


def _chunks(threads: int, n: int, work_per_sample: int, block: int | None = None):
    """A plan: per thread, its ``(start, stop)`` row ranges. One thread per
    part of the batch (fewer for small work); with `block`, each part is cut
    into blocks of about `block` elements of work, so that the passes over a
    block run in the cache. A thread walks its own blocks: handing every
    block to the pool would cost about as much as the block's work."""
    parts = max(1, min(threads, n, n * work_per_sample // _MIN_CHUNK_WORK))
    bounds = [n * i // parts for i in range(parts + 1)]
    rows = max(1, block // work_per_sample) if block else n
    return [[(s, min(s + rows, b)) for s in range(a, b, rows)]
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


_POOL = None


def shared_pool() -> _Pool:
    """The one pool the NumPy kernels share (a pool per kernel would
    multiply the threads)."""
    global _POOL
    if _POOL is None:
        _POOL = _Pool(thread_count())
    return _POOL


def _columns(ctx, a, b):
    """im2col of samples ``a:b``: ``(b - a, C * K, OH * OW)`` (with groups,
    ``(b - a, G, C // G * K, OH * OW)``)."""
    import numpy as np

    from portnn.ops.windows import window_views

    x, _, kernel, stride, dilation, g, (oh, ow) = ctx
    c, k = x.shape[1], kernel[0] * kernel[1]
    cols = np.stack(window_views(x[a:b], kernel, stride, dilation), axis=2)
    return cols.reshape((b - a, c * k, oh * ow) if g == 1 else
                        (b - a, g, (c // g) * k, oh * ow))


class ThreadedConv2d:
    """The three products of :class:`portnn.ops.conv.Conv2dPortable`, in
    NumPy, over chunks of the batch on `threads` threads."""

    def __init__(self, threads: int | None = None) -> None:
        self.pool = _Pool(threads) if threads else shared_pool()

    def forward(self, x, w, stride, dilation, groups):
        import numpy as np

        from portnn.ops.windows import output_size

        n, c, h, wd = x.shape
        o, kernel = w.shape[0], tuple(w.shape[2:])
        oh = output_size(h, kernel[0], stride[0], dilation[0])
        ow = output_size(wd, kernel[1], stride[1], dilation[1])
        k, g = kernel[0] * kernel[1], groups
        wm = w.reshape((o, c * k) if g == 1 else (g, o // g, (c // g) * k))
        y = np.empty((n, o, oh, ow), dtype=np.result_type(x, w))
        chunks = _chunks(self.pool.threads, n, c * k * oh * ow, _CONV_BLOCK)
        ctx = (x, chunks, kernel, stride, dilation, g, (oh, ow))

        def run(bounds):
            a, b = bounds
            out = y[a:b].reshape((b - a, o, oh * ow) if g == 1 else
                                 (b - a, g, o // g, oh * ow))
            np.matmul(wm, _columns(ctx, a, b), out=out)

        self.pool.map_blocks(run, chunks)
        return y, ctx

    def weight_grad(self, ctx, dy, w_shape):
        import numpy as np

        _, chunks, _, _, _, g, _ = ctx
        o = dy.shape[1]

        def run(bounds):  # the chunk's columns again, while they are in cache
            a, b = bounds
            dyg = dy[a:b].reshape((b - a, o, -1) if g == 1 else (b - a, g, o // g, -1))
            return np.matmul(dyg, np.swapaxes(_columns(ctx, a, b), -1, -2)).sum(axis=0)

        parts = self.pool.map_blocks(run, chunks)
        total = parts[0]
        for part in parts[1:]:
            total += part
        return total.reshape(w_shape)

    def input_grad(self, ctx, dy, w):
        import numpy as np

        from portnn.ops.windows import window_keys

        x, chunks, kernel, stride, dilation, g, _ = ctx
        x_shape = tuple(x.shape)
        n, o, oh, ow = dy.shape
        c, k = x_shape[1], kernel[0] * kernel[1]
        wt = np.swapaxes(w.reshape((o, -1) if g == 1 else (g, o // g, -1)), -1, -2)
        keys = window_keys(kernel, stride, dilation, (oh, ow))
        dx = np.zeros(x_shape, dtype=dy.dtype)

        def run(bounds):
            a, b = bounds
            dyg = dy[a:b].reshape((b - a, o, -1) if g == 1 else (b - a, g, o // g, -1))
            dcols = np.matmul(wt, dyg).reshape((b - a, c, k, oh, ow))
            rows = dx[a:b]
            for i, key in enumerate(keys):  # the chunk's rows only: no races
                view = rows[key]
                view += dcols[:, :, i]

        self.pool.map_blocks(run, chunks)
        return dx


class ThreadedMaxPool2d:
    """:class:`portnn.ops.pool.MaxPool2dPortable`'s two products in NumPy,
    over chunks of the batch on `threads` threads, each written into the
    result in place (the gradient through boolean masks, no float ones)."""

    def __init__(self, threads: int | None = None) -> None:
        self.pool = _Pool(threads) if threads else shared_pool()

    def forward(self, x, kernel, stride, pads):
        import numpy as np

        from portnn.ops.windows import output_size, window_keys

        (top, bottom), (left, right) = pads
        if top or bottom or left or right:
            x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)),
                       constant_values=-np.inf)
        n, c, hp, wp = x.shape
        oh = output_size(hp, kernel[0], stride[0], 1)
        ow = output_size(wp, kernel[1], stride[1], 1)
        keys = window_keys(kernel, stride, (1, 1), (oh, ow))
        y = np.empty((n, c, oh, ow), dtype=x.dtype)
        chunks = _chunks(self.pool.threads, n, c * hp * wp, _POOL_BLOCK)

        def run(bounds):
            a, b = bounds
            rows, out = x[a:b], y[a:b]
            np.copyto(out, rows[keys[0]])
            for key in keys[1:]:
                np.maximum(out, rows[key], out=out)  # propagates NaN

        self.pool.map_blocks(run, chunks, blas=False)
        return y, (x, y, keys, chunks, pads,
                   all(s >= k for s, k in zip(stride, kernel, strict=True)))

    def input_grad(self, ctx, dy):
        import numpy as np

        x, y, keys, chunks, pads, disjoint = ctx
        dx = np.zeros(x.shape, dtype=dy.dtype)

        def run(bounds):
            a, b = bounds
            rows, best, d, out = x[a:b], y[a:b], dy[a:b], dx[a:b]
            taken = None  # outputs whose gradient an earlier tap took
            for i, key in enumerate(keys):
                hit = rows[key] == best
                if taken is not None:
                    np.logical_and(hit, np.logical_not(taken), out=hit)
                view = out[key]
                # d * hit, not a where= mask: 6x faster into strided views
                if disjoint:  # each input under at most one window
                    np.multiply(d, hit, out=view)
                else:
                    view += d * hit
                if i < len(keys) - 1:
                    taken = hit if taken is None else np.logical_or(taken, hit,
                                                                    out=taken)

        self.pool.map_blocks(run, chunks, blas=False)
        (top, bottom), (left, right) = pads
        return dx[..., top:dx.shape[-2] - bottom, left:dx.shape[-1] - right]


class PoolAwareMatmul:
    """``a @ b`` for the dense layer's three products; while the shared pool
    is engaged (a convolutional network's step), a GEMM OpenBLAS would
    thread runs on one BLAS thread, or split by rows on the pool when it is
    large, so that OpenBLAS's spinning workers never compete with the pool.
    Otherwise (an MLP) OpenBLAS threads it as usual."""

    def __init__(self, threads: int | None = None) -> None:
        self.pool = _Pool(threads) if threads else shared_pool()

    def as_function(self):
        """This product as a plain function with the small-product test
        first: calling an instance costs 0.1 us more, half a microsecond of
        the XOR network's step."""
        limit, threaded = _OPENBLAS_SERIAL_MNK, self.__call__

        def matmul(a, b):
            if a.size * b.shape[-1] <= limit:
                return a @ b
            return threaded(a, b)

        matmul.pool = self.pool  # the pool it shares with the convolutions
        return matmul

    def __call__(self, a, b):
        # first the test that costs least: OpenBLAS runs small products on
        # one thread anyway (the XOR network's 4 x 16 GEMMs); for 2-D
        # operands a.size * n is m * k * n, and other shapes go to @ below
        if a.size * b.shape[-1] <= _OPENBLAS_SERIAL_MNK:
            return a @ b
        if a.ndim != 2 or b.ndim != 2:
            return a @ b
        (m, k), n = a.shape, b.shape[1]
        work = m * k * n
        pool = self.pool
        if pool.threads == 1 or not pool.engaged():
            return a @ b
        import numpy as np

        if work < _SPLIT_MNK or m < 2 * pool.threads:
            with pool.blas_on_one_thread():
                return a @ b
        out = np.empty((m, n), dtype=np.result_type(a, b))

        def run(bounds):
            r0, r1 = bounds
            np.matmul(a[r0:r1], b, out=out[r0:r1])

        pool.map_blocks(run, _chunks(pool.threads, m, k * n))
        return out
