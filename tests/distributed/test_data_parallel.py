"""Two ranks against one process: same weights, same figures, one writer.

Run under ``mpiexec -n 2 python -m mpi4py -m pytest tests/distributed``.
Each rank also trains the one-process reference itself, inside
``portnn.distributed.single()``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import portnn
from portnn.random import Generator

from ..conftest import to_np


def _data(n, seed=0):
    rs = np.random.default_rng(seed)
    x = rs.normal(size=(n, 6))
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 0.8)
    return x, y


def _weights(model):
    return {k: to_np(v).astype(np.float64) for k, v in model.state_dict().items()}


def _train(make, n, batch, *, epochs=3, dtype="float64", optimizer="sgd",
           data=None, **fit):
    x, y = data if data is not None else _data(n)
    with portnn.default_dtype(dtype):
        portnn.seed(0)
        model = make()
        opt = (portnn.SGD(model.parameters(), lr=0.2, momentum=0.9)
               if optimizer == "sgd" else portnn.Adam(model.parameters(), lr=0.01))
        fit.setdefault("rng", Generator(5))
        h = model.fit(x.astype(dtype), y, loss="cross_entropy", optimizer=opt,
                      epochs=epochs, batch_size=batch, verbose=0, **fit)
    return model, h


def _mlp():
    return portnn.Sequential(portnn.Dense(6, 16), portnn.Tanh(), portnn.Dense(16, 8),
                             portnn.ReLU(), portnn.Dense(8, 3))


def _same(a, b, rtol, atol=0.0):
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=atol, err_msg=k)


def test_the_world_has_two_ranks(world):
    assert world.size == 2 and world.rank in (0, 1)
    assert portnn.distributed.is_main() == (world.rank == 0)
    b = portnn.backends.get("numpy")
    total = world.all_reduce(b.asarray([1.0, world.rank]))
    assert to_np(total).tolist() == [2.0, 1.0]
    assert to_np(world.broadcast(b.asarray([world.rank + 7.0]))).tolist() == [7.0]
    parts = world.all_gather(b.asarray(np.arange(world.rank + 1.0)))
    assert [to_np(p).tolist() for p in parts] == [[0.0], [0.0, 1.0]]


@pytest.mark.parametrize(("n", "batch"), [
    (32, 8),   # even: 4 + 4 rows a step
    (28, 7),   # uneven: 4 + 3
    (21, 8),   # a short last batch of 5: 3 + 2
    (17, 8),   # a last batch of 1: rank 1 has nothing to learn from
])
def test_two_ranks_reach_the_weights_of_one_process(dp_backend, world, n, batch):
    parallel, h = _train(_mlp, n, batch)
    with portnn.distributed.single():
        alone, h_alone = _train(_mlp, n, batch)
    _same(_weights(parallel), _weights(alone), rtol=1e-10, atol=1e-12)
    assert h["loss"] == pytest.approx(h_alone["loss"], rel=1e-10)
    assert h["accuracy"] == pytest.approx(h_alone["accuracy"])
    # and every rank holds the same model
    mine = np.concatenate([v.ravel() for v in _weights(parallel).values()])
    theirs = world.all_gather(portnn.backends.get("numpy").asarray(mine))
    np.testing.assert_array_equal(to_np(theirs[0]), to_np(theirs[1]))


def test_float32_and_adam_agree_to_float32_rounding(dp_backend, world):
    parallel, _ = _train(_mlp, 40, 10, dtype="float32", optimizer="adam")
    with portnn.distributed.single():
        alone, _ = _train(_mlp, 40, 10, dtype="float32", optimizer="adam")
    _same(_weights(parallel), _weights(alone), rtol=1e-5, atol=1e-6)


def test_synchronized_batch_norm_equals_one_process(dp_backend, world):
    def cnn():
        return portnn.Sequential(
            portnn.Dense(6, 8), portnn.BatchNorm1D(8, sync=True), portnn.ReLU(),
            portnn.Dense(8, 3))

    parallel, _ = _train(cnn, 32, 8)
    with portnn.distributed.single():
        alone, _ = _train(cnn, 32, 8)
    _same(_weights(parallel), _weights(alone), rtol=1e-9, atol=1e-12)


def test_per_rank_batch_norm_averages_running_statistics(dp_backend, world):
    def cnn():
        return portnn.Sequential(portnn.Dense(6, 8), portnn.BatchNorm1D(8),
                                 portnn.ReLU(), portnn.Dense(8, 3))

    model, _ = _train(cnn, 32, 8, epochs=2)
    mean = to_np(model[1].running_mean)
    both = world.all_gather(portnn.backends.get("numpy").asarray(mean))
    np.testing.assert_array_equal(to_np(both[0]), to_np(both[1]))


def test_figures_are_reduced_over_the_ranks(dp_backend, world):
    x, y = _data(50, seed=3)
    model, _ = _train(_mlp, 40, 8)
    names = ["accuracy", "f1_macro", "top_2_accuracy"]
    parallel = model.evaluate(x, y, batch_size=9, metrics=names)
    with portnn.distributed.single():
        alone = model.evaluate(x, y, batch_size=9, metrics=names)
    for k in alone:
        assert parallel[k] == pytest.approx(alone[k], rel=1e-10), k


def test_roc_auc_and_r2_are_exact_over_the_ranks(world):
    from portnn.training import metrics as M
    from portnn.training.meters import Meters

    b = portnn.backends.get("numpy")
    rs = np.random.default_rng(world.rank)
    pred, target = rs.normal(size=(30 + 7 * world.rank, 1)), rs.integers(0, 2, (
        30 + 7 * world.rank, 1))
    meters = Meters(b, [M.get("roc_auc"), M.get("r2")])
    meters.update(b.asarray(0.0), b.asarray(pred), b.asarray(target.astype(float)))
    meters.reduce(world)
    logs, _ = meters.read()
    sk = pytest.importorskip("sklearn.metrics")
    all_pred = np.concatenate([to_np(p) for p in world.all_gather(b.asarray(pred))])
    all_true = np.concatenate([to_np(p) for p in world.all_gather(
        b.asarray(target.astype(float)))])
    assert logs["roc_auc"] == pytest.approx(sk.roc_auc_score(all_true, all_pred))
    assert logs["r2"] == pytest.approx(sk.r2_score(all_true, all_pred), abs=1e-10)


def test_predict_gathers_in_the_original_order(dp_backend, world):
    x, _ = _data(23, seed=4)
    model, _ = _train(_mlp, 32, 8)
    parallel = to_np(model.predict(x, batch_size=5))
    with portnn.distributed.single():
        alone = to_np(model.predict(x))
    np.testing.assert_allclose(parallel, alone, rtol=1e-12)


def test_a_dataset_is_sharded_like_arrays(dp_backend, world):
    x, y = _data(28)
    parallel, _ = _train(_mlp, 28, 7, data=(x, y))
    with portnn.default_dtype("float64"):
        portnn.seed(0)
        model = _mlp()
        model.fit(portnn.data.Dataset.from_arrays(x, y), loss="cross_entropy",
                  optimizer=portnn.SGD(model.parameters(), lr=0.2, momentum=0.9),
                  epochs=3, batch_size=7, rng=Generator(5), verbose=0)
    _same(_weights(model), _weights(parallel), rtol=1e-10, atol=1e-12)


def _shared_dir(world, tmp_path):
    """Rank 0's temporary folder, so that both ranks look at one place."""
    from mpi4py import MPI

    return MPI.COMM_WORLD.bcast(str(tmp_path) if world.rank == 0 else None, root=0)


