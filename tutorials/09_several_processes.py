"""
Beyond one process: data-parallel training
==========================================

Data parallelism runs one copy of the model per process (a *rank*), gives
each rank a different slice of every batch, and after the backward pass
adds up the ranks' gradients with an *all-reduce*, so every rank takes the
same step: the step of the whole batch. This tutorial does the arithmetic
of that step by hand, runs a real two-rank job with MPI when this machine
has it, and works out when adding machines stops paying.
"""

# %%
# The all-reduce by hand
# ----------------------
# A batch of 64 rows split unevenly: 40 rows on rank 0, 24 on rank 1. Each
# rank's loss is the mean over its own rows, so its gradient is too; the
# mean over the whole batch is the row-weighted sum of the ranks'
# gradients, divided by 64. That sum is what the all-reduce computes.
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import matplotlib.pyplot as plt
import numpy as np

import portnn

rng = np.random.default_rng(0)
x = rng.normal(size=(64, 10))
y = rng.integers(0, 3, 64)
with portnn.default_dtype("float64"):
    portnn.seed(0)
    model = portnn.Sequential(portnn.Dense(10, 16), portnn.Tanh(),
                              portnn.Dense(16, 3))
loss = portnn.CrossEntropy()


def gradients(rows):
    model.zero_grad()
    loss(model(x[rows], training=True), y[rows])
    model.backward(loss.backward())
    return [np.array(p.grad) for p in model.parameters()]


whole = gradients(np.arange(64))
shards = [np.arange(0, 40), np.arange(40, 64)]
per_rank = [gradients(rows) for rows in shards]
reduced = [sum(len(rows) * g[i] for rows, g in zip(shards, per_rank)) / 64
           for i in range(len(whole))]
print("largest difference from the whole batch's gradient:",
      max(np.abs(a - b).max() for a, b in zip(whole, reduced)))

# %%
# The same call in portnn
# -----------------------
# Without a launcher the world is this process alone, and an all-reduce
# returns its input; under ``mpiexec`` or ``torchrun`` it sums over ranks.
world = portnn.distributed.current()
print("rank", world.rank, "of", world.size,
      "->", world.all_reduce(portnn.asarray([1.0, 2.0])))

# %%
# A real job: two ranks against one process
# -----------------------------------------
# The script below trains in float64 with shuffling on. Started alone it is
# one process; started by ``mpiexec -n 2`` each rank takes its share of
# every batch. portnn draws the same permutation either way and weights the
# all-reduce by rows, so the two runs end at the same weights.
script = textwrap.dedent("""
    import numpy as np
    import portnn

    world = portnn.distributed.init()
    portnn.set_default_dtype("float64")
    portnn.seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 10))
    y = (x[:, 0] > 0).astype(np.int64)
    model = portnn.Sequential(portnn.Dense(10, 16), portnn.Tanh(),
                              portnn.Dense(16, 2))
    history = model.fit(x, y, loss="cross_entropy", epochs=3, batch_size=64,
                        optimizer=portnn.SGD(model.parameters(), lr=0.1),
                        verbose=0)
    if world.rank == 0:
        w = np.concatenate([np.ravel(p.value) for p in model.parameters()])
        print(f"{world.size} process(es): loss {history['loss'][-1]:.12f}, "
              f"weights checksum {w.sum():.12f}")
    portnn.distributed.shutdown()
""")
path = os.path.join(tempfile.mkdtemp(), "train.py")
with open(path, "w") as f:
    f.write(script)
env = dict(os.environ, OMP_NUM_THREADS="1", PORTNN_NUM_THREADS="1")
commands = [[sys.executable, path]]
if shutil.which("mpiexec"):
    try:
        import mpi4py  # noqa: F401

        commands.append(["mpiexec", "-n", "2", sys.executable, "-m", "mpi4py",
                         path])
    except ImportError:
        pass
for command in commands:
    done = subprocess.run(command, env=env, capture_output=True, text=True,
                          timeout=300)
    print(done.stdout.strip() or done.stderr.strip()[-300:])
if len(commands) == 1:
    print("(no MPI here: pip install mpi4py mpich, then run the script with "
          "mpiexec -n 2 python -m mpi4py train.py)")

# %%
# When do more machines stop helping?
# -----------------------------------
# A ring all-reduce sends ``2 (p - 1) / p`` times the gradient's bytes ``G``
# through each rank's link per step and pays ``2 (p - 1)`` latencies:
# ``T = 2 (p - 1) / p * G / B + 2 (p - 1) * alpha``. Unless the all-reduce
# overlaps the backward pass (portnn's does not yet), ``p`` ranks stop
# scaling once a rank's share of the compute takes less than ``T``. For the
# 784-512-512-10 MLP (669,706 float32 weights, 2.68 MB):
G = 669_706 * 4
links = {"25 Gbit/s Ethernet": (3.1e9, 20e-6), "NVLink": (150e9, 5e-6)}
ps = np.arange(2, 65)
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, (bandwidth, latency) in links.items():
    T = 2 * (ps - 1) / ps * G / bandwidth + 2 * (ps - 1) * latency
    ax.plot(ps, T * 1e3, label=name)
    print(f"{name:19s} p=8: {1e3 * T[ps == 8][0]:.2f} ms per step")
ax.set(xlabel="ranks p", ylabel="all-reduce per step (ms)", yscale="log",
       title="ring all-reduce, 2.68 MB of gradients")
ax.legend()
plt.show()

# %%
# So on Ethernet each rank needs about 1.8 ms of compute per step before a
# ninth machine helps, while on NVLink the latency dominates and even
# 0.1 ms steps scale. Raise the global batch (and the learning rate) before
# adding ranks. ``python benchmarks/data_parallel.py`` measures the real
# figures on your machine.
