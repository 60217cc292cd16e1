"""
What goes wrong, and how to see it
==================================

Training fails in a handful of well-known ways. Each section below makes
one happen on purpose, shows the figure that gives it away, and applies the
usual remedy: vanishing and exploding gradients, dead ReLUs, overfitting,
a learning rate too high or too low, and gradient clipping.
"""

# %%
# Per-layer gradient norms: vanishing and exploding
# -------------------------------------------------
# One forward and backward pass through a 12-layer network (the same
# upstream gradient for every case), then the norm of each layer's weight
# gradient. With sigmoids each layer multiplies the
# gradient by at most 0.25, so the first layers hardly learn; with weights
# drawn too large (``N(0, 1)``, no ``1 / sqrt(fan_in)``) every layer
# multiplies it up. ReLU with He initialization keeps it level.
import matplotlib.pyplot as plt
import numpy as np

import portnn

rng = np.random.default_rng(0)
x = rng.normal(size=(256, 32)).astype("float32")


def gradient_norms(activation, init, depth=12, width=32):
    portnn.seed(0)
    layers = []
    for _ in range(depth):
        layers += [portnn.Dense(width, width, init=init), activation()]
    model = portnn.Sequential(*layers, portnn.Dense(width, 1))
    model(x, training=True)
    model.backward(portnn.asarray(np.full((len(x), 1), 1 / len(x), "float32")))
    return [float(np.linalg.norm(layer.W.grad)) for layer in model.layers
            if isinstance(layer, portnn.Dense)][:depth]


def big_normal(shape, **kw):
    return portnn.init.normal(shape, 1.0, **kw)


cases = {"sigmoid, Glorot": (portnn.Sigmoid, "glorot_uniform"),
         "ReLU, N(0, 1)": (portnn.ReLU, big_normal),
         "ReLU, He": (portnn.ReLU, "he_normal")}
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, (activation, init) in cases.items():
    norms = gradient_norms(activation, init)
    print(f"{name:16s} first layer {norms[0]:.2e}, last {norms[-1]:.2e}")
    ax.plot(range(1, 13), norms, marker="o", label=name)
ax.set(xlabel="layer", ylabel="|dL/dW|", yscale="log",
       title="gradient norm per layer")
ax.legend()
plt.show()

# %%
# Dead ReLUs
# ----------
# A ReLU unit whose input is negative for every sample outputs 0 and passes
# no gradient back, so nothing ever revives it. Start the hidden biases at
# -3 to kill every unit at once: the ReLU network is stuck, while
# LeakyReLU's small negative slope still carries a gradient and recovers.
xs = rng.normal(size=(512, 2)).astype("float32")
ys = (xs[:, :1] ** 2 + xs[:, 1:] ** 2 < 1.0).astype("float32")
for activation in (portnn.ReLU, portnn.LeakyReLU):
    portnn.seed(0)
    hidden = portnn.Dense(2, 32)
    hidden.b.value[...] = -3.0
    model = portnn.Sequential(hidden, activation(), portnn.Dense(32, 1),
                              portnn.Sigmoid())
    history = model.fit(xs, ys, loss="bce", epochs=40, metrics=["accuracy"],
                        optimizer=portnn.Adam(model.parameters(), lr=0.02),
                        verbose=0)
    active = np.asarray(hidden(xs)) > 0
    print(f"{activation.__name__:9s} units ever active: "
          f"{int(active.any(axis=0).sum())}/32, "
          f"accuracy {history['accuracy'][-1]:.3f}")

# %%
# Overfitting, dropout and early stopping
# ---------------------------------------
# 60 noisy samples, a network with 4k weights: the training loss keeps
# falling while the validation loss turns up. Dropout makes the network
# harder to memorize with, and early stopping keeps the weights of the
# best validation epoch.
x_small = rng.normal(size=(60, 2)).astype("float32")
y_small = ((x_small[:, :1] > 0) ^ (rng.random((60, 1)) < 0.2)).astype("float32")
x_val = rng.normal(size=(500, 2)).astype("float32")
y_val = (x_val[:, :1] > 0).astype("float32")


def wide(dropout):
    portnn.seed(0)
    return portnn.Sequential(
        portnn.Dense(2, 64), portnn.ReLU(), portnn.Dropout(dropout),
        portnn.Dense(64, 64), portnn.ReLU(), portnn.Dropout(dropout),
        portnn.Dense(64, 1), portnn.Sigmoid())


fig, ax = plt.subplots(figsize=(6, 3.5))
for name, dropout, callbacks in [
        ("no regularization", 0.0, []),
        ("dropout 0.3 + early stopping", 0.3,
         [portnn.EarlyStopping(patience=20, restore_best_weights=True)])]:
    model = wide(dropout)
    history = model.fit(x_small, y_small, loss="bce", optimizer="adam",
                        epochs=300, batch_size=20, verbose=0,
                        validation_data=(x_val, y_val), callbacks=callbacks)
    val = model.evaluate(x_val, y_val)
    print(f"{name:29s} epochs {len(history['loss']):3d}  "
          f"validation loss now {val['loss']:.3f}")
    line, = ax.plot(history["val_loss"], label=f"{name}: validation")
    ax.plot(history["loss"], ":", color=line.get_color(), label=f"{name}: train")
ax.set(xlabel="epoch", ylabel="BCE", title="overfitting")
ax.legend(fontsize=7)
plt.show()

# %%
# Learning rates too low and too high, and clipping
# -------------------------------------------------
# Too low and the loss hardly moves; too high and it jumps around or blows
# up. portnn stops a run whose loss or gradients become NaN or infinite with
# :class:`~portnn.TrainingDivergedError` (the weights from before the bad
# batch are kept). Clipping the gradient norm (``clipnorm``) bounds every
# step, which tames the large rate.
import warnings


class BatchLosses(portnn.Callback):
    """Keep every batch's loss (the history keeps one per epoch)."""

    def __init__(self):
        self.losses = []

    def on_batch_end(self, batch, logs):
        self.losses.append(float(logs["loss"]))


fig, ax = plt.subplots(figsize=(6, 3.5))
for name, lr, clip in [("lr 0.001", 1e-3, None), ("lr 0.3", 0.3, None),
                       ("lr 2", 2.0, None), ("lr 2, clipnorm 0.1", 2.0, 0.1)]:
    portnn.seed(0)
    model = portnn.Sequential(portnn.Dense(2, 32), portnn.Tanh(),
                              portnn.Dense(32, 1))
    opt = portnn.SGD(model.parameters(), lr=lr, clipnorm=clip)
    record = BatchLosses()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's overflow
        try:
            model.fit(xs, ys, loss="mse", optimizer=opt, epochs=10, verbose=0,
                      callbacks=[record])
            outcome = f"final loss {record.losses[-1]:.4g}"
        except portnn.TrainingDivergedError:
            outcome = f"diverged at batch {len(record.losses) + 1}"
    print(f"{name:17s} {outcome}")
    ax.plot(record.losses, label=name)
ax.set(xlabel="batch", ylabel="MSE", yscale="log", title="learning rate")
ax.legend()
plt.show()
