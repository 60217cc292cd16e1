"""Data-parallel scaling: 1 rank x 1 thread against 2 ranks x 1 thread each.

    python benchmarks/data_parallel.py                 # every case, 3 rounds
    python benchmarks/data_parallel.py --cases mlp --rounds 5 --backend torch

The driver starts ``mpiexec -n 1`` and ``mpiexec -n 2`` runs of this file in
worker mode, alternating round by round so that drift on a shared machine
hits both alike, each rank with ``OMP_NUM_THREADS=1``. A worker trains the
case through ``Model.fit`` at a fixed global batch (so two ranks each
compute half of it) and reports from rank 0: the median time per step (a
step ends at ``on_batch_end``), samples/s, and the time inside the gradient
all-reduce, which includes waiting for the slower rank. Printed: both
runs side by side, the speed-up of two ranks over one and its scaling
efficiency (speed-up / 2), and the fraction of a step spent communicating.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve()
CASES = {
    # name: (global batch, steps timed, layers)
    "mlp": (128, 60, "mlp"),
    "mlp-b512": (512, 20, "mlp"),
    "cnn": (128, 8, "cnn"),
}


def _build(kind):
    import portnn

    if kind == "mlp":
        return portnn.Sequential(portnn.Dense(784, 512), portnn.ReLU(),
                                 portnn.Dense(512, 512), portnn.ReLU(),
                                 portnn.Dense(512, 10)), (784,)
    return portnn.Sequential(
        portnn.Conv2D(1, 16, 3), portnn.ReLU(), portnn.Conv2D(16, 32, 3),
        portnn.ReLU(), portnn.MaxPool2D(2), portnn.Flatten(),
        portnn.Dense(32 * 12 * 12, 10)), (1, 28, 28)


def worker(case: str, backend: str) -> None:
    """One run under mpiexec: time the case, print JSON on rank 0."""
    import portnn
    from portnn.random import Generator

    portnn.set_backend(backend)
    world = portnn.distributed.init()
    batch, steps, kind = CASES[case]
    portnn.seed(0)
    model, shape = _build(kind)
    rs = np.random.default_rng(0)
    x = rs.normal(size=(batch * steps, *shape)).astype(np.float32)
    y = rs.integers(0, 10, size=batch * steps)

    comm = {"seconds": 0.0}
    reduce = world.all_reduce

    def timed_all_reduce(a, **kw):
        t0 = time.perf_counter()
        out = reduce(a, **kw)
        comm["seconds"] += time.perf_counter() - t0
        return out

    world.all_reduce = timed_all_reduce
    ends = []

    class Clock(portnn.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            ends.append(time.perf_counter())

        def on_batch_end(self, batch, logs=None):
            ends.append(time.perf_counter())

    opt = portnn.SGD(model.parameters(), lr=0.01)
    fit = dict(loss="cross_entropy", optimizer=opt, batch_size=batch,
               rng=Generator(1), verbose=0)
    model.fit(x[: batch * 3], y[: batch * 3], epochs=1, **fit)  # warm-up
    comm["seconds"] = 0.0
    ends.clear()
    model.fit(x, y, epochs=1, callbacks=[Clock()], **fit)
    per_step = np.diff(ends)
    if world.rank == 0:
        print(json.dumps({"median": float(np.median(per_step)),
                          "total": float(per_step.sum()),
                          "comm": comm["seconds"], "steps": len(per_step),
                          "batch": batch}), flush=True)
    portnn.distributed.shutdown()


def _mpiexec():
    found = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or \
        shutil.which("mpiexec")
    if found is None:
        raise SystemExit("needs mpiexec: pip install mpi4py mpich "
                         "(or pip install 'portnn[mpi]')")
    return found


def run(ranks: int, case: str, backend: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    done = subprocess.run([_mpiexec(), "-n", str(ranks), sys.executable, str(HERE),
                           "--worker", case, "--backend", backend],
                          capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{ranks}-rank run of {case} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--backend", default="numpy")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.backend)
        return {}
    print(f"data-parallel on {args.backend}: global batch fixed, 1 thread per rank, "
          f"{os.cpu_count()} cores, {args.rounds} alternating rounds")
    print(f"{'case':<10}{'ranks':>6}{'ms/step':>10}{'samples/s':>11}"
          f"{'speed-up':>10}{'efficiency':>12}{'comm':>7}")
    results = {}
    for case in args.cases:
        runs = {1: [], 2: []}
        for _ in range(args.rounds):
            for ranks in (1, 2):
                runs[ranks].append(run(ranks, case, args.backend))
        one = statistics.median(r["median"] for r in runs[1])
        for ranks in (1, 2):
            step = statistics.median(r["median"] for r in runs[ranks])
            comm = statistics.median(r["comm"] / r["total"] for r in runs[ranks])
            speedup = one / step
            batch = runs[ranks][0]["batch"]
            print(f"{case:<10}{ranks:>6}{step * 1e3:>10.2f}{batch / step:>11.0f}"
                  f"{speedup:>9.2f}x{speedup / ranks:>11.0%}{comm:>7.0%}")
            results[f"{case} x{ranks}"] = {"seconds_per_step": step,
                                           "samples_per_s": batch / step,
                                           "speedup": speedup,
                                           "comm_fraction": comm}
    return results


if __name__ == "__main__":
    main()
