"""Transposed convolutions beyond the oracle (tests/test_deep_torch_oracle.py)
and the gradchecks (tests/test_deep_gradcheck.py): lazy sizes, summary,
checkpoints on every backend, and the errors a user meets."""

from __future__ import annotations

import numpy as np
import pytest

import portnn

from .conftest import to_np


def _decoder():
    return portnn.Sequential(
        portnn.Conv2DTranspose(4, kernel_size=3, stride=2, padding="same"),
        portnn.ReLU(),
        portnn.Conv2DTranspose(4, 2, 3, stride=2, padding=1, output_padding=1,
                               groups=2),
        portnn.Flatten(), portnn.Dense(3))


def test_a_lazy_transposed_convolution_builds_and_sums_up():
    model = _decoder().build((3, 2, 2))
    text = model.summary(print_fn=None)
    assert "(None, 4, 4, 4)" in text and "(None, 2, 8, 8)" in text
    # W (in, out // groups, k, k) plus one bias per output channel
    assert model[0].W.shape == (3, 4, 3, 3)
    assert model[2].W.shape == (4, 1, 3, 3)
    assert model.num_parameters() == (3 * 4 * 9 + 4) + (4 * 1 * 9 + 2) + (128 * 3 + 3)


def test_checkpoints_round_trip(backend, tmp_path):
    with portnn.use_backend(backend.spec):
        portnn.seed(1)
        model = _decoder()
        model.add(portnn.Reshape((3, 1)))
        model.add(portnn.Conv1DTranspose(2, kernel_size=2, stride=2, padding="same"))
        x = np.random.default_rng(0).normal(size=(5, 3, 2, 2)).astype(np.float32)
        y = model.predict(x)
        assert tuple(y.shape) == (5, 2, 2)
        model.save(tmp_path / "up.safetensors")
    loaded = portnn.load(tmp_path / "up.safetensors", backend="numpy")
    assert repr(loaded) == repr(model)
    assert loaded[2].output_padding == (1, 1) and loaded[0].padding == "same"
    np.testing.assert_allclose(to_np(loaded.predict(x)), to_np(y), rtol=1e-5,
                               atol=1e-6)


def test_wrong_input_names_the_layer_and_both_shapes():
    layer = portnn.Conv2DTranspose(3, 2, 3)
    with pytest.raises(ValueError, match=r"Conv2DTranspose: expected input .* with 3 "
                       r"channels, got shape \(1, 4, 5, 5\)"):
        layer(np.ones((1, 4, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"Conv1DTranspose: expected input \(batch, "
                       r"channels, length\)"):
        portnn.Conv1DTranspose(3, 2, 3)(np.ones((1, 3, 5, 5), np.float32))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"stride": 2, "output_padding": 2}, "output_padding .* smaller than the stride"),
    ({"output_padding": (1, 0), "dilation": (2, 1)}, None),  # < dilation: allowed
    ({"output_padding": -1}, "output_padding must be an int >= 0"),
    ({"output_padding": (1, 2, 3)}, "output_padding must be an int >= 0 or 2"),
    ({"kernel_size": 1, "stride": 2, "padding": "same"}, "kernel at least as large"),
    ({"padding": "full"}, "padding must be"),
])
def test_bad_arguments_say_what_is_allowed(kwargs, match):
    kwargs = {"kernel_size": 3, **kwargs}
    if match is None:
        layer = portnn.Conv2DTranspose(2, 2, **kwargs)
        assert layer(np.ones((1, 2, 3, 3), np.float32)).shape == (1, 2, 8, 5)
        return
    with pytest.raises(ValueError, match=match):
        portnn.Conv2DTranspose(2, 2, **kwargs)


def test_padding_that_crops_everything_is_refused():
    with pytest.raises(ValueError, match="crops the whole output"):
        portnn.Conv2DTranspose(1, 1, 3, padding=2)(np.ones((1, 1, 1, 1), np.float32))


def test_it_is_the_adjoint_of_the_convolution_with_the_same_weights(backend):
    # <conv(x), y> == <x, conv_transpose(y)> for every x, y: the definition
    rng = np.random.default_rng(0)
    with portnn.use_backend(backend.spec), portnn.default_dtype("float64"):
        conv = portnn.Conv2D(3, 4, 3, stride=2, padding=1, bias=False)
        up = portnn.Conv2DTranspose(4, 3, 3, stride=2, padding=1, output_padding=1,
                                    bias=False)
    up.W.value = conv.W.value
    x = backend.asarray(rng.normal(size=(2, 3, 8, 8)))
    y = backend.asarray(rng.normal(size=(2, 4, 4, 4)))
    left = float(np.sum(to_np(conv(x)) * to_np(y)))
    right = float(np.sum(to_np(x) * to_np(up(y))))
    assert left == pytest.approx(right, rel=1e-12)
