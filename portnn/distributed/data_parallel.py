"""What `fit`, `evaluate` and `predict` do differently in a world of
several processes: shards, the gradient all-reduce, shared state."""

from __future__ import annotations

from .._namespace import namespace


def shard(n: int, rank: int, size: int) -> slice:
    """The rows of a batch of `n` that `rank` of `size` takes: contiguous,
    the first ``n % size`` ranks one row more (an empty slice if ``n <
    size`` leaves none)."""
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def all_reduce_gradients(world, params, n_local: int, backend) -> None:
    """Make every gradient the exact mean over the global batch.

    Each rank's loss is the mean over its `n_local` rows, so the global
    mean's gradient is ``sum_r n_r g_r / sum_r n_r``. One flat buffer holds
    ``n_local * g`` for every trainable parameter (zeros where a rank has
    none: an idle rank of a short last batch) followed by ``n_local``; one
    all-reduce sums it; a division on the device finishes. No host read.
    """
    params = [p for p in params if p.trainable]
    if not params:
        return
    xp = backend.xp
    dtype = params[0].value.dtype
    pieces = []
    for p in params:
        g = p.grad if p.grad is not None else xp.zeros(p.shape, dtype=p.value.dtype,
                                                       device=backend.device)
        pieces.append(xp.reshape(xp.astype(g, dtype), (-1,)) * float(n_local))
    pieces.append(xp.asarray([float(n_local)], dtype=dtype, device=backend.device))
    total = world.all_reduce(xp.concat(pieces))
    count = total[-1:]
    offset = 0
    for p in params:
        size = 1
        for s in p.shape:
            size *= s
        g = total[offset:offset + size] / count
        p.grad = xp.astype(xp.reshape(g, p.shape), p.value.dtype)
        offset += size


def broadcast_state(world, model, optimizer=None) -> None:
    """Every rank takes rank 0's weights, buffers and optimizer state."""
    for _, owner, key in model._named_state():
        if key is None:
            owner.value = world.broadcast(owner.value)
        else:
            owner._buffers[key] = world.broadcast(owner._buffers[key])
    if optimizer is not None:
        for state in optimizer.state:
            for k, v in state.items():
                if hasattr(v, "shape"):
                    state[k] = world.broadcast(v)


def average_buffers(world, model) -> None:
    """Running statistics (BatchNorm's) averaged over the ranks, so every
    rank, and every checkpoint, holds the same model."""
    for _, owner, key in model._named_state():
        if key is not None:
            value = owner._buffers[key]
            xp = namespace(value)
            owner._buffers[key] = world.all_reduce(value) / float(world.size)
            owner._buffers[key] = xp.astype(owner._buffers[key], value.dtype)
