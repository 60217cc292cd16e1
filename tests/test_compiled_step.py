"""``compile(jit_compile=True)``: the training step as one program (jax.jit;
torch: traced on fake tensors, then torch.compile), checked against the
eager step it is traced from."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pytest

import portnn
from portnn.training.compiled import CompiledForward, CompiledStep

from .conftest import to_np


def _compiler(name):
    return pytest.param(name, marks=pytest.mark.skipif(
        importlib.util.find_spec(name) is None, reason=f"{name} is not installed"))


#: the backends that compile the step
COMPILERS = [_compiler("jax"), _compiler("torch")]

# a compiler that gives up warns and runs the traced step: not here
pytestmark = pytest.mark.filterwarnings("error:jit_compile:RuntimeWarning")


# no bias before a BatchNorm (as usual): its gradient is rounding noise,
# which Adam's normalization turns into steps of full size, so two correct
# runs of different summation orders move it differently

def _mlp():
    return portnn.Sequential(
        portnn.Dense(12, 32, bias=False), portnn.BatchNorm1D(32), portnn.ReLU(),
        portnn.Dropout(0.3), portnn.Dense(32, 3))


def _cnn():
    return portnn.Sequential(
        portnn.Conv2D(1, 4, 3, padding=1, bias=False), portnn.BatchNorm2D(4),
        portnn.ReLU(),
        portnn.MaxPool2D(2), portnn.Flatten(), portnn.Dropout(0.2),
        portnn.Dense(4 * 3 * 3, 3))


def _lstm():
    return portnn.Sequential(portnn.LSTM(4, 8),
                             portnn.GRU(8, 6, return_sequences=False),
                             portnn.Dense(6, 3))


def _transformer():
    return portnn.Sequential(
        portnn.Embedding(7, 8), portnn.PositionalEncoding(5, 8),
        portnn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, causal=True),
        portnn.LayerNorm(8), portnn.GlobalAvgPool1D(data_format="channels_last"),
        portnn.Dense(8, 3))


MODELS = {"mlp": (_mlp, (12,)), "cnn": (_cnn, (1, 6, 6)), "lstm": (_lstm, (5, 4)),
          "transformer": (_transformer, None)}


def _data(shape, n=44):  # 44 = 5 batches of 8 and a short one of 4
    rs = np.random.default_rng(0)
    x = (rs.integers(0, 7, (n, 5)) if shape is None
         else rs.normal(size=(n, *shape)).astype(np.float32))
    return x, np.arange(n) % 3


def _fit(kind, jit, optimizer="adam", epochs=3, backend="jax", **kwargs):
    factory, shape = MODELS[kind]
    with portnn.use_backend(backend):
        portnn.seed(0)
        model = factory()
        model.compile(loss="cross_entropy", optimizer=optimizer, jit_compile=jit)
        history = model.fit(*_data(shape), epochs=epochs, batch_size=8, verbose=0,
                            **kwargs)
        return model, history


def _same_training(kind, backend, optimizer="adam", **kwargs):
    eager, h_eager = _fit(kind, False, optimizer, backend=backend, **kwargs)
    compiled, h_compiled = _fit(kind, True, optimizer, backend=backend, **kwargs)
    np.testing.assert_allclose(h_compiled["loss"], h_eager["loss"], rtol=1e-5)
    for (key, want), got in zip(eager.state_dict().items(),
                                compiled.state_dict().values(), strict=True):
        want, got = to_np(want), to_np(got)
        if key in NOISE_ONLY:  # see NOISE_ONLY
            want, got = np.delete(want, NOISE_ONLY[key]), np.delete(got,
                                                                    NOISE_ONLY[key])
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=key)
    return compiled, h_compiled


#: parameters whose exact gradient is zero, so that what they get is rounding
#: noise, which Adam's normalization turns into full-size steps: two correct
#: runs with different summation orders move them differently. Attention's
#: key bias adds q . b_k to every score of a query, and the softmax ignores
#: a constant.
NOISE_ONLY = {"2.1.b_in": np.arange(8, 16)}


@pytest.mark.parametrize("backend", COMPILERS)
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_compiled_training_reaches_the_eager_weights(kind, backend):
    _same_training(kind, backend)


@pytest.mark.parametrize("optimizer", [
    lambda m: portnn.SGD(m.parameters(), lr=0.05, momentum=0.9, clipnorm=1.0),
    lambda m: portnn.AdamW(m.parameters(), lr=3e-3, global_clipnorm=0.5)])
@pytest.mark.parametrize("backend", COMPILERS)
def test_momentum_adamw_and_clipping(optimizer, backend):
    def fit(jit):
        with portnn.use_backend(backend):
            portnn.seed(0)
            model = _mlp()
            model.compile(loss="cross_entropy", optimizer=optimizer(model),
                          jit_compile=jit)
            return model, model.fit(*_data((12,)), epochs=3, batch_size=8,
                                    verbose=0)

    (eager, he), (compiled, hc) = fit(False), fit(True)
    np.testing.assert_allclose(hc["loss"], he["loss"], rtol=1e-5)
    for want, got in zip(eager.parameters(), compiled.parameters(), strict=True):
        np.testing.assert_allclose(to_np(got.value), to_np(want.value), rtol=1e-4,
                                   atol=1e-5)
    assert eager.optimizer.steps == compiled.optimizer.steps == 18
    assert isinstance(compiled.optimizer.steps, int)  # a Python int again
    assert isinstance(compiled.optimizer.lr, float)


def _bfloat16_losses(backend="jax"):
    schedule = {"lr_schedule": lambda epoch: 0.01 / (1 + epoch)}
    runs = [_fit("mlp", jit, precision="mixed_bfloat16", backend=backend,
                 **schedule)[1]
            for jit in (False, True)]
    assert runs[1]["lr"] == pytest.approx([0.01, 0.005, 0.01 / 3])
    return [h["loss"] for h in runs]


@pytest.mark.parametrize("backend", COMPILERS)
def test_mixed_bfloat16_and_a_schedule(backend):
    eager, compiled = _bfloat16_losses(backend)
    # XLA and Inductor keep a fused chain of bfloat16 operations in float32
    # (XLA's "excess precision"), where eager rounds after each one: the
    # compiled step is the more precise, within bfloat16's epsilon (2**-8)
    np.testing.assert_allclose(compiled, eager, rtol=2.0**-8)


def test_mixed_bfloat16_is_exact_without_excess_precision():
    pytest.importorskip("jax")
    # the same fit with XLA told to round every bfloat16 result: equal
    code = ("import sys; sys.path.insert(0, '.'); "
            "from tests.test_compiled_step import _bfloat16_losses; "
            "eager, compiled = _bfloat16_losses(); "
            "assert eager == compiled, (eager, compiled)")
    env = {**os.environ, "XLA_FLAGS": "--xla_allow_excess_precision=false"}
    root = pathlib.Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("backend", COMPILERS)
def test_dropout_draws_new_masks_every_compiled_step(backend):
    with portnn.use_backend(backend):
        portnn.seed(0)
        model = _mlp()
        model.compile(loss="cross_entropy",
                      optimizer=portnn.SGD(model.parameters(), lr=0.0),
                      jit_compile=True)
        x, y = _data((12,), n=8)
        losses = []

        class Record(portnn.training.callbacks.Callback):
            def on_batch_end(self, batch, logs=None):
                losses.append(float(logs["loss"]))

        model.fit(x, y, epochs=4, batch_size=8, shuffle=False, verbose=0,
                  callbacks=[Record()])
    # one batch, weights that never move: only the masks change the loss
    assert len(set(losses)) == 4


@pytest.mark.parametrize("backend", COMPILERS)
def test_a_non_finite_batch_stops_training_as_in_eager(backend):
    messages = []
    for jit in (False, True):
        with portnn.use_backend(backend):
            portnn.seed(0)
            model = _mlp()
            model.compile(loss="cross_entropy", optimizer="adam", jit_compile=jit)
            x, y = _data((12,))
            x[20, 3] = np.nan  # the third batch
            with pytest.raises(portnn.TrainingDivergedError) as info:
                model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
            messages.append(str(info.value))
            weights = to_np(model.parameters()[0].value)
            assert np.all(np.isfinite(weights))
    assert messages[0] == messages[1]
    assert "epoch 1, batch 3 of 6" in messages[1]


def test_an_epoch_reads_nothing_from_the_device_between_batches():
    jax = pytest.importorskip("jax")

    class Guard(portnn.training.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            jax.config.update("jax_transfer_guard_device_to_host", "disallow")

        def on_batch_end(self, batch, logs=None):
            if batch == 5:  # the last: the epoch's one read comes next
                jax.config.update("jax_transfer_guard_device_to_host", "allow")

    try:
        _fit("mlp", True, callbacks=[Guard()])
    finally:
        jax.config.update("jax_transfer_guard_device_to_host", "allow")


@pytest.mark.parametrize("backend", COMPILERS)
def test_a_short_last_batch_makes_two_programs(monkeypatch, backend):
    traces = _count_traces(monkeypatch)
    _fit("mlp", True, epochs=3, backend=backend)  # batches of 8 and one of 4
    assert len(traces) == 2


def test_backends_that_cannot_compile_say_so():
    model = portnn.Sequential(portnn.Dense(3, 2))  # numpy
    with pytest.raises(ValueError, match=r"numpy backend cannot compile"):
        model.compile(loss="mse", jit_compile=True)
    with pytest.raises(ValueError, match="jit_compile must be"):
        model.compile(loss="mse", jit_compile="yes")
    model.compile(loss="mse", jit_compile="auto")  # eager here
    model.fit(np.ones((4, 3), np.float32), np.ones((4, 2), np.float32), verbose=0)


def test_torch_without_its_compiler_warns_once_and_runs_the_traced_step(
        monkeypatch):
    torch = pytest.importorskip("torch")
    from portnn.backends import torch_compile

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    def compile_fails(graph, **kwargs):
        return broken

    monkeypatch.setattr(torch, "compile", compile_fails)
    monkeypatch.setattr(torch_compile, "_unusable", {})
    with pytest.warns(RuntimeWarning, match="cannot compile here.*no C.. compiler"
                      ) as caught:
        _same_training("mlp", "torch", optimizer="sgd")  # two programs
    assert len([w for w in caught if "jit_compile" in str(w.message)]) == 1
    assert torch_compile._unusable == {"inductor": True}


@pytest.mark.parametrize("backend", COMPILERS)
@pytest.mark.parametrize("kind", ["mlp", "transformer"])
def test_evaluate_and_predict_run_one_program_with_the_eager_results(
        kind, backend, monkeypatch):
    traces = _count_traces(monkeypatch, CompiledForward)
    model, _ = _fit(kind, False, epochs=1, backend=backend)
    x, y = _data(MODELS[kind][1])
    with portnn.use_backend(backend):
        want = (to_np(model.predict(x, batch_size=16)), model.evaluate(x, y))
        model.jit_compile = True
        got = (to_np(model.predict(x, batch_size=16)), model.evaluate(x, y))
        assert traces == [1, 1, 1]  # 16 and 12 rows; one batch of 44 (evaluate)
        model.predict(x, batch_size=16)  # the programs are kept
        assert len(traces) == 3
        np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
        assert got[1] == pytest.approx(want[1], rel=1e-5)
        # the weights are the model's again, not the trace's placeholders
        assert all(type(p.value) is type(model.parameters()[0].value)
                   for p in model.parameters())


@pytest.mark.parametrize("backend", COMPILERS)
def test_a_changed_model_gets_a_new_forward_program(backend):
    with portnn.use_backend(backend):
        portnn.seed(0)
        model = portnn.Sequential(portnn.Dense(3, 2))
        model.compile(loss="mse", jit_compile=True)
        x = np.ones((4, 3), np.float32)
        before = to_np(model.predict(x))
        model.add(portnn.ReLU())  # no parameters: a stale program would not see it
        after = to_np(model.predict(x))
        np.testing.assert_allclose(after, np.maximum(before, 0))
        assert np.any(before < 0)
        pickle.loads(pickle.dumps(model))  # the program is not part of it


def _count_traces(monkeypatch, kind=CompiledStep):
    """A list that grows by one at each trace of `kind`'s pure function."""
    traces = []
    pure = kind._pure

    def counted(self, *args):
        traces.append(1)
        return pure(self, *args)

    monkeypatch.setattr(kind, "_pure", counted)
    return traces


