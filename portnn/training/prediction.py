"""`Model.predict`: outputs for arrays, datasets and iterables, alone or
on several ranks."""

from __future__ import annotations

from .. import distributed
from ..data.sources import ArraySource, batch_rows, concat_rows, shard_rows, take_rows
from ..data.structure import map_structure
from ..distributed.checks import check_same_job
from .inputs import Inputs, is_stream


def predict_data(model, x, batch_size, steps, prefetch):
    """What :meth:`Model.predict` returns for `x`: one forward pass, batches
    joined along the rows, or, on several ranks, each rank's share gathered
    in order."""
    world = distributed.current()
    xp = model.backend.xp
    if world.size > 1 and not is_stream(x):
        # each rank its contiguous share of the rows; gathered in order
        x = model._as_input(x)
        n = batch_rows(x)
        check_same_job(world, "predict", model, ArraySource(
            x, batch_size=batch_size or n or 1, backend=model.backend), None,
            {"batch_size": batch_size})
        mine = take_rows(x, shard_rows(n, world.rank, world.size))
        with distributed.single():
            part = model.predict(mine, batch_size=batch_size, prefetch=prefetch)
        return map_structure(
            lambda p: xp.concat(world.all_gather(p), axis=0), part)
    if batch_size is None and not is_stream(x):
        x = model._as_input(x)
        model._build_lazy(take_rows(x, slice(0, 1)))
        return model._forward_function()(x)[0]  # nothing of x stays on the layers
    source = Inputs(model, prefetch=prefetch).source(
        x, batch_size=batch_size or 256, steps=steps, targets=False)
    forward = model._forward_function()
    parts = [forward(batch.x)[0] for batch in source.batches()]
    return concat_rows(parts, xp)
