"""Hand-written NumPy training steps: the tutorial code, no framework.

Each class takes its weights as NumPy arrays (copied from a portnn model,
so every implementation starts from the same point) and exposes
``step(x, y) -> loss``. They are the "hand-written NumPy" column of the
benchmark suite.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _softmax_ce(z, y):
    """Mean cross-entropy of logits `z` and labels `y`, and its gradient."""
    n = z.shape[0]
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(n), y]).mean()
    p[np.arange(n), y] -= 1
    p /= n
    return loss, p


class _Optim:
    """SGD or Adam on a list of arrays, updated in place."""

    def __init__(self, params, kind, lr):
        self.params, self.kind, self.lr, self.t = params, kind, np.float32(lr), 0
        if kind == "adam":
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]

    def update(self, grads):
        if self.kind == "sgd":
            for p, g in zip(self.params, grads, strict=True):
                p -= self.lr * g
            return
        self.t += 1
        b1, b2, eps = np.float32(0.9), np.float32(0.999), np.float32(1e-8)
        c1, c2 = 1 - 0.9 ** self.t, 1 - 0.999 ** self.t
        step = np.float32(self.lr / c1)
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            p -= step * m / (np.sqrt(v / np.float32(c2)) + eps)


class MLP:
    """Dense-ReLU-...-Dense with softmax cross-entropy; weights (in, out)."""

    def __init__(self, weights, optimizer="sgd", lr=0.01):
        self.w = [np.array(a) for a in weights]  # W1, b1, W2, b2, ...
        self.opt = _Optim(self.w, optimizer, lr)

    def step(self, x, y):
        w = self.w
        hs, acts = [x], []
        for i in range(0, len(w) - 2, 2):
            a = hs[-1] @ w[i] + w[i + 1]
            acts.append(a)
            hs.append(np.maximum(a, 0))
        z = hs[-1] @ w[-2] + w[-1]
        loss, dz = _softmax_ce(z, y)
        grads = [None] * len(w)
        grads[-2], grads[-1] = hs[-1].T @ dz, dz.sum(axis=0)
        d = dz
        for i in range(len(w) - 4, -1, -2):
            d = d @ w[i + 2].T
            d[acts[i // 2] <= 0] = 0
            grads[i], grads[i + 1] = hs[i // 2].T @ d, d.sum(axis=0)
        self.opt.update(grads)
        return float(loss)


class XOR:
    """2-16-1: tanh hidden layer, sigmoid output with binary cross-entropy."""

    def __init__(self, weights, lr=0.5):
        self.w = [np.array(a) for a in weights]
        self.opt = _Optim(self.w, "sgd", lr)

    def step(self, x, y):
        W1, b1, W2, b2 = self.w
        h = np.tanh(x @ W1 + b1)
        z = h @ W2 + b2
        # BCE with logits, mean; gradient sigmoid(z) - y
        loss = (np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))).mean()
        dz = (1 / (1 + np.exp(-z)) - y) / z.size
        dh = (dz @ W2.T) * (1 - h * h)
        self.opt.update([x.T @ dh, dh.sum(axis=0), h.T @ dz, dz.sum(axis=0)])
        return float(loss)


class CNN:
    """conv3x3-ReLU-conv3x3-ReLU-maxpool2-dense, im2col by a sliding window
    view and one GEMM per convolution; conv weights (out, in, 3, 3)."""

    def __init__(self, weights, lr=0.01):
        self.w = [np.array(a) for a in weights]  # K1, c1, K2, c2, W, b
        self.opt = _Optim(self.w, "sgd", lr)

    @staticmethod
    def _cols(x):
        # (N, C, H, W) -> (N*OH*OW, C*9)
        n, c = x.shape[:2]
        v = sliding_window_view(x, (3, 3), axis=(2, 3))  # N, C, OH, OW, 3, 3
        oh, ow = v.shape[2:4]
        return v.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * 9), oh, ow

    def step(self, x, y):
        K1, c1, K2, c2, W, b = self.w
        n = x.shape[0]
        cols1, oh1, ow1 = self._cols(x)
        a1 = cols1 @ K1.reshape(K1.shape[0], -1).T + c1  # (N*OH*OW, O1)
        h1 = np.maximum(a1, 0)
        h1_img = h1.reshape(n, oh1, ow1, -1).transpose(0, 3, 1, 2)
        cols2, oh2, ow2 = self._cols(h1_img)
        a2 = cols2 @ K2.reshape(K2.shape[0], -1).T + c2
        h2 = np.maximum(a2, 0).reshape(n, oh2, ow2, -1)  # NHWC
        # 2x2 max-pool on NHWC
        blocks = h2.reshape(n, oh2 // 2, 2, ow2 // 2, 2, -1)
        pooled = blocks.max(axis=(2, 4))
        flat = pooled.transpose(0, 3, 1, 2).reshape(n, -1)  # NCHW flatten order
        z = flat @ W + b
        loss, dz = _softmax_ce(z, y)
        gW, gb = flat.T @ dz, dz.sum(axis=0)
        dflat = dz @ W.T
        dpooled = dflat.reshape(n, -1, oh2 // 2, ow2 // 2).transpose(0, 2, 3, 1)
        mask = blocks == pooled[:, :, None, :, None, :]
        dh2 = (mask * dpooled[:, :, None, :, None, :]).reshape(n * oh2 * ow2, -1)
        da2 = dh2 * (a2 > 0)
        gK2 = (da2.T @ cols2).reshape(K2.shape)
        gc2 = da2.sum(axis=0)
        dcols2 = (da2 @ K2.reshape(K2.shape[0], -1)).reshape(n, oh2, ow2, -1, 3, 3)
        dh1_img = np.zeros((n, h1_img.shape[1], oh1, ow1), dtype=x.dtype)
        for i in range(3):
            for j in range(3):
                dh1_img[:, :, i:i + oh2, j:j + ow2] += dcols2[..., i, j].transpose(
                    0, 3, 1, 2)
        da1 = dh1_img.transpose(0, 2, 3, 1).reshape(n * oh1 * ow1, -1) * (a1 > 0)
        gK1 = (da1.T @ cols1).reshape(K1.shape)
        gc1 = da1.sum(axis=0)
        self.opt.update([gK1, gc1, gK2, gc2, gW, gb])
        return float(loss)
