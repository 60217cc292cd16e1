"""Time per epoch of a 784-512-512-10 MLP (batch 128, float32, SGD):
portnn on the NumPy backend next to a hand-written NumPy loop of the same
network (and PyTorch CPU where installed), interleaved in one run.

    OMP_NUM_THREADS=1 python benchmarks/mlp_epoch.py --reps 5

Set the thread count in the environment, before Python starts: the BLAS
reads it once, at import.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import portnn

SIZES = (784, 512, 512, 10)


def step_flops(batch: int) -> int:
    """Exact multiply-add FLOPs a training step needs: forward GEMMs, the
    weight gradients, and the input gradients of layers 2 and 3 (layer 1's
    input gradient is not needed)."""
    pairs = list(zip(SIZES[:-1], SIZES[1:], strict=True))
    fwd = sum(2 * batch * i * o for i, o in pairs)
    dx = sum(2 * batch * i * o for i, o in pairs[1:])
    return 2 * fwd + dx


def data(n: int):
    rs = np.random.default_rng(0)
    x = rs.normal(size=(n, SIZES[0])).astype(np.float32)
    y = rs.integers(0, SIZES[-1], size=n)
    return x, y


def init_weights():
    rs = np.random.default_rng(1)
    out = []
    for i, o in zip(SIZES[:-1], SIZES[1:], strict=True):
        bound = np.sqrt(6.0 / i)
        out.append((rs.uniform(-bound, bound, size=(i, o)).astype(np.float32),
                    np.zeros(o, dtype=np.float32)))
    return out


class HandWritten:
    """The tutorial loop in plain NumPy: no framework at all."""

    name = "numpy, hand-written"

    def __init__(self, lr):
        self.params = init_weights()
        self.lr = np.float32(lr)

    def epoch(self, x, y, batch, rs):
        perm = rs.permutation(x.shape[0])
        xs, ys = x[perm], y[perm]
        (W1, b1), (W2, b2), (W3, b3) = self.params
        lr = self.lr
        total = 0.0
        for lo in range(0, x.shape[0], batch):
            xb, yb = xs[lo:lo + batch], ys[lo:lo + batch]
            n = xb.shape[0]
            a1 = xb @ W1 + b1
            h1 = np.maximum(a1, 0)
            a2 = h1 @ W2 + b2
            h2 = np.maximum(a2, 0)
            z = h2 @ W3 + b3
            z -= z.max(axis=1, keepdims=True)
            e = np.exp(z)
            p = e / e.sum(axis=1, keepdims=True)
            total += -np.log(p[np.arange(n), yb]).sum()
            dz = p
            dz[np.arange(n), yb] -= 1
            dz /= n
            dW3 = h2.T @ dz
            db3 = dz.sum(axis=0)
            dh2 = dz @ W3.T
            dh2[a2 <= 0] = 0
            dW2 = h1.T @ dh2
            db2 = dh2.sum(axis=0)
            dh1 = dh2 @ W2.T
            dh1[a1 <= 0] = 0
            dW1 = xb.T @ dh1
            db1 = dh1.sum(axis=0)
            for w, g in ((W1, dW1), (b1, db1), (W2, dW2), (b2, db2), (W3, dW3),
                         (b3, db3)):
                w -= lr * g
        return total / x.shape[0]


class Portnn:
    name = "portnn-numpy, fit()"

    def __init__(self, lr):
        portnn.set_backend("numpy")
        layers = []
        for k, (W, b) in enumerate(init_weights()):
            d = portnn.Dense(*W.shape)
            d.W.value, d.b.value = W.copy(), b.copy()
            layers.append(d)
            if k < 2:
                layers.append(portnn.ReLU())
        self.model = portnn.Sequential(*layers)
        self.opt = portnn.SGD(self.model.parameters(), lr=lr)

    def epoch(self, x, y, batch, rs):
        h = self.model.fit(x, y, loss=portnn.CrossEntropy(), optimizer=self.opt,
                           epochs=1, batch_size=batch, metrics=None, verbose=0)
        return h["loss"][-1]


class Torch:
    name = "pytorch cpu"

    def __init__(self, lr):
        import torch

        self.torch = torch
        layers = []
        for k, (W, b) in enumerate(init_weights()):
            lin = torch.nn.Linear(*W.shape)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(W.T.copy()))
                lin.bias.copy_(torch.from_numpy(b))
            layers.append(lin)
            if k < 2:
                layers.append(torch.nn.ReLU())
        self.model = torch.nn.Sequential(*layers)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr)
        self.loss = torch.nn.CrossEntropyLoss()

    def epoch(self, x, y, batch, rs):
        torch = self.torch
        perm = rs.permutation(x.shape[0])
        xs, ys = torch.from_numpy(x[perm]), torch.from_numpy(y[perm])
        total = 0.0
        for lo in range(0, x.shape[0], batch):
            xb, yb = xs[lo:lo + batch], ys[lo:lo + batch]
            loss = self.loss(self.model(xb), yb)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            total += loss.item() * xb.shape[0]
        return total / x.shape[0]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--samples", type=int, default=60000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--no-torch", action="store_true")
    args = p.parse_args(argv)
    x, y = data(args.samples)
    impls = [HandWritten(0.01), Portnn(0.01)]
    if not args.no_torch:
        try:
            impls.append(Torch(0.01))
        except ImportError:
            pass
    times = {i.name: [] for i in impls}
    losses = {i.name: [] for i in impls}
    for i in impls:  # warm-up epoch, not timed
        losses[i.name].append(i.epoch(x, y, args.batch, np.random.default_rng(0)))
    for rep in range(args.reps):
        for i in impls:  # interleaved, so drift hits every implementation alike
            rs = np.random.default_rng(rep + 1)
            t0 = time.perf_counter()
            losses[i.name].append(i.epoch(x, y, args.batch, rs))
            times[i.name].append(time.perf_counter() - t0)
    steps = -(-args.samples // args.batch)
    flops = step_flops(args.batch) * steps
    ref = statistics.median(times[impls[0].name])
    print(f"MLP {'-'.join(map(str, SIZES))}, batch {args.batch}, float32, "
          f"{args.samples} samples/epoch, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, {args.reps} reps")
    print(f"{'implementation':24s} {'median s':>9s} {'min s':>7s} {'ratio':>6s} "
          f"{'GFLOP/s':>8s}  losses (first, last)")
    for i in impls:
        t = times[i.name]
        med = statistics.median(t)
        print(f"{i.name:24s} {med:9.3f} {min(t):7.3f} {med / ref:6.2f} "
              f"{flops / med / 1e9:8.1f}  {losses[i.name][0]:.4f}, "
              f"{losses[i.name][-1]:.4f}")


if __name__ == "__main__":
    main()