@pytest.mark.parametrize("backend", COMPILERS)
@pytest.mark.parametrize("kind", ["mlp", "lstm"])
def test_later_fits_reuse_the_program(monkeypatch, kind, backend):
    # a fit per epoch (a notebook's habit) must not trace every time; the
    # LSTM's first forward sets a cache attribute (None): not a setting
    traces = _count_traces(monkeypatch)
    model, _ = _fit(kind, True, epochs=1, backend=backend)
    first = len(traces)
    with portnn.use_backend(backend):
        for _ in range(3):
            model.fit(*_data(MODELS[kind][1]), epochs=1, batch_size=8, verbose=0)
    assert first == 2 and len(traces) == 2


def _fits_with_changes(jit, backend):
    """Four fits of one model; between them, changes a stale program would
    miss: the seed (dropout keys), the dropout rate, a frozen layer, the
    optimizer's weight decay."""
    x, y = _data((12,))
    with portnn.use_backend(backend):
        portnn.seed(0)
        model = _mlp()
        model.compile(loss="cross_entropy",
                      optimizer=portnn.AdamW(model.parameters(), lr=0.01),
                      jit_compile=jit)
        losses = []
        for change in ["none", "seed", "rate", "freeze", "decay"]:
            if change == "seed":
                portnn.seed(7)
            elif change == "rate":
                model[3].p = 0.6
            elif change == "freeze":
                model[0].trainable = False
            elif change == "decay":
                model.optimizer.weight_decay = 0.5
            losses += model.fit(x, y, epochs=1, batch_size=8, verbose=0)["loss"]
        return losses, [to_np(p.value) for p in model.parameters()]


