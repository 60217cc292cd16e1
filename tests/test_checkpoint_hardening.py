"""Checkpoints against hostile and broken files, memory-bounded loading,
file modes and links, user metadata and schedules in the training state."""

from __future__ import annotations

import json
import os
import stat
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import portnn
from portnn.checkpoint import CheckpointError
from portnn.safetensors import write_atomic

from .conftest import to_np

RNG = json.dumps({"seed": 0, "counter": 0})


def _raw(header: dict, data: bytes = b"") -> bytes:
    """A safetensors file with exactly this header (no validation)."""
    blob = json.dumps(header).encode()
    return len(blob).to_bytes(8, "little") + blob + data


def _arch(*children):
    return {"class": "Sequential", "config": {}, "children": list(children)}


def _dense(i, o, **extra):
    return {"class": "Dense", "config": {"in_features": i, "out_features": o, **extra}}


def _meta(arch, **more):
    meta = {"format": "portnn-checkpoint", "portnn.architecture": json.dumps(arch),
            "portnn.rng": RNG}
    meta.update(more)
    return meta


def _small(tmp_path, **more):
    """A valid Dense(2, 3) checkpoint with custom metadata."""
    path = tmp_path / "small.safetensors"
    tensors = {"model.0.W": np.zeros((2, 3), np.float32),
               "model.0.b": np.zeros((3,), np.float32)}
    write_atomic(path, tensors, _meta(_arch(_dense(2, 3)), **more))
    return path


def _expect_error(path, match):
    with pytest.raises(CheckpointError, match=match) as info:
        portnn.load(path)
    assert str(path) in str(info.value)


# -- memory ---------------------------------------------------------------------

def test_a_load_needs_little_more_memory_than_its_tensors(tmp_path):
    portnn.seed(0)
    model = portnn.Sequential(portnn.Dense(500, 1000), portnn.ReLU(),
                              portnn.Dense(1000, 500))
    model.fit(np.zeros((8, 500), np.float32), np.zeros((8, 500), np.float32),
              loss="mse", optimizer="adam", verbose=0)  # + Adam's m and v
    path = tmp_path / "big.safetensors"
    model.save(path)
    tensor_bytes = 3 * 4 * model.num_parameters()
    portnn.load(path)  # imports and caches warm
    tracemalloc.start()
    try:
        loaded = portnn.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 1.5 * tensor_bytes, (peak, tensor_bytes)  # was 11x before
    assert loaded.optimizer.state[0]["m"].shape == (500, 1000)


@pytest.mark.parametrize("size", [3000, 10**6])
def test_a_tiny_file_naming_a_huge_layer_allocates_nothing(tmp_path, size):
    path = _small(tmp_path, **{"portnn.architecture": json.dumps(
        _arch(_dense(size, size)))})
    assert path.stat().st_size < 1000
    tracemalloc.start()
    try:
        _expect_error(path, rf"'model.0.W' has shape \(2, 3\), but the architecture "
                      rf"needs \({size}, {size}\)")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20  # Dense(3000, 3000) drew 652 MB before failing


# -- every failure is a CheckpointError naming the file ---------------------------

