"""Same seed, same data: the same weights and the same training losses on
every backend."""

from __future__ import annotations

import numpy as np

import portnn

from .conftest import to_np


def _mlp():
    return portnn.Sequential(
        portnn.Dense(10, 32), portnn.ReLU(), portnn.Dropout(0.1),
        portnn.Dense(32, 16), portnn.Tanh(), portnn.Dense(16, 3))


def _data():
    rs = np.random.default_rng(0)
    x = rs.normal(size=(64, 10)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5).astype(np.int64)
    return x, y


def _train(backend_name, steps=20):
    with portnn.use_backend(backend_name) as b:
        portnn.seed(42)
        model = _mlp()
        weights = {k: to_np(v) for k, v in model.state_dict().items()}
        opt = portnn.Adam(model.parameters(), lr=0.01)
        loss = portnn.CrossEntropy()
        x, y = _data()
        x, y = b.asarray(x), b.asarray(y)
        losses = []
        for step in range(steps):
            lo = (step * 16) % 64
            value, _ = model.train_step(x[lo:lo + 16, ...], y[lo:lo + 16], loss, opt)
            losses.append(float(value))
        return weights, np.array(losses)


def test_same_seed_same_initial_weights(backend):
    ref, _ = _train("numpy", steps=0)
    got, _ = _train(backend.spec, steps=0)
    assert sorted(got) == sorted(ref)
    for key in ref:
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)


def test_twenty_steps_give_the_same_losses(backend):
    _, ref = _train("numpy")
    _, got = _train(backend.spec)
    # float32 through 20 Adam steps: rounding differences of matmul orders
    # are allowed, nothing more.
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    assert ref[-1] < ref[0]  # it trained


def test_fit_histories_agree(backend):
    def run(name):
        with portnn.use_backend(name):
            portnn.seed(1)
            model = _mlp()
            x, y = _data()
            h = model.fit(x, y, loss=portnn.CrossEntropy(),
                          optimizer=portnn.SGD(model.parameters(), lr=0.1,
                                               momentum=0.9),
                          epochs=3, batch_size=16, verbose=0)
            return np.array(h["loss"] + h["accuracy"])

    np.testing.assert_allclose(run(backend.spec), run("numpy"), rtol=1e-4, atol=1e-5)


def test_normal_initializers_agree_to_float_tolerance(backend):
    def draw(name):
        with portnn.use_backend(name):
            portnn.seed(3)
            return to_np(portnn.init.he_normal((64, 32)))

    np.testing.assert_allclose(draw(backend.spec), draw("numpy"), rtol=1e-6,
                               atol=1e-7)
