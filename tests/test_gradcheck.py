"""Finite-difference gradient checks (float64) of every layer and loss on
every backend, and a check that gradcheck itself catches a wrong backward."""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from portnn.random import Generator

LAYERS = {
    "dense": lambda: portnn.Dense(4, 3),
    "dense_no_bias": lambda: portnn.Dense(4, 3, bias=False),
    "dense_relu": lambda: portnn.Dense(4, 3, activation="relu"),
    "identity": portnn.Identity,
    "sigmoid": portnn.Sigmoid,
    "tanh": portnn.Tanh,
    "relu": portnn.ReLU,
    "leaky_relu": lambda: portnn.LeakyReLU(0.1),
    "elu": lambda: portnn.ELU(0.7),
    "gelu": portnn.GELU,
    "gelu_exact": lambda: portnn.GELU(approximate="none"),
    "silu": portnn.SiLU,
    "softplus": lambda: portnn.Softplus(beta=2.0, threshold=1.5),
    "mish": portnn.Mish,
    "selu": portnn.SELU,
    "log_softmax": portnn.LogSoftmax,
    "log_softmax_axis0": lambda: portnn.LogSoftmax(axis=0),
    "prelu": lambda: portnn.PReLU(init=0.1),
    "prelu_per_channel": lambda: portnn.PReLU(4, init=0.3),
    "softmax": portnn.Softmax,
    "softmax_axis0": lambda: portnn.Softmax(axis=0),
    "sequential": lambda: portnn.Sequential(
        portnn.Dense(4, 5), portnn.Tanh(), portnn.Dense(5, 3), portnn.Sigmoid()),
}


def _input(backend, shape=(2, 4), seed=1):
    x = Generator(seed).normal(shape, dtype="float64", backend=backend)
    # Keep kinks (ReLU at 0) a finite-difference step away.
    xp = backend.xp
    return xp.where(xp.abs(x) < 1e-3, x + 1e-2, x)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_gradcheck(backend, name):
    with portnn.default_dtype("float64"):
        portnn.seed(0)
        layer = LAYERS[name]()
    result = portnn.gradcheck(layer, _input(backend))
    assert result.ok, str(result)
    assert "input" in result.errors
    assert len(result.errors) == 1 + len(layer.parameters())


def test_dense_gradcheck_on_sequence_input(backend):
    with portnn.default_dtype("float64"):
        layer = portnn.Dense(4, 3)
    assert portnn.gradcheck(layer, _input(backend, (2, 3, 4))).ok


@pytest.mark.parametrize("training", [False, True])
def test_dropout_gradcheck(backend, training):
    layer = portnn.Sequential(portnn.Dense(4, 6, dtype="float64"),
                              portnn.Dropout(0.4))
    assert portnn.gradcheck(layer, _input(backend), training=training).ok


def _float_target(backend, shape, seed=2):
    return Generator(seed).uniform(shape, dtype="float64", backend=backend)


class _SampleWeighted(portnn.Loss):
    """A loss with fixed sample weights, for the gradient check."""

    def __init__(self, inner, weights):
        super().__init__(inner.reduction)
        self.inner, self.weights = inner, weights

    def forward(self, pred, target, sample_weight=None):
        return self.inner.forward(pred, target, sample_weight=self.weights)

    def backward(self):
        return self.inner.backward()


