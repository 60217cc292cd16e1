"""The benchmark suite: every case, every implementation, one table.

    OMP_NUM_THREADS=1 python benchmarks/run.py            # all cases
    OMP_NUM_THREADS=2 python benchmarks/run.py --cases mlp cnn --reps 7

For each case, portnn on every usable backend runs next to a hand-written
NumPy version of the same network (where the suite has one), PyTorch (CPU
eager and under torch.compile, and CUDA where a GPU exists) and, where
``keras`` is installed, Keras 3's jitted JAX step (``keras_peer.py``), all
from the same initial weights on the same batches. Repetitions are
interleaved, so drift on a shared machine hits every implementation alike,
with a pause before each block so that the thread pools of the one before
are idle; the device is synchronized before each clock read; warm-up steps
come first and their losses must agree across implementations. Printed per
implementation: median and minimum time per step, samples/s, GFLOP/s and the
fraction of the measured single-GEMM peak, peak memory of one step (NumPy
allocations, through tracemalloc), the ratio to the hand-written and PyTorch
CPU times (the median of the ratios within each repetition), and the time
the warm-up took beyond its steps (a compiler's time: the jit and compile
columns trace and compile there). ``--json`` writes the same figures.

Set the thread count in the environment before Python starts: the BLAS
reads it once, at import. array_api_strict is a portability reference, not
a performance target, and is left out.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time
import tracemalloc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from cases import CASES  # noqa: E402

import portnn  # noqa: E402

WARMUP = 5
# NumPy's OpenBLAS and PyTorch's OpenMP each keep their worker threads
# spinning for a while after a call; with the implementations interleaved
# in one process, the previous one's spinners would steal cores from the next
# (on 2 cores this cost portnn-torch 1.7x -> 1.1x PyTorch on the MLP). A real
# program runs one of them, so each block starts once the others are idle.
SETTLE_S = 0.3


def gemm_peak(n=1024, reps=7) -> float:
    """Best float32 GEMM rate of NumPy's BLAS here, in GFLOP/s."""
    rs = np.random.default_rng(0)
    a = rs.random((n, n), dtype=np.float32)
    b = rs.random((n, n), dtype=np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(reps))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _backends(wanted=("numpy", "torch", "jax-jit", "torch-compile", "cupy",
                      "torch:cuda")):
    names = []
    for spec in wanted:
        try:
            portnn.backends.get(spec.removesuffix("-jit").removesuffix("-compile"))
            names.append(spec)
        except (portnn.backends.BackendUnavailableError, ValueError):
            pass
    return names


def _torch_devices():
    try:
        import torch
    except ImportError:
        return []
    return ["cpu", "cpu-compile"] + (["cuda"] if torch.cuda.is_available() else [])