def test_only_the_main_rank_writes_files(world, tmp_path):
    folder = _shared_dir(world, tmp_path)
    ckpt = os.path.join(folder, "dp-{epoch}.safetensors")
    log = os.path.join(folder, "dp.csv")
    model, _ = _train(_mlp, 32, 8, epochs=2, callbacks=[
        portnn.ModelCheckpoint(ckpt, monitor="loss"), portnn.CSVLogger(log)])
    world.barrier()
    assert sorted(os.listdir(folder)) == ["dp-1.safetensors", "dp-2.safetensors",
                                          "dp.csv"]
    with open(log) as f:
        assert len(f.read().splitlines()) == 3


def test_checkpoints_move_between_two_ranks_and_one(world, tmp_path):
    folder = _shared_dir(world, tmp_path)
    x, y = _data(32)
    # two ranks train and save; one process resumes; and back
    model, _ = _train(_mlp, 32, 8, epochs=2)
    path = os.path.join(folder, "two.safetensors")
    if world.rank == 0:
        model.save(path)
    world.barrier()
    with portnn.distributed.single():
        alone = portnn.load(path)
        alone.fit(x, y, epochs=1, batch_size=8, rng=Generator(9), verbose=0)
        reference = _weights(alone)
        if world.rank == 0:
            alone.save(os.path.join(folder, "one.safetensors"))
    world.barrier()
    resumed = portnn.load(path)
    resumed.fit(x, y, epochs=1, batch_size=8, rng=Generator(9), verbose=0)
    _same(_weights(resumed), reference, rtol=1e-5, atol=1e-6)
    again = portnn.load(os.path.join(folder, "one.safetensors"))
    again.fit(x, y, epochs=1, batch_size=8, rng=Generator(9), verbose=0)
    assert np.isfinite(np.concatenate([v.ravel() for v in
                                       _weights(again).values()])).all()


