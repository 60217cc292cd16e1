"""NumPy's native convolution: im2col, GEMM and col2im per chunk of the
batch, the chunks on a thread pool.

NumPy releases the GIL in its copies, ufunc loops and BLAS calls, so the
window copies that dominate a small convolution (and run on one core in
the portable path, whatever the BLAS's thread count) run on every core.
Inside the pool the BLAS is held to one thread (threadpoolctl), so the
threads do not multiply. The thread count is read from the environment as
the BLAS reads it: ``PORTNN_NUM_THREADS``, ``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``, else the usable cores.
Results equal the portable path's to float rounding (tested against it).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

# Below this many column elements per sample-chunk, threads cost more than
# they save (measured on the benchmark CNN: about 0.1 ms per pool round).
_MIN_CHUNK_WORK = 200_000


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

    def map(self, fn, items):
        items = list(items)
        if len(items) == 1:
            return [fn(items[0])]
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.threads,
                                                thread_name_prefix="portnn")
            try:
                from threadpoolctl import ThreadpoolController

                self._controller = ThreadpoolController()
            except ImportError:
                self._controller = False
        if self._controller:
            with self._controller.limit(limits=1, user_api="blas"):
                return list(self._executor.map(fn, items))
        return list(self._executor.map(fn, items))


class ThreadedConv2d:
    """The three products of :class:`portnn.ops.conv.Conv2dPortable`, in
    NumPy, over chunks of the batch on `threads` threads."""

    def __init__(self, threads: int | None = None) -> None:
        self.pool = _Pool(threads or thread_count())

    def _chunks(self, n: int, work_per_sample: int):
        parts = max(1, min(self.pool.threads, n,
                           n * work_per_sample // _MIN_CHUNK_WORK))
        bounds = [n * i // parts for i in range(parts + 1)]
        return list(zip(bounds[:-1], bounds[1:], strict=True))

    def forward(self, x, w, stride, dilation, groups):
        import numpy as np

        from portnn.ops.windows import output_size, window_views

        n, c, h, wd = x.shape
        o, kernel = w.shape[0], tuple(w.shape[2:])
        oh = output_size(h, kernel[0], stride[0], dilation[0])
        ow = output_size(wd, kernel[1], stride[1], dilation[1])
        k, g = kernel[0] * kernel[1], groups
        wm = w.reshape((o, c * k) if g == 1 else (g, o // g, (c // g) * k))
        y = np.empty((n, o, oh, ow), dtype=np.result_type(x, w))
        chunks = self._chunks(n, c * k * oh * ow)

        def run(bounds):
            a, b = bounds
            cols = np.stack(window_views(x[a:b], kernel, stride, dilation), axis=2)
            cols = cols.reshape((b - a, c * k, oh * ow) if g == 1 else
                                (b - a, g, (c // g) * k, oh * ow))
            out = y[a:b].reshape((b - a, o, oh * ow) if g == 1 else
                                 (b - a, g, o // g, oh * ow))
            np.matmul(wm, cols, out=out)
            return cols

        cols = self.pool.map(run, chunks)
        return y, (cols, chunks, tuple(x.shape), kernel, stride, dilation, g)

    def weight_grad(self, ctx, dy, w_shape):
        import numpy as np

        cols, chunks, _, _, _, _, g = ctx
        n, o = dy.shape[0], dy.shape[1]

        def run(i):
            a, b = chunks[i]
            dyg = dy[a:b].reshape((b - a, o, -1) if g == 1 else (b - a, g, o // g, -1))
            return np.matmul(dyg, np.swapaxes(cols[i], -1, -2)).sum(axis=0)

        parts = self.pool.map(run, range(len(chunks)))
        total = parts[0]
        for part in parts[1:]:
            total += part
        return total.reshape(w_shape)

    def input_grad(self, ctx, dy, w):
        import numpy as np

        from portnn.ops.windows import window_keys

        _, chunks, x_shape, kernel, stride, dilation, g = ctx
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

        self.pool.map(run, chunks)
        return dx
