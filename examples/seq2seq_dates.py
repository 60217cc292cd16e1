"""Translate dates written the way people write them into ISO 8601 with an
encoder-decoder Transformer.

"Tuesday, March 7, 2023", "07.03.2023", "7th of March 2023" and a dozen
other formats (generated with ``datetime``) all become "2023-03-07". The
source is read one character at a time, padded with 0 to the longest
source (``Embedding(mask_zero=True)``: the encoder's attention and the
decoder's cross-attention skip the padding). The decoder is trained with
teacher forcing: it reads the answer shifted right by one (a start token
first) and predicts every next character at once, its causal
self-attention hiding what comes after. At test time it decodes greedily,
one character per step, feeding back its own guesses. Prints the fraction
of held-out dates translated exactly right.

    python examples/seq2seq_dates.py --backend numpy
"""

from __future__ import annotations

import datetime
import sys

import _common
import numpy as np

import portnn

ORDINAL = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd", 31: "st"}


def _human(d: datetime.date, style: int) -> str:
    """`d` in one of 13 human formats (none ambiguous: day and month are
    never both plain numbers in an order that could be read both ways)."""
    day, month, year = d.day, d.strftime("%B"), d.year
    forms = [
        f"{day} {month} {year}",
        f"{month} {day}, {year}",
        f"{day} {month[:3]} {year}",
        f"{month[:3]} {day} {year}",
        f"{d.strftime('%A')}, {month} {day}, {year}",
        f"{d.strftime('%a')} {day} {month[:3]} {year}",
        f"{day:02d}/{d.month:02d}/{year}",  # day first, as in most of the world
        f"{day:02d}.{d.month:02d}.{year}",
        f"{year}/{d.month:02d}/{day:02d}",
        f"{day:02d}-{month[:3].upper()}-{year}",
        f"{year}{d.month:02d}{day:02d}",
        f"{day}{ORDINAL.get(day, 'th')} of {month} {year}",
        f"{month.lower()} {day} {year}",
    ]
    return forms[style]


STYLES = 13


def make_pairs(n: int, rs) -> list[tuple[str, str]]:
    """`n` (human, ISO) pairs for random days of 1950-2049."""
    start = datetime.date(1950, 1, 1).toordinal()
    days = rs.integers(0, 36525, n)
    styles = rs.integers(0, STYLES, n)
    return [(_human(d, int(s)), d.isoformat()) for d, s in
            ((datetime.date.fromordinal(start + int(k)), s)
             for k, s in zip(days, styles, strict=True))]


class Chars:
    """Characters to ids and back: 0 is padding, 1 starts the answer."""

    PAD, START = 0, 1

    def __init__(self) -> None:
        sample = "".join(_human(datetime.date(2000, m, 1 + m), s)
                         for m in range(1, 13) for s in range(STYLES))
        days = "".join(datetime.date(2000, 1, d).strftime("%A") for d in range(1, 8))
        self.chars = sorted(set(sample + days + "0123456789-"))
        self.ids = {c: i + 2 for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars) + 2

    def encode(self, texts, length: int) -> np.ndarray:
        out = np.zeros((len(texts), length), np.int64)
        for i, text in enumerate(texts):
            out[i, :len(text)] = [self.ids[c] for c in text]
        return out

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i) - 2] if i >= 2 else "?" for i in ids)


def build(vocab: int, src_len: int, width: int = 64, layers: int = 2) -> portnn.Model:
    """Encoder over the source characters, decoder over the answer so far."""
    src = portnn.Input((None,), dtype="int64", name="source")
    tgt = portnn.Input((None,), dtype="int64", name="answer_so_far")
    memory = portnn.Embedding(vocab, width, mask_zero=True)(src)
    memory = portnn.PositionalEncoding(src_len, width)(memory)
    for _ in range(layers):
        memory = portnn.TransformerEncoderLayer(width, 4, 2 * width)(memory)
    memory = portnn.LayerNorm(width)(memory)
    h = portnn.PositionalEncoding(10, width)(portnn.Embedding(vocab, width)(tgt))
    for _ in range(layers):
        h = portnn.TransformerDecoderLayer(width, 4, 2 * width)([h, memory])
    logits = portnn.Dense(width, vocab)(portnn.LayerNorm(width)(h))
    return portnn.Model(inputs=[src, tgt], outputs=logits)


def greedy(model, source, backend) -> np.ndarray:
    """The answers decoded one character at a time from the model's own
    guesses. Causal attention makes position t depend on positions <= t
    only, so the not-yet-decoded tail may hold anything (padding here)."""
    answer = np.zeros((len(source), 10), np.int64)
    answer[:, 0] = Chars.START
    src = backend.asarray(source)
    for t in range(10):
        logits = model.predict([src, backend.asarray(answer)])
        guess = np.argmax(backend.to_numpy(logits)[:, t], axis=-1)
        if t + 1 < 10:
            answer[:, t + 1] = guess
        else:
            last = guess
    return np.concatenate([answer[:, 1:], last[:, None]], axis=1)


def main(argv=None) -> dict:
    p = _common.parser(__doc__, epochs=12)
    p.add_argument("--samples", type=int, default=12000)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    args = p.parse_args(argv)
    backend = _common.set_backend(args.backend)
    portnn.seed(args.seed)
    rs = np.random.default_rng(args.seed)
    chars = Chars()
    train, test = make_pairs(args.samples, rs), make_pairs(1000, rs)
    src_len = max(len(h) for h, _ in train + test)

    def arrays(pairs):
        source = chars.encode([h for h, _ in pairs], src_len)
        answer = chars.encode([iso for _, iso in pairs], 10)
        shifted = np.concatenate(  # teacher forcing: the answer, one step late
            [np.full((len(pairs), 1), Chars.START), answer[:, :-1]], axis=1)
        return source, shifted, answer

    src, shifted, answer = arrays(train)
    model = build(len(chars), src_len, args.width)
    opt = portnn.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = portnn.optim.CosineWithWarmup(opt, total_steps=args.epochs,
                                             warmup_steps=1)
    model.fit([src, shifted], answer, loss="cross_entropy", optimizer=opt,
              epochs=args.epochs, batch_size=64,
              callbacks=[portnn.training.LRSchedulerCallback(schedule)],
              verbose=0 if args.quiet else 1)
    t_src, _, t_answer = arrays(test)
    decoded = greedy(model, t_src, backend)
    exact = float(np.mean(np.all(decoded == t_answer, axis=1)))
    print(f"[{backend.name}] held-out dates translated exactly right (greedy "
          f"decoding): {exact:.3f}")
    if not args.quiet:
        for (human, iso), ids in list(zip(test, decoded, strict=True))[:6]:
            print(f"  {human!r:32} -> {chars.decode(ids)}  (truth {iso})")
    return {"exact_match": exact, "model": model}


if __name__ == "__main__":
    sys.exit(0 if main(sys.argv[1:])["exact_match"] >= 0.95 else 1)
