"""Checkpoints: round trips on and across backends, exact resume, atomic
writes, corrupted and foreign files, moving models between backends."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import portnn
from portnn.checkpoint import CheckpointError

from .conftest import to_np


def _data(n=64, seed=0):
    rs = np.random.default_rng(seed)
    x = rs.normal(size=(n, 6)).astype(np.float32)
    y = (x[:, 0] - x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64)
    return x, y


def _model():
    return portnn.Sequential(
        portnn.Dense(6, 16, activation="tanh"), portnn.Dropout(0.2),
        portnn.Dense(16, 16), portnn.LeakyReLU(0.05), portnn.Dense(16, 3))


def _trained(epochs=2):
    portnn.seed(0)
    model = _model()
    x, y = _data()
    model.fit(x, y, loss=portnn.CrossEntropy(label_smoothing=0.1),
              optimizer=portnn.Adam(model.parameters(), lr=0.01), epochs=epochs,
              batch_size=16, verbose=0)
    return model


def test_round_trip_same_predictions(backend, tmp_path):
    model = _trained()
    path = tmp_path / "m.safetensors"
    model.save(path)
    loaded = portnn.load(path)
    x = backend.asarray(_data(8, 1)[0])
    np.testing.assert_array_equal(to_np(loaded.predict(x)), to_np(model.predict(x)))
    assert repr(loaded) == repr(model)
    assert isinstance(loaded.optimizer, portnn.Adam)
    assert loaded.optimizer.steps == model.optimizer.steps
    assert isinstance(loaded.loss, portnn.CrossEntropy)
    assert loaded.loss.label_smoothing == 0.1


@pytest.mark.parametrize("target", ["numpy", "array_api_strict", "torch"])
def test_load_on_another_backend(backend, target, tmp_path):
    if target == "torch":
        pytest.importorskip("torch")
    model = _trained()
    path = tmp_path / "m.safetensors"
    model.save(path)
    loaded = portnn.load(path, backend=target)
    assert loaded.backend.spec == target
    x = _data(8, 1)[0]
    np.testing.assert_allclose(to_np(loaded.predict(x)), to_np(model.predict(x)),
                               rtol=1e-5, atol=1e-6)
    for a, b in zip(loaded.parameters(), model.parameters(), strict=True):
        np.testing.assert_array_equal(to_np(a.value), to_np(b.value))


def test_resume_equals_uninterrupted(backend, tmp_path):
    x, y = _data()
    path = tmp_path / "resume.safetensors"
    model = _trained(epochs=2)
    model.save(path)
    straight = model.fit(x, y, loss=model.loss, optimizer=model.optimizer, epochs=3,
                         batch_size=16, verbose=0)
    portnn.seed(12345)  # whatever happened in between
    resumed_model = portnn.load(path, restore_rng=True)
    resumed = resumed_model.fit(x, y, loss=resumed_model.loss,
                                optimizer=resumed_model.optimizer, epochs=3,
                                batch_size=16, verbose=0)
    assert resumed["loss"] == straight["loss"]
    for a, b in zip(resumed_model.parameters(), model.parameters(), strict=True):
        np.testing.assert_array_equal(to_np(a.value), to_np(b.value))


def test_file_is_plain_safetensors(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    model = _trained()
    path = tmp_path / "m.safetensors"
    model.save(path, metadata={"note": "hello"})
    tensors = st.load_file(str(path))
    assert set(tensors) >= {"model.0.W", "model.0.b", "optimizer.0.m"}
    np.testing.assert_array_equal(tensors["model.0.W"], to_np(model[0].W.value))
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        meta = f.metadata()
    assert meta["user.note"] == "hello"
    assert json.loads(meta["portnn.architecture"])["class"] == "Sequential"


def test_torch_users_can_read_it(tmp_path, torch):
    st = pytest.importorskip("safetensors.torch")
    path = tmp_path / "m.safetensors"
    model = _trained()
    model.save(path)
    weights = st.load_file(str(path))
    assert weights["model.0.W"].dtype == torch.float32
    assert tuple(weights["model.0.W"].shape) == (6, 16)


def test_truncated_file_is_rejected(tmp_path):
    path = tmp_path / "m.safetensors"
    _trained().save(path)
    blob = path.read_bytes()
    for cut in (len(blob) - 5, len(blob) // 2, 20, 3, 0):
        path.write_bytes(blob[:cut])
        with pytest.raises(CheckpointError, match="truncated|not a safetensors"):
            portnn.load(path)


def test_corrupted_header_is_rejected(tmp_path):
    path = tmp_path / "m.safetensors"
    _trained().save(path)
    blob = bytearray(path.read_bytes())
    blob[10:14] = b"\xff\xfe{{"
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="not JSON"):
        portnn.load(path)
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError):
        portnn.load(path)


def test_trailing_garbage_is_rejected(tmp_path):
    path = tmp_path / "m.safetensors"
    _trained().save(path)
    path.write_bytes(path.read_bytes() + b"junk")
    with pytest.raises(CheckpointError, match="after the last tensor"):
        portnn.load(path)


def test_foreign_safetensors_file_is_rejected_clearly(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "foreign.safetensors"
    st.save_file({"weight": np.ones((2, 2), dtype=np.float32)}, str(path))
    with pytest.raises(CheckpointError, match="not a portnn checkpoint"):
        portnn.load(path)
    tensors = portnn.checkpoint.read_tensors(path)
    assert to_np(tensors["weight"]).tolist() == [[1, 1], [1, 1]]


def test_loading_never_runs_code_named_by_the_file(tmp_path):
    from portnn.safetensors import write_atomic

    path = tmp_path / "evil.safetensors"
    arch = {"class": "os.system", "config": {"command": "touch pwned"}}
    write_atomic(path, {}, {"format": "portnn-checkpoint",
                            "portnn.architecture": json.dumps(arch),
                            "portnn.rng": json.dumps({"seed": 0, "counter": 0})})
    with pytest.raises(CheckpointError, match="not registered"):
        portnn.load(path)
    assert not (tmp_path / "pwned").exists()


def test_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    model = _trained()
    model.save(path)
    good = path.read_bytes()

    def crash(fd):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "fsync", crash)
    model[0].W.value = model[0].W.value * 2.0
    with pytest.raises(OSError, match="simulated"):
        model.save(path)
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_unregistered_custom_layer_says_how_to_fix(tmp_path):
    class Custom(portnn.Identity):
        pass

    with pytest.raises(TypeError, match="register_layer"):
        portnn.Sequential(portnn.Dense(2, 2), Custom()).save(tmp_path / "c.st")


def test_registered_custom_layer_round_trips(tmp_path):
    @portnn.checkpoint.register_layer
    class Scale(portnn.Identity):
        def __init__(self, factor=2.0):
            super().__init__()
            self.factor = factor

        def forward(self, x, training=False):
            return x * self.factor

    model = portnn.Sequential(portnn.Dense(2, 2), Scale(3.0))
    model.save(tmp_path / "c.safetensors")
    loaded = portnn.load(tmp_path / "c.safetensors")
    assert isinstance(loaded[1], Scale) and loaded[1].factor == 3.0


def test_model_to_moves_parameters_and_optimizer_state(backend):
    model = _trained()
    x = _data(8, 1)[0]
    before = to_np(model.predict(x))
    model.to(backend.spec)
    assert all(backend.owns(p.value) for p in model.parameters())
    assert all(backend.owns(v) for s in model.optimizer.state for v in s.values()
               if hasattr(v, "shape"))
    np.testing.assert_allclose(to_np(model.predict(x)), before, rtol=1e-5, atol=1e-6)
    xs, ys = _data()
    model.fit(xs, ys, loss=model.loss, optimizer=model.optimizer, epochs=1,
              verbose=0)  # training goes on, on the new backend


def test_asarray_takes_dlpack_producers(torch):
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    with portnn.use_backend("numpy"):
        a = portnn.asarray(t)
    assert type(a).__module__ == "numpy"
    assert a.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_model_checkpoint_best_and_every(tmp_path):
    portnn.seed(0)
    model = _model()
    x, y = _data()
    best = portnn.ModelCheckpoint(tmp_path / "best.safetensors", save_best_only=True)
    every = portnn.ModelCheckpoint(str(tmp_path / "e{epoch:02d}.safetensors"),
                                   every=2)
    h = model.fit(x, y, loss="cross_entropy", epochs=5, validation_data=_data(32, 3),
                  callbacks=[best, every], verbose=0)
    assert [os.path.basename(p) for p in every.saved] == ["e02.safetensors",
                                                          "e04.safetensors"]
    improvements = [i for i, v in enumerate(h["val_loss"])
                    if v == min(h["val_loss"][: i + 1])]
    assert len(best.saved) == len(improvements)
    reloaded = portnn.load(tmp_path / "best.safetensors")
    result = reloaded.evaluate(*_data(32, 3), loss="cross_entropy")
    assert result["loss"] == pytest.approx(min(h["val_loss"]), rel=1e-5)


def test_csv_logger(tmp_path):
    path = tmp_path / "log.csv"
    x, y = _data()
    _model().fit(x, y, loss="cross_entropy", epochs=3, verbose=0,
                 callbacks=[portnn.CSVLogger(path)])
    lines = path.read_text().splitlines()
    assert lines[0] == "epoch,loss,accuracy,lr"
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3"]
    _model().fit(x, y, loss="cross_entropy", epochs=1, verbose=0,
                 callbacks=[portnn.CSVLogger(path, append=True)])
    assert len(path.read_text().splitlines()) == 5


class _ScaledMSE(portnn.MSE):
    """A user's loss: MSE times a factor (its config: the factor)."""

    def __init__(self, factor=2.0):
        super().__init__()
        self.factor = factor

    def forward(self, pred, target):
        return self.factor * super().forward(pred, target)

    def backward(self):
        return self.factor * super().backward()


