"""Two inputs, one shared encoder: are two handwritten digits the same?

A graph model (``portnn.Model(inputs=[a, b], outputs=...)``) encodes both
8x8 images with one encoder (one set of weights, called twice, its
gradients summed over both calls), joins the codes by their squared
difference and classifies the pair as same or different. Pairs are drawn
from scikit-learn's bundled digits, half of them of one digit; prints the
test pair accuracy.

    python examples/siamese_digits.py --backend numpy
"""

from __future__ import annotations

import sys

import _common
import numpy as np

import portnn


def pairs(x, y, n, rs):
    """`n` pairs of rows of `x`, half of one class; labels 1 for same."""
    by_class = [np.flatnonzero(y == c) for c in range(10)]
    first = rs.integers(0, len(y), n)
    same = rs.random(n) < 0.5
    second = np.array([rs.choice(by_class[y[i]]) if s else rs.integers(0, len(y))
                       for i, s in zip(first, same, strict=True)])
    return x[first], x[second], (y[first] == y[second]).astype(np.int64)


def build_model(width: int = 64) -> portnn.Model:
    a, b = portnn.Input((64,), name="a"), portnn.Input((64,), name="b")
    encoder = portnn.Sequential(portnn.Dense(64, width), portnn.ReLU(),
                                portnn.Dense(width, 32))
    diff = portnn.Subtract()([encoder(a), encoder(b)])
    squared = portnn.Multiply()([diff, diff])
    return portnn.Model(inputs=[a, b], outputs=portnn.Dense(32, 2)(squared))


def main(argv=None) -> dict:
    p = _common.parser(__doc__, epochs=30)
    p.add_argument("--pairs", type=int, default=6000)
    args = p.parse_args(argv)
    backend = _common.set_backend(args.backend)
    portnn.seed(args.seed)
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = (digits.data / 16.0).astype(np.float32), digits.target
    rs = np.random.default_rng(args.seed)
    order = rs.permutation(len(y))
    train, test = order[:1400], order[1400:]  # pairs never cross the split
    a_tr, b_tr, s_tr = pairs(x[train], y[train], args.pairs, rs)
    a_te, b_te, s_te = pairs(x[test], y[test], 2000, rs)
    model = build_model()
    model.fit({"a": a_tr, "b": b_tr}, s_tr, loss=portnn.CrossEntropy(),
              optimizer=portnn.Adam(model.parameters(), lr=2e-3),
              epochs=args.epochs, batch_size=64, verbose=0 if args.quiet else 2)
    logs = model.evaluate([backend.asarray(a_te), backend.asarray(b_te)],
                          backend.asarray(s_te), loss=portnn.CrossEntropy())
    print(f"siamese digits on {backend.name}: test pair accuracy "
          f"{logs['accuracy']:.3f} (half the pairs are one digit)")
    return {"pair_accuracy": logs["accuracy"]}


if __name__ == "__main__":
    main(sys.argv[1:])
