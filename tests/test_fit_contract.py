"""What fit promises before and after it runs: validation first, nothing
changed on failure, callbacks closed, clear errors that name the fix."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
import pytest

import portnn

from .conftest import to_np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _data(n=48, seed=0):
    rs = np.random.default_rng(seed)
    x = rs.normal(size=(n, 4)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def _model(seed=0):
    portnn.seed(seed)
    return portnn.Sequential(portnn.Dense(4, 8), portnn.Tanh(), portnn.Dense(8, 2))


def _weights(model):
    return {k: to_np(v).copy() for k, v in model.state_dict().items()}


def test_an_optimizer_of_another_model_is_refused():
    a, b = _model(0), _model(1)
    with pytest.raises(ValueError, match="not this model's.*model.parameters"):
        a.fit(*_data(), loss="cross_entropy", optimizer=portnn.Adam(b.parameters()),
              verbose=0)
    assert a.optimizer is None
    # some of its own parameters are fine (fine-tuning), with a warning that
    # the others stay as they are unless frozen
    with pytest.warns(UserWarning, match="not in the optimizer's list"):
        a.fit(*_data(), loss="cross_entropy",
              optimizer=portnn.Adam(a[2].parameters()), verbose=0)


def test_a_failing_fit_changes_nothing(tmp_path):
    model = _model()
    model.fit(*_data(), loss="cross_entropy", optimizer="adam", epochs=1,
              batch_size=48, verbose=0)
    model.save(tmp_path / "m.safetensors")
    loaded = portnn.load(tmp_path / "m.safetensors")
    opt, loss, before = loaded.optimizer, loaded.loss, _weights(loaded)
    x, y = _data()
    bad = [
        dict(x=x[:, :3], y=y),                                      # wrong features
        dict(x=x, y=y, validation_data=(x[:, :3], y)),              # bad validation
        dict(x=x, y=y, validation_data=(x, y + 5)),                 # labels range
        dict(x=x, y=y, epochs=0),
        dict(x=x, y=y, callbacks=[object()]),
        dict(x=x, y=y, metrics=["nope"]),
    ]
    for kwargs in bad:
        kwargs.setdefault("loss", "mse")
        with pytest.raises((ValueError, TypeError)):
            loaded.fit(**{**kwargs, "loss": "cross_entropy"}, optimizer="sgd",
                       verbose=0)
        assert loaded.optimizer is opt and opt.steps == 1
        assert loaded.loss is loss
        after = _weights(loaded)
        for k, v in before.items():
            np.testing.assert_array_equal(after[k], v)


def test_bad_validation_data_fails_before_the_first_epoch():
    started = []

    class Spy(portnn.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            started.append(epoch)

    x, y = _data()
    with pytest.raises(ValueError, match="Dense: expected input with 4 features"):
        _model().fit(x, y, loss="cross_entropy", validation_data=(x[:, :2], y),
                     callbacks=[Spy()], epochs=3, verbose=0)
    assert started == []


def test_integral_numbers_of_any_type_are_accepted():
    x, y = _data()
    h = _model().fit(x, y, loss="cross_entropy", epochs=np.int64(2),
                     batch_size=np.int32(16), verbose=0)
    assert len(h.epoch) == 2
    for bad in (2.0, True, "2", -1):
        with pytest.raises(ValueError, match="epochs must be a positive int"):
            _model().fit(x, y, loss="cross_entropy", epochs=bad, verbose=0)


def test_evaluate_and_predict_check_batch_size():
    model = _model()
    x, y = _data()
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        model.evaluate(x, y, loss="cross_entropy", batch_size=-1)  # {'loss': 0.0}
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        model.predict(x, batch_size=0)


def test_callbacks_end_and_files_close_when_training_fails(tmp_path):
    class Boom(portnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("boom")

    logger = portnn.CSVLogger(tmp_path / "log.csv")
    with pytest.raises(RuntimeError, match="boom"):
        _model().fit(*_data(), loss="cross_entropy", epochs=5, verbose=0,
                     callbacks=[logger, Boom()])
    assert logger._file is None
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 4  # header + 3


def test_early_stopping_restores_the_best_weights_on_failure():
    model = _model()
    best = {}
    scores = [3.0, 1.0, 2.0, 4.0, 5.0]  # epoch 1 is the best

    class Score(portnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["score"] = scores[epoch]
            if epoch == 1:
                best.update(_weights(model))

    class Interrupt(portnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 3:
                raise RuntimeError("interrupted")

    stop = portnn.EarlyStopping(monitor="score", patience=10,
                                restore_best_weights=True)
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(*_data(), loss="cross_entropy", epochs=5, verbose=0,
                  optimizer=portnn.SGD(model.parameters(), lr=0.5),
                  callbacks=[Score(), stop, Interrupt()])
    assert stop.best_epoch == 1
    after = _weights(model)
    for k, v in best.items():
        np.testing.assert_array_equal(after[k], v)


# -- labels and data that need a word ------------------------------------------

def test_float_labels_that_are_whole_numbers_are_accepted(backend):
    x, y = _data()
    h_int = _model().fit(x, y, loss="cross_entropy", epochs=2, verbose=0)
    h_float = _model().fit(x, y.astype(np.float64), loss="cross_entropy", epochs=2,
                           verbose=0)
    assert h_float["loss"] == pytest.approx(h_int["loss"])
    with pytest.raises(ValueError, match="not all are whole numbers"):
        _model().fit(x, y + 0.5, loss="cross_entropy", verbose=0)


@pytest.mark.parametrize("labels", [np.array(["cat", "dog"] * 24),
                                    ["cat", "dog"] * 24,
                                    np.array(["cat", "dog"] * 24, dtype=object)])
def test_string_labels_say_to_encode_them(labels):
    with pytest.raises(TypeError, match="labels are strings; encode them"):
        _model().fit(_data()[0], labels, loss="cross_entropy", verbose=0)


def test_an_iterable_of_batches_carries_its_targets():
    x, y = _data()
    with pytest.raises(ValueError, match=r"carries its targets: give \(x, y\)"):
        _model().fit((row for row in x), y, loss="cross_entropy", verbose=0)
    with pytest.raises(TypeError, match="y is a generator where arrays are"):
        _model().fit(x, (v for v in y), loss="cross_entropy", verbose=0)


def test_a_direct_loss_call_with_float_labels_says_to_cast():
    with pytest.raises(TypeError, match="labels must be integers: cast them"):
        portnn.CrossEntropy()(np.zeros((2, 3), np.float32),
                              np.array([0.0, 1.0], np.float32))


# -- an unusable backend on the command line -------------------------------------

def _unusable():
    for spec in ("cupy", "torch:cuda"):
        try:
            portnn.backends.get(spec)
        except portnn.backends.BackendUnavailableError:
            return spec
    pytest.skip("every GPU backend is usable here")


@pytest.mark.parametrize("cmd", [
    [sys.executable, "-m", "portnn", "train", "--backend", "{spec}"],
    [sys.executable, "examples/digits.py", "--backend", "{spec}"],
    [sys.executable, "examples/xor.py", "--backend", "{spec}"],
])
def test_an_unusable_backend_is_one_line_and_status_2(cmd):
    spec = _unusable()
    proc = subprocess.run([c.format(spec=spec) for c in cmd], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "not usable here" in lines[0]


def test_a_parameter_kept_as_a_plain_attribute_is_named():
    from portnn.parameter import Parameter

    class Scale(portnn.Layer):
        def __init__(self):
            super().__init__()
            xp = self.backend.xp
            self.s = Parameter(xp.ones((4,), dtype=xp.float32), "s")  # as in torch

        def forward(self, x, training=False):
            return x * self.s.value

        def backward(self, dy):
            return dy * self.s.value

    model = portnn.Sequential(Scale(), portnn.Dense(4, 2))
    with pytest.raises(TypeError, match=r"Scale\.s: a Parameter kept as an attribute "
                                        r"without being registered.*self\.s = "
                                        r"self\.add_parameter\('s', value\)"):
        model.fit(np.ones((8, 4), np.float32), np.zeros(8, np.int64),
                  loss="cross_entropy", verbose=0)
    # a weight tied to another layer's registered one is fine
    dense = portnn.Dense(4, 4)
    tied = portnn.Dense(4, 4)
    tied.extra = dense.W
    portnn.Sequential(dense, tied).fit(np.ones((8, 4), np.float32),
                                       np.zeros(8, np.int64),
                                       loss="cross_entropy", verbose=0)
