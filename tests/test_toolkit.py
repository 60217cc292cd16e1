"""The training toolkit: compile, schedules, sample and class weights,
datasets and iterables, prefetching, memory-mapped data."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import portnn
from portnn.data import Dataset

from .conftest import to_np


def _data(n=96, seed=0):
    rs = np.random.default_rng(seed)
    x = rs.normal(size=(n, 5)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)
    return x, y


def _model(seed=0):
    portnn.seed(seed)
    return portnn.Sequential(portnn.Dense(5, 16), portnn.Tanh(), portnn.Dropout(0.1),
                             portnn.Dense(16, 3))


def _weights(model):
    return {k: to_np(v).copy() for k, v in model.state_dict().items()}


def _same(a, b, rtol=1e-6, atol=1e-7):
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=atol, err_msg=k)


# -- compile --------------------------------------------------------------------

def test_compile_once_then_fit_and_evaluate_without_arguments(backend):
    x, y = _data()
    model = _model().compile(loss="cross_entropy", optimizer="adam",
                             metrics=["accuracy"])
    opt = model.optimizer
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert model.optimizer is opt and opt.steps == 6  # made once, kept
    assert set(model.evaluate(x, y)) == {"loss", "accuracy"}


def test_an_optimizer_named_twice_is_made_once(backend):
    x, y = _data()
    model = _model()
    model.fit(x, y, loss="cross_entropy", optimizer="adam", epochs=1, verbose=0)
    first = model.optimizer
    model.fit(x, y, loss="cross_entropy", optimizer="adam", epochs=1, verbose=0)
    assert model.optimizer is first and first.steps == 6
    model.fit(x, y, loss="cross_entropy", optimizer="sgd", epochs=1, verbose=0)
    assert isinstance(model.optimizer, portnn.SGD)


def test_fit_without_a_loss_says_how_to_give_one():
    with pytest.raises(ValueError, match=r"compile\(loss="):
        _model().fit(*_data(), verbose=0)


# -- learning rates -----------------------------------------------------------------

def test_the_rate_of_every_epoch_is_in_the_history():
    h = _model().fit(*_data(), loss="cross_entropy", verbose=0, epochs=2)
    assert h["lr"] == [0.001, 0.001]  # Adam's default


def test_fit_takes_a_schedule_and_a_function(backend):
    x, y = _data()
    model = _model()
    opt = portnn.SGD(model.parameters(), lr=0.5)
    h = model.fit(x, y, loss="cross_entropy", optimizer=opt, epochs=4,
                  batch_size=32, verbose=0,
                  lr_schedule=portnn.optim.StepLR(opt, step_size=2, gamma=0.1))
    assert h["lr"] == pytest.approx([0.5, 0.5, 0.05, 0.05])
    h = model.fit(x, y, loss="cross_entropy", optimizer=opt, epochs=3, verbose=0,
                  lr_schedule=lambda epoch: 0.2 / (epoch + 1))
    assert h["lr"] == pytest.approx([0.2, 0.1, 0.2 / 3])


def test_a_schedule_made_for_the_optimizer_is_stepped_by_fit():
    x, y = _data()
    model = _model()
    opt = portnn.SGD(model.parameters(), lr=1.0)
    portnn.optim.ExponentialLR(opt, gamma=0.5)
    h = model.fit(x, y, loss="cross_entropy", optimizer=opt, epochs=3, verbose=0)
    assert h["lr"] == pytest.approx([1.0, 0.5, 0.25])
    # ... and once only, when a callback steps it too
    opt2 = portnn.SGD(model.parameters(), lr=1.0)
    sched = portnn.optim.ExponentialLR(opt2, gamma=0.5)
    h = model.fit(x, y, loss="cross_entropy", optimizer=opt2, epochs=3, verbose=0,
                  callbacks=[portnn.training.LRSchedulerCallback(sched)])
    assert h["lr"] == pytest.approx([1.0, 0.5, 0.25])


def _torch_rates(torch, make, steps):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.4)
    sched = make(torch, opt)
    rates = []
    for _ in range(steps):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


@pytest.mark.parametrize("name", ["one_cycle", "linear_warmup"])
def test_new_schedules_follow_pytorch(torch, name):
    lr = torch.optim.lr_scheduler
    makers = {
        "one_cycle": (lambda t, o: lr.OneCycleLR(o, max_lr=0.4, total_steps=20,
                                                 pct_start=0.25),
                      lambda o: portnn.optim.OneCycle(o, total_steps=20,
                                                      pct_start=0.25)),
        "linear_warmup": (lambda t, o: lr.LinearLR(o, start_factor=0.1,
                                                   total_iters=6),
                          lambda o: portnn.optim.LinearWarmup(o, warmup_steps=6,
                                                              start_factor=0.1)),
    }
    make_torch, make_ours = makers[name]
    theirs = _torch_rates(torch, make_torch, 20)
    opt = portnn.SGD(portnn.Dense(1, 1).parameters(), lr=0.4)
    sched = make_ours(opt)
    ours = [opt.lr] + [sched.step() for _ in range(19)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_one_cycle_steps_every_batch_in_fit():
    x, y = _data(64)
    model = _model()
    opt = portnn.SGD(model.parameters(), lr=0.3)
    sched = portnn.optim.OneCycle(opt, total_steps=8)  # 2 epochs x 4 batches
    model.fit(x, y, loss="cross_entropy", optimizer=opt, epochs=2, batch_size=16,
              verbose=0, lr_schedule=sched)
    assert sched.t == 8


def test_reduce_lr_on_plateau_waits_patience_epochs_then_cools_down():
    scores = [1.0, 0.5, 0.6, 0.55, 0.7, 0.45, 0.5, 0.5, 0.5, 0.5]

    class Score(portnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["score"] = scores[epoch]

    model = _model()
    opt = portnn.SGD(model.parameters(), lr=1.0)
    plateau = portnn.ReduceLROnPlateau(monitor="score", factor=0.5, patience=2,
                                       cooldown=1, min_lr=0.2)
    h = model.fit(*_data(), loss="cross_entropy", optimizer=opt, verbose=0,
                  epochs=10, callbacks=[Score(), plateau])
    # as Keras: bad epochs 2, 3 -> halve after 3; the cooldown ends at 4
    # (not improved: wait 1); 5 improves; bad 6, 7 -> halve after 7; the
    # cooldown ends at 8 (wait 1); 9 -> halve, but not below min_lr
    assert plateau.reductions == [3, 7, 9]
    assert h["lr"] == pytest.approx([1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25])
    assert opt.lr == pytest.approx(0.2)


# -- weights ---------------------------------------------------------------------

def test_sample_weights_of_two_equal_a_doubled_learning_rate(backend):
    x, y = _data()

    def run(lr, w):
        model = _model()
        model.fit(x, y, loss="cross_entropy", epochs=2, batch_size=32, verbose=0,
                  optimizer=portnn.SGD(model.parameters(), lr=lr), sample_weight=w)
        return _weights(model)

    _same(run(0.2, np.full(len(y), 2.0)), run(0.4, None), rtol=1e-5, atol=1e-6)


def test_class_weights_are_per_sample_weights_of_the_labels(backend):
    x, y = _data()
    cw = {0: 1.0, 1: 3.0, 2: 0.5}

    def run(**kw):
        model = _model()
        h = model.fit(x, y, loss="cross_entropy", epochs=2, batch_size=32, verbose=0,
                      optimizer=portnn.SGD(model.parameters(), lr=0.3), **kw)
        return _weights(model), h["loss"]

    (wa, la), (wb, lb) = run(class_weight=cw), run(sample_weight=np.vectorize(
        cw.get)(y).astype(np.float32))
    _same(wa, wb)
    assert la == pytest.approx(lb)


def test_weight_arguments_are_checked():
    x, y = _data()
    with pytest.raises(ValueError, match="one weight per sample"):
        _model().fit(x, y, loss="cross_entropy", sample_weight=np.ones(3), verbose=0)
    with pytest.raises(ValueError, match="class indices 0..2"):
        _model().fit(x, y, loss="cross_entropy", class_weight={5: 2.0}, verbose=0)
    with pytest.raises(ValueError, match="classification losses"):
        _model().fit(x, y.astype(np.float32)[:, None].repeat(3, 1), loss="mse",
                     class_weight={0: 2.0}, verbose=0)


# -- datasets and iterables ------------------------------------------------------

def test_a_dataset_trains_exactly_as_its_arrays(backend):
    x, y = _data()

    def run(*data, **kw):
        model = _model()
        h = model.fit(*data, loss="cross_entropy", epochs=3, batch_size=20,
                      verbose=0, optimizer=portnn.SGD(model.parameters(), lr=0.2),
                      **kw)
        return _weights(model), h["loss"]

    w_arrays, l_arrays = run(x, y)
    w_set, l_set = run(Dataset.from_arrays(x, y))  # same shuffles, host side
    _same(w_arrays, w_set, rtol=1e-5, atol=1e-6)
    assert l_set == pytest.approx(l_arrays, rel=1e-5)
    w_list, _ = run(Dataset.from_list(list(x), list(y)))
    _same(w_arrays, w_list, rtol=1e-5, atol=1e-6)


def test_evaluate_and_predict_take_datasets_and_iterables(backend):
    x, y = _data()
    model = _model().compile(loss="cross_entropy")
    ref = model.evaluate(x, y, batch_size=10)
    ds = Dataset.from_arrays(x, y)
    assert model.evaluate(ds, batch_size=10) == pytest.approx(ref)
    batches = [(x[i:i + 10], y[i:i + 10]) for i in range(0, len(x), 10)]
    assert model.evaluate(iter(batches)) == pytest.approx(ref)
    pred = to_np(model.predict(x))
    # other batch sizes: float32 GEMMs may round differently (XLA does)
    np.testing.assert_allclose(to_np(model.predict(Dataset.from_arrays(x),
                                                   batch_size=7)), pred,
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(to_np(model.predict(iter(x[i:i + 9] for i in range(
        0, len(x), 9)))), pred, rtol=1e-6, atol=1e-6)


def test_an_endless_generator_needs_steps_per_epoch():
    x, y = _data()

    def endless():
        i = 0
        while True:
            yield x[i % 96:i % 96 + 16], y[i % 96:i % 96 + 16]
            i += 16

    model = _model()
    h = model.fit(endless(), loss="cross_entropy", epochs=3, steps_per_epoch=4,
                  verbose=0)
    assert len(h["loss"]) == 3
    once = ((x[i:i + 16], y[i:i + 16]) for i in range(0, 96, 16))
    with pytest.raises(ValueError, match="used up after one pass; pass "
                                         "steps_per_epoch"):
        _model().fit(once, loss="cross_entropy", epochs=2, verbose=0)


def test_bad_batches_from_a_dataset_are_caught_on_the_host(backend, monkeypatch):
    x, y = _data()
    y[50] = 7  # out of range for 3 classes, in the third batch
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        _model().fit(Dataset.from_arrays(x, y), loss="cross_entropy", epochs=1,
                     batch_size=20, shuffle=False, verbose=0)


class _Slow(Dataset):
    """A dataset whose every batch takes 40 ms to read; it logs when."""

    def __init__(self, x, y, log):
        self.x, self.y, self.log = x, y, log

    def __len__(self):
        return len(self.x)

    def __getitem__(self, idx):
        start = time.perf_counter()
        time.sleep(0.04)
        self.log.append(("load", start, time.perf_counter()))
        return self.x[idx], self.y[idx]


class _SlowLayer(portnn.Identity):
    """A step that takes 40 ms; it logs when."""

    def __init__(self, log):
        super().__init__()
        self.log = log

    def forward(self, x, training=False):
        if training:
            start = time.perf_counter()
            time.sleep(0.04)
            self.log.append(("step", start, time.perf_counter()))
        return x


def _timed_fit(prefetch):
    x, y = _data(160)
    log = []
    model = _model()
    model.layers.insert(0, _SlowLayer(log))
    start = time.perf_counter()
    model.fit(_Slow(x, y, log), loss="cross_entropy", epochs=1, batch_size=16,
              verbose=0, prefetch=prefetch)
    return time.perf_counter() - start, log


def test_prefetching_loads_the_next_batch_while_one_trains():
    _, log = _timed_fit(prefetch=True)
    loads = [(a, b) for kind, a, b in log if kind == "load"]
    steps = [(a, b) for kind, a, b in log if kind == "step"]
    assert len(loads) == len(steps) + 1 == 11  # + the up-front check's sample
    overlapping = sum(any(a < sb and sa < b for a, b in loads) for sa, sb in steps)
    assert overlapping >= 8  # nearly every step ran while a batch was loading
    _, log = _timed_fit(prefetch=False)
    loads = [(a, b) for kind, a, b in log if kind == "load"]
    steps = [(a, b) for kind, a, b in log if kind == "step"]
    assert not any(any(a < sb and sa < b for a, b in loads) for sa, sb in steps)


def test_an_error_in_the_prefetch_thread_surfaces_in_fit():
    class Broken(Dataset):
        def __len__(self):
            return 64

        def __getitem__(self, idx):
            if idx[0] >= 32:
                raise OSError("disk gone")
            return np.zeros((len(idx), 5), np.float32), np.zeros(len(idx), np.int64)

    with pytest.raises(OSError, match="disk gone"):
        _model().fit(Broken(), loss="cross_entropy", batch_size=16, shuffle=False,
                     verbose=0)
    assert not any(t.name == "portnn-prefetch" and t.is_alive()
                   for t in threading.enumerate())


def _memory_kib():
    """(VmRSS, RssAnon, RssFile) of this process, in KiB (Linux)."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                fields[key] = int(value.split()[0])
    return fields["VmRSS"], fields.get("RssAnon", 0), fields.get("RssFile", 0)


