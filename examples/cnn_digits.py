"""A small CNN on scikit-learn's bundled 8x8 digits.

Three 3x3 convolutions with batch normalization, two max-pools, dropout
and a dense classifier; AdamW with a cosine learning-rate schedule, label
smoothing, a stratified 80/20 split. Prints the test accuracy.

    python examples/cnn_digits.py --backend numpy
"""

from __future__ import annotations

import sys
import time

import _common

import portnn


def build_model(width: int = 32) -> portnn.Sequential:
    """8x8 -> conv, conv, pool (4x4) -> conv, pool (2x2) -> dense
    (the network of ``portnn train digits-cnn``)."""
    return portnn.models.digits_cnn(width)


def load(backend):
    """The digits as ``(N, 1, 8, 8)`` images in [0, 1], split 80/20."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = backend.asarray(digits.data, dtype="float32") / 16.0
    x = backend.xp.reshape(x, (-1, 1, 8, 8))
    y = backend.asarray(digits.target, dtype="int64")
    return portnn.data.train_test_split(x, y, test_size=0.2, stratify=True)


def main(argv=None) -> dict:
    p = _common.parser(__doc__, epochs=15)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--width", type=int, default=32, help="channels of the first conv")
    args = p.parse_args(argv)
    backend = _common.set_backend(args.backend)
    portnn.seed(args.seed)
    x_train, x_test, y_train, y_test = load(backend)

    model = build_model(args.width)
    opt = portnn.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    schedule = portnn.optim.CosineWithWarmup(opt, total_steps=args.epochs)
    start = time.perf_counter()
    history = model.fit(
        x_train, y_train, loss=portnn.CrossEntropy(label_smoothing=0.1),
        optimizer=opt, epochs=args.epochs, batch_size=args.batch_size,
        callbacks=[portnn.training.LRSchedulerCallback(schedule)],
        verbose=0 if args.quiet else 1)
    seconds = time.perf_counter() - start
    test = model.evaluate(x_test, y_test, loss=portnn.CrossEntropy())
    print(f"[{backend.name}] digits CNN: test accuracy {test['accuracy']:.4f} "
          f"(loss {test['loss']:.4f}) after {len(history.epoch)} epochs, "
          f"{seconds:.1f} s")
    return {"test_accuracy": test["accuracy"], "history": history, "model": model}


if __name__ == "__main__":
    sys.exit(0 if main()["test_accuracy"] >= 0.98 else 1)