@pytest.mark.parametrize(("meta", "match"), [
    ({"portnn.architecture": "[" * 100_000 + "]" * 100_000}, "corrupted"),
    ({"portnn.architecture": '{"class": "Dense", "config": {"in_features": '
      + "9" * 5000 + ', "out_features": 3}}'}, "corrupted"),
    ({"portnn.architecture": json.dumps(_arch(_dense("abc", 3)))}, "cannot be built"),
    ({"portnn.architecture": json.dumps(_arch(_dense(-1, 3)))}, "cannot be built"),
    ({"portnn.architecture": json.dumps({"class": "Sequential", "children": 5})},
     "malformed layer entry"),
    ({"portnn.architecture": json.dumps(_arch({"class": "Dense", "config": [1, 2]}))},
     "malformed layer entry"),
    ({"portnn.optimizer": json.dumps({"class": "Optimizer", "config": {}})},
     "unknown optimizer class"),
    ({"portnn.optimizer": json.dumps({"class": "Adam", "config": {"lr": "fast"}})},
     "learning rate must be a finite number"),
    ({"portnn.optimizer": '{"class": "Adam", "config": {"lr": NaN}}'},
     "learning rate must be a finite number"),
    ({"portnn.optimizer": json.dumps({"class": "Adam", "config": {"lr": 0.1,
                                                                  "eps": "x"}})},
     "cannot rebuild the optimizer"),
    ({"portnn.optimizer": json.dumps({"class": "SGD", "config": {"lr": 0.1},
                                      "steps": "3"})}, "steps or scalar state"),
    ({"portnn.optimizer": json.dumps({"class": "SGD", "config": {"lr": 0.1},
                                      "params": [0, 7]})}, "parameter list"),
    ({"portnn.rng": json.dumps({"seed": -1, "counter": 0})}, "RNG state"),
    ({"portnn.rng": json.dumps([1, 2])}, "RNG state"),
    ({"portnn.rng": "}"}, "'portnn.rng' is corrupted"),
])
def test_corrupt_metadata_is_a_checkpoint_error(tmp_path, meta, match):
    _expect_error(_small(tmp_path, **meta), match)


@pytest.mark.parametrize(("entry", "match"), [
    ("{not json", "'portnn.loss' is corrupted"),
    (json.dumps({"class": "Loss", "config": {}}), "'Loss' is not a portnn loss"),
    (json.dumps({"class": "MyLoss", "config": {}}), "register its class with "
     "portnn.checkpoint.register_loss"),
    (json.dumps({"class": "MSE", "config": {"reduction": 3}}),
     "cannot rebuild the loss"),
    (json.dumps(["MSE"]), "malformed loss"),
])
def test_a_loss_that_cannot_be_rebuilt_loads_the_rest(tmp_path, entry, match):
    path = _small(tmp_path, **{"portnn.loss": entry})
    with pytest.warns(UserWarning, match=f"not the loss: .*{match}.*Give the loss"):
        model = portnn.load(path)
    assert model.loss is None and model.parameters()  # the weights are there


def test_deeply_nested_layers_are_refused(tmp_path):
    arch = _dense(2, 3)
    for _ in range(150):
        arch = {"class": "Residual", "config": {}, "children": [arch]}
    _expect_error(_small(tmp_path, **{"portnn.architecture": json.dumps(arch)}),
                  "nests layers more than")


