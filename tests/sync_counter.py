"""Count device-to-host synchronizations of array-api-strict arrays.

On a GPU, each of these waits for every queued kernel: converting an array
to a Python scalar (``__float__``, ``__bool__``, ``__int__``,
``__index__``), exporting it (``__dlpack__``, ``__array__``) or copying it
to NumPy (``Backend.to_numpy``). The counter wraps those entry points of the
array class and of a backend; one ``to_numpy`` counts once, not also for the
``__dlpack__`` it uses inside.
"""

from __future__ import annotations

import contextlib
import functools
import traceback

HOOKS = ("__float__", "__bool__", "__int__", "__index__", "__dlpack__", "__array__")


class SyncCounter:
    def __init__(self) -> None:
        self.count = 0
        self.where: list[str] = []
        self._depth = 0

    def _hit(self, name):
        if self._depth == 0:
            self.count += 1
            frame = traceback.extract_stack(limit=4)[0]
            self.where.append(f"{name} at {frame.filename}:{frame.lineno}")

    def wrap(self, name, fn):
        @functools.wraps(fn)
        def counted(*args, **kwargs):
            self._hit(name)
            self._depth += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1

        return counted


@contextlib.contextmanager
def count_syncs(backend, monkeypatch):
    """Count host synchronizations of `backend`'s arrays inside the block."""
    counter = SyncCounter()
    array_type = backend.array_types[0]
    for name in HOOKS:
        if hasattr(array_type, name):
            monkeypatch.setattr(array_type, name,
                                counter.wrap(name, getattr(array_type, name)))
    monkeypatch.setattr(backend, "_to_numpy",
                        counter.wrap("to_numpy", backend._to_numpy))
    yield counter
