"""
Attention and Transformers
==========================

Attention lets every position of a sequence look at every other one and
take a weighted mix of what it finds, the weights computed from the data.
This tutorial writes scaled dot-product attention by hand, adds the two
masks (padding and causal), checks the result against
:class:`~portnn.MultiHeadAttention`, then trains a small character-level
Transformer language model.
"""

# %%
# Scaled dot-product attention
# ----------------------------
# Queries ``Q``, keys ``K`` and values ``V`` are linear maps of the input.
# Position ``i`` scores every position ``j`` by ``q_i . k_j / sqrt(d)``, a
# softmax turns the scores into weights, and the output is the weighted sum
# of the values: ``softmax(Q K^T / sqrt(d)) V``.
import matplotlib.pyplot as plt
import numpy as np

import portnn

rng = np.random.default_rng(0)
N, T, E, heads = 1, 6, 8, 2                   # batch, steps, width, heads
d = E // heads
x = rng.normal(size=(N, T, E))
with portnn.default_dtype("float64"):
    mha = portnn.MultiHeadAttention(E, heads)
W_in, b_in, W_out, b_out = (np.asarray(p.value) for p in mha.parameters())


def softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def attention(x, mask=None):
    q, k, v = np.split(x @ W_in.T + b_in, 3, axis=-1)    # PyTorch's in_proj
    # (N, T, E) -> (N, heads, T, d): each head attends on its own slice
    q, k, v = (a.reshape(N, T, heads, d).transpose(0, 2, 1, 3) for a in (q, k, v))
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d)
    if mask is not None:
        scores = np.where(mask, -np.inf, scores)         # True = not allowed
    weights = softmax(scores)
    out = (weights @ v).transpose(0, 2, 1, 3).reshape(N, T, E)
    return out @ W_out.T + b_out, weights


out, weights = attention(x)
print("max difference from portnn:", np.abs(out - mha(x)).max())

# %%
# Masks
# -----
# A causal mask hides the future (position ``i`` sees ``j <= i``), which is
# what a language model needs; a padding mask hides padded positions of
# shorter sequences. Both are boolean, True where attention is not allowed,
# as in PyTorch.
causal = np.triu(np.ones((T, T), dtype=bool), k=1)
out_causal, w_causal = attention(x, causal)
print("causal, max difference:",
      np.abs(out_causal - mha(x, attn_mask=causal)).max())

padding = np.array([[False, False, False, False, True, True]])  # 2 pads
out_pad, w_pad = attention(x, padding[:, None, None, :])
print("padding, max difference:",
      np.abs(out_pad - mha(x, key_padding_mask=padding)).max())

fig, axes = plt.subplots(1, 3, figsize=(9, 3))
for ax, w, title in zip(axes, [weights, w_causal, w_pad],
                        ["no mask", "causal", "last 2 padded"]):
    ax.imshow(w[0, 0], cmap="viridis", vmin=0, vmax=1)
    ax.set(title=title, xlabel="key j", ylabel="query i")
plt.show()

# %%
# A character-level language model
# --------------------------------
# Decoder-only, as GPT: embed each character, add positions, a causal
# Transformer block, and the embedding table reversed turns each position's
# vector into logits for the next character. The text is Python's own
# help pages (``pydoc_data``, shipped with every Python); a few thousand
# windows train it for a minute.
from pydoc_data.topics import topics

text = "".join(topics.values())[:60_000]
chars = sorted(set(text))
ids = np.array([chars.index(c) for c in text], dtype=np.int64)
context = 32
starts = np.arange(0, len(ids) - context - 1, 8)
x_ids = np.stack([ids[s:s + context] for s in starts])
y_ids = np.stack([ids[s + 1:s + context + 1] for s in starts])

portnn.seed(0)
tokens = portnn.Input((None,), dtype="int64")
table = portnn.ReversibleEmbedding(len(chars), 64)
h = portnn.PositionalEncoding(context, 64, learned=True)(table(tokens))
h = portnn.TransformerEncoderLayer(64, 4, 256, causal=True)(h)
h = portnn.LayerNorm(64)(h)
lm = portnn.Model(inputs=tokens, outputs=table(h, reverse=True))
history = lm.fit(x_ids, y_ids, loss="cross_entropy",
                 optimizer=portnn.Adam(lm.parameters(), lr=3e-3),
                 epochs=4, batch_size=64, verbose=0)
print("loss per epoch (nats per character):",
      [round(v, 3) for v in history["loss"]],
      f"(uniform guessing: {np.log(len(chars)):.3f})")

# %%
# Sampling: feed the text so far, draw the next character from the softmax
# of the last position's logits, repeat.
sample_rng = np.random.default_rng(1)
prompt = text.index("Assert statements")
generated = list(ids[prompt:prompt + context])
print(repr(text[prompt:prompt + context]), "->")
for _ in range(160):
    logits = np.asarray(lm.predict(np.array([generated[-context:]])),
                        dtype=np.float64)[0, -1]
    p = softmax(logits / 0.8)
    generated.append(sample_rng.choice(len(chars), p=p))
print("".join(chars[i] for i in generated[context:]))
