"""The compiled step on one backend: the same fit eager and with
``jit_compile=True``, from the same weights on the same batches; prints the
step times (after the compile) and how far the losses are apart.

    python benchmarks/compiled_check.py jax:gpu torch:cuda   # on a GPU
    python benchmarks/compiled_check.py jax torch            # on the CPU

``benchmarks/gpu_check.py`` runs it on every GPU backend that compiles.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import portnn

#: the losses of a compiled and an eager fit may differ by float32 rounding
#: of a different summation order, not more
RTOL = 1e-4


def _model():
    return portnn.Sequential(
        portnn.Dense(64, 256, bias=False), portnn.BatchNorm1D(256), portnn.ReLU(),
        portnn.Dropout(0.2), portnn.Dense(256, 10))


def _fit(spec, jit, x, y, epochs):
    """Seconds per step after the first epoch, and the losses per epoch."""
    with portnn.use_backend(spec):
        portnn.seed(0)
        model = _model()
        model.compile(loss="cross_entropy", optimizer="adam", jit_compile=jit)
        first = model.fit(x, y, epochs=1, batch_size=128, verbose=0)["loss"]
        start = time.perf_counter()
        later = model.fit(x, y, epochs=epochs, batch_size=128, verbose=0)["loss"]
        steps = epochs * (len(x) // 128)
        return (time.perf_counter() - start) / steps, first + later


def check(spec: str, epochs: int = 3, rows: int = 2048) -> dict:
    """Eager and compiled fits of a 64-256-10 MLP (BatchNorm, Dropout,
    Adam) on `spec`: ``{"ok", "eager_ms", "compiled_ms", "max_rel_diff"}``."""
    rs = np.random.default_rng(0)
    x = rs.normal(size=(rows, 64)).astype(np.float32)
    y = (x[:, :10].argmax(axis=1)).astype(np.int64)
    eager_s, eager = _fit(spec, False, x, y, epochs)
    jit_s, compiled = _fit(spec, True, x, y, epochs)
    diff = float(np.max(np.abs(np.subtract(compiled, eager)) / np.abs(eager)))
    return {"ok": diff <= RTOL, "eager_ms": 1e3 * eager_s,
            "compiled_ms": 1e3 * jit_s, "max_rel_diff": diff}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("backends", nargs="+", help='e.g. "jax:gpu" "torch:cuda"')
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args(argv)
    failed = []
    for spec in args.backends:
        r = check(spec, args.epochs)
        print(f"{spec:11s} eager {r['eager_ms']:.3f} ms/step, compiled "
              f"{r['compiled_ms']:.3f} ms/step "
              f"({r['eager_ms'] / r['compiled_ms']:.2f}x); losses agree to "
              f"{r['max_rel_diff']:.1e} ({'ok' if r['ok'] else 'FAILED'})",
              flush=True)
        if not r["ok"]:
            failed.append(spec)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
