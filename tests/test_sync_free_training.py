"""`fit` on a device: no host synchronization per batch, and a bad batch
never reaches the weights.

Counted on array-api-strict's ``device1`` (the GPU proxy): every
conversion of a device array to a Python value or a NumPy array is one
synchronization on a real GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from portnn.training import ProgressBar

from .conftest import to_np
from .sync_counter import count_syncs

DEVICE1 = "array_api_strict:device1"


@pytest.fixture
def device1():
    b = portnn.backends.get(DEVICE1)
    with portnn.use_backend(b):
        yield b


def _data(n, seed=0, features=6, classes=3):
    rs = np.random.default_rng(seed)
    x = rs.normal(size=(n, features)).astype(np.float32)
    y = rs.integers(0, classes, n)
    return x, y


def _model():
    portnn.seed(0)
    return portnn.Sequential(portnn.Dense(6, 16), portnn.ReLU(), portnn.Dropout(0.1),
                             portnn.Dense(16, 3))


def _fit_syncs(backend, monkeypatch, batches, epochs=1, **kw):
    x, y = _data(16 * 64)
    model = _model()
    x, y = backend.asarray(x), backend.asarray(y)
    opt = portnn.Adam(model.parameters(), lr=1e-2)
    with count_syncs(backend, monkeypatch) as counter:
        model.fit(x, y, loss=portnn.CrossEntropy(), optimizer=opt, epochs=epochs,
                  batch_size=x.shape[0] // batches, verbose=0, **kw)
    monkeypatch.undo()
    return counter


def test_an_epoch_of_64_batches_syncs_a_constant_number_of_times(device1,
                                                                 monkeypatch):
    c64 = _fit_syncs(device1, monkeypatch, batches=64)
    c128 = _fit_syncs(device1, monkeypatch, batches=128)
    # once per fit: the label range check and the optimizer's first step;
    # once per epoch: the figures and the guard's verdict, in one transfer
    assert c64.count == c128.count == 3, c64.where
    c_two_epochs = _fit_syncs(device1, monkeypatch, batches=64, epochs=2)
    assert c_two_epochs.count == 4, c_two_epochs.where


def test_validation_adds_one_read_per_epoch(device1, monkeypatch):
    c = _fit_syncs(device1, monkeypatch, batches=64, epochs=2, validation_split=0.25)
    # + the validation labels' range check once, + one read per evaluation
    assert c.count == 4 + 1 + 2, c.where


def test_evaluate_reads_once_whatever_the_batch_count(device1, monkeypatch):
    model = _model()
    x, y = (device1.asarray(a) for a in _data(512))
    counts = []
    for batch_size in (8, 64):
        with count_syncs(device1, monkeypatch) as counter:
            model.evaluate(x, y, loss=portnn.CrossEntropy(), batch_size=batch_size)
        monkeypatch.undo()
        counts.append(counter.count)
    assert counts == [2, 2]  # the label check, the figures


def test_predict_never_reads_the_device(device1, monkeypatch):
    model = _model()
    x = device1.asarray(_data(100)[0])
    with count_syncs(device1, monkeypatch) as counter:
        model.predict(x, batch_size=7)
    assert counter.count == 0


def test_progress_on_a_terminal_reads_at_a_bounded_rate(device1, monkeypatch):
    class Terminal:
        def isatty(self):
            return True

        def write(self, text):
            pass

        def flush(self):
            pass

    ticks = iter(np.arange(0.0, 1000.0, 0.05))  # every batch takes 50 ms
    bar = ProgressBar(epochs=1, batches=64, stream=Terminal(), refresh=0.2,
                      clock=lambda: float(next(ticks)))
    bar._tqdm = None
    loss = device1.asarray(1.0)
    with count_syncs(device1, monkeypatch) as counter:
        bar.on_epoch_begin(0)
        bar._tqdm = None  # the plain display: tqdm's own rate is its business
        for b in range(64):
            bar.on_batch_end(b, {"loss": loss, "size": 16})
    # 3.2 s of batches, a redraw every 0.2 s (each one read) and the last batch
    assert counter.count == bar.draws <= 3.2 / 0.2 + 2


def test_the_label_check_still_runs_on_a_direct_loss_call(device1):
    pred = device1.asarray(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        portnn.CrossEntropy()(pred, device1.asarray([0, 3]))


# -- a bad batch never reaches the weights ---------------------------------------

def _weights(model):
    return {k: to_np(v).copy() for k, v in model.state_dict().items()}


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_nan_data_leaves_the_weights_from_before_the_bad_batch(backend):
    x, y = _data(64)
    x[40, 2] = np.nan  # batch 6 of 8 (batch_size 8, no shuffle)
    model = _model()
    opt = portnn.SGD(model.parameters(), lr=0.1, momentum=0.9)
    # the same model trained on the five good batches only
    ref = _model()
    ref_opt = portnn.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    ref.fit(x[:40], y[:40], loss=portnn.CrossEntropy(), optimizer=ref_opt,
            epochs=1, batch_size=8, shuffle=False, verbose=0)
    portnn.seed(0)
    model = _model()
    opt = portnn.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(portnn.TrainingDivergedError,
                       match=r"loss became nan at epoch 1, batch 6 of 8") as info:
        model.fit(x, y, loss=portnn.CrossEntropy(), optimizer=opt, epochs=3,
                  batch_size=8, shuffle=False, verbose=0)
    assert info.value.history.epoch == []
    got, want = _weights(model), _weights(ref)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-7,
                                   err_msg=key)
    assert all(np.isfinite(v).all() for v in got.values())
    for got_s, want_s in zip(opt.state_dict()["state"],
                             ref_opt.state_dict()["state"], strict=True):
        np.testing.assert_allclose(to_np(got_s["momentum"]),
                                   to_np(want_s["momentum"]), rtol=1e-6, atol=1e-7)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_a_huge_learning_rate_stops_with_finite_weights(backend):
    x, y = _data(64)
    model = portnn.Sequential(portnn.Dense(6, 16), portnn.ReLU(), portnn.Dense(16, 1))
    opt = portnn.SGD(model.parameters(), lr=1e6)
    history = None
    with pytest.raises(portnn.TrainingDivergedError,
                       match=r"at epoch \d+, batch \d+ of 8.*from before that batch"
                       ) as info:
        model.fit(x, y * 1e3, loss=portnn.MSE(), optimizer=opt, epochs=50,
                  batch_size=8, verbose=0)
    history = info.value.history
    assert all(np.isfinite(v).all() for v in _weights(model).values())
    assert len(history.epoch) < 50
