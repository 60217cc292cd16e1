"""The training toolkit's silent failures, each pinned (issue 18): weights
that train by ascent, an optimizer that misses unfrozen layers, schedules
that restart or overwrite a plateau's reductions, a prefetch thread outside
the caller's context, host reads of a stateless SGD, a CSV log whose rows
lose their columns."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest

import portnn

from .conftest import to_np
from .sync_counter import count_syncs


def _data(n=64, seed=0):
    rs = np.random.default_rng(seed)
    x = rs.normal(size=(n, 5)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def _model(seed=0):
    portnn.seed(seed)
    return portnn.Sequential(portnn.Dense(5, 8), portnn.Tanh(), portnn.Dense(8, 2))


# -- item 6: weights ------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_negative_or_non_finite_sample_weights_are_refused(backend, bad):
    x, y = _data()
    w = np.ones(64, np.float32)
    w[5] = bad
    model = _model()
    before = {k: to_np(v).copy() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="sample_weight holds 1 negative or non"):
        model.fit(x, y, loss="cross_entropy", sample_weight=w, verbose=0)
    for k, v in model.state_dict().items():  # nothing changed
        np.testing.assert_array_equal(to_np(v), before[k])


def test_negative_weights_in_batches_are_refused():
    x, y = _data()
    batches = [(x[:32], y[:32], np.ones(32)), (x[32:], y[32:], -np.ones(32))]
    with pytest.raises(ValueError, match="negative or non-finite"):
        _model().fit(batches, loss="cross_entropy", verbose=0)


def test_class_weights_must_be_non_negative_and_take_numpy_keys():
    x, y = _data()
    with pytest.raises(ValueError, match="class_weight values must be finite.*-2"):
        _model().fit(x, y, loss="cross_entropy", class_weight={0: 1.0, 1: -2.0},
                     verbose=0)
    keyed = {np.int64(0): 1.0, np.int32(1): 3.0}  # as np.unique gives them
    ints = {0: 1.0, 1: 3.0}
    a = _model().fit(x, y, loss="cross_entropy", class_weight=keyed, verbose=0)
    b = _model().fit(x, y, loss="cross_entropy", class_weight=ints, verbose=0)
    assert a["loss"] == b["loss"]


# -- item 11: unfreezing ------------------------------------------------------------


@pytest.mark.parametrize("how", ["compile", "fit"])
def test_an_unfrozen_layer_trains_after_recompiling(how):
    x, y = _data()
    model = _model()
    first = model.layers[0]
    first.trainable = False  # fine-tuning: the optimizer is made without it
    model.compile(loss="cross_entropy", optimizer="adam")
    model.fit(x, y, epochs=1, verbose=0)
    assert not any(p is first.W for p in model.optimizer.params)
    first.trainable = True
    before = to_np(first.W.value).copy()
    if how == "compile":
        model.compile(loss="cross_entropy", optimizer="adam")
        model.fit(x, y, epochs=1, verbose=0)
    else:
        model.fit(x, y, epochs=1, verbose=0, optimizer="adam")
    assert any(p is first.W for p in model.optimizer.params)
    assert not np.array_equal(to_np(first.W.value), before)  # it moved


def test_fit_warns_when_its_optimizer_misses_trainable_parameters():
    x, y = _data()
    model = _model()
    opt = portnn.Adam(model.layers[2].parameters())
    with pytest.warns(UserWarning, match="2 trainable parameter.*not in the optim"):
        model.fit(x, y, loss="cross_entropy", optimizer=opt, verbose=0)
    model.layers[0].trainable = False  # now intended: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(x, y, loss="cross_entropy", optimizer=opt, verbose=0)


# -- items 12, 13: schedules ------------------------------------------------------


def test_one_cycle_refuses_steps_past_its_total(torch):
    model = _model()
    opt = portnn.SGD(model.parameters(), lr=0.1)
    sched = portnn.optim.OneCycle(opt, total_steps=10)
    ref_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=0.1, total_steps=10)
    for _ in range(10):  # fit steps it after each of the run's batches
        ref_opt.step()
        ref.step()
        assert sched.step() == pytest.approx(ref.get_last_lr()[0])
    with pytest.raises(ValueError, match="stepped 11 times, past its total_steps=10"):
        sched.step()
    ref_opt.step()
    with pytest.raises(ValueError):  # PyTorch refuses too
        ref.step()


def test_fit_past_a_one_cycle_total_says_so():
    x, y = _data()
    model = _model()
    opt = portnn.SGD(model.parameters(), lr=0.1)
    portnn.optim.OneCycle(opt, total_steps=4)  # 2 batches an epoch: 2 epochs
    with pytest.raises(ValueError, match="past its total_steps=4"):
        model.fit(x, y, loss="cross_entropy", optimizer=opt, batch_size=32,
                  epochs=3, verbose=0)


def test_a_plateau_reduction_scales_the_schedule():
    x, y = _data()
    model = _model()
    opt = portnn.SGD(model.parameters(), lr=1.0)
    sched = portnn.optim.StepLR(opt, step_size=100, gamma=0.5)
    plateau = portnn.ReduceLROnPlateau(monitor="loss", patience=1, factor=0.1,
                                       min_delta=10.0)  # nothing improves enough
    h = model.fit(x, y, loss="cross_entropy", optimizer=opt, epochs=4, verbose=0,
                  callbacks=[plateau], lr_schedule=sched)
    # epoch 1 sets the best; every later epoch is a plateau: 1, 1, 0.1, 0.01
    assert plateau.reductions == [1, 2, 3]
    assert h["lr"] == pytest.approx([1.0, 1.0, 0.1, 0.01])
    assert opt.lr == pytest.approx(1e-3) and sched.scale == pytest.approx(1e-3)
    state = sched.state_dict()
    fresh = portnn.optim.StepLR(portnn.SGD(model.parameters(), lr=1.0), 100, 0.5)
    fresh.load_state_dict(state)
    assert fresh.optimizer.lr == pytest.approx(1e-3)  # kept in checkpoints


def test_plateau_min_lr_holds_under_a_schedule():
    opt = portnn.SGD(portnn.Dense(2, 1).parameters(), lr=1.0)
    sched = portnn.optim.StepLR(opt, step_size=100)
    assert sched.rescale(0.1, min_lr=0.5) == 0.5 and sched.step() == 0.5


# -- item 14: prefetch context ------------------------------------------------------


def _noisy_batches(x, y):
    """A data pipeline drawing noise from portnn's generator, on the
    backend in force."""
    def gen():
        for lo in range(0, x.shape[0], 16):
            b = portnn.get_backend()
            noise = portnn.random.global_generator().normal((16, 5), backend=b)
            yield (b.asarray(x[lo:lo + 16]) + noise, b.asarray(y[lo:lo + 16]))
    return gen


def test_prefetch_runs_in_the_callers_context():
    x, y = _data()
    runs = {}
    for prefetch in (False, True):
        with portnn.use_backend("array_api_strict"):
            model = _model()  # seed(0): weights, then the pipeline's noise
            batches = _noisy_batches(x, y)
            h = model.fit(batches(), loss="cross_entropy", steps_per_epoch=4,
                          prefetch=prefetch, verbose=0)
            runs[prefetch] = (h["loss"], to_np(model.layers[0].W.value))
    assert runs[True][0] == runs[False][0]
    np.testing.assert_array_equal(runs[True][1], runs[False][1])


# -- item 17: stateless SGD on a device ---------------------------------------------


def test_plain_sgd_masks_its_step_on_the_device(monkeypatch):
    b = portnn.backends.get("array_api_strict:device1")
    with portnn.use_backend(b):
        rs = np.random.default_rng(0)
        x = b.asarray(rs.normal(size=(1024, 5)).astype(np.float32))
        y = b.asarray(rs.integers(0, 2, 1024))
        model = _model()
        opt = portnn.SGD(model.parameters(), lr=0.1)
        with count_syncs(b, monkeypatch) as counter:
            model.fit(x, y, loss="cross_entropy", optimizer=opt, batch_size=16,
                      verbose=0)
        monkeypatch.undo()
    # the label check and the epoch's read: no read per batch
    assert counter.count <= 3, counter.where
    assert opt.steps == 64


# -- item 19: CSVLogger --------------------------------------------------------------


def test_csv_logger_appends_new_columns_under_a_consistent_header(tmp_path):
    x, y = _data()
    path = tmp_path / "log.csv"
    model = _model()
    model.fit(x, y, loss="cross_entropy", epochs=2, verbose=0,
              callbacks=[portnn.CSVLogger(path)])
    model.fit(x, y, loss="cross_entropy", epochs=1, verbose=0, metrics=["f1_macro"],
              validation_split=0.25, callbacks=[portnn.CSVLogger(path, append=True)])
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    assert set(rows[0]) == {"epoch", "loss", "accuracy", "lr", "f1_macro",
                            "val_loss", "val_f1_macro"}
    assert rows[0]["accuracy"] and rows[0]["f1_macro"] == ""  # old rows kept
    assert rows[2]["f1_macro"] and rows[2]["val_loss"] and rows[2]["accuracy"] == ""
    assert float(rows[2]["lr"]) == pytest.approx(0.001)


# -- item 26: steps ------------------------------------------------------------------


@pytest.mark.parametrize("steps", [0, -1, 2.5, "3", True])
def test_steps_are_validated_up_front(steps):
    x, y = _data()
    model = _model()
    for call in (lambda: model.fit([(x, y)], loss="cross_entropy", verbose=0,
                                   steps_per_epoch=steps),
                 lambda: model.fit(x, y, loss="cross_entropy", verbose=0,
                                   validation_data=[(x, y)],
                                   validation_steps=steps),
                 lambda: model.evaluate([(x, y)], loss="cross_entropy", steps=steps),
                 lambda: model.predict([(x, y)], steps=steps)):
        with pytest.raises(ValueError, match="must be a positive int .*or None"):
            call()
    assert model.optimizer is None


def test_a_reiterable_shorter_than_steps_per_epoch_is_refused():
    x, y = _data()
    batches = [(x[:32], y[:32]), (x[32:], y[32:])]
    with pytest.raises(ValueError, match="steps_per_epoch=5 but the iterable holds 2"):
        _model().fit(batches, loss="cross_entropy", steps_per_epoch=5, verbose=0)

    class Unsized:  # re-iterable, no len: found out while training
        def __iter__(self):
            return iter(batches)

    with pytest.raises(ValueError, match="ended after 2 batches of an epoch of "
                                         "steps_per_epoch=3"):
        _model().fit(Unsized(), loss="cross_entropy", steps_per_epoch=3, verbose=0)


# -- item 28: lazy models ------------------------------------------------------------


def _lazy():
    portnn.seed(0)
    return portnn.Sequential(portnn.Dense(8), portnn.ReLU(), portnn.Dense(2))


def test_a_failed_fit_leaves_a_lazy_model_unbuilt():
    x, y = _data()
    model = _lazy()
    with pytest.raises(ValueError):  # a label out of range: validation fails
        model.fit(x, y + 5, loss="cross_entropy", verbose=0)
    assert model.layers[0].W.shape == (None, 8)
    wide = np.ones((64, 9), np.float32)
    model.fit(wide, y, loss="cross_entropy", verbose=0, epochs=1)
    assert model.layers[0].W.shape == (9, 8)
    eager = _lazy()
    eager.build((9,))
    fresh = _lazy()
    with pytest.raises(ValueError):
        fresh.fit(x, y + 5, loss="cross_entropy", verbose=0)
    fresh.build((9,))  # the failure drew nothing: the same weights as eager
    np.testing.assert_array_equal(to_np(fresh.layers[0].W.value),
                                  to_np(eager.layers[0].W.value))


def test_a_failed_predict_leaves_a_lazy_model_unbuilt():
    model = portnn.Sequential(portnn.Dense(8), portnn.Flatten(), portnn.Dense(16, 2))
    with pytest.raises(ValueError):  # built for 4 features, then 24 != 16 fails
        model.predict(np.ones((3, 3, 4), np.float32))
    assert model.layers[0].W.shape == (None, 8)
    assert model.predict(np.ones((3, 2, 5), np.float32)).shape == (3, 2)
    assert model.layers[0].W.shape == (5, 8)


# -- item 27: inputs and files that are not what they seem --------------------------


def test_object_arrays_are_named():
    x, y = _data()
    with pytest.raises(TypeError, match="x is an object array"):
        _model().fit(x.astype(object), y, loss="cross_entropy", verbose=0)
    with pytest.raises(TypeError, match="y is an object array"):
        _model().fit(x, y.astype(object), loss="cross_entropy", verbose=0)
    ragged = np.empty(64, dtype=object)
    ragged[:] = [[1.0, 2.0]] * 63 + [None]
    with pytest.raises(TypeError, match="does not convert to numbers.*None"):
        _model().fit(ragged, y, loss="cross_entropy", verbose=0)
    with pytest.raises(ValueError, match="y is None: fit and evaluate need targets"):
        _model().fit(x, None, loss="cross_entropy", verbose=0)


def test_boolean_inputs_and_labels_train():
    x, y = _data()
    flags = x > 0
    a = _model().fit(flags, y.astype(bool), loss="cross_entropy", verbose=0)
    b = _model().fit(flags.astype(np.float32), y, loss="cross_entropy", verbose=0)
    assert a["loss"] == b["loss"]


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_float_labels_are_named(bad):
    x, y = _data()
    labels = y.astype(np.float64)
    labels[3] = bad
    with pytest.raises(ValueError, match="NaN or infinite labels") as info:
        _model().fit(x, labels, loss="cross_entropy", verbose=0)
    assert "9223372036854775808" not in str(info.value)


def test_an_rng_counter_beyond_int64_is_refused(tmp_path):
    import json

    from portnn.checkpoint import CheckpointError
    from portnn.safetensors import read, write_atomic

    _model().save(tmp_path / "m.safetensors")
    tensors, meta = read(tmp_path / "m.safetensors")
    meta["portnn.rng"] = json.dumps({"seed": 1, "counter": 2**200})
    write_atomic(tmp_path / "r.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match=r"'counter': int in \[0, 2\*\*62\)"):
        portnn.load(tmp_path / "r.safetensors", restore_rng=True)
    with pytest.raises(ValueError, match="RNG counter must be an int"):
        portnn.random.set_state({"seed": 1, "counter": 2**200})
    portnn.random.global_generator().uniform((2,))  # still draws


def test_a_checkpoint_naming_another_backend_loads_here_without_it(tmp_path):
    import subprocess
    import sys

    from portnn.safetensors import read, write_atomic

    _model().save(tmp_path / "m.safetensors")
    tensors, meta = read(tmp_path / "m.safetensors")
    meta["portnn.backend"] = "cupy"  # saved on a GPU machine
    write_atomic(tmp_path / "g.safetensors", tensors, meta)
    code = ("import sys, portnn; m = portnn.load(sys.argv[1]); "
            "print(m.backend.name, 'cupy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "g.safetensors")],
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["numpy", "False"], out.stderr


@pytest.mark.parametrize("template", ["m-{epoch:03d-{val_loss}.st", "m-{epoch:.3q}.st",
                                      "m-{}.st"])
def test_model_checkpoint_templates_are_checked_at_construction(template, tmp_path):
    with pytest.raises(ValueError, match="path template .* cannot be filled"):
        portnn.ModelCheckpoint(str(tmp_path / template))
    portnn.ModelCheckpoint(str(tmp_path / "m-{epoch:03d}-{val_loss:.3f}.st"))