@pytest.mark.parametrize(("entry", "match"), [
    ({"dtype": "F32", "shape": "32", "data_offsets": [0, 4]}, "shape must be a list"),
    ({"dtype": "F32", "shape": [3.9, 2.2], "data_offsets": [0, 4]},
     "shape must be a list of non-negative ints"),
    ({"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}, "non-negative"),
    ({"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}, "non-negative ints"),
    ({"dtype": "F32", "shape": [1], "data_offsets": [0]}, "data_offsets"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}, "inconsistent"),
    ({"dtype": "Q7", "shape": [1], "data_offsets": [0, 4]}, "unknown dtype 'Q7'"),
    ({"dtype": "F32", "shape": [1]}, "malformed header entry"),
])
def test_malformed_tensor_entries_are_refused(tmp_path, entry, match):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(_raw({"x": entry}, b"\0" * 4))
    _expect_error(path, match)


@pytest.mark.parametrize("code", ["BF16", "U16", "U32", "U64"])
def test_valid_dtypes_portnn_does_not_load_are_named(tmp_path, code):
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(_raw({"x": {"dtype": code, "shape": [2],
                                 "data_offsets": [0, 2 * (4 if code == "U32" else
                                                          8 if code == "U64" else 2)]}},
                          b"\0" * (4 if code == "U16" or code == "BF16" else
                                   8 if code == "U32" else 16)))
    _expect_error(path, f"dtype {code}, a valid safetensors dtype that portnn "
                        "does not load")


def test_optimizer_state_shapes_must_match_their_parameters(tmp_path):
    path = tmp_path / "opt.safetensors"
    tensors = {"model.0.W": np.zeros((2, 3), np.float32),
               "model.0.b": np.zeros((3,), np.float32),
               "optimizer.0.momentum": np.zeros((3, 2), np.float32)}
    opt = {"class": "SGD", "config": {"lr": 0.1, "momentum": 0.9}}
    write_atomic(path, tensors, _meta(_arch(_dense(2, 3)),
                                      **{"portnn.optimizer": json.dumps(opt)}))
    _expect_error(path, r"optimizer state 'optimizer.0.momentum' has shape \(3, 2\)")


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2000))
def test_random_bytes_only_ever_raise_checkpoint_or_os_errors(tmp_path, data):
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(data)
    with pytest.raises((CheckpointError, OSError)):
        portnn.load(path)


def _valid_blob(tmp_path):
    portnn.seed(0)
    model = portnn.Sequential(portnn.Dense(3, 4), portnn.ReLU(), portnn.Dense(4, 2))
    model.fit(np.zeros((4, 3), np.float32), np.array([0, 1, 0, 1]),
              loss="cross_entropy", optimizer="adam", verbose=0)
    path = tmp_path / "valid.safetensors"
    model.save(path)
    return path.read_bytes()


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                      min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.integers(0, 10**6)))
def test_mutated_valid_files_fail_cleanly_with_bounded_memory(tmp_path, edits, cut):
    blob = bytearray(_VALID.setdefault("blob", _valid_blob(tmp_path)))
    for pos, byte in edits:
        blob[pos % len(blob)] = byte
    if cut is not None:
        blob = blob[: cut % (len(blob) + 1)]
    path = tmp_path / "mutated.safetensors"
    path.write_bytes(bytes(blob))
    tracemalloc.start()
    try:
        portnn.load(path)  # a mutation may leave a valid file
    except (CheckpointError, OSError):
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 8 * 2**20


_VALID: dict = {}


# -- saving ------------------------------------------------------------------------

def _tiny():
    return portnn.Sequential(portnn.Dense(2, 2))


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600),
                                             (0o002, 0o664)])