def _loss_cases(backend):
    xp = backend.xp
    pred = _input(backend, (3, 4))
    probs = Generator(3).uniform((3, 4), 0.05, 0.95, dtype="float64", backend=backend)
    labels = backend.asarray([0, 3, 1])
    onehot = portnn.data.one_hot(labels, 4, dtype=xp.float64)
    binary = xp.astype(_float_target(backend, (3, 4)) > 0.5, xp.float64)
    return {
        "mse": (portnn.MSE(), pred, _float_target(backend, (3, 4))),
        "mse_sum": (portnn.MSE("sum"), pred, _float_target(backend, (3, 4))),
        "mae": (portnn.MAE(), pred, _float_target(backend, (3, 4))),
        "huber": (portnn.Huber(0.5), pred, _float_target(backend, (3, 4))),
        "bce": (portnn.BCE(), probs, binary),
        "bce_soft": (portnn.BCE("sum"), probs, _float_target(backend, (3, 4))),
        "bce_logits": (portnn.BCEWithLogits(), pred, binary),
        "ce_labels": (portnn.CrossEntropy(), pred, labels),
        "ce_onehot": (portnn.CrossEntropy(), pred, onehot),
        "ce_smoothing": (portnn.CrossEntropy(label_smoothing=0.1), pred, labels),
        "ce_sum": (portnn.CrossEntropy(reduction="sum"), pred, labels),
        "ce_class_axis1": (portnn.CrossEntropy(axis=1, label_smoothing=0.1),
                           _input(backend, (2, 4, 3)),
                           backend.asarray([[0, 3, 1], [2, 2, 0]])),
        "ce_soft": (portnn.CrossEntropy(), pred, _float_target(backend, (3, 4))),
        "ce_sequence": (portnn.CrossEntropy(), _input(backend, (2, 3, 4)),
                        backend.asarray([[0, 1, 2], [3, 3, 0]])),
        # Keras's categorical_crossentropy: unnormalized probabilities in
        "ce_probs_labels": (portnn.CrossEntropy(from_logits=False), probs, labels),
        "ce_probs_smoothing": (
            portnn.CrossEntropy(label_smoothing=0.1, from_logits=False), probs,
            onehot),
        # class weights (PyTorch's semantics) and sample weights (Keras's)
        "ce_class_weights": (portnn.CrossEntropy(weight=[1.0, 2.0, 0.5, 3.0]),
                             pred, labels),
        "ce_class_weights_smoothing": (
            portnn.CrossEntropy(label_smoothing=0.2, weight=[1.0, 2.0, 0.5, 3.0]),
            pred, labels),
        "ce_sample_weights": (_SampleWeighted(
            portnn.CrossEntropy(), backend.asarray([0.5, 2.0, 1.0])), pred, labels),
        "ce_sequence_sample_weights": (_SampleWeighted(
            portnn.CrossEntropy(), backend.asarray([3.0, 0.5])),
            _input(backend, (2, 3, 4)), backend.asarray([[0, 1, 2], [3, 3, 0]])),
        "mse_sample_weights": (_SampleWeighted(
            portnn.MSE(), backend.asarray([0.5, 2.0, 1.0])), pred,
            _float_target(backend, (3, 4))),
        "huber_sample_weights": (_SampleWeighted(
            portnn.Huber(0.5), backend.asarray([0.5, 2.0, 1.0])), pred,
            _float_target(backend, (3, 4))),
        "bce_pos_weight": (portnn.BCE(pos_weight=[1.0, 3.0, 0.5, 2.0]), probs, binary),
        "bce_logits_pos_weight": (portnn.BCEWithLogits(pos_weight=2.5), pred, binary),
        "bce_logits_sample_weights": (_SampleWeighted(
            portnn.BCEWithLogits(), backend.asarray([0.5, 2.0, 1.0])), pred, binary),
    }


LOSS_NAMES = ["mse", "mse_sum", "mae", "huber", "bce", "bce_soft", "bce_logits",
              "ce_labels", "ce_onehot", "ce_smoothing", "ce_sum", "ce_class_axis1",
              "ce_soft", "ce_sequence", "ce_probs_labels", "ce_probs_smoothing",
              "ce_class_weights", "ce_class_weights_smoothing", "ce_sample_weights",
              "ce_sequence_sample_weights", "mse_sample_weights",
              "huber_sample_weights", "bce_pos_weight", "bce_logits_pos_weight",
              "bce_logits_sample_weights"]


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_gradcheck(backend, name):
    loss, pred, target = _loss_cases(backend)[name]
    result = portnn.gradcheck(loss, (pred, target))
    assert result.ok, str(result)
    value = loss(pred, target)
    assert value.ndim == 0


def test_loss_case_list_is_complete(backend):
    assert sorted(_loss_cases(backend)) == sorted(LOSS_NAMES)


class _WrongTanh(portnn.Tanh):
    def backward(self, dy):
        return dy * (1.0 - self._y)  # forgot the square


def test_gradcheck_catches_a_wrong_backward(backend):
    with pytest.raises(portnn.GradcheckError, match="input"):
        portnn.gradcheck(_WrongTanh(), _input(backend))


def test_gradcheck_catches_a_wrong_parameter_gradient(backend):
    class WrongBias(portnn.Dense):
        def backward(self, dy):
            dx = super().backward(dy)
            self.b.grad = self.b.grad * 2.0
            return dx

    with portnn.default_dtype("float64"):
        layer = WrongBias(4, 3)
    result = portnn.gradcheck(layer, _input(backend), raise_exception=False)
    assert not result.ok
    assert result.errors["b"] > result.atol
    assert result.errors["W"] <= result.atol


def test_gradcheck_restores_parameters(backend):
    layer = portnn.Dense(4, 3)
    before = np.array(backend.to_numpy(layer.W.value))
    portnn.gradcheck(layer, _input(backend))
    assert layer.W.dtype == backend.xp.float32
    assert layer.W.grad is None
    np.testing.assert_array_equal(backend.to_numpy(layer.W.value), before)
