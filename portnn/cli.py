"""The ``portnn`` command line: ``portnn info`` and ``portnn train``."""

from __future__ import annotations

import argparse
import platform
import sys
from importlib import metadata

from . import __version__

_PACKAGES = ("numpy", "array-api-compat", "array-api-strict", "torch",
             "cupy-cuda12x", "cupy-cuda13x", "scikit-learn", "matplotlib",
             "safetensors")
EXAMPLES = ("digits-mlp",)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def info(out=None) -> int:
    """Print versions, every backend with usable yes/no and the reason,
    devices and native fast paths."""
    from . import backends

    out = out or sys.stdout
    print(f"portnn {__version__} on Python {platform.python_version()} "
          f"({platform.system()} {platform.machine()})", file=out)
    print("packages:", file=out)
    for name in _PACKAGES:
        print(f"  {name:18s} {_version(name)}", file=out)
    print("backends:", file=out)
    for s in backends.status():
        if s.usable:
            b = backends.get(s.name)
            native = ", ".join(sorted(b.native)) or "none"
            print(f"  {s.name:18s} usable   device={s.device}  "
                  f"native fast paths: {native}", file=out)
        else:
            print(f"  {s.name:18s} unusable {s.reason}", file=out)
    return 0


def train(args, out=None) -> int:
    """Train a built-in example and optionally save the checkpoint."""
    import portnn

    out = out or sys.stdout
    if args.example != "digits-mlp":  # pragma: no cover - argparse restricts it
        msg = f"unknown example {args.example!r}; choose one of {EXAMPLES}"
        raise SystemExit(msg)
    from sklearn.datasets import load_digits

    backend = portnn.set_backend(args.backend)
    portnn.seed(args.seed)
    digits = load_digits()
    x = backend.asarray(digits.data, dtype="float32")
    y = backend.asarray(digits.target, dtype="int64")
    x_tr, x_te, y_tr, y_te = portnn.data.train_test_split(x, y, 0.2, stratify=True)
    scaler = portnn.data.Standardizer().fit(x_tr)
    model = portnn.Sequential(
        portnn.Dense(64, 256), portnn.ReLU(), portnn.Dropout(0.3),
        portnn.Dense(256, 128), portnn.ReLU(), portnn.Dropout(0.3),
        portnn.Dense(128, 10))
    # The scaler is folded into nothing: store its statistics next to the
    # weights so the checkpoint is usable on raw pixels.
    model.fit(scaler.transform(x_tr), y_tr, loss=portnn.CrossEntropy(0.1),
              optimizer=portnn.AdamW(model.parameters(), lr=5e-4),
              epochs=args.epochs, batch_size=16,
              verbose=0 if args.quiet else 1)
    test = model.evaluate(scaler.transform(x_te), y_te, loss=portnn.CrossEntropy())
    print(f"{args.example} on {backend.name}: test accuracy {test['accuracy']:.4f}",
          file=out)
    if args.save:
        to_host = backend.to_numpy
        model.save(args.save, metadata={
            "example": args.example,
            "input_mean": ",".join(f"{v:.8g}" for v in to_host(scaler.mean_)),
            "input_scale": ",".join(f"{v:.8g}" for v in to_host(scaler.scale_)),
            "test_accuracy": f"{test['accuracy']:.4f}",
        })
        print(f"saved to {args.save}", file=out)
    return 0


def main(argv=None) -> int:
    """Entry point of the ``portnn`` command."""
    parser = argparse.ArgumentParser(prog="portnn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, backends, devices, fast paths")
    t = sub.add_parser("train", help="train a built-in example")
    t.add_argument("example", nargs="?", default="digits-mlp", choices=EXAMPLES)
    t.add_argument("--backend", default="numpy")
    t.add_argument("--epochs", type=int, default=60)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--save", default=None, help="checkpoint path (.safetensors)")
    t.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "info":
        return info()
    return train(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