def test_sync_batch_norm_refuses_an_empty_shard(world):
    model = portnn.Sequential(portnn.Dense(6, 4), portnn.BatchNorm1D(4, sync=True),
                              portnn.Dense(4, 3))
    x, y = _data(17)
    with pytest.raises(ValueError, match="a row on each of the 2 ranks"):
        model.fit(x, y, loss="cross_entropy", batch_size=8, verbose=0)


def _lazy_mlp():
    return portnn.Sequential(portnn.Dense(16), portnn.Tanh(), portnn.Dense(3))


@pytest.mark.parametrize("make", [_mlp, _lazy_mlp])
def test_two_ranks_shuffle_as_one_process_from_the_default_generator(dp_backend,
                                                                      world, make):
    # no rng given: the permutations come from portnn.seed's generator, and
    # a lazy model's build draws from it before the first shuffle
    parallel, h = _train(make, 30, 8, epochs=4, rng=None)
    with portnn.distributed.single():
        alone, h_alone = _train(make, 30, 8, epochs=4, rng=None)
    _same(_weights(parallel), _weights(alone), rtol=1e-10, atol=1e-12)
    assert h["loss"] == pytest.approx(h_alone["loss"], rel=1e-10)


# -- every rank the same job: a named error, never a silent mixture --------------


def test_ranks_given_different_rows_of_the_same_length_refuse(world):
    x, y = _data(32, seed=world.rank)  # each rank its own data
    portnn.seed(0)
    model = _mlp()
    with pytest.raises(ValueError, match="different fit calls: checksum of the "
                                         "first rows: rank 0 has"):
        model.fit(x, y, loss="cross_entropy", verbose=0)
    with pytest.raises(ValueError, match="different evaluate calls: checksum"):
        model.evaluate(x, y, loss="cross_entropy")
    assert model.optimizer is None  # nothing trained


def test_predict_with_different_row_counts_refuses(world):
    x, _ = _data(10 + 2 * world.rank)
    portnn.seed(0)
    with pytest.raises(ValueError, match="predict calls: .*rows: rank 0 has 10, "
                                         "rank 1 has 12"):
        _mlp().predict(x)


@pytest.mark.parametrize(("change", "says"), [
    ("width", r"parameters: rank 0 has 0\.W \(6, 16\) float64, rank 1 has "
              r"0\.W \(6, 17\)"),
    ("dtype", r"parameters: rank 0 has 0\.W \(6, 16\) float64, rank 1 has "
              r"0\.W \(6, 16\) float32"),
    ("batch", "batch_size: rank 0 has 8, rank 1 has 16"),
])
def test_ranks_with_other_models_or_arguments_name_the_difference(world, change,
                                                                   says):
    x, y = _data(32)
    odd = world.rank == 1
    dtype = "float32" if change == "dtype" and odd else "float64"
    with portnn.default_dtype(dtype):
        portnn.seed(0)
        width = 17 if change == "width" and odd else 16
        model = portnn.Sequential(portnn.Dense(6, width), portnn.Tanh(),
                                  portnn.Dense(width, 3))
        with pytest.raises(ValueError, match=says):
            model.fit(x.astype(dtype), y, loss="cross_entropy", verbose=0,
                      batch_size=16 if change == "batch" and odd else 8)