def test_a_registered_custom_loss_round_trips(tmp_path):
    portnn.checkpoint.register_loss(_ScaledMSE)
    model = portnn.Sequential(portnn.Dense(3, 1))
    x, y = np.ones((8, 3), np.float32), np.zeros((8, 1), np.float32)
    model.fit(x, y, loss=_ScaledMSE(3.0), verbose=0)
    model.save(tmp_path / "m.safetensors")
    loaded = portnn.load(tmp_path / "m.safetensors")
    assert type(loaded.loss) is _ScaledMSE and loaded.loss.factor == 3.0
    loaded.fit(x, y, verbose=0)  # no loss given: the saved one


def test_a_loss_whose_config_is_not_json_saves_the_weights(tmp_path):
    class _Hooked(portnn.MSE):
        def __init__(self, hook=None):
            super().__init__()
            self.hook = hook  # a function: not JSON data

    model = portnn.Sequential(portnn.Dense(3, 1))
    model.fit(np.ones((8, 3), np.float32), np.zeros((8, 1), np.float32),
              loss=_Hooked(print), verbose=0)
    with pytest.warns(UserWarning, match="loss _Hooked is not saved.*Give the"):
        model.save(tmp_path / "m.safetensors")
    loaded = portnn.load(tmp_path / "m.safetensors")
    assert loaded.loss is None and loaded.optimizer is not None
    np.testing.assert_array_equal(to_np(loaded[0].W.value), to_np(model[0].W.value))


def test_class_weights_given_as_an_array_are_saved_with_the_loss(tmp_path):
    model = portnn.Sequential(portnn.Dense(3, 2))
    model.fit(np.ones((8, 3), np.float32), np.array([0, 1] * 4), verbose=0,
              loss=portnn.CrossEntropy(weight=np.array([1.0, 3.0], np.float32)))
    model.save(tmp_path / "m.safetensors")
    loaded = portnn.load(tmp_path / "m.safetensors")
    assert np.allclose(to_np(loaded.loss.weight), [1.0, 3.0])
