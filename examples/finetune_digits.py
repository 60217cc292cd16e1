"""Fine-tuning: reuse a saved digits CNN's convolutions for a new task.

The CNN of ``examples/cnn_digits.py``, trained to tell the ten digits apart
on half of the training images, is saved (or loaded with
``--checkpoint``, e.g. one written by ``portnn train digits-cnn
--save``). For a new task, odd or even, its convolutions and batch norms
are frozen and its classifier replaced by a fresh two-class one, trained
on a few labelled images (``--per-class`` of each). The same network
trained from scratch on the same few images is the comparison.

    python examples/finetune_digits.py --backend numpy
"""

from __future__ import annotations

import os
import sys
import tempfile

import _common
import cnn_digits
import numpy as np

import portnn


def main(argv=None) -> dict:
    p = _common.parser(__doc__, epochs=60)
    p.add_argument("--checkpoint", default=None,
                   help="a saved digits CNN (default: train one first)")
    p.add_argument("--pretrain-epochs", type=int, default=10)
    p.add_argument("--per-class", type=int, default=5,
                   help="labelled images of each class of the new task")
    args = p.parse_args(argv)
    backend = _common.set_backend(args.backend)
    portnn.seed(args.seed)
    x_train, x_test, y_train, y_test = cnn_digits.load(backend)
    xs, ys = backend.to_numpy(x_train), backend.to_numpy(y_train)
    rs = np.random.default_rng(args.seed)
    order = rs.permutation(len(ys))
    seen, unseen = order[: len(ys) // 2], order[len(ys) // 2:]

    path = args.checkpoint
    if path is None:  # the base: ten digits, half of the training images
        base = cnn_digits.build_model(16)
        base.fit(xs[seen], ys[seen], loss=portnn.CrossEntropy(),
                 epochs=args.pretrain_epochs, batch_size=32,
                 optimizer=portnn.AdamW(base.parameters(), lr=2e-3),
                 verbose=0 if args.quiet else 1)
        path = os.path.join(tempfile.mkdtemp(), "digits_cnn.safetensors")
        base.save(path)

    # The new task: odd or even, from a few images the base never saw.
    pick = np.concatenate([rs.permutation(unseen[ys[unseen] % 2 == c])
                           [: args.per_class] for c in (0, 1)])
    x_few, y_few = xs[pick], ys[pick] % 2
    y_new_test = backend.to_numpy(y_test) % 2

    model = portnn.load(path, backend=backend)
    model.trainable = False  # every layer; batch norms use running statistics
    features = model[-1].in_features
    model.layers[-1] = portnn.Dense(features, 2, rng=portnn.random.Generator(
        args.seed))  # a fresh classifier: the only trainable part
    frozen = {k: backend.to_numpy(v).copy()
              for k, v in model.state_dict().items()
              if not k.startswith(f"{len(model) - 1}.")}
    model.fit(x_few, y_few, loss=portnn.CrossEntropy(), epochs=args.epochs,
              batch_size=10, optimizer=portnn.Adam(model.trainable_parameters(),
                                                   lr=1e-2), verbose=0)
    tuned = model.evaluate(x_test, y_new_test, loss=portnn.CrossEntropy())
    unchanged = all(np.array_equal(backend.to_numpy(model.state_dict()[k]), v)
                    for k, v in frozen.items())

    portnn.seed(args.seed)  # the same network from scratch, same few images
    scratch = cnn_digits.build_model(16)
    scratch.layers[-1] = portnn.Dense(features, 2)
    scratch.fit(x_few, y_few, loss=portnn.CrossEntropy(), epochs=args.epochs,
                batch_size=10, optimizer=portnn.Adam(scratch.parameters(), lr=1e-2),
                verbose=0)
    baseline = scratch.evaluate(x_test, y_new_test, loss=portnn.CrossEntropy())

    trained = model.num_parameters(trainable_only=True)
    print(f"[{backend.name}] odd or even from {2 * args.per_class} labelled "
          f"images: fine-tuned {tuned['accuracy']:.4f} ({trained} of "
          f"{model.num_parameters()} parameters trained), from scratch "
          f"{baseline['accuracy']:.4f}")
    return {"fine_tuned": tuned["accuracy"], "scratch": baseline["accuracy"],
            "frozen_unchanged": unchanged, "trained_parameters": trained}


if __name__ == "__main__":
    sys.exit(0 if main()["frozen_unchanged"] else 1)
