"""What `fit`, `evaluate` and `predict` do differently in a world of
several processes: shards, the gradient all-reduce, shared state."""

from __future__ import annotations

import math

from .._namespace import namespace


def all_reduce_gradients(world, params, n_local: int, backend) -> None:
    """Make every gradient the exact mean over the global batch.

    Each rank's loss is the mean over its `n_local` rows, so the global
    mean's gradient is ``sum_r n_r g_r / sum_r n_r``. One flat buffer holds
    every trainable parameter's gradient (zeros where a rank has none: an
    idle rank of a short last batch) followed by a 1, all scaled by
    `n_local`; one all-reduce sums it in place; one division on the device
    finishes, and the gradients become views of the result. No host read.

    On backends with in-place writes the buffer is kept by the world and
    reused every step: a fresh multi-megabyte array per step costs more in
    page faults than the copies themselves.
    """
    params = [p for p in params if p.trainable]
    if not params:
        return
    xp = backend.xp
    dtype = params[0].value.dtype
    sizes = [math.prod(p.shape) for p in params]
    grads = [xp.astype(xp.reshape(p.grad, (-1,)), dtype, copy=False)
             if p.grad is not None else None for p in params]
    if backend.inplace:
        flat = _scratch(world, backend, sum(sizes) + 1, dtype)
        offset = 0
        for g, size in zip(grads, sizes, strict=True):
            flat[offset:offset + size] = 0.0 if g is None else g
            offset += size
        flat[-1] = 1.0
    else:  # immutable arrays (JAX): one concatenation
        flat = xp.concat([xp.zeros(size, dtype=dtype, device=backend.device)
                          if g is None else g for g, size in zip(grads, sizes,
                                                                 strict=True)]
                         + [xp.ones((1,), dtype=dtype, device=backend.device)])
    flat *= float(n_local)
    total = world.all_reduce(flat, donate=True)
    if backend.inplace:
        mean = total[:-1]
        mean /= total[-1:]
    else:
        mean = total[:-1] / total[-1:]
    offset = 0
    for p, size in zip(params, sizes, strict=True):
        p.grad = xp.astype(xp.reshape(mean[offset:offset + size], p.shape),
                           p.value.dtype, copy=False)
        offset += size


def _scratch(world, backend, size: int, dtype):
    """The world's reusable flat buffer of `size` elements of `dtype`."""
    key = (size, str(dtype), str(backend.device))
    buffers = world.scratch
    if key not in buffers:
        buffers.clear()  # one model trains at a time: keep one buffer
        buffers[key] = backend.xp.empty(size, dtype=dtype, device=backend.device)
    return buffers[key]


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
