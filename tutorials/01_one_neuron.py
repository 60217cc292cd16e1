"""
One neuron
==========

A neuron takes a weighted sum of its inputs, adds a bias and squashes the
result: ``y = sigmoid(w . x + b)``. This tutorial writes that by hand in
NumPy, then as a portnn :class:`~portnn.Dense` layer, and trains a
perceptron to compute AND and OR.
"""

# %%
# By hand
# -------
# Three inputs, three weights, one bias.
import numpy as np

import portnn

x = np.array([1.0, 0.5, -2.0])
w = np.array([0.4, -0.6, 0.1])
b = 0.2
z = w @ x + b                       # the weighted sum
y = 1.0 / (1.0 + np.exp(-z))        # the sigmoid
print(f"z = {z:.3f}, y = sigmoid(z) = {y:.4f}")

# %%
# The same neuron as a layer
# --------------------------
# :class:`~portnn.Dense` holds its weight as ``W`` of shape ``(inputs,
# outputs)`` and computes ``x @ W + b`` for a whole batch at once (one row
# per sample). Copy our weights in and ask for the sigmoid:
portnn.set_backend("numpy")
neuron = portnn.Dense(3, 1, activation="sigmoid")
neuron.W.value[...] = w.reshape(3, 1)
neuron.b.value[...] = b
print(neuron(portnn.asarray([x], dtype="float32")))

# %%
# The perceptron learns AND and OR
# --------------------------------
# Rosenblatt's rule: predict ``step(w . x + b)``; when the prediction is
# wrong, move the weights towards the input (``w += lr (t - y) x``). It
# converges whenever a straight line separates the two classes, which is
# true of AND and OR (and, as the next tutorial shows, not of XOR).
inputs = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)


def perceptron(targets, epochs=20, lr=0.1):
    w, b = np.zeros(2), 0.0
    for _ in range(epochs):
        for xi, t in zip(inputs, targets):
            y = float(w @ xi + b > 0)
            w += lr * (t - y) * xi
            b += lr * (t - y)
    return w, b, (inputs @ w + b > 0).astype(int)


for name, targets in [("AND", [0, 0, 0, 1]), ("OR", [0, 1, 1, 1])]:
    w_, b_, out = perceptron(np.array(targets, dtype=float))
    print(f"{name}: w = {w_}, b = {b_:+.1f}, outputs {out.tolist()}")

# %%
# A sigmoid neuron trained by gradient descent
# --------------------------------------------
# The perceptron's step has no useful derivative. A sigmoid neuron does:
# with binary cross-entropy the gradient of the loss with respect to ``z``
# is simply ``y - t``, and :meth:`portnn.Model.fit` runs that gradient
# descent for us. The decision line it finds for AND:
import matplotlib.pyplot as plt

portnn.seed(0)
model = portnn.Sequential(portnn.Dense(2, 1), portnn.Sigmoid())
model.fit(inputs.astype("float32"), np.array([[0], [0], [0], [1]], "float32"),
          loss="bce", optimizer=portnn.SGD(model.parameters(), lr=2.0),
          epochs=300, batch_size=4, verbose=0)
print("AND probabilities:", np.round(model.predict(inputs.astype("float32"))
                                     .ravel(), 3))

W = np.asarray(model.layers[0].W.value).ravel()
bias = float(np.asarray(model.layers[0].b.value)[0])
line_x = np.linspace(-0.5, 1.5, 2)
fig, ax = plt.subplots(figsize=(4, 4))
ax.scatter(inputs[:, 0], inputs[:, 1], c=[0, 0, 0, 1], cmap="coolwarm", s=120)
ax.plot(line_x, -(W[0] * line_x + bias) / W[1], "k--", label="w . x + b = 0")
ax.set(xlim=(-0.5, 1.5), ylim=(-0.5, 1.5), title="AND, one sigmoid neuron")
ax.legend()
plt.show()
