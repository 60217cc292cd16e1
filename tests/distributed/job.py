"""A small data-parallel job that the launcher tests start as real processes.

    python job.py fault        # rank 1 raises in its third step
    python job.py equivalence  # two ranks against a one-process reference
    python job.py main-only    # only rank 0 calls fit: it must not hang
    python job.py exit         # sys.exit in a callback on rank 1
    python job.py caught       # rank 1 catches its error and goes on

Started by ``mpiexec -n 2`` or with torchrun's environment variables set by
``tests/test_distributed_launch.py``. Says ``EQUIVALENT <rank> <engine>`` when
the two-rank weights equal the one-process weights: on stdout, or, when a
folder is given as a fourth argument, in that folder's ``rank<r>`` file (the
ranks of one ``mpiexec`` share a stdout, where their lines can interleave).
"""

from __future__ import annotations

import os
import sys

import numpy as np

import portnn
from portnn.random import Generator


class FailOnRankOne(portnn.Layer):
    """The identity, until rank 1's third call."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x, training=False):
        self.calls += bool(training)
        if portnn.distributed.rank() == 1 and self.calls == 3:
            raise RuntimeError("rank 1 fails in its third step")
        return x

    def backward(self, dy):
        return dy


def train(layers, backend, callbacks=None):
    rs = np.random.default_rng(0)
    x = rs.normal(size=(60, 6))
    y = (x[:, 0] > x[:, 1]).astype(np.int64)
    with portnn.use_backend(backend), portnn.default_dtype("float64"):
        portnn.seed(0)
        model = portnn.Sequential(*layers())
        model.fit(x, y, loss="cross_entropy", optimizer="adam", epochs=2,
                  batch_size=10, rng=Generator(3), verbose=0, callbacks=callbacks)
        return np.concatenate([np.asarray(portnn.backends.get(backend).to_numpy(v))
                               .ravel() for v in model.state_dict().values()])


def say(line: str, rank: int, folder: str | None) -> None:
    if folder is None:
        print(line, flush=True)
        return
    with open(os.path.join(folder, f"rank{rank}"), "w") as f:
        f.write(line + "\n")


class ExitOnRankOne(portnn.Callback):
    """``sys.exit`` from a callback on rank 1, after the first epoch."""

    def on_epoch_end(self, epoch, logs=None):
        if portnn.distributed.rank() == 1:
            sys.exit(0)


def main(mode: str, engine: str, backend: str, folder: str | None = None) -> int:
    world = portnn.distributed.init(engine=engine, backend=backend)
    if mode == "fault":
        train(lambda: [portnn.Dense(6, 4), FailOnRankOne(), portnn.Dense(4, 2)],
              backend)
        return 0
    if mode == "main-only":  # a mistake: the other rank never joins fit
        if portnn.distributed.is_main():
            train(lambda: [portnn.Dense(6, 2)], backend)
        return 0
    if mode == "exit":
        train(lambda: [portnn.Dense(6, 2)], backend, callbacks=[ExitOnRankOne()])
        return 0
    if mode == "caught":  # rank 1 swallows its error and goes on alone
        try:
            train(lambda: [portnn.Dense(6, 4), FailOnRankOne(), portnn.Dense(4, 2)],
                  backend)
        except RuntimeError:
            pass
        return 0

    def mlp():
        return [portnn.Dense(6, 8), portnn.Tanh(), portnn.Dense(8, 2)]

    parallel = train(mlp, backend)
    with portnn.distributed.single():
        alone = train(mlp, backend)
    np.testing.assert_allclose(parallel, alone, rtol=1e-10, atol=1e-12)
    say(f"EQUIVALENT {world.rank} {world.engine}", world.rank, folder)
    portnn.distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