def _peak_memory(step) -> float | None:
    """Peak bytes NumPy allocates during one step (None if not NumPy)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    step()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak if peak > 4096 else None  # torch/cupy memory is invisible here


def run_case(case, reps, peak_gflops):
    runs = {}
    for name, factory in case.impls.items():
        step, sync = factory()
        t0 = time.perf_counter()
        losses = [float(step()) for _ in range(WARMUP)]
        sync()
        runs[name] = {"step": step, "sync": sync, "losses": losses, "times": [],
                      "warmup_s": time.perf_counter() - t0}
    ref = runs[next(iter(runs))]["losses"]
    for r in runs.values():
        r["loss_ok"] = bool(np.allclose(r["losses"], ref, rtol=2e-4, atol=1e-5))
    for _ in range(reps):
        for r in runs.values():
            step, sync = r["step"], r["sync"]
            sync()
            time.sleep(SETTLE_S)
            t0 = time.perf_counter()
            for _ in range(case.steps):
                step()
            sync()
            r["times"].append((time.perf_counter() - t0) / case.steps)
    rows = []
    for name, r in runs.items():
        med = statistics.median(r["times"])
        gflops = case.flops / med / 1e9 if case.flops else None
        mem = _peak_memory(r["step"]) if name.startswith(("numpy", "portnn-numpy")) \
            else None
        rows.append({
            "case": case.name, "impl": name, "median_s": med, "min_s": min(r["times"]),
            "times_s": r["times"],
            "samples_per_s": case.batch / med, "gflops": gflops,
            "peak_fraction": gflops / peak_gflops if gflops else None,
            "peak_mib": mem / 2 ** 20 if mem else None,
            "losses": r["losses"], "loss_agrees": r["loss_ok"],
            # what the warm-up took beyond its steps: a compiler's time
            "compile_s": max(r["warmup_s"] - WARMUP * med, 0.0),
        })
    for row in rows:
        for ref_name, key in (("numpy hand-written", "vs_handwritten"),
                              ("pytorch-cpu", "vs_torch_cpu")):
            ref = runs.get(ref_name)
            row[key] = _paired_ratio(runs[row["impl"]]["times"], ref["times"]) \
                if ref else None
    return rows


def _paired_ratio(times, ref_times):
    """The median over repetitions of each one's ratio to the reference's
    block in the same repetition, seconds apart: a shared machine's speed
    drifts by tens of percent within a run (the single-GEMM peak read 70
    and 93 GFLOP/s in two runs), and a ratio of medians taken minutes apart
    carries that drift."""
    return statistics.median(t / r for t, r in zip(times, ref_times, strict=True))


def _fmt(v, spec):
    return format(v, spec) if v is not None else "-"


def print_table(rows, header):
    print(header)
    print(f"{'case':28s} {'implementation':20s} {'median':>10s} {'min':>10s} "
          f"{'samples/s':>10s} {'GFLOP/s':>8s} {'%peak':>6s} {'MiB':>7s} "
          f"{'/hand':>6s} {'/torch':>6s} {'compile':>8s}  loss")
    last = None
    for r in rows:
        case = r["case"] if r["case"] != last else ""
        last = r["case"]
        unit = 1e3 if r["median_s"] > 1e-3 else 1e6
        suffix = "ms" if unit == 1e3 else "us"
        print(f"{case:28s} {r['impl']:20s} "
              f"{r['median_s'] * unit:8.3f}{suffix} {r['min_s'] * unit:8.3f}{suffix} "
              f"{r['samples_per_s']:10.0f} {_fmt(r['gflops'], '8.1f')} "
              f"{_fmt(r['peak_fraction'] and 100 * r['peak_fraction'], '6.0f')} "
              f"{_fmt(r['peak_mib'], '7.1f')} {_fmt(r['vs_handwritten'], '6.2f')} "
              f"{_fmt(r['vs_torch_cpu'], '6.2f')} {r['compile_s']:7.1f}s  "
              f"{'ok' if r['loss_agrees'] else 'MISMATCH'} {r['losses'][0]:.4f}")


def _hold_to_thread_count() -> None:
    """Pin the process to OMP_NUM_THREADS cores. The BLAS libraries and
    PyTorch read the variable; XLA's CPU runtime sizes its own thread pools
    by the cores it may use (measured: 1.7 cores busy on the MLP under
    OMP_NUM_THREADS=1 and XLA's single-thread flags), so the cores are what
    holds every implementation to the same count."""
    wanted = os.environ.get("OMP_NUM_THREADS", "")
    if not wanted.isdigit() or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    if 0 < int(wanted) < len(cores):
        os.sched_setaffinity(0, cores[:int(wanted)])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--json", default=None, help="also write the figures here")
    p.add_argument("--backends", nargs="*", default=None,
                   help="portnn backends to time (default: numpy, torch, jax-jit "
                        "and torch-compile (the step compiled by jax.jit and by "
                        "torch.compile), and cupy and torch:cuda "
                        "where usable)")
    args = p.parse_args(argv)
    _hold_to_thread_count()
    backends = _backends(args.backends) if args.backends else _backends()
    devices = _torch_devices()
    peak = gemm_peak()
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    header = (f"portnn {portnn.__version__}, {platform.machine()}, "
              f"OMP_NUM_THREADS={threads}, float32, {args.reps} interleaved reps, "
              f"single-GEMM peak {peak:.1f} GFLOP/s; times per training step")
    rows = []
    for name in args.cases:
        rows += run_case(CASES[name](backends, devices), args.reps, peak)
    print_table(rows, header)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            {"threads": threads, "gemm_peak_gflops": peak, "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
