"""An L-layer network built from a `layer_dims` list, trained with binary
cross-entropy: the "deep neural network, step by step" tutorial.

Data: scikit-learn's bundled breast-cancer set (569 samples, 30 features,
no download), standardized on the training split.

    python examples/deep_bce.py --backend numpy
"""

from __future__ import annotations

import sys

import _common

import portnn


def deep_network(layer_dims: list[int]) -> portnn.Sequential:
    """``[n_x, h1, ..., 1]`` -> (Dense, ReLU) * (L-1), then Dense, Sigmoid."""
    layers = []
    for n_in, n_out in zip(layer_dims[:-2], layer_dims[1:-1], strict=True):
        layers += [portnn.Dense(n_in, n_out), portnn.ReLU()]
    layers += [portnn.Dense(layer_dims[-2], layer_dims[-1]), portnn.Sigmoid()]
    return portnn.Sequential(*layers)


def main(argv=None) -> dict:
    p = _common.parser(__doc__, epochs=60)
    p.add_argument("--layer-dims", default="30,20,7,5,1",
                   help="comma-separated sizes, input first, output (1) last")
    args = p.parse_args(argv)
    backend = _common.set_backend(args.backend)
    portnn.seed(args.seed)
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = backend.asarray(data.data, dtype="float32")
    y = backend.asarray(data.target, dtype="float32")
    x_train, x_test, y_train, y_test = portnn.data.train_test_split(
        x, y, test_size=0.2, stratify=True)
    scaler = portnn.data.Standardizer().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)

    layer_dims = [int(d) for d in args.layer_dims.split(",")]
    model = deep_network(layer_dims)
    opt = portnn.SGD(model.parameters(), lr=0.05, momentum=0.9)
    history = model.fit(x_train, y_train, loss=portnn.BCE(), optimizer=opt,
                        epochs=args.epochs, batch_size=32,
                        verbose=0 if args.quiet else 2)
    test = model.evaluate(x_test, y_test)
    print(f"[{backend.name}] layer_dims {layer_dims}: train accuracy "
          f"{history['accuracy'][-1]:.3f}, test accuracy {test['accuracy']:.3f}")
    return {"test_accuracy": test["accuracy"], "history": history}


if __name__ == "__main__":
    sys.exit(0 if main()["test_accuracy"] >= 0.93 else 1)
