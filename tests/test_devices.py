"""Device discipline on array-api-strict's second device, the GPU proxy.

An array on ``array_api_strict:device1`` refuses to meet a CPU array and to
become a NumPy array implicitly, as a CuPy array on ``cupy:1`` does. The
whole suite runs there through the ``backend`` fixture; these tests pin the
registry and data-movement rules it relies on.
"""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from portnn import backends

from .conftest import to_np

DEVICE1 = "array_api_strict:device1"


@pytest.fixture
def device1():
    b = backends.get(DEVICE1)
    with portnn.use_backend(b):
        yield b


def test_device1_is_a_usable_backend_of_its_own(device1):
    cpu = backends.get("array_api_strict")
    assert device1 is not cpu
    assert device1.spec == DEVICE1 and device1.name == "array_api_strict"
    assert str(device1.device) != str(cpu.device)


def test_owns_and_backend_of_look_at_the_device(device1):
    cpu = backends.get("array_api_strict")
    on_cpu = cpu.asarray([1.0, 2.0])
    on_dev = device1.asarray([1.0, 2.0])
    assert cpu.owns(on_cpu) and not cpu.owns(on_dev)
    assert device1.owns(on_dev) and not device1.owns(on_cpu)
    assert backends.backend_of(on_dev) is device1
    assert backends.backend_of(on_cpu) is cpu


@pytest.mark.parametrize("source", ["numpy", "list", "strict_cpu"])
def test_asarray_moves_data_to_the_backend_device(device1, source):
    host = np.arange(6, dtype=np.float32).reshape(2, 3)
    data = {"numpy": host, "list": host.tolist(),
            "strict_cpu": backends.get("array_api_strict").asarray(host)}[source]
    x = device1.asarray(data)
    assert x.device == device1.device
    np.testing.assert_array_equal(device1.to_numpy(x), host)


def test_implicit_host_conversion_is_refused_on_device1(device1):
    # what makes the proxy worth having: numpy cannot read it by accident
    x = device1.asarray([1.0, 2.0])
    with pytest.raises(RuntimeError):
        np.asarray(x)


def test_fit_evaluate_predict_keep_everything_on_the_model_device(device1):
    rs = np.random.default_rng(0)
    x = rs.random((32, 4), dtype=np.float32)
    y = rs.integers(0, 2, 32)
    portnn.seed(0)
    model = portnn.Sequential(portnn.Dense(4, 3), portnn.ReLU(), portnn.Dense(3, 2))
    h = model.fit(x, y, loss=portnn.CrossEntropy(), epochs=2, verbose=0,
                  validation_split=0.25)
    assert len(h["loss"]) == 2 and np.isfinite(h["val_loss"]).all()
    assert all(p.value.device == device1.device for p in model.parameters())
    pred = model.predict(x)
    assert pred.device == device1.device
    assert set(model.evaluate(x, y)) == {"loss", "accuracy"}


def test_checkpoint_and_to_move_onto_device1(tmp_path):
    portnn.seed(0)
    model = portnn.Sequential(portnn.Dense(4, 3), portnn.ReLU(), portnn.Dense(3, 2))
    x = np.ones((2, 4), dtype=np.float32)
    expected = to_np(model.predict(x))
    path = tmp_path / "m.safetensors"
    model.save(path)
    loaded = portnn.load(path, backend=DEVICE1)
    device = backends.get(DEVICE1).device
    assert all(p.value.device == device for p in loaded.parameters())
    np.testing.assert_allclose(to_np(loaded.predict(x)), expected, rtol=1e-6)
    model.to(DEVICE1)
    assert all(p.value.device == device for p in model.parameters())
    np.testing.assert_allclose(to_np(model.predict(x)), expected, rtol=1e-6)
