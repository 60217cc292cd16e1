"""Forward + backward time per batch of the CNN in examples/cnn_digits.py
(batch 32 of 1x8x8, width 32, float32, training mode), portnn next to the
same network in PyTorch CPU, interleaved in one run.

    OMP_NUM_THREADS=1 python benchmarks/cnn_digits_step.py --reps 7

Set the thread count in the environment before Python starts.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time

import numpy as np

import portnn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
from cnn_digits import build_model  # noqa: E402


def torch_model(width):
    import torch

    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width),
        nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(2 * width * 4, 10),
    )


def run_portnn(model, loss, x, y, steps):
    start = time.perf_counter()
    for _ in range(steps):
        model.zero_grad()
        loss.forward(model.forward(x, training=True), y)
        model.backward_params(loss.backward())
    return (time.perf_counter() - start) / steps


def run_torch(model, loss, x, y, steps):
    start = time.perf_counter()
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        loss(model(x), y).backward()
    return (time.perf_counter() - start) / steps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--steps", type=int, default=50, help="batches per repetition")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--width", type=int, default=32)
    args = p.parse_args(argv)
    rs = np.random.default_rng(0)
    x = rs.random((args.batch, 1, 8, 8), dtype=np.float32)
    y = rs.integers(0, 10, size=args.batch)

    portnn.set_backend("numpy")
    ours = build_model(args.width)
    loss = portnn.CrossEntropy()
    runs = {"portnn-numpy": lambda: run_portnn(ours, loss, x, y, args.steps)}
    try:
        import torch

        tm = torch_model(args.width).train()
        tl = torch.nn.CrossEntropyLoss()
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        runs["pytorch-cpu"] = lambda: run_torch(tm, tl, tx, ty, args.steps)
    except ImportError:
        print("PyTorch not installed: portnn only")
    for run in runs.values():
        run()  # warm up
    times = {k: [] for k in runs}
    for _ in range(args.reps):
        for k, run in runs.items():
            times[k].append(run())
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"CNN of examples/cnn_digits.py, batch {args.batch}, forward+backward, "
          f"OMP_NUM_THREADS={threads}, {args.reps} reps x {args.steps} batches")
    base = statistics.median(times["portnn-numpy"])
    for k, ts in times.items():
        med = statistics.median(ts)
        print(f"  {k:14s} median {med * 1e3:7.3f} ms/batch  min "
              f"{min(ts) * 1e3:7.3f} ms  (portnn / this: {base / med:.2f})")
    return times


if __name__ == "__main__":
    main()
