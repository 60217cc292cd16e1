"""Tag each token of padded, variable-length sequences with a bidirectional
GRU, next to the same tagger reading forward only.

A token's tag depends on what comes after it: 0 if the next token is
smaller, 1 if it is not, 2 for the last real token. Reading forward, a GRU
cannot know the next token when it tags one; the backward half of a
``Bidirectional`` GRU can. The sequences (4 to 16 tokens) are padded with
id 0; ``Embedding(mask_zero=True)`` marks the padding, so the GRUs skip it
(the backward one starts at each sequence's last real token), and the loss
and the per-token accuracy leave it out. Prints both taggers' per-token
accuracy on held-out sequences.

    python examples/bidirectional_tagger.py --backend numpy
"""

from __future__ import annotations

import sys

import _common
import numpy as np

import portnn

VOCAB = 20


def make_data(n: int, steps: int, rs) -> tuple[np.ndarray, np.ndarray]:
    """Token ids ``(n, steps)`` padded with 0, and their tags."""
    lengths = rs.integers(4, steps + 1, n)
    ids = rs.integers(1, VOCAB, (n, steps))
    real = np.arange(steps)[None, :] < lengths[:, None]
    ids = np.where(real, ids, 0)
    following = np.concatenate([ids[:, 1:], np.zeros((n, 1), ids.dtype)], axis=1)
    tags = (following >= ids).astype(np.int64)
    tags[np.arange(n), lengths - 1] = 2  # the last real token
    return ids, np.where(real, tags, 0)  # padding's tags: never read


def build(bidirectional: bool, width: int = 32) -> portnn.Sequential:
    gru = portnn.GRU(16, width)
    return portnn.Sequential(
        portnn.Embedding(VOCAB, 16, mask_zero=True),
        portnn.Bidirectional(gru) if bidirectional else gru,
        portnn.Dense(2 * width if bidirectional else width, 3))


def main(argv=None) -> dict:
    p = _common.parser(__doc__, epochs=30)
    p.add_argument("--samples", type=int, default=2000)
    args = p.parse_args(argv)
    backend = _common.set_backend(args.backend)
    portnn.seed(args.seed)
    rs = np.random.default_rng(args.seed)
    x, y = make_data(args.samples, 16, rs)
    x_test, y_test = make_data(500, 16, rs)
    result = {}
    for name, bidirectional in (("bidirectional", True), ("forward only", False)):
        model = build(bidirectional)
        model.fit(x, y, loss="cross_entropy",
                  optimizer=portnn.Adam(model.parameters(), lr=5e-3),
                  epochs=args.epochs, batch_size=64, verbose=0 if args.quiet else 2)
        logs = model.evaluate(backend.asarray(x_test), backend.asarray(y_test),
                              loss="cross_entropy")
        result[name] = logs["accuracy"]
    print(f"per-token accuracy on {backend.name} (padding left out): bidirectional "
          f"GRU {result['bidirectional']:.3f}, forward-only GRU "
          f"{result['forward only']:.3f}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
