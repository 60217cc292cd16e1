"""
Recurrence and backpropagation through time
===========================================

A recurrent network reads a sequence one step at a time and carries a
hidden state ``h`` from step to step. Unrolled over ``T`` steps it is a
``T``-layer network whose layers share their weights, so its gradient is
the chain rule run backwards through time (BPTT), with the shared weights'
gradients summed over the steps. This tutorial writes an RNN's forward and
BPTT by hand, checks them against :class:`~portnn.RNN`, unrolls an LSTM,
and trains one on a sequence task.
"""

# %%
# An RNN, unrolled
# ----------------
# ``h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``, PyTorch's
# layout, which portnn keeps.
import matplotlib.pyplot as plt
import numpy as np

import portnn

rng = np.random.default_rng(0)
N, T, D, H = 2, 5, 3, 4                       # batch, steps, inputs, hidden
x = rng.normal(size=(N, T, D))
with portnn.default_dtype("float64"):
    rnn = portnn.RNN(D, H)
W_ih, W_hh, b_ih, b_hh = (np.asarray(p.value) for p in rnn.parameters())

hs = [np.zeros((N, H))]
for t in range(T):
    hs.append(np.tanh(x[:, t] @ W_ih.T + b_ih + hs[-1] @ W_hh.T + b_hh))
out = np.stack(hs[1:], axis=1)                # every step: (N, T, H)
print("forward max difference:", np.abs(out - rnn(x, training=True)).max())

# %%
# Backpropagation through time
# ----------------------------
# Walk the steps backwards. At each step the gradient reaching ``h_t`` is
# what the output at ``t`` sends plus what step ``t + 1`` sends back
# through ``W_hh``; the shared weights collect one term per step.
dout = rng.normal(size=out.shape)
dW_ih, dW_hh = np.zeros_like(W_ih), np.zeros_like(W_hh)
db = np.zeros_like(b_ih)
dx = np.zeros_like(x)
dh_next = np.zeros((N, H))
for t in reversed(range(T)):
    dh = dout[:, t] + dh_next
    dz = dh * (1 - hs[t + 1] ** 2)            # through tanh
    dW_ih += dz.T @ x[:, t]
    dW_hh += dz.T @ hs[t]
    db += dz.sum(axis=0)
    dx[:, t] = dz @ W_ih
    dh_next = dz @ W_hh                       # on to step t - 1

dx_portnn = rnn.backward(dout)
grads = {name: p.grad for name, p in rnn.named_parameters()}
print("dx   ", np.abs(dx - dx_portnn).max())
print("dW_ih", np.abs(dW_ih - grads["W_ih"]).max())
print("dW_hh", np.abs(dW_hh - grads["W_hh"]).max())
print("db   ", np.abs(db - grads["b_ih"]).max(), np.abs(db - grads["b_hh"]).max())

# %%
# Why plain RNNs forget
# ---------------------
# The gradient that reaches step ``t`` from the last step went through
# ``T - t`` tanh derivatives and products with ``W_hh``; its size shrinks
# (or grows) geometrically. Here is ``|dL/dx_t|`` for a loss on the last
# step only, over 60 steps, for the RNN and for an LSTM, whose cell state
# ``c_t = f c_{t-1} + i g`` carries the gradient along an additive path.
T_long = 60
x_long = rng.normal(size=(1, T_long, D)).astype("float32")
fig, ax = plt.subplots(figsize=(6, 3.2))
for kind in (portnn.RNN, portnn.LSTM):
    portnn.seed(0)
    layer = kind(D, 16)
    y = layer(x_long, training=True)
    dy = np.zeros(y.shape, "float32")
    dy[:, -1] = 1.0                           # the loss sees the last step
    dxs = np.linalg.norm(np.asarray(layer.backward(dy))[0], axis=-1)
    ax.plot(dxs, label=type(layer).__name__)
ax.set(xlabel="step t", ylabel="|dL/dx_t|", yscale="log",
       title="gradient reaching each step from the last")
ax.legend()
plt.show()

# %%
# An LSTM, unrolled
# -----------------
# Four gates from one product, in PyTorch's order ``i, f, g, o``:
with portnn.default_dtype("float64"):
    lstm = portnn.LSTM(D, H)
W_ih, W_hh, b_ih, b_hh = (np.asarray(p.value) for p in lstm.parameters())


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


h, c, steps = np.zeros((N, H)), np.zeros((N, H)), []
for t in range(T):
    gates = x[:, t] @ W_ih.T + b_ih + h @ W_hh.T + b_hh
    i, f, g, o = np.split(gates, 4, axis=1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    h = sigmoid(o) * np.tanh(c)
    steps.append(h)
print("LSTM forward max difference:",
      np.abs(np.stack(steps, axis=1) - lstm(x)).max())

# %%
# Training: is the sum of a sequence positive?
# --------------------------------------------
# The answer depends on every step, so the model must carry information
# across the whole sequence. An LSTM reads 20 numbers; its last hidden state
# goes to a dense layer.
xs = rng.normal(size=(2000, 20, 1)).astype("float32")
ys = (xs.sum(axis=(1, 2)) > 0).astype("int64")
portnn.seed(0)
model = portnn.Sequential(portnn.LSTM(1, 16, return_sequences=False),
                          portnn.Dense(16, 2))
history = model.fit(xs, ys, loss="cross_entropy", optimizer="adam", epochs=8,
                    batch_size=64, validation_split=0.2, verbose=0)
print("validation accuracy per epoch:",
      [round(a, 3) for a in history["val_accuracy"]])