@pytest.mark.slow
def test_a_memory_mapped_file_trains_in_far_less_memory_than_its_size(tmp_path):
    import os

    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs Linux's /proc to read the resident memory")
    rows, features = 100_000, 1000  # 400 MB of float32
    path = tmp_path / "x.npy"
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                  shape=(rows, features))
    rs = np.random.default_rng(0)
    for lo in range(0, rows, 10_000):
        x[lo:lo + 10_000] = rs.normal(size=(10_000, features))
    x.flush()
    del x
    y = (np.arange(rows) % 3).astype(np.int64)
    np.save(tmp_path / "y.npy", y)
    size_kib = path.stat().st_size // 1024

    peaks = []

    class Watch(portnn.Callback):
        def on_batch_end(self, batch, logs=None):
            peaks.append(_memory_kib())

    portnn.seed(0)
    model = portnn.Sequential(portnn.Dense(features, 16), portnn.ReLU(),
                              portnn.Dense(16, 3))
    data = Dataset.from_npy(path, tmp_path / "y.npy")
    before = _memory_kib()
    model.fit(data, loss="cross_entropy", epochs=1, batch_size=1000, verbose=0,
              callbacks=[Watch()])
    rss = max(p[0] for p in peaks) - before[0]
    anon = max(p[1] for p in peaks) - before[1]
    print(f"file {size_kib / 1024:.0f} MiB; RSS grew {rss / 1024:.1f} MiB "
          f"(private {anon / 1024:.1f} MiB)")
    assert len(peaks) == 100
    assert rss < size_kib / 8  # far less than the file: 50 MB of 400


