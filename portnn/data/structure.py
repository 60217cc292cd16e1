"""Data of several inputs or outputs: one array, a list or a dict of them.

A graph model takes ``[x1, x2]`` or ``{"a": x1, "b": x2}`` and gives its
outputs the same way. The batch sources, the input checks and the losses
carry such a structure whole: they flatten it into a list of arrays, work
on each, and put it back (`Structure`). One array is the structure
``None``, so models with one input and one output see plain arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Structure:
    """How arrays are arranged: one (``keys is None``), a list
    (``keys == "list"``, `n` long) or a dict (`keys` its keys, in order).

    Examples
    --------
    >>> s, leaves = Structure.of({"a": 1, "b": 2})
    >>> s.keys, leaves, s.rebuild([10, 20])
    (['a', 'b'], [1, 2], {'a': 10, 'b': 20})
    """

    def __init__(self, keys=None, n: int = 1, aliases=None) -> None:
        self.keys, self.n = keys, n
        #: names a list's items may also be given by, in a dict (a graph
        #: model's Input names)
        self.aliases = aliases

    @classmethod
    def of(cls, data) -> tuple[Structure, list]:
        """The structure of `data` and its arrays, flattened."""
        if isinstance(data, dict):
            return cls([str(k) for k in data], len(data)), list(data.values())
        if isinstance(data, (list, tuple)):
            return cls("list", len(data)), list(data)
        return cls(None, 1), [data]

    @property
    def single(self) -> bool:
        return self.keys is None

    def rebuild(self, leaves: list):
        """The arrays `leaves` arranged as this structure."""
        if self.keys is None:
            return leaves[0]
        if self.keys == "list":
            return list(leaves)
        return dict(zip(self.keys, leaves, strict=True))

    def flatten(self, data, what: str = "data") -> list:
        """`data`, which must have this structure, as a list (a dict in
        any key order)."""
        if self.keys is None:
            if isinstance(data, dict):  # {Input name: array} for one input
                if self.aliases and list(data) == list(self.aliases):
                    return [data[self.aliases[0]]]
                named = (f" or a dict with the key {self.aliases[0]!r}"
                         if self.aliases else "")
                msg = (f"{what}: expected one array{named}, got a dict with keys "
                       f"{list(data)}")
                raise ValueError(msg)
            return [data]
        if self.keys == "list" and isinstance(data, dict) and self.aliases:
            return Structure(list(self.aliases), self.n).flatten(data, what)
        if self.keys == "list" and self.n == 1 and not isinstance(
                data, (list, tuple, dict)):
            return [data]  # Model(inputs=[x]) takes a bare array too
        if self.keys == "list":
            if isinstance(data, dict) or not isinstance(data, (list, tuple)) or (
                    len(data) != self.n):
                got = (f"{len(data)} items" if isinstance(data, (list, tuple))
                       else type(data).__name__)
                msg = f"{what}: expected a list of {self.n} arrays, got {got}"
                raise ValueError(msg)
            return list(data)
        if not isinstance(data, dict):
            msg = (f"{what}: expected a dict with keys {self.keys}, got "
                   f"{type(data).__name__}")
            raise ValueError(msg)
        missing = [k for k in self.keys if k not in data]
        if missing:
            msg = f"{what}: the dict lacks {missing} (expected keys {self.keys})"
            raise KeyError(msg)
        return [data[k] for k in self.keys]

    def names(self) -> list[str]:
        """A name per array: the dict's keys, else ``output_<i>``."""
        if isinstance(self.keys, list):
            return list(self.keys)
        return [f"output_{i}" for i in range(self.n)]

    def __eq__(self, other) -> bool:
        return isinstance(other, Structure) and (self.keys, self.n) == (
            other.keys, other.n)

    def __repr__(self) -> str:
        return f"Structure(keys={self.keys!r}, n={self.n})"


def map_structure(fn: Callable[[Any], Any], data):
    """``fn`` on every array of one, a list or a dict of arrays."""
    if isinstance(data, dict):
        return {k: fn(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [fn(v) for v in data]
    return fn(data)


def leaves(data) -> list:
    """The arrays of one, a list or a dict of arrays."""
    return Structure.of(data)[1]
