"""A small Transformer encoder learns to sort sequences of digits.

Input: a sequence of random digits 0-9; target: the same digits sorted,
one class per position. Token embedding, sinusoidal positional encoding,
two pre-norm encoder layers (4 heads), a final LayerNorm and a dense
read-out per position. Prints the token accuracy and the fraction of
held-out sequences sorted entirely right.

    python examples/transformer_sort.py --backend numpy
"""

from __future__ import annotations

import sys
import time

import _common

import portnn
from portnn.random import Generator

VOCAB = 10


def make_data(n: int, length: int, seed: int, backend):
    """Random digit sequences ``(n, length)`` and their sorted versions."""
    x = Generator(seed).integers(0, VOCAB, (n, length), backend=backend)
    return x, backend.xp.sort(x, axis=1)


def build_model(length: int, width: int = 32, layers: int = 2) -> portnn.Sequential:
    return portnn.Sequential(
        portnn.Embedding(VOCAB, width), portnn.PositionalEncoding(length, width),
        *[portnn.TransformerEncoderLayer(width, num_heads=4,
                                         dim_feedforward=2 * width)
          for _ in range(layers)],
        portnn.LayerNorm(width), portnn.Dense(width, VOCAB),
    )


def main(argv=None) -> dict:
    p = _common.parser(__doc__, epochs=10)
    p.add_argument("--length", type=int, default=8, help="digits per sequence")
    p.add_argument("--train-size", type=int, default=5000)
    args = p.parse_args(argv)
    backend = _common.set_backend(args.backend)
    portnn.seed(args.seed)
    x_train, y_train = make_data(args.train_size, args.length, args.seed + 1, backend)
    x_test, y_test = make_data(2000, args.length, args.seed + 2, backend)

    model = build_model(args.length)
    opt = portnn.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    schedule = portnn.optim.CosineWithWarmup(opt, total_steps=args.epochs,
                                             warmup_steps=1)
    start = time.perf_counter()
    model.fit(x_train, y_train, loss=portnn.CrossEntropy(), optimizer=opt,
              epochs=args.epochs, batch_size=64,
              callbacks=[portnn.training.LRSchedulerCallback(schedule)],
              verbose=0 if args.quiet else 1)
    seconds = time.perf_counter() - start
    xp = backend.xp
    guess = xp.argmax(model.predict(x_test), axis=-1)
    right = guess == y_test
    token_acc = float(xp.mean(xp.astype(right, xp.float32)))
    seq_acc = float(xp.mean(xp.astype(xp.all(right, axis=1), xp.float32)))
    print(f"[{backend.name}] sorting {args.length} digits: token accuracy "
          f"{token_acc:.4f}, whole sequences right {seq_acc:.4f} "
          f"(held-out), {seconds:.1f} s")
    return {"token_accuracy": token_acc, "sequence_accuracy": seq_acc}


if __name__ == "__main__":
    sys.exit(0 if main()["token_accuracy"] >= 0.95 else 1)
