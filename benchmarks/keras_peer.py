"""Keras 3 on its JAX backend as a benchmark peer, from the same weights.

The step is the one Keras's own ``fit`` runs with ``jit_compile=True`` on
JAX, written out as Keras's guide to custom JAX training loops writes it:
``stateless_call`` for the forward pass, ``jax.value_and_grad`` for the
backward, ``optimizer.stateless_apply`` for the update, the whole under
``jax.jit``. No per-step read of the loss, as for portnn's compiled step.
A column only where ``keras`` is installed (``pip install keras``); the
suite's cases say which networks it builds.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np


def available() -> bool:
    """Whether Keras 3 and JAX are importable here."""
    return all(importlib.util.find_spec(m) is not None for m in ("keras", "jax"))


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    if keras.backend.backend() != "jax":
        msg = f"the Keras peer needs KERAS_BACKEND=jax, not {keras.backend.backend()}"
        raise RuntimeError(msg)
    return keras


def peer(build, pool, loss, optimizer, lr):
    """A benchmark factory: ``build(keras)`` makes the model with the case's
    weights; `loss` is "sparse_ce", "bce" or "mse" (on logits)."""

    def factory():
        import jax

        keras = _keras()
        model = build(keras)
        losses = {
            "sparse_ce": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "bce": keras.losses.BinaryCrossentropy(from_logits=True),
            "mse": keras.losses.MeanSquaredError(),
        }
        loss_fn = losses[loss]
        opt = (keras.optimizers.SGD(learning_rate=lr) if optimizer == "SGD"
               else keras.optimizers.Adam(learning_rate=lr, epsilon=1e-8))
        opt.build(model.trainable_variables)

        def loss_and_state(trainable, non_trainable, x, y):
            pred, non_trainable = model.stateless_call(trainable, non_trainable, x,
                                                       training=True)
            return loss_fn(y, pred), non_trainable

        grad_fn = jax.value_and_grad(loss_and_state, has_aux=True)

        @jax.jit
        def train_step(state, x, y):
            trainable, non_trainable, opt_vars = state
            (value, non_trainable), grads = grad_fn(trainable, non_trainable, x, y)
            trainable, opt_vars = opt.stateless_apply(opt_vars, grads, trainable)
            return value, (trainable, non_trainable, opt_vars)

        state = ([v.value for v in model.trainable_variables],
                 [v.value for v in model.non_trainable_variables],
                 [v.value for v in opt.variables])
        data = [(jax.numpy.asarray(x), jax.numpy.asarray(y)) for x, y in pool]
        i = 0

        def step():
            nonlocal state, i
            x, y = data[i % len(data)]
            i += 1
            value, state = train_step(state, x, y)
            return value

        def sync():
            jax.block_until_ready(state)

        return step, sync

    return factory


def dense(keras, W, b, activation=None):
    """A Keras Dense layer holding portnn's ``(in, out)`` weights."""
    layer = keras.layers.Dense(W.shape[1], activation=activation)
    layer.build((None, W.shape[0]))
    layer.set_weights([W, b])
    return layer


def conv2d(keras, W, b):
    """A channels-first Keras Conv2D holding portnn's ``(out, in, kh, kw)``
    kernel (Keras keeps ``(kh, kw, in, out)``)."""
    layer = keras.layers.Conv2D(W.shape[0], W.shape[2:], data_format="channels_first")
    layer.build((None, W.shape[1], None, None))
    layer.set_weights([np.ascontiguousarray(W.transpose(2, 3, 1, 0)), b])
    return layer


def lstm(keras, W_ih, W_hh, b_ih, b_hh):
    """A Keras LSTM holding portnn's (PyTorch's) weights: the same gate
    order (input, forget, cell, output), transposed, one bias."""
    hidden = W_hh.shape[1]
    layer = keras.layers.LSTM(hidden)
    layer.build((None, None, W_ih.shape[1]))
    layer.set_weights([np.ascontiguousarray(W_ih.T), np.ascontiguousarray(W_hh.T),
                       b_ih + b_hh])
    return layer


def encoder_layer(keras, state, steps, width, heads):
    """portnn's pre-norm TransformerEncoderLayer (dropout 0, tanh GELU) in
    Keras layers, with its weights: the attention's packed ``(3d, d)``
    input projection split into Keras's per-head ``(d, heads, d/heads)``
    kernels (PyTorch's layout: head h owns columns h*d/heads onwards)."""
    layers, hd = keras.layers, width // heads
    x = keras.Input((steps, width))
    norms = [layers.LayerNormalization(epsilon=1e-5) for _ in range(2)]
    attention = layers.MultiHeadAttention(heads, hd)
    h = norms[0](x)
    x1 = layers.Add()([x, attention(h, h)])
    up = dense(keras, state["0.3.W"], state["0.3.b"])
    down = dense(keras, state["0.4.W"], state["0.4.b"])
    gelu = layers.Activation(lambda v: keras.activations.gelu(v, approximate=True))
    out = layers.Add()([x1, down(gelu(up(norms[1](x1))))])
    W_in, b_in = state["0.1.W_in"], state["0.1.b_in"]
    weights = []
    for i in range(3):  # query, key, value
        rows = slice(i * width, (i + 1) * width)
        weights += [np.ascontiguousarray(W_in[rows].T).reshape(width, heads, hd),
                    b_in[rows].reshape(heads, hd)]
    weights += [np.ascontiguousarray(state["0.1.W_out"].T).reshape(heads, hd, width),
                state["0.1.b_out"]]
    attention.set_weights(weights)
    for i, norm in zip((0, 2), norms, strict=True):
        norm.set_weights([state[f"0.{i}.gamma"], state[f"0.{i}.beta"]])
    return keras.Model(x, out)
