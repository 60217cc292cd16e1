"""
XOR and the chain rule
======================

XOR is the smallest problem one neuron cannot solve: no straight line
separates ``(0, 1)`` and ``(1, 0)`` from ``(0, 0)`` and ``(1, 1)``. A hidden
layer of four sigmoid units can. This tutorial writes the 2-4-1 network's
forward pass, its mean squared error and the chain rule for every weight by
hand, checks the hand-written gradients against portnn's and against
finite differences (:func:`portnn.gradcheck`), then trains the same network
in portnn on every backend this machine has.
"""

# %%
# Forward
# -------
# ``h = sigmoid(x W1 + b1)``, ``y = sigmoid(h W2 + b2)``,
# ``L = mean((y - t)**2)``. Rows are samples.
import numpy as np

import portnn

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
T = np.array([[0], [1], [1], [0]], dtype=np.float64)

rng = np.random.default_rng(1)
W1, b1 = rng.normal(0, 1, (2, 4)), np.zeros(4)
W2, b2 = rng.normal(0, 1, (4, 1)), np.zeros(1)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def forward(W1, b1, W2, b2):
    h = sigmoid(X @ W1 + b1)
    y = sigmoid(h @ W2 + b2)
    return h, y


h, y = forward(W1, b1, W2, b2)
loss = np.mean((y - T) ** 2)
print(f"loss before training: {loss:.5f}")

# %%
# Backward: the chain rule, one line per step
# -------------------------------------------
# Each line multiplies the gradient that came from above by the local
# derivative. ``sigmoid'(z) = s (1 - s)``, and a matrix product ``a @ W``
# sends ``a.T @ dout`` to ``W`` and ``dout @ W.T`` back to ``a``.
n = y.size
dy = 2.0 * (y - T) / n             # dL/dy
dz2 = dy * y * (1 - y)             # through the output sigmoid
dW2 = h.T @ dz2                    # dL/dW2
db2 = dz2.sum(axis=0)              # dL/db2
dh = dz2 @ W2.T                    # back into the hidden layer
dz1 = dh * h * (1 - h)             # through the hidden sigmoid
dW1 = X.T @ dz1                    # dL/dW1
db1 = dz1.sum(axis=0)              # dL/db1

# %%
# The same gradients from portnn
# ------------------------------
# Build the network in portnn (float64, the same weights), run its forward
# and backward, and compare: every layer's ``backward`` is the code above.
with portnn.default_dtype("float64"):
    net = portnn.Sequential(portnn.Dense(2, 4), portnn.Sigmoid(),
                            portnn.Dense(4, 1), portnn.Sigmoid())
for p, value in zip(net.parameters(), [W1, b1, W2, b2]):
    p.value[...] = value
mse = portnn.MSE()
print(f"portnn's loss: {float(mse(net(X, training=True), T)):.5f}")
net.backward(mse.backward())
for name, mine, p in zip(["W1", "b1", "W2", "b2"], [dW1, db1, dW2, db2],
                         net.parameters()):
    print(f"{name}: largest difference {np.abs(mine - p.grad).max():.1e}")

# %%
# Checked against finite differences
# ----------------------------------
# :func:`portnn.gradcheck` nudges every input and weight by ``eps`` and
# compares the change in the output with what ``backward`` claims; the
# loss is checked the same way.
print(portnn.gradcheck(net, X))
print(portnn.gradcheck(portnn.MSE(), (y, T)))

# %%
# Gradient descent by hand
# ------------------------
# One step moves every weight against its gradient. Repeating it solves
# XOR; the loss curve is the classic one: a plateau, then a drop.
lr = 2.0
losses = []
for step in range(3000):
    h, y = forward(W1, b1, W2, b2)
    losses.append(np.mean((y - T) ** 2))
    dz2 = 2.0 * (y - T) / n * y * (1 - y)
    dz1 = dz2 @ W2.T * h * (1 - h)
    W2 -= lr * h.T @ dz2
    b2 -= lr * dz2.sum(axis=0)
    W1 -= lr * X.T @ dz1
    b1 -= lr * dz1.sum(axis=0)
print("outputs after training:", np.round(forward(W1, b1, W2, b2)[1].ravel(), 3))

import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(losses)
ax.set(xlabel="step", ylabel="MSE", yscale="log", title="XOR, 2-4-1 by hand")
plt.show()

# %%
# The same network on every backend
# ---------------------------------
# The layers are written once against the array API standard, so the
# training loop below runs unchanged on every backend that is usable here.
# One seed gives the same initial weights everywhere.
for name in portnn.backends.available():
    if name == "array_api_strict:device1":
        continue  # the same library as array_api_strict, on a second device
    with portnn.use_backend(name):
        portnn.seed(0)
        model = portnn.Sequential(portnn.Dense(2, 4), portnn.Sigmoid(),
                                  portnn.Dense(4, 1), portnn.Sigmoid())
        opt = portnn.SGD(model.parameters(), lr=2.0, momentum=0.9)
        x, t = portnn.asarray(X, dtype="float32"), portnn.asarray(T, "float32")
        for step in range(500):
            loss = mse(model(x, training=True), t)
            model.backward(mse.backward())
            opt.step()
            model.zero_grad()
        out = portnn.get_backend().to_numpy(model.predict(x)).ravel()
        print(f"{name:18s} loss {float(loss):.5f}  outputs {np.round(out, 3)}")
