"""
Convolutions as matrix products
===============================

A convolution slides a small filter over an image. Written as loops it is
slow; rearranged ("im2col") it becomes one matrix product, and so do both
halves of its backward pass. This tutorial builds the three products by hand,
checks them against :class:`~portnn.Conv2D`, then trains a small CNN on the
8x8 digits.
"""

# %%
# im2col
# ------
# Every 3x3 patch of a ``(channels, H, W)`` image becomes one column of a
# ``(channels * 9, positions)`` matrix; the filters, flattened, are the rows
# of ``W_mat``. The convolution is then ``W_mat @ cols``.
import matplotlib.pyplot as plt
import numpy as np

import portnn

rng = np.random.default_rng(0)
C, H, W, F, K = 2, 6, 6, 3, 3          # channels, size, filters, kernel
image = rng.normal(size=(C, H, W))
filters = rng.normal(size=(F, C, K, K))
OH, OW = H - K + 1, W - K + 1           # "valid" output size


def im2col(x):
    cols = np.empty((C * K * K, OH * OW))
    for i in range(OH):
        for j in range(OW):
            cols[:, i * OW + j] = x[:, i:i + K, j:j + K].ravel()
    return cols


def col2im(cols):
    """The adjoint of im2col: add each column back onto its patch."""
    x = np.zeros((C, H, W))
    for i in range(OH):
        for j in range(OW):
            x[:, i:i + K, j:j + K] += cols[:, i * OW + j].reshape(C, K, K)
    return x


cols = im2col(image)
W_mat = filters.reshape(F, -1)
out = (W_mat @ cols).reshape(F, OH, OW)            # GEMM 1: forward
print("cols:", cols.shape, " W_mat:", W_mat.shape, " out:", out.shape)

# %%
# The backward pass: two more products
# ------------------------------------
# Given ``dout``, the gradient of the loss with respect to the output, the
# filter gradient is ``dout @ cols.T`` and the input gradient is
# ``W_mat.T @ dout`` folded back with col2im (patches overlap, so the
# contributions add up).
dout = rng.normal(size=(F, OH, OW))
dW = (dout.reshape(F, -1) @ cols.T).reshape(filters.shape)  # GEMM 2
dx = col2im(W_mat.T @ dout.reshape(F, -1))                   # GEMM 3

# %%
# The same three from portnn
# --------------------------
# :class:`~portnn.Conv2D` keeps PyTorch's weight layout ``(out, in, kh,
# kw)`` and builds the same matrices from strided slices, for a whole batch.
with portnn.default_dtype("float64"):
    conv = portnn.Conv2D(C, F, kernel_size=K, bias=False)
conv.W.value[...] = filters
y = conv(image[None], training=True)
dx_portnn = conv.backward(dout[None])
print("forward  max difference:", np.abs(y[0] - out).max())
print("dW       max difference:", np.abs(conv.W.grad - dW).max())
print("dx       max difference:", np.abs(dx_portnn[0] - dx).max())

# %%
# A CNN on the digits
# -------------------
# Conv, BatchNorm, ReLU and max-pooling twice, then a dense classifier; ten
# epochs on 1,437 images of 8x8 pixels.
from sklearn.datasets import load_digits

digits = load_digits()
x = (digits.data / 16.0).astype("float32").reshape(-1, 1, 8, 8)
x_train, x_test, y_train, y_test = portnn.data.train_test_split(
    x, digits.target, test_size=0.2, stratify=True)

portnn.seed(0)
cnn = portnn.Sequential(
    portnn.Conv2D(1, 16, kernel_size=3, padding="same"), portnn.BatchNorm2D(16),
    portnn.ReLU(), portnn.MaxPool2D(2),                       # 16 x 4 x 4
    portnn.Conv2D(16, 32, kernel_size=3, padding="same"), portnn.BatchNorm2D(32),
    portnn.ReLU(), portnn.MaxPool2D(2),                       # 32 x 2 x 2
    portnn.Flatten(), portnn.Dense(32 * 2 * 2, 10))
history = cnn.fit(x_train, y_train, loss="cross_entropy", optimizer="adam",
                  epochs=10, batch_size=32, validation_data=(x_test, y_test),
                  verbose=0)
print(f"test accuracy: {history['val_accuracy'][-1]:.3f}")

# %%
# What the first layer's filters look like after training:
fig, axes = plt.subplots(2, 8, figsize=(8, 2.2))
for ax, f in zip(axes.ravel(), np.asarray(cnn[0].W.value)[:, 0]):
    ax.imshow(f, cmap="gray")
    ax.axis("off")
fig.suptitle("first-layer filters (3x3)")
plt.show()
