"""`portnn.TensorBoard`: the event files hold every figure of the history,
read back with TensorBoard's own event accumulator."""

from __future__ import annotations

import numpy as np
import pytest

import portnn

pytest.importorskip("tensorboardX", reason="tensorboardX is not installed")
accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="tensorboard (its event reader) is not installed")


def _read(path):
    events = accumulator.EventAccumulator(
        str(path), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    events.Reload()
    return events


def _fit(tmp_path, epochs=3, **kwargs):
    rs = np.random.default_rng(0)
    x = rs.normal(size=(40, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    portnn.seed(0)
    model = portnn.Sequential(portnn.Dense(4, 8), portnn.ReLU(), portnn.Dense(8, 2))
    model.compile(loss="cross_entropy", optimizer="adam", metrics=["accuracy"])
    board = portnn.TensorBoard(tmp_path / "logs", **kwargs)
    history = model.fit(x, y, epochs=epochs, batch_size=8, verbose=0,
                        validation_split=0.25, callbacks=[board],
                        lr_schedule=lambda epoch: 0.01 / (1 + epoch))
    return model, history, board


def test_every_figure_of_the_history_is_in_the_event_files(tmp_path):
    _, history, _ = _fit(tmp_path)
    train, validation = (_read(tmp_path / "logs" / run)
                         for run in ("train", "validation"))
    for key, values in history.history.items():
        run, name = ((validation, key[4:]) if key.startswith("val_")
                     else (train, "learning_rate" if key == "lr" else key))
        logged = run.Scalars(f"epoch_{name}")
        assert [e.step for e in logged] == [0, 1, 2], key
        np.testing.assert_allclose([e.value for e in logged], values, rtol=1e-6,
                                   err_msg=key)
    assert "model summary" in " ".join(train.Tags()["tensors"])


def test_batch_losses_every_n_batches_and_histograms(tmp_path):
    model, _, _ = _fit(tmp_path, epochs=2, update_freq=2, histogram_freq=2)
    train = _read(tmp_path / "logs" / "train")
    # 30 training rows in batches of 8: 4 batches an epoch, 8 in all
    assert [e.step for e in train.Scalars("batch_loss")] == [2, 4, 6, 8]
    assert all(np.isfinite(e.value) for e in train.Scalars("batch_loss"))
    names = [name for name, _ in model.named_parameters()]
    assert sorted(train.Tags()["histograms"]) == sorted(
        names + [f"{n}_grad" for n in names])
    assert [e.step for e in train.Histograms(names[0])] == [1]  # every 2nd epoch
    assert [e.step for e in train.Histograms(f"{names[0]}_grad")] == [1]
    # the weights' histogram holds the weights ...
    weights = portnn.get_backend().to_numpy(model[0].W.value)
    drawn = train.Histograms("0.W")[0].histogram_value
    assert drawn.num == weights.size
    np.testing.assert_allclose(drawn.sum, weights.sum(), rtol=1e-5)
    # ... and the output bias's gradient is cross-entropy's: softmax - one-hot
    # sums to zero over the classes, so its two entries are opposite
    grad = train.Histograms("2.b_grad")[0].histogram_value
    assert grad.num == 2 and grad.max > 0
    np.testing.assert_allclose([grad.sum, grad.min], [0, -grad.max], atol=1e-6)


def test_compiled_steps_draw_the_weights_and_say_why_not_the_gradients(
        tmp_path):
    pytest.importorskip("jax")
    rs = np.random.default_rng(0)
    x = rs.normal(size=(16, 4)).astype(np.float32)
    with portnn.use_backend("jax"):
        model = portnn.Sequential(portnn.Dense(4, 2))
        model.compile(loss="cross_entropy", optimizer="sgd", jit_compile=True)
        board = portnn.TensorBoard(tmp_path / "logs", histogram_freq=1)
        with pytest.warns(RuntimeWarning, match="no gradient histograms") as seen:
            model.fit(x, (x[:, 0] > 0).astype(np.int64), epochs=2, verbose=0,
                      callbacks=[board])
    assert len([w for w in seen if "gradient" in str(w.message)]) == 1
    train = _read(tmp_path / "logs" / "train")
    assert sorted(train.Tags()["histograms"]) == ["0.W", "0.b"]


def test_steps_count_on_across_fits(tmp_path):
    _, _, board = _fit(tmp_path, epochs=2)
    model = board.model
    x = np.ones((8, 4), np.float32)
    model.fit(x, np.zeros(8, np.int64), epochs=1, verbose=0, callbacks=[board])
    steps = [e.step for e in _read(tmp_path / "logs" / "train").Scalars("epoch_loss")]
    assert steps == [0, 1, 2]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"update_freq": 0}, "update_freq must be"),
    ({"update_freq": "step"}, "update_freq must be"),
    ({"histogram_freq": -1}, "histogram_freq must be"),
    ({"histogram_freq": 1.5}, "histogram_freq must be"),
])
def test_bad_arguments_are_refused_up_front(kwargs, match):
    with pytest.raises(ValueError, match=match):
        portnn.TensorBoard("logs", **kwargs)


def test_without_tensorboardx_the_error_says_how_to_install(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_tensorboardx(name, *args, **kwargs):
        if name == "tensorboardX":
            raise ImportError("No module named 'tensorboardX'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboardx)
    with pytest.raises(ImportError, match=r"pip install tensorboardX"):
        portnn.TensorBoard("logs")


def test_history_plots_the_learning_rate_only_where_it_changed():
    pytest.importorskip("matplotlib")
    from portnn.training.history import History

    def labels(history):
        fig = history.plot(path=None)
        found = [ax.get_ylabel() for ax in fig.axes]
        import matplotlib.pyplot as plt

        plt.close(fig)
        return found

    flat, scheduled = History(), History()
    for epoch in range(3):
        flat.append(epoch, {"loss": 1.0 / (epoch + 1), "lr": 0.01})
        scheduled.append(epoch, {"loss": 1.0 / (epoch + 1), "lr": 0.01 / (epoch + 1)})
    assert labels(flat) == ["loss"]
    assert labels(scheduled) == ["loss", "learning rate"]
