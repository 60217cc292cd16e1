"""The ``portnn`` command line: ``portnn info`` and ``portnn train``."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from importlib import metadata

from . import __version__

_PACKAGES = ("numpy", "array-api-compat", "array-api-strict", "torch", "jax",
             "cupy-cuda12x", "cupy-cuda13x", "scikit-learn", "matplotlib",
             "safetensors")
#: built-in examples of ``portnn train`` and their default epochs
EXAMPLES = {"digits-mlp": 60, "digits-cnn": 15}


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
    env = os.environ.get("PORTNN_BACKEND")
    try:
        default = backends.get_backend().spec
    except (ValueError, TypeError, backends.BackendUnavailableError) as exc:
        default = f"none: {exc}"
    source = f"PORTNN_BACKEND={env!r}" if env is not None else "PORTNN_BACKEND unset"
    print(f"default backend: {default} ({source})", file=out)
    print("backends:", file=out)
    for s in backends.status():
        if s.usable:
            b = backends.get(s.name)
            native = ", ".join(sorted(b.native)) or "none"
            print(f"  {s.name:18s} usable   device={s.device}  "
                  f"native fast paths: {native}", file=out)
        else:
            print(f"  {s.name:18s} unusable {s.reason}", file=out)
    print("GPUs:", file=out)
    for spec, usable, text in gpu_report():
        print(f"  {spec:18s} {'usable  ' if usable else 'unusable'} {text}", file=out)
    return 0


#: the GPU backends ``portnn info`` and ``benchmarks/gpu_check.py`` look at
GPU_SPECS = ("cupy", "torch:cuda", "jax:gpu")


def describe_device(info: dict) -> str:
    """One line from a backend's ``device_info()``."""
    parts = [info.get("name", "?")]
    if "memory_gib" in info:
        parts.append(f"{info['memory_gib']} GiB")
    if "compute_capability" in info:
        parts.append(f"compute capability {info['compute_capability']}")
    if info.get("cuda_runtime"):
        parts.append(f"CUDA runtime {info['cuda_runtime']}")
    if info.get("cuda_driver"):
        parts.append(f"driver {info['cuda_driver']}")
    return ", ".join(parts)


def gpu_report() -> list[tuple[str, bool, str]]:
    """``(spec, usable, description or reason)`` for every GPU backend."""
    from . import backends

    rows = []
    for spec in GPU_SPECS:
        try:
            b = backends.get(spec)
        except (backends.BackendUnavailableError, ValueError) as exc:
            rows.append((spec, False, str(exc)))
            continue
        except Exception as exc:  # a broken install must not break `info`
            rows.append((spec, False, f"{type(exc).__name__}: {exc}"))
            continue
        try:
            rows.append((spec, True, describe_device(b.device_info())))
        except Exception as exc:
            rows.append((spec, True, f"device={b.device} (no details: {exc})"))
    return rows


def _digits(backend, example):
    """The 8x8 digits as the example's network takes them, split 80/20, and
    the per-pixel ``(mean, scale)`` that maps raw pixels to that input."""
    from sklearn.datasets import load_digits

    import portnn

    digits = load_digits()
    x = backend.asarray(digits.data, dtype="float32")
    y = backend.asarray(digits.target, dtype="int64")
    x_tr, x_te, y_tr, y_te = portnn.data.train_test_split(x, y, 0.2, stratify=True)
    if example == "digits-mlp":
        scaler = portnn.data.Standardizer().fit(x_tr)  # statistics of train only
        mean, scale = scaler.mean_, scaler.scale_
    else:  # the CNN takes images in [0, 1]
        mean = backend.xp.zeros((64,), dtype=x.dtype, device=backend.device)
        scale = mean + 16.0
    shape = (-1, 64) if example == "digits-mlp" else (-1, 1, 8, 8)
    xp = backend.xp

    def prepare(v):
        return xp.reshape((v - mean) / scale, shape)

    return prepare(x_tr), prepare(x_te), y_tr, y_te, (mean, scale)


def train(args, out=None) -> int:
    """Train a built-in example and optionally save the checkpoint.

    The checkpoint's user metadata holds the per-pixel ``input_mean`` and
    ``input_scale`` (raw pixels ``p`` become ``(p - mean) / scale``), the
    ``input_shape`` of one sample and the test accuracy reached.
    """
    import portnn

    out = out or sys.stdout
    if args.example not in EXAMPLES:  # pragma: no cover - argparse restricts it
        msg = f"unknown example {args.example!r}; choose one of {EXAMPLES}"
        raise SystemExit(msg)
    backend = portnn.set_backend(args.backend)
    portnn.seed(args.seed)
    x_tr, x_te, y_tr, y_te, (mean, scale) = _digits(backend, args.example)
    epochs = EXAMPLES[args.example] if args.epochs is None else args.epochs
    if args.example == "digits-mlp":
        model = portnn.models.digits_mlp()
        opt = portnn.AdamW(model.parameters(), lr=5e-4)
        batch_size, callbacks = 16, []
    else:
        model = portnn.models.digits_cnn()
        opt = portnn.AdamW(model.parameters(), lr=2e-3)
        schedule = portnn.optim.CosineWithWarmup(opt, total_steps=epochs)
        batch_size = 32
        callbacks = [portnn.training.LRSchedulerCallback(schedule)]
    model.fit(x_tr, y_tr, loss=portnn.CrossEntropy(0.1), optimizer=opt,
              epochs=epochs, batch_size=batch_size, callbacks=callbacks,
              verbose=0 if args.quiet else 1)
    test = model.evaluate(x_te, y_te, loss=portnn.CrossEntropy())
    print(f"{args.example} on {backend.name}: test accuracy {test['accuracy']:.4f}",
          file=out)
    if args.save:
        to_host = backend.to_numpy
        model.save(args.save, metadata={
            "example": args.example,
            "input_mean": ",".join(f"{v:.8g}" for v in to_host(mean)),
            "input_scale": ",".join(f"{v:.8g}" for v in to_host(scale)),
            "input_shape": ",".join(str(s) for s in x_tr.shape[1:]),
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
    t.add_argument("example", nargs="?", default="digits-mlp", choices=list(EXAMPLES))
    t.add_argument("--backend", default="numpy")
    t.add_argument("--epochs", type=_positive_int, default=None,
                   help="default: 60 for digits-mlp, 15 for digits-cnn")
    t.add_argument("--seed", type=_seed, default=0)
    t.add_argument("--save", default=None, help="checkpoint path (.safetensors)")
    t.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "info":
        return info()
    from . import backends

    try:
        backends.get(args.backend)
        if args.save:  # before the run, not after it: nothing trained is lost
            from .safetensors import check_destination

            check_destination(args.save)
    except (backends.BackendUnavailableError, ValueError, TypeError,
            OSError) as exc:
        print(f"portnn: {exc}", file=sys.stderr)  # one line, no traceback
        return 2
    return train(args)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"must be a positive whole number, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**63:
        msg = f"must be a whole number in [0, 2**63), got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
