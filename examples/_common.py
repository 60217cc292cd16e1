"""Argument parsing and backend selection shared by the examples."""

from __future__ import annotations

import argparse
import sys

import portnn


def parser(description: str, epochs: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--backend", default=None,
                   help="numpy (default), cupy, torch, torch:cuda, jax, "
                        "array_api_strict")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="print only the result")
    return p


def set_backend(spec):
    """Make `spec` (default numpy) the backend; an unusable one ends the
    program with one line saying why and what to install (exit status 2)."""
    try:
        return portnn.set_backend(spec or "numpy")
    except (portnn.backends.BackendUnavailableError, ValueError, TypeError) as exc:
        print(f"{sys.argv[0]}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
