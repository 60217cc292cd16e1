"""An LSTM (or GRU) learns the adding problem of Hochreiter & Schmidhuber.

Each input is a sequence of ``(value, marker)`` pairs: the values are
uniform in [0, 1), and exactly two steps carry marker 1. The target is the
sum of the two marked values, so the network must find the markers
anywhere in the sequence and remember what it saw. The trivial baseline,
always predicting the mean of the training targets, has a mean squared
error of about 0.17; the recurrent network gets orders of magnitude lower.

    python examples/lstm_sequence.py --backend numpy [--cell gru]
"""

from __future__ import annotations

import sys
import time

import _common

import portnn
from portnn.random import Generator


def make_data(n: int, steps: int, seed: int, backend):
    """``x`` of shape ``(n, steps, 2)`` and targets ``(n, 1)``."""
    xp, rng = backend.xp, Generator(seed)
    values = rng.uniform((n, steps), dtype="float32", backend=backend)
    first = rng.integers(0, steps, (n, 1), backend=backend)
    second = (first + rng.integers(1, steps, (n, 1), backend=backend)) % steps
    pos = xp.reshape(xp.arange(steps, dtype=first.dtype, device=backend.device),
                     (1, steps))
    markers = xp.astype((pos == first) | (pos == second), values.dtype)
    x = xp.stack([values, markers], axis=-1)
    y = xp.sum(values * markers, axis=1, keepdims=True)
    return x, y


def main(argv=None) -> dict:
    p = _common.parser(__doc__, epochs=10)
    p.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    p.add_argument("--steps", type=int, default=20, help="sequence length")
    p.add_argument("--train-size", type=int, default=4000)
    p.add_argument("--hidden", type=int, default=32)
    args = p.parse_args(argv)
    backend = _common.set_backend(args.backend)
    portnn.seed(args.seed)
    x_train, y_train = make_data(args.train_size, args.steps, args.seed + 1, backend)
    x_test, y_test = make_data(1000, args.steps, args.seed + 2, backend)

    cell = {"lstm": portnn.LSTM, "gru": portnn.GRU}[args.cell]
    model = portnn.Sequential(
        cell(2, args.hidden, return_sequences=False), portnn.Dense(args.hidden, 1))
    start = time.perf_counter()
    model.fit(x_train, y_train, loss=portnn.MSE(),
              optimizer=portnn.Adam(model.parameters(), lr=0.01),
              epochs=args.epochs, batch_size=50, verbose=0 if args.quiet else 1)
    seconds = time.perf_counter() - start
    xp = backend.xp
    mse = model.evaluate(x_test, y_test, loss=portnn.MSE())["loss"]
    baseline = float(xp.mean((y_test - xp.mean(y_train)) ** 2))
    print(f"[{backend.name}] adding problem, {args.steps} steps, {args.cell.upper()}: "
          f"test MSE {mse:.4f} vs {baseline:.4f} for the constant baseline "
          f"({baseline / mse:.0f}x lower), {seconds:.1f} s")
    return {"test_mse": mse, "baseline_mse": baseline}


if __name__ == "__main__":
    result = main()
    sys.exit(0 if result["test_mse"] < result["baseline_mse"] / 10 else 1)
