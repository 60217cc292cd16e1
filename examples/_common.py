"""Argument parsing shared by the examples."""

from __future__ import annotations

import argparse


def parser(description: str, epochs: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--backend", default=None,
                   help="numpy (default), cupy, torch, torch:cuda, array_api_strict")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="print only the result")
    return p
