"""Weight sharing (a layer used twice), and forward caches that are not
state: freed after backward and under no_grad, never pickled."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import portnn

from .conftest import to_np


def _tied(backend):
    portnn.seed(0)
    with portnn.default_dtype("float64"):
        d = portnn.Dense(3, 3)
        return d, portnn.Sequential(d, portnn.Tanh(), d)


def test_a_layer_used_twice_has_exact_gradients(backend):
    d, model = _tied(backend)
    x = backend.asarray(np.random.default_rng(0).normal(size=(4, 3)))
    result = portnn.gradcheck(model, x)  # failed with error 0.35 before sharing
    assert result.ok, result


def test_shared_parameters_are_listed_counted_and_updated_once(backend):
    d, model = _tied(backend)
    assert len(model.parameters()) == 2
    assert model.num_parameters() == 12
    assert sorted(model.state_dict()) == ["0.W", "0.b"]
    x = backend.asarray(np.ones((2, 3)))
    before = to_np(d.W.value).copy()
    opt = portnn.SGD(model.parameters(), lr=0.1)
    pred = model(x, training=True)
    loss = portnn.MSE()
    loss(pred, backend.xp.zeros_like(pred))
    model.backward(loss.backward())
    grad = to_np(d.W.grad).copy()
    opt.step()
    np.testing.assert_allclose(to_np(d.W.value), before - 0.1 * grad, rtol=1e-12)


def test_a_shared_block_inside_residuals(backend):
    portnn.seed(1)
    with portnn.default_dtype("float64"):
        block = portnn.Sequential(portnn.Dense(4, 4), portnn.Tanh())
        model = portnn.Sequential(portnn.Residual(block), portnn.ReLU(),
                                  portnn.Residual(block), portnn.Dense(4, 2))
    x = backend.asarray(np.random.default_rng(1).normal(size=(3, 4)))
    assert portnn.gradcheck(model, x).ok
    assert len(model.parameters()) == 4


def test_a_checkpoint_stores_a_shared_tensor_once(backend, tmp_path):
    d, model = _tied(backend)
    path = tmp_path / "tied.safetensors"
    model.save(path)
    from safetensors.numpy import load_file

    assert sorted(load_file(str(path))) == ["model.0.W", "model.0.b"]
    loaded = portnn.load(path, backend=backend.spec)
    assert loaded[0] is loaded[2]
    x = np.ones((2, 3))
    np.testing.assert_allclose(to_np(loaded.predict(x)), to_np(model.predict(x)),
                               rtol=1e-12)


def test_fit_trains_a_model_with_tied_weights(backend):
    portnn.seed(0)
    d = portnn.Dense(4, 4)
    model = portnn.Sequential(d, portnn.Tanh(), d, portnn.Tanh(), portnn.Dense(4, 2))
    rs = np.random.default_rng(0)
    x = rs.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    h = model.fit(x, y, loss="cross_entropy", epochs=20, batch_size=16, verbose=0,
                  optimizer=portnn.Adam(model.parameters(), lr=0.05))
    assert h["loss"][-1] < 0.5 * h["loss"][0]


# -- caches ----------------------------------------------------------------------

def _model():
    portnn.seed(0)
    return portnn.Sequential(
        portnn.Conv2D(1, 2, 3, padding=1), portnn.BatchNorm2D(2), portnn.ReLU(),
        portnn.MaxPool2D(2), portnn.Flatten(), portnn.Dropout(0.1),
        portnn.Dense(8, 3, activation="relu"), portnn.Dense(3, 2))


def _cached(model):
    """(layer, attribute) pairs holding a forward cache."""
    from portnn.layers.base import walk_layers

    return [(type(layer).__name__, name) for layer in walk_layers(model)
            for name in (*type(layer)._cache_attrs, *type(layer)._call_outputs)
            if name in vars(layer)]


SECRET = np.full((4, 1, 4, 4), 0.123456, dtype=np.float32)


def test_predict_and_evaluate_leave_no_cache(backend):
    model = _model()
    model.predict(SECRET)
    assert _cached(model) == []
    model.evaluate(SECRET, np.array([0, 1, 0, 1]), loss="cross_entropy")
    assert _cached(model) == []


def test_backward_frees_the_caches_of_a_training_step(backend):
    model = _model()
    x, y = backend.asarray(SECRET), backend.asarray(np.array([0, 1, 0, 1]))
    model.train_step(x, y, portnn.CrossEntropy(), portnn.SGD(model.parameters()))
    assert _cached(model) == []


def test_pickles_hold_no_data_of_the_last_batch(backend):
    model = _model()
    model.fit(SECRET, np.array([0, 1, 0, 1]), loss="cross_entropy", epochs=1,
              verbose=0)
    model(backend.asarray(SECRET), training=True)  # a forward with no backward
    assert _cached(model) != []
    blob = pickle.dumps(model)
    assert np.float32(0.123456).tobytes() not in blob
    clone = pickle.loads(blob)
    assert _cached(clone) == []
    np.testing.assert_array_equal(to_np(clone.predict(SECRET)),
                                  to_np(model.predict(SECRET)))


def test_recurrent_final_state_is_not_pickled(backend):
    lstm = portnn.LSTM(3, 4)
    lstm(backend.asarray(np.ones((2, 5, 3), dtype=np.float32)))
    assert lstm.final_state is not None
    clone = pickle.loads(pickle.dumps(lstm))
    assert "final_state" not in vars(clone)


def test_state_dict_holds_parameters_and_buffers_only():
    model = _model()
    model(portnn.asarray(SECRET), training=True)
    assert all(k.rsplit(".", 1)[-1] in ("W", "b", "gamma", "beta", "running_mean",
                                        "running_var")
               for k in model.state_dict())


def test_every_forward_cache_is_declared(backend):
    """A layer that caches an attribute its class does not declare would leak
    it into pickles: every attribute a training forward adds is declared."""
    from tests.test_deep_gradcheck import CASES

    from portnn.layers.base import _DIRECT_CALL_ATTRS, walk_layers

    # a memo of constants; containers' stack; the direct-call watch (out of
    # pickles too)
    allowed = {"_table", "_child_calls", *_DIRECT_CALL_ATTRS}
    for name, (factory, shape) in CASES.items():
        with portnn.default_dtype("float64"):  # as the gradient checks build them
            layer = factory()
            before = {id(la): set(vars(la)) for la in walk_layers(layer)}
            x = portnn.random.Generator(0).normal(shape, backend=backend) if (
                not layer.integer_input) else backend.asarray(
                    np.zeros(shape, dtype=int))
            layer(x, training=True)
        for la in walk_layers(layer):
            added = set(vars(la)) - before.get(id(la), set()) - allowed
            declared = set(type(la)._cache_attrs) | set(type(la)._call_outputs)
            assert added <= declared, (name, type(la).__name__, added - declared)


# -- errors that name the fix ---------------------------------------------------

def test_backward_before_forward_says_so():
    layer = portnn.Dense(2, 2)
    with pytest.raises(AttributeError, match=r"call forward\(x, training=True\) first"):
        layer.backward(portnn.asarray(np.ones((1, 2), dtype=np.float32)))
    with pytest.raises(AttributeError, match="forward"):
        portnn.CrossEntropy().backward()


def test_a_second_backward_after_one_forward_says_so():
    model = portnn.Sequential(portnn.Dense(2, 2), portnn.ReLU())
    x = portnn.asarray(np.ones((1, 2), dtype=np.float32))
    model(x, training=True)
    model.backward(x)
    with pytest.raises(AttributeError, match="Each forward serves one backward"):
        model.backward(x)


def test_a_custom_layer_that_forgot_super_init_is_told():
    class Scale(portnn.Layer):
        def __init__(self):
            self.s = self.add_parameter("s", portnn.init.ones((2,)))

    with pytest.raises(AttributeError, match=r"must call super\(\).__init__\(\)"):
        Scale()