def _two_in_two_out():
    a, b = portnn.Input((6,), name="a"), portnn.Input((6,), name="b")
    enc = portnn.Dense(6, 8)
    joined = portnn.Concatenate()([portnn.Tanh()(enc(a)), portnn.Tanh()(enc(b))])
    return portnn.Model(inputs=[a, b], outputs={"cls": portnn.Dense(16, 3)(joined),
                                                "reg": portnn.Dense(16, 1)(joined)})


def test_a_graph_with_two_inputs_and_outputs_equals_one_process(dp_backend, world):
    rs = np.random.default_rng(7)
    xa, xb = rs.normal(size=(26, 6)), rs.normal(size=(26, 6))
    y = {"cls": rs.integers(0, 3, 26), "reg": rs.normal(size=(26, 1))}

    def train():
        with portnn.default_dtype("float64"):
            portnn.seed(0)
            model = _two_in_two_out()
            h = model.fit({"a": xa, "b": xb}, y, epochs=3, batch_size=8,
                          loss={"cls": "cross_entropy", "reg": "mse"},
                          loss_weights={"reg": 0.5}, verbose=0,
                          optimizer=portnn.SGD(model.parameters(), lr=0.1))
            return model, h

    parallel, h = train()
    with portnn.distributed.single():
        alone, h_alone = train()
    _same(_weights(parallel), _weights(alone), rtol=1e-10, atol=1e-12)
    for key in ("loss", "cls_loss", "reg_loss", "cls_accuracy"):
        assert h[key] == pytest.approx(h_alone[key], rel=1e-10), key
    with portnn.default_dtype("float64"):
        out = parallel.predict([xa, xb])
    with portnn.distributed.single(), portnn.default_dtype("float64"):
        ref = alone.predict([xa, xb])
    for k in ("cls", "reg"):
        np.testing.assert_allclose(to_np(out[k]), to_np(ref[k]), rtol=1e-10)


@pytest.mark.parametrize(("name", "optimizer"), [("jax", "adam"), ("torch", "sgd")])
def test_compiled_steps_on_two_ranks_reach_the_weights_of_one_process(
        world, name, optimizer, recwarn):
    # two programs around the all-reduce (portnn.training.compiled.
    # CompiledDataParallelStep), against one eager process; a short last
    # batch of 5 rows (3 + 2) adds a program of its own
    try:
        b = portnn.backends.get(name)
    except portnn.backends.BackendUnavailableError as exc:
        pytest.skip(str(exc))
    from portnn.training.compiled import CompiledDataParallelStep

    def run(jit):
        x, y = _data(21)
        with portnn.use_backend(b), portnn.default_dtype("float64"):
            portnn.seed(0)
            model = _mlp()
            opt = (portnn.SGD(model.parameters(), lr=0.2, momentum=0.9)
                   if optimizer == "sgd" else portnn.Adam(model.parameters(),
                                                          lr=0.01))
            model.compile(loss="cross_entropy", optimizer=opt, jit_compile=jit)
            h = model.fit(x, y, epochs=3, batch_size=8, verbose=0,
                          rng=Generator(5))
        return model, h

    parallel, h = run(True)
    assert isinstance(parallel._compiled_step[1], CompiledDataParallelStep)
    assert not [w for w in recwarn if "jit_compile" in str(w.message)]
    with portnn.distributed.single():
        alone, h_alone = run(False)
    _same(_weights(parallel), _weights(alone), rtol=1e-9, atol=1e-12)
    assert h["loss"] == pytest.approx(h_alone["loss"], rel=1e-9)
    mine = np.concatenate([v.ravel() for v in _weights(parallel).values()])
    theirs = world.all_gather(portnn.backends.get("numpy").asarray(mine))
    np.testing.assert_array_equal(to_np(theirs[0]), to_np(theirs[1]))


def test_a_synchronized_batch_norm_runs_compiled_fits_eagerly(world):
    b = pytest.importorskip("jax") and portnn.backends.get("jax")
    with portnn.use_backend(b):
        model = portnn.Sequential(portnn.Dense(6, 8),
                                  portnn.BatchNorm1D(8, sync=True), portnn.ReLU(),
                                  portnn.Dense(8, 3))
        model.compile(loss="cross_entropy", optimizer="sgd", jit_compile=True)
        x, y = _data(16)
        with pytest.warns(UserWarning, match=r"BatchNorm1D\(sync=True\).*eagerly"):
            model.fit(x, y, epochs=1, batch_size=8, verbose=0)
