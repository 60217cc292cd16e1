"""Whether the data of the running `fit` was validated once, in full.

Range checks of labels and token ids read a device array on the host. Run
per batch they would stall a GPU on every step, so `fit` runs them once on
the whole arrays and marks the loop with :func:`validated_data`; losses and
layers called directly (outside `fit`) still check every call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

_validated: ContextVar[bool] = ContextVar("portnn_data_validated", default=False)


def data_validated() -> bool:
    """True inside a `fit`/`evaluate` loop whose data was checked up front."""
    return _validated.get()


@contextlib.contextmanager
def validated_data() -> Iterator[None]:
    """Skip per-call range checks inside the block (the data was checked)."""
    token = _validated.set(True)
    try:
        yield
    finally:
        _validated.reset(token)
