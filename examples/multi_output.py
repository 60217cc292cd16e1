"""Two heads on one trunk: a digit's class and how much ink it has.

A graph model with two outputs, ``{"digit": ..., "ink": ...}``: a
classification head (cross-entropy, accuracy) and a regression head (mean
squared error, mean absolute error) on a shared trunk, trained on the
weighted sum of their losses (``loss_weights``). The history holds each
output's loss and metrics (``digit_loss``, ``ink_mae``, ...), as Keras
names them. Prints the test accuracy and the ink's mean absolute error.

    python examples/multi_output.py --backend numpy
"""

from __future__ import annotations

import sys

import _common
import numpy as np

import portnn


def build_model(width: int = 128) -> portnn.Model:
    x = portnn.Input((64,))
    trunk = portnn.ReLU()(portnn.Dense(64, width)(x))
    trunk = portnn.ReLU()(portnn.Dense(width, 64)(trunk))
    return portnn.Model(inputs=x, outputs={"digit": portnn.Dense(64, 10)(trunk),
                                           "ink": portnn.Dense(64, 1)(trunk)})


def main(argv=None) -> dict:
    p = _common.parser(__doc__, epochs=40)
    p.add_argument("--ink-weight", type=float, default=0.5)
    args = p.parse_args(argv)
    backend = _common.set_backend(args.backend)
    portnn.seed(args.seed)
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    ink = x.mean(axis=1, keepdims=True) * 4  # about 1: the share of inked pixels
    rs = np.random.default_rng(args.seed)
    order = rs.permutation(len(x))
    train, test = order[:1400], order[1400:]
    model = build_model()
    model.compile(loss={"digit": "cross_entropy", "ink": "mse"},
                  loss_weights={"digit": 1.0, "ink": args.ink_weight},
                  metrics={"digit": ["accuracy"], "ink": ["mae"]},
                  optimizer=portnn.Adam(model.parameters(), lr=2e-3))
    history = model.fit(x[train], {"digit": digits.target[train], "ink": ink[train]},
                        epochs=args.epochs, batch_size=32, validation_split=0.1,
                        verbose=0 if args.quiet else 2)
    logs = model.evaluate(backend.asarray(x[test]),
                          {"digit": backend.asarray(digits.target[test]),
                           "ink": backend.asarray(ink[test])})
    print(f"two heads on {backend.name}: digit accuracy {logs['digit_accuracy']:.3f}, "
          f"ink mean absolute error {logs['ink_mae']:.4f}")
    return {"accuracy": logs["digit_accuracy"], "ink_mae": logs["ink_mae"],
            "history": history.history}


if __name__ == "__main__":
    main(sys.argv[1:])