def test_rows_of_a_memory_mapped_file_read_as_numpy_indexes_them(tmp_path):
    rs = np.random.default_rng(0)
    x = rs.normal(size=(50, 3, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    ds = Dataset.from_arrays(mapped)
    assert ds._readers[0] is not None  # read by positioned reads, not mapped
    for idx in (rs.permutation(50)[:17], np.arange(5, 25), np.array([3, 4, 9, 10, 11]),
                np.array([], dtype=np.int64)):
        np.testing.assert_array_equal(ds[idx], x[idx])
    view = Dataset.from_arrays(mapped[10:])  # a view: indexed through the mapping
    assert view._readers[0] is None
    np.testing.assert_array_equal(view[np.array([0, 5])], x[[10, 15]])
    with pytest.raises(IndexError):
        ds[np.array([50])]


# -- callbacks' direction -----------------------------------------------------


class _Stub:
    """What a callback reads of a model: an optimizer and state to copy."""

    def __init__(self):
        self.stop_training = False
        self.optimizer = portnn.SGD(portnn.Dense(2, 1).parameters(), lr=1.0)
        self.saved = []

    def save(self, path):
        self.saved.append(path)


@pytest.mark.parametrize("monitor", ["val_roc_auc", "val_f1_macro", "val_r2",
                                     "val_precision_weighted", "val_recall",
                                     "val_neg_mean_squared_error"])
def test_auto_mode_maximizes_scores_that_grow(monitor, tmp_path):
    rising = [0.50, 0.60, 0.70, 0.80, 0.90, 0.95]
    if monitor.startswith("val_neg"):
        rising = [v - 1.0 for v in rising]
    stop = portnn.EarlyStopping(monitor=monitor, patience=2)
    plateau = portnn.ReduceLROnPlateau(monitor=monitor, patience=2, factor=0.5)
    ckpt = portnn.ModelCheckpoint(str(tmp_path / "m{epoch}"), monitor=monitor,
                                  save_best_only=True)
    stub = _Stub()
    for cb in (stop, plateau, ckpt):
        cb.model = stub
        cb.on_train_begin()
    for epoch, value in enumerate(rising):
        for cb in (stop, plateau, ckpt):
            cb.on_epoch_end(epoch, {monitor: value})
    # every epoch improved: no stop, no reduction, every epoch saved
    assert not stub.stop_training and stop.best_epoch == len(rising) - 1
    assert stub.optimizer.lr == 1.0 and plateau.reductions == []
    assert len(stub.saved) == len(rising)


def test_auto_mode_minimizes_losses_and_errors():
    for monitor in ("val_loss", "val_mse", "mae"):
        assert portnn.EarlyStopping(monitor=monitor).mode == "min"
    assert portnn.EarlyStopping(monitor="val_roc_auc").mode == "max"