def test_a_new_file_gets_the_mode_an_ordinary_write_gives(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        _tiny().save(tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.safetensors").stat().st_mode) == mode


def test_an_existing_file_keeps_its_mode(tmp_path):
    path = tmp_path / "m.safetensors"
    _tiny().save(path)
    path.chmod(0o640)
    _tiny().save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_save_writes_through_a_symbolic_link(tmp_path):
    real = tmp_path / "store" / "m.safetensors"
    real.parent.mkdir()
    link = tmp_path / "latest.safetensors"
    link.symlink_to(real)
    model = _tiny()
    model.save(link)
    assert link.is_symlink() and real.is_file()
    np.testing.assert_array_equal(to_np(portnn.load(link)[0].W.value),
                                  to_np(model[0].W.value))
    assert sorted(p.name for p in real.parent.iterdir()) == ["m.safetensors"]


def test_save_names_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"folder .*nope.* does not exist"):
        _tiny().save(tmp_path / "nope" / "m.safetensors")


# -- what a checkpoint gives back ------------------------------------------------

def test_load_gives_back_the_user_metadata(tmp_path):
    model = _tiny()
    model.save(tmp_path / "m.safetensors", metadata={"input_mean": "0.5", "n": 3})
    loaded = portnn.load(tmp_path / "m.safetensors")
    assert loaded.metadata == {"input_mean": "0.5", "n": "3"}
    loaded.save(tmp_path / "again.safetensors")  # model.metadata is kept
    assert portnn.load(tmp_path / "again.safetensors").metadata == loaded.metadata


def test_cli_input_scaling_is_readable_through_load(tmp_path):
    pytest.importorskip("sklearn")
    from types import SimpleNamespace

    from portnn import cli

    path = tmp_path / "digits.safetensors"
    cli.train(SimpleNamespace(example="digits-mlp", backend="numpy", epochs=1, seed=0,
                              save=str(path), quiet=True), out=open(os.devnull, "w"))
    meta = portnn.load(path).metadata
    assert len(meta["input_mean"].split(",")) == 64 and meta["input_shape"] == "64"


def test_resuming_continues_the_learning_rate_schedule(backend, tmp_path):
    rs = np.random.default_rng(0)
    x = rs.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)

    def run(epochs, model=None):
        if model is None:
            portnn.seed(0)
            model = portnn.Sequential(portnn.Dense(4, 8), portnn.Tanh(),
                                      portnn.Dense(8, 2))
            opt = portnn.SGD(model.parameters(), lr=0.5, momentum=0.9)
            portnn.optim.CosineWithWarmup(opt, total_steps=6, warmup_steps=1)
        opt = model.optimizer if model.optimizer is not None else opt
        cb = portnn.training.LRSchedulerCallback(opt.scheduler)
        h = model.fit(x, y, loss="cross_entropy", optimizer=opt, epochs=epochs,
                      batch_size=16, callbacks=[cb], verbose=0, shuffle=False)
        return model, h["lr"]

    straight, lrs = run(6)
    half, first = run(3)
    path = tmp_path / "half.safetensors"
    half.save(path)
    resumed = portnn.load(path, backend=backend.spec)
    assert resumed.optimizer.scheduler.t == 3
    assert resumed.optimizer.lr == pytest.approx(lrs[3])  # not the final 0.0
    resumed, second = run(3, resumed)
    assert first + second == pytest.approx(lrs)
    for a, b in zip(resumed.parameters(), straight.parameters(), strict=True):
        np.testing.assert_allclose(to_np(a.value), to_np(b.value), rtol=1e-5,
                                   atol=1e-6)


def test_an_optimizer_over_some_parameters_round_trips(tmp_path):
    portnn.seed(0)
    model = portnn.Sequential(portnn.Dense(3, 4), portnn.ReLU(), portnn.Dense(4, 2))
    opt = portnn.Adam(model[2].parameters(), lr=0.01)  # fine-tune the head
    with pytest.warns(UserWarning, match="2 trainable parameter"):
        model.fit(np.ones((4, 3), np.float32), np.array([0, 1, 0, 1]),
                  loss="cross_entropy", optimizer=opt, verbose=0)
    model.save(tmp_path / "head.safetensors")
    loaded = portnn.load(tmp_path / "head.safetensors")
    assert [tuple(p.shape) for p in loaded.optimizer.params] == [(4, 2), (2,)]
    assert loaded.optimizer.params[0] is loaded[2].W
    np.testing.assert_array_equal(to_np(loaded.optimizer.state[0]["m"]),
                                  to_np(opt.state[0]["m"]))


def test_a_huge_max_len_in_a_checkpoint_costs_nothing_until_used(tmp_path):
    """A small file naming PositionalEncoding(max_len=10**6) must not make
    predict allocate the whole table (10**8 tried to take 6 GB)."""
    model = portnn.Sequential(portnn.PositionalEncoding(max_len=10**6, d_model=16),
                              portnn.Dense(16, 2))
    model.save(tmp_path / "pe.safetensors")
    assert (tmp_path / "pe.safetensors").stat().st_size < 4096
    loaded = portnn.load(tmp_path / "pe.safetensors", backend="numpy")
    x = np.zeros((4, 7, 16), np.float32)
    tracemalloc.start()
    try:
        out = loaded.predict(x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20, peak  # the table of 10**6 positions: 128 MB
    small = portnn.PositionalEncoding(max_len=7, d_model=16)
    np.testing.assert_allclose(to_np(out), to_np(loaded[1](small(
        portnn.backends.get("numpy").asarray(x)))), rtol=1e-6)