@pytest.mark.parametrize("backend", COMPILERS)
def test_a_reused_program_sees_every_change_between_fits(backend):
    eager_losses, eager_weights = _fits_with_changes(False, backend)
    losses, weights = _fits_with_changes(True, backend)
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-5)
    for got, want in zip(weights, eager_weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", COMPILERS)
def test_a_changed_setting_gets_a_new_forward_program(backend):
    with portnn.use_backend(backend):
        portnn.seed(0)
        model = portnn.Sequential(portnn.Dense(3, 4), portnn.LeakyReLU(0.1))
        model.compile(loss="mse", jit_compile=True)
        x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
        before = to_np(model.predict(x))
        model[1].negative_slope = 0.5  # a constant of the first program
        after = to_np(model.predict(x))
        np.testing.assert_allclose(after[before < 0], 5 * before[before < 0],
                                   rtol=1e-5)



@pytest.mark.parametrize("backend", COMPILERS)
def test_callbacks_see_what_they_see_in_eager_mode(backend, tmp_path):
    # a plateau that cuts the rate, early stopping that restores the best
    # weights, a checkpoint of the model and optimizer every epoch: the
    # compiled fit runs them between its programs as the eager fit does
    def run(jit):
        path = tmp_path / f"{jit}-{{epoch}}.safetensors"
        callbacks = [
            portnn.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0,
                                     min_delta=10.0),  # every epoch a plateau
            portnn.EarlyStopping(monitor="loss", patience=2, min_delta=10.0,
                                 restore_best_weights=True),
            portnn.ModelCheckpoint(str(path), monitor="loss")]
        model, history = _fit("mlp", jit, epochs=6, backend=backend,
                              callbacks=callbacks)
        saved = portnn.load(str(path).format(epoch=2), backend=backend)
        return model, history, saved

    eager, h_eager, saved_eager = run(False)
    compiled, h_compiled, saved_compiled = run(True)
    assert len(h_compiled["loss"]) == len(h_eager["loss"]) == 3  # stopped early
    np.testing.assert_allclose(h_compiled["loss"], h_eager["loss"], rtol=1e-5)
    np.testing.assert_allclose(h_compiled["lr"], h_eager["lr"], rtol=1e-7)
    assert h_compiled["lr"] == pytest.approx([1e-3, 1e-3, 5e-4])  # cut once
    for want, got in ((eager, compiled), (saved_eager, saved_compiled)):
        for (key, w), g in zip(want.state_dict().items(),
                               got.state_dict().values(), strict=True):
            np.testing.assert_allclose(to_np(g), to_np(w), rtol=1e-4, atol=1e-5,
                                       err_msg=key)
    # the restored weights are the first epoch's, not the last one's
    first, _ = _fit("mlp", False, epochs=1, backend=backend)
    for (key, w), g in zip(first.state_dict().items(),
                           compiled.state_dict().values(), strict=True):
        np.testing.assert_allclose(to_np(g), to_np(w), rtol=1e-4, atol=1e-5,
                                   err_msg=key)
    assert isinstance(compiled.optimizer.steps, int)  # a number again
