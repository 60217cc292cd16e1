"""CrossEntropy with the classes on another axis (PyTorch's (N, C, d1, ...)
layout), against torch's cross_entropy, and the metrics of `fit` reading
the same axis."""

from __future__ import annotations

import numpy as np
import pytest

import portnn

from .conftest import to_np


@pytest.mark.parametrize(("kwargs", "shape"), [
    ({}, (3, 4, 5, 2)),
    ({"label_smoothing": 0.2, "ignore_index": -100}, (3, 4, 5, 2)),
    ({"weight": [1.0, 2.0, 0.5, 3.0]}, (2, 4, 6)),
    ({"reduction": "sum"}, (2, 4, 6)),
])
def test_class_axis_one_equals_torch(backend, torch, kwargs, shape):
    rs = np.random.default_rng(0)
    z = rs.normal(size=shape)
    labels = rs.integers(0, 4, (shape[0], *shape[2:]))
    if "ignore_index" in kwargs:
        labels[0, ..., 0] = -100
    loss = portnn.CrossEntropy(axis=1, **kwargs)
    value = loss(backend.asarray(z), backend.asarray(labels))
    grad = loss.backward()
    tz = torch.tensor(z, requires_grad=True)
    tkw = dict(kwargs)
    if "weight" in tkw:
        tkw["weight"] = torch.tensor(tkw["weight"], dtype=torch.float64)
    tvalue = torch.nn.functional.cross_entropy(tz, torch.tensor(labels), **tkw)
    tvalue.backward()
    assert float(value) == pytest.approx(tvalue.item(), rel=1e-12)
    np.testing.assert_allclose(to_np(grad), tz.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_probability_targets_move_with_the_axis(backend, torch):
    rs = np.random.default_rng(1)
    z, q = rs.normal(size=(2, 3, 4)), rs.dirichlet(np.ones(3), size=(2, 4))
    q = np.moveaxis(q, -1, 1)  # (N, C, T), as the logits
    loss = portnn.CrossEntropy(axis=1)
    value = loss(backend.asarray(z), backend.asarray(q))
    tz = torch.tensor(z, requires_grad=True)
    tvalue = torch.nn.functional.cross_entropy(tz, torch.tensor(q))
    tvalue.backward()
    assert float(value) == pytest.approx(tvalue.item(), rel=1e-12)
    np.testing.assert_allclose(to_np(loss.backward()), tz.grad.numpy(), atol=1e-12)


def test_a_per_pixel_classifier_fits_and_its_metrics_read_axis_one(backend):
    portnn.seed(2)
    model = portnn.Sequential(portnn.Conv2D(1, 8, 3, padding=1), portnn.ReLU(),
                              portnn.Conv2D(8, 3, 1))
    rs = np.random.default_rng(3)
    x = rs.normal(size=(16, 1, 6, 6)).astype(np.float32)
    y = np.digitize(x[:, 0], [-0.5, 0.5])  # three classes per pixel
    loss = portnn.CrossEntropy(axis=1)
    history = model.fit(backend.asarray(x), backend.asarray(y), loss=loss,
                        optimizer=portnn.Adam(model.parameters(), lr=0.05), epochs=20,
                        verbose=0, metrics=["accuracy", "f1_macro"])
    assert history["accuracy"][-1] > 0.9
    logs = model.evaluate(backend.asarray(x), backend.asarray(y), loss=loss,
                          metrics=["accuracy"])
    guess = to_np(model.predict(backend.asarray(x))).argmax(axis=1)
    assert logs["accuracy"] == pytest.approx((guess == y).mean())


def test_wrong_axis_and_label_shapes_say_so():
    loss = portnn.CrossEntropy(axis=3)
    with pytest.raises(ValueError, match="axis 3 is out of range"):
        loss(np.zeros((2, 3, 4)), np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match="integer labels must have shape"):
        portnn.CrossEntropy(axis=1)(np.zeros((2, 3, 4)), np.zeros((2, 3), np.int64))
