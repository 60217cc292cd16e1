"""
An L-layer network and its initialization
=========================================

A deep network is the same layer repeated: ``layer_dims = [2, 16, 16, 8,
1]`` means three hidden ReLU layers and one sigmoid output. This tutorial
builds one from such a list, trains it with binary cross-entropy on
mini-batches, and compares weight initializations: all zeros, small random
numbers (``randn * 0.01``) and He's ``sqrt(2 / fan_in)`` scaling.
"""

# %%
# Data: two interleaved moons
# ---------------------------
import matplotlib.pyplot as plt
import numpy as np

import portnn

rng = np.random.default_rng(0)
n = 600
angle = rng.uniform(0, np.pi, n)
label = rng.integers(0, 2, n)
x = np.stack([np.cos(angle) + label, np.sin(angle) * (1 - 2 * label)
              + 0.5 * label], axis=1)
x = (x + rng.normal(0, 0.12, x.shape)).astype("float32")
y = label.reshape(-1, 1).astype("float32")

# %%
# A network from a list of layer sizes
# ------------------------------------
# ``init`` names the initializer of every weight matrix (biases start at
# zero); :mod:`portnn.init` has the usual ones, and any function of a shape
# works.


def deep_network(layer_dims, init):
    layers = []
    for fan_in, fan_out in zip(layer_dims[:-2], layer_dims[1:-1]):
        layers += [portnn.Dense(fan_in, fan_out, init=init), portnn.ReLU()]
    layers += [portnn.Dense(layer_dims[-2], layer_dims[-1], init=init),
               portnn.Sigmoid()]
    return portnn.Sequential(*layers)


layer_dims = [2, 16, 16, 8, 1]
print(deep_network(layer_dims, "he_normal"))

# %%
# Mini-batch gradient descent, three initializations
# --------------------------------------------------
# Zeros make every unit of a layer compute the same thing and receive the
# same gradient: the symmetry never breaks and (with ReLU) nothing moves.
# ``randn * 0.01`` shrinks the signal by about 100x per layer, so a deep
# network starts with vanishing activations and gradients and crawls. He
# initialization keeps the variance of the activations about constant from
# layer to layer, so training starts at once.
inits = {
    "zeros": "zeros",
    "randn * 0.01": lambda shape, **kw: portnn.init.normal(shape, 0.01, **kw),
    "He normal": "he_normal",
}
histories = {}
for name, init in inits.items():
    portnn.seed(1)
    model = deep_network(layer_dims, init)
    histories[name] = model.fit(
        x, y, loss="bce", optimizer=portnn.SGD(model.parameters(), lr=0.3),
        epochs=60, batch_size=64, metrics=["accuracy"], verbose=0)
    print(f"{name:13s} loss {histories[name]['loss'][-1]:.4f}  "
          f"accuracy {histories[name]['accuracy'][-1]:.3f}")

fig, ax = plt.subplots(figsize=(6, 3.5))
for name, history in histories.items():
    ax.plot(history["loss"], label=name)
ax.set(xlabel="epoch", ylabel="binary cross-entropy", title="initialization")
ax.legend()
plt.show()

# %%
# What the He-initialized network learned
# ---------------------------------------
# The decision boundary on a grid of points:
grid = np.stack(np.meshgrid(np.linspace(-1.5, 2.5, 120),
                            np.linspace(-1.0, 1.5, 120)), axis=-1)
prob = model.predict(grid.reshape(-1, 2).astype("float32")).reshape(120, 120)
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.contourf(grid[..., 0], grid[..., 1], prob, levels=20, cmap="coolwarm",
            alpha=0.6)
ax.scatter(x[:, 0], x[:, 1], c=y.ravel(), cmap="coolwarm", s=6)
ax.set(title="He init: P(class 1)")
plt.show()
