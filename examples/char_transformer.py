"""A character-level Transformer language model trained on text every Python
installation ships: the help topics of the standard library's
``pydoc_data`` package (about 465,000 characters of Python's own manual).

Decoder-only (GPT-style): each character's id is looked up in a
``ReversibleEmbedding``, sinusoidal positions are added, causal pre-norm
Transformer blocks read the characters so far, and the same embedding
table, reversed (``h @ W.T``), turns each position's vector into logits
for the next character: input and output share one table (weight tying).

The last tenth of the text is held out. Prints the held-out loss in bits
per character next to two baselines computed here: a unigram model
(character frequencies) and a bigram model (the next character given this
one), both add-one smoothed on the training text. Then saves the model,
loads it back (the loaded model must give the same held-out figure),
and samples text from it at a temperature. ``--resume`` continues training
from the checkpoint (weights, Adam's moments, the random state).

    python examples/char_transformer.py --backend numpy
    python examples/char_transformer.py --resume --epochs 2   # train on
"""

from __future__ import annotations

import math
import pathlib
import sys

import _common
import numpy as np

import portnn

CONTEXT = 64  # characters a prediction sees


def load_text() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


class Vocabulary:
    """Characters to ids and back, from the text itself."""

    def __init__(self, text: str) -> None:
        self.chars = sorted(set(text))
        self.ids = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        return np.array([self.ids[c] for c in text], np.int64)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def windows(ids: np.ndarray, n: int, rs=None) -> tuple[np.ndarray, np.ndarray]:
    """`n` windows of CONTEXT characters and the characters that follow
    each position: at random places (`rs`) or back to back (held-out)."""
    if rs is None:
        starts = np.arange(n) * CONTEXT
    else:
        starts = rs.integers(0, len(ids) - CONTEXT - 1, n)
    rows = starts[:, None] + np.arange(CONTEXT + 1)[None, :]
    chunk = ids[rows]
    return chunk[:, :-1], chunk[:, 1:]


def baselines(train: np.ndarray, test: np.ndarray, vocab: int) -> dict:
    """Held-out bits per character of add-one smoothed unigram and bigram
    models fitted on `train`."""
    uni = np.bincount(train, minlength=vocab) + 1.0
    uni_bits = -np.mean(np.log2(uni[test] / uni.sum()))
    pairs = np.zeros((vocab, vocab))
    np.add.at(pairs, (train[:-1], train[1:]), 1.0)
    pairs += 1.0
    cond = pairs / pairs.sum(axis=1, keepdims=True)
    bi_bits = -np.mean(np.log2(cond[test[:-1], test[1:]]))
    return {"unigram_bits": float(uni_bits), "bigram_bits": float(bi_bits)}


def build(vocab: int, width: int = 96, layers: int = 2, heads: int = 4) -> portnn.Model:
    """ids ``(N, T)`` -> next-character logits ``(N, T, vocab)``."""
    ids = portnn.Input((None,), dtype="int64", name="characters")
    table = portnn.ReversibleEmbedding(vocab, width)
    h = portnn.PositionalEncoding(CONTEXT, width, learned=True)(table(ids))
    for _ in range(layers):
        h = portnn.TransformerEncoderLayer(width, heads, 4 * width, causal=True)(h)
    h = portnn.LayerNorm(width)(h)
    return portnn.Model(inputs=ids, outputs=table(h, reverse=True))


def bits_per_char(model, x, y) -> float:
    """Held-out cross-entropy in bits (each window's first characters see
    little context, so this is slightly pessimistic)."""
    return model.evaluate(x, y, loss="cross_entropy")["loss"] / math.log(2)


def sample(model, vocab, prompt: str, length: int, temperature: float,
           seed: int) -> str:
    """`length` characters after `prompt`, each drawn from the softmax of
    the logits divided by `temperature` (lower: safer, duller)."""
    rs = np.random.default_rng(seed)
    backend = portnn.get_backend()
    ids = list(vocab.encode(prompt))
    for _ in range(length):
        # always CONTEXT ids, the text so far first: causal attention keeps
        # what follows the last one out of its logits, and one input shape
        # means one compiled program on backends that compile (JAX)
        context = np.zeros((1, CONTEXT), np.int64)
        window = ids[-CONTEXT:]
        context[0, :len(window)] = window
        logits = backend.to_numpy(model.predict(backend.asarray(context)))
        scaled = logits[0, len(window) - 1] / temperature
        p = np.exp(scaled - scaled.max())
        ids.append(int(rs.choice(len(p), p=p / p.sum())))
    return vocab.decode(ids)


def main(argv=None) -> dict:
    p = _common.parser(__doc__, epochs=6)
    p.add_argument("--windows", type=int, default=6000,
                   help="training windows of 64 characters per epoch")
    p.add_argument("--width", type=int, default=96)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--checkpoint", default="char_transformer.safetensors")
    p.add_argument("--resume", action="store_true",
                   help="continue training the model saved at --checkpoint")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--sample", type=int, default=300, help="characters to sample")
    args = p.parse_args(argv)
    backend = _common.set_backend(args.backend)
    text = load_text()
    vocab = Vocabulary(text)
    ids = vocab.encode(text)
    cut = int(0.9 * len(ids))
    train_ids, test_ids = ids[:cut], ids[cut:]
    x_test, y_test = windows(test_ids, (len(test_ids) - 1) // CONTEXT)
    x_test, y_test = backend.asarray(x_test), backend.asarray(y_test)
    result = baselines(train_ids, test_ids, len(vocab))

    path = pathlib.Path(args.checkpoint)
    if args.resume:
        # weights, optimizer moments and schedule, and the random state
        model = portnn.load(path, restore_rng=True)
        optimizer, start = model.optimizer, int(model.metadata["epochs"])
        result["resumed_from_bits"] = bits_per_char(model, x_test, y_test)
        print(f"resumed from {path} after {start} epochs: "
              f"{result['resumed_from_bits']:.3f} bits/char")
    else:
        portnn.seed(args.seed)
        model = build(len(vocab), args.width, args.layers)
        optimizer, start = portnn.AdamW(model.parameters(), lr=4e-3,
                                        weight_decay=0.01), 0
    # new windows each run (the seed and the epochs trained so far pick them)
    rs = np.random.default_rng([args.seed, start])
    for epoch in range(args.epochs):
        x, y = windows(train_ids, args.windows, rs)
        model.fit(x, y, loss="cross_entropy", optimizer=optimizer, epochs=1,
                  batch_size=32, verbose=0 if args.quiet else 1)
        if not args.quiet:
            print(f"epoch {start + epoch + 1}: held-out "
                  f"{bits_per_char(model, x_test, y_test):.3f} bits/char")
    result["bits_per_char"] = bits_per_char(model, x_test, y_test)
    print(f"[{backend.name}] held-out bits per character: transformer "
          f"{result['bits_per_char']:.3f}, bigram {result['bigram_bits']:.3f}, "
          f"unigram {result['unigram_bits']:.3f}")

    model.save(path, metadata={"epochs": start + args.epochs})
    loaded = portnn.load(path)
    result["loaded_bits_per_char"] = bits_per_char(loaded, x_test, y_test)
    print(f"saved to {path}; loaded back: {result['loaded_bits_per_char']:.3f} "
          "bits/char")
    if args.sample:
        result["sample"] = sample(loaded, vocab, "The ", args.sample,
                                  args.temperature, args.seed)
        print(f"sampled at temperature {args.temperature}:\n{result['sample']}")
    result["model"] = model
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
