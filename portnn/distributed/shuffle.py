"""The shuffles' generator of data-parallel training: every rank draws the
permutations one process would."""

from __future__ import annotations

from ..random import global_generator


def shuffle_generator(world):
    """The shuffles' generator: the context's, or, in a world of several
    ranks, a copy of rank 0's (the same seed and counter) on every rank,
    taken when the first permutation is drawn. Every rank then draws the
    permutations one process would (however many dropout masks each draws
    from its own), so K ranks reach one process's weights with shuffling."""
    if world.size == 1:
        return global_generator()
    return _RankZeroCopy(world)


class _RankZeroCopy:
    """Rank 0's generator as it stands at the first draw, on every rank
    (each rank makes that first draw at the same point of the loop, the
    first epoch's shuffle, where the copy is one collective)."""

    def __init__(self, world) -> None:
        self.world = world
        self._generator = None

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if self._generator is None:
            from ..random import Generator

            state = global_generator().get_state()
            seed, counter = _broadcast_ints(self.world, [state["seed"],
                                                         state["counter"]])
            self._generator = Generator(seed)
            self._generator.set_state({"seed": seed, "counter": counter})
        return getattr(self._generator, name)


def _broadcast_ints(world, values: list[int]) -> list[int]:
    """Rank 0's non-negative ints below 2**128 on every rank, exactly (as
    16-bit pieces, each exact in a float32 or float64 array)."""
    b = world.backend
    pieces = []
    for v in values:
        if not 0 <= v < 2**128:
            msg = f"cannot share {v} across ranks: it must be in [0, 2**128)"
            raise ValueError(msg)
        words = []
        for _ in range(8):
            words.append(float(v & 0xFFFF))
            v >>= 16
        pieces.extend(words[::-1])
    got = [int(p) for p in b.to_numpy(world.broadcast(
        b.asarray(pieces, dtype=_float64(b)))).tolist()]
    out = []
    for i in range(len(values)):
        v = 0
        for word in got[8 * i:8 * i + 8]:
            v = (v << 16) | word
        out.append(v)
    return out


def _float64(backend):
    try:
        return backend.dtype("float64")
    except TypeError:
        return backend.dtype("float32")
