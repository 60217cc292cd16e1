"""The classic single-neuron perceptron: a sigmoid unit trained by gradient
descent with a sum-of-squares loss to output the first input column.

    python examples/perceptron.py --backend numpy
"""

from __future__ import annotations

import sys

import _common

import portnn


def main(argv=None) -> dict:
    args = _common.parser(__doc__, epochs=2000).parse_args(argv)
    backend = _common.set_backend(args.backend)
    portnn.seed(args.seed)

    x = backend.asarray([[0, 0, 1], [1, 1, 1], [1, 0, 1], [0, 1, 1]], dtype="float32")
    y = backend.asarray([[0], [1], [1], [0]], dtype="float32")

    model = portnn.Sequential(portnn.Dense(3, 1), portnn.Sigmoid())
    loss_fn = portnn.MSE(reduction="sum")
    opt = portnn.SGD(model.parameters(), lr=1.0)
    for epoch in range(args.epochs):
        pred = model(x, training=True)      # forward
        loss = loss_fn(pred, y)             # error
        model.backward(loss_fn.backward())  # chain rule, layer by layer
        opt.step()                          # gradient descent
        model.zero_grad()
        if not args.quiet and epoch % max(1, args.epochs // 5) == 0:
            print(f"epoch {epoch:5d}  loss {float(loss):.6f}")

    new = backend.asarray([[1, 0, 0]], dtype="float32")
    answer = float(model.predict(new)[0, 0])
    ok = answer > 0.9
    print(f"[{backend.name}] prediction for [1, 0, 0]: {answer:.4f} (want ~1): "
          f"{'solved' if ok else 'NOT solved'}")
    return {"prediction": answer, "loss": float(loss), "solved": ok}


if __name__ == "__main__":
    sys.exit(0 if main()["solved"] else 1)
