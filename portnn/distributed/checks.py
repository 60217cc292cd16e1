"""Checks of a data-parallel job before its first collective, and the way
out when one rank leaves `fit`."""

from __future__ import annotations


def check_shards(model, source, world) -> None:
    """Synchronized BatchNorm needs rows on every rank in every batch (its
    statistics are collectives): say so before training, on every rank."""
    from ..layers.base import walk_layers

    if world.size == 1 or not any(getattr(layer, "sync", False)
                                  for layer in walk_layers(model)):
        return
    n, size = getattr(source, "n", None), getattr(source, "batch_size", None)
    if n is None:
        return
    last = n % size or size
    if min(size, last) < world.size:
        msg = (
            f"BatchNorm(sync=True) needs a row on each of the {world.size} ranks in "
            f"every batch, but batches of {size} leave a last batch of {last}; "
            "change batch_size or drop the last few samples"
        )
        raise ValueError(msg)


def check_same_job(world, call, model, source, validation, arguments) -> None:
    """Every rank was given the same data, model and arguments (named
    error on every rank otherwise; one gather)."""
    from ..distributed.fingerprint import (
        check_same,
        data_fingerprint,
        model_fingerprint,
    )

    fingerprint = {**data_fingerprint(source), **model_fingerprint(model),
                   **arguments}
    if validation is not None:
        fingerprint["validation data"] = data_fingerprint(validation)
    check_same(world, call, fingerprint)


def abort_world(world, exc) -> None:
    """End every rank: this one leaves fit with `exc` (``sys.exit`` in a
    callback), which the other ranks would wait for in their next collective."""
    import sys
    import time

    print(f"portnn: rank {world.rank} of {world.size} left fit with "
          f"SystemExit({exc.code!r}) (sys.exit in a callback?); ending the job, "
          "since the other ranks would wait for it forever. To stop training "
          "on every rank, set model.stop_training = True instead",
          file=sys.stderr, flush=True)
    time.sleep(0.5)  # the launcher forwards stderr: let it pass the line on
    world.abort(1)
