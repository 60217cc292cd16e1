"""The digits MLP trained data-parallel: one script for every launcher.

Each process joins the job its launcher started, takes its shard of every
global batch, and the gradients are averaged over all of them; only the
main rank prints and saves. Run alone, it is a world of one.

    python examples/distributed_digits.py                        # one process
    mpiexec -n 4 python examples/distributed_digits.py --backend numpy
    mpiexec -n 4 python examples/distributed_digits.py --backend cupy   # 4 GPUs
    torchrun --nproc-per-node 2 examples/distributed_digits.py --backend torch
    srun --ntasks 8 python examples/distributed_digits.py --backend numpy
"""

from __future__ import annotations

import sys
import time

import _common

import portnn


def main(argv=None) -> dict:
    p = _common.parser(__doc__, epochs=60)
    p.add_argument("--engine", default="auto",
                   help="auto (from the backend), mpi, nccl, torch or local")
    p.add_argument("--batch-size", type=int, default=32,
                   help="the global batch, split over the ranks")
    p.add_argument("--save", default="", help="checkpoint written by the main rank")
    args = p.parse_args(argv)
    _common.set_backend(args.backend)
    world = portnn.distributed.init(engine=args.engine)
    backend = portnn.get_backend()  # on a GPU: the device of this local rank
    portnn.seed(args.seed)  # every rank draws the same split and weights
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = backend.asarray(digits.data, dtype="float32")
    y = backend.asarray(digits.target, dtype="int64")
    x_train, x_test, y_train, y_test = portnn.data.train_test_split(
        x, y, test_size=0.2, stratify=True)
    scaler = portnn.data.Standardizer().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)

    model = portnn.models.digits_mlp()
    opt = portnn.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    start = time.perf_counter()
    history = model.fit(x_train, y_train, loss=portnn.CrossEntropy(label_smoothing=0.1),
                        optimizer=opt, epochs=args.epochs, batch_size=args.batch_size,
                        verbose=0 if args.quiet else "auto")
    seconds = time.perf_counter() - start
    test = model.evaluate(x_test, y_test, loss=portnn.CrossEntropy())
    if world.rank == 0:
        print(f"[{backend.name}, {world.engine} x{world.size}] digits MLP: test "
              f"accuracy {test['accuracy']:.4f} after {len(history.epoch)} epochs, "
              f"{seconds:.1f} s")
        if args.save:
            model.save(args.save)
            print(f"saved {args.save}")
    portnn.distributed.shutdown()
    return {"test_accuracy": test["accuracy"], "history": history}


if __name__ == "__main__":
    sys.exit(0 if main()["test_accuracy"] >= 0.95 else 1)
