"""Deep layers: clear errors on bad input, checkpoints, cross-backend
training of a small CNN and a small Transformer."""

from __future__ import annotations

import re

import numpy as np
import pytest

import portnn

from .conftest import to_np


def _x(backend, *shape, dtype="float32"):
    rs = np.random.default_rng(0)
    return backend.asarray(rs.normal(size=shape).astype(dtype))


# (layer factory, input shape, words the message must contain)
BAD_INPUT = {
    "conv2d_channels": (lambda: portnn.Conv2D(3, 4, 3), (2, 1, 8, 8),
                        ["Conv2D", "3 channels", "(2, 1, 8, 8)"]),
    "conv2d_rank": (lambda: portnn.Conv2D(3, 4, 3), (2, 3, 8),
                    ["Conv2D", "(batch, channels, height, width)", "(2, 3, 8)"]),
    "conv2d_kernel_too_large": (lambda: portnn.Conv2D(1, 2, 5, padding=1),
                                (2, 1, 2, 8), ["Conv2D", "larger than the padded",
                                               "(4, 10)", "(2, 1, 2, 8)"]),
    "conv1d_dilated_kernel_too_large": (
        lambda: portnn.Conv1D(1, 1, 3, dilation=4), (1, 1, 8),
        ["Conv1D", "dilated extent (9,)", "(8,)", "(1, 1, 8)"]),
    "maxpool_kernel_too_large": (lambda: portnn.MaxPool2D(4), (1, 1, 3, 8),
                                 ["MaxPool2D", "(4, 4)", "(3, 8)", "(1, 1, 3, 8)"]),
    "batchnorm_channels": (lambda: portnn.BatchNorm2D(8), (2, 4, 3, 3),
                           ["BatchNorm2D", "8 channels", "(2, 4, 3, 3)"]),
    "layernorm_shape": (lambda: portnn.LayerNorm(6), (2, 5),
                        ["LayerNorm", "(6,)", "(2, 5)"]),
    "lstm_features": (lambda: portnn.LSTM(4, 8), (2, 7, 5),
                      ["LSTM", "4 features", "(2, 7, 5)"]),
    "mha_width": (lambda: portnn.MultiHeadAttention(8, 2), (2, 5, 6),
                  ["MultiHeadAttention", "(batch, time, 8)", "(2, 5, 6)"]),
    "positional_table_too_short": (lambda: portnn.PositionalEncoding(10, 4),
                                   (2, 12, 4), ["PositionalEncoding", "time <= 10",
                                                "(2, 12, 4)", "max_len"]),
    "reshape_size": (lambda: portnn.Reshape((5, 5)), (2, 24),
                     ["Reshape", "(24,)", "(5, 5)"]),
    "global_pool_rank": (portnn.GlobalAvgPool2D, (2, 3, 4),
                         ["GlobalAvgPool2D", "(2, 3, 4)"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_names_layer_expected_and_received(backend, case):
    make, shape, words = BAD_INPUT[case]
    with pytest.raises(ValueError) as info:
        make()(_x(backend, *shape), training=True)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize(("kwargs", "mask_shape"), [
    ({"attn_mask": True}, (4, 5)), ({"key_padding_mask": True}, (3, 5))])
def test_mask_of_wrong_shape_is_rejected(backend, kwargs, mask_shape):
    layer = portnn.MultiHeadAttention(8, 2)
    mask = backend.asarray(np.zeros(mask_shape, dtype=bool))
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=re.escape(name)) as info:
        layer(_x(backend, 2, 5, 8), **{name: mask})
    assert str(mask_shape) in str(info.value)
    expected = (5, 5) if name == "attn_mask" else (2, 5)
    assert str(expected) in str(info.value)


def test_mask_must_be_boolean(backend):
    layer = portnn.TransformerEncoderLayer(8, 2)
    with pytest.raises(ValueError, match="boolean"):
        layer(_x(backend, 2, 5, 8), attn_mask=_x(backend, 5, 5))


def test_initial_state_of_wrong_shape_is_rejected(backend):
    layer = portnn.LSTM(3, 4)
    with pytest.raises(ValueError, match=re.escape("(2, 4)")):
        layer(_x(backend, 2, 5, 3), initial_state=(_x(backend, 2, 4),
                                                   _x(backend, 1, 4)))


def test_embedding_rejects_out_of_range_and_float_ids(backend):
    emb = portnn.Embedding(5, 3)
    with pytest.raises(IndexError, match=r"\[0, 5\).*from 0 to 7"):
        emb(backend.asarray([[0, 7]]))
    with pytest.raises(IndexError, match="from -1"):
        emb(backend.asarray([[-1, 2]]))
    with pytest.raises(TypeError, match="integer token ids"):
        emb(_x(backend, 2, 3))


def test_batchnorm_training_needs_two_values_per_channel(backend):
    with pytest.raises(ValueError, match="more than one value per channel"):
        portnn.BatchNorm1D(3)(_x(backend, 1, 3), training=True)
    assert portnn.BatchNorm1D(3)(_x(backend, 1, 3)).shape == (1, 3)  # eval is fine


@pytest.mark.parametrize(("make", "match"), [
    (lambda: portnn.Conv2D(4, 6, 3, groups=3), "divisible by groups"),
    (lambda: portnn.Conv2D(2, 2, 3, stride=2, padding="same"), "stride 1"),
    (lambda: portnn.Conv2D(2, 2, 0), "kernel_size"),
    (lambda: portnn.Conv2D(2, 2, 3, padding=(1, 2, 3)), "padding"),
    (lambda: portnn.MaxPool2D(2, padding=2), "half the kernel"),
    (lambda: portnn.MultiHeadAttention(10, 3), "divisible by num_heads"),
    (lambda: portnn.Reshape((2, -1, -1)), "at most one -1"),
    (lambda: portnn.BatchNorm1D(4, momentum=0.0), "momentum"),
])
def test_bad_constructor_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_output_shapes_follow_the_size_formula(backend):
    x = _x(backend, 2, 3, 11, 9)
    conv = portnn.Conv2D(3, 5, (3, 2), stride=(2, 3), padding=(1, 2), dilation=(2, 1))
    # (size + 2p - d(k-1) - 1) // s + 1
    assert conv(x).shape == (2, 5, (11 + 2 - 4 - 1) // 2 + 1, (9 + 4 - 1 - 1) // 3 + 1)
    assert portnn.Conv2D(3, 4, 4, padding="same")(x).shape == (2, 4, 11, 9)
    assert portnn.MaxPool2D(2)(x).shape == (2, 3, 5, 4)
    assert portnn.Conv1D(3, 2, 3, stride=2)(_x(backend, 1, 3, 10)).shape == (1, 2, 4)


def _cnn():
    return portnn.Sequential(
        portnn.Conv2D(1, 4, 3, padding=1), portnn.BatchNorm2D(4), portnn.ReLU(),
        portnn.MaxPool2D(2), portnn.Conv2D(4, 6, 3, padding="same", groups=2),
        portnn.ReLU(), portnn.GlobalAvgPool2D(), portnn.Dense(6, 3))


def _transformer(vocab=7, t=6, d=8):
    return portnn.Sequential(
        portnn.Embedding(vocab, d), portnn.PositionalEncoding(t, d),
        portnn.TransformerEncoderLayer(d, 2, dim_feedforward=16, causal=True),
        portnn.LayerNorm(d), portnn.Dense(d, vocab))


def _lstm():
    return portnn.Sequential(portnn.LSTM(3, 8),
                             portnn.GRU(8, 6, return_sequences=False),
                             portnn.Dense(6, 3))


def _data(kind):
    rs = np.random.default_rng(0)
    if kind == "cnn":
        x = rs.normal(size=(32, 1, 6, 6)).astype(np.float32)
        return x, (x[:, 0, :3].sum(axis=(1, 2)) > 0).astype(np.int64) + (
            x[:, 0, 3:, :3].sum(axis=(1, 2)) > 1).astype(np.int64)
    if kind == "lstm":
        x = rs.normal(size=(32, 5, 3)).astype(np.float32)
        return x, (x[:, :, 0].sum(axis=1) > 0).astype(np.int64) * 2
    ids = rs.integers(0, 7, size=(32, 6))
    return ids, np.sort(ids, axis=1)


MODELS = {"cnn": _cnn, "transformer": _transformer, "lstm": _lstm}


def _train(backend_name, kind, steps=10):
    with portnn.use_backend(backend_name) as b:
        portnn.seed(7)
        model = MODELS[kind]()
        opt = portnn.Adam(model.parameters(), lr=0.01)
        loss = portnn.CrossEntropy()
        x, y = _data(kind)
        x, y = b.asarray(x), b.asarray(y)
        losses = []
        for step in range(steps):
            lo = (step * 8) % 32
            value, _ = model.train_step(x[lo:lo + 8, ...], y[lo:lo + 8, ...], loss, opt)
            losses.append(float(value))
        return np.array(losses)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_ten_steps_give_the_same_losses_on_every_backend(backend, kind):
    ref = _train("numpy", kind)
    got = _train(backend.spec, kind)
    # float32 through 10 Adam steps: matmul summation order only
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    assert ref[-3:].mean() < ref[:3].mean()  # it trained


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_checkpoint_round_trip_of_deep_models(backend, kind, tmp_path):
    portnn.seed(3)
    model = MODELS[kind]()
    x, y = _data(kind)
    model.fit(x, y, loss=portnn.CrossEntropy(), optimizer=portnn.Adam(
        model.parameters(), lr=0.01), epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "deep.safetensors"
    model.save(path)
    loaded = portnn.load(path, backend="numpy")
    assert repr(loaded) == repr(model)
    x_b = backend.asarray(x)
    np.testing.assert_allclose(to_np(loaded.predict(np.asarray(x))),
                               to_np(model.predict(x_b)), rtol=1e-5, atol=1e-6)
    for key, value in model.state_dict().items():  # running stats included
        np.testing.assert_array_equal(to_np(loaded.state_dict()[key]), to_np(value))


def test_cropping_and_permute_match_numpy():
    x = np.arange(2 * 3 * 5 * 6, dtype=np.float32).reshape(2, 3, 5, 6)
    np.testing.assert_array_equal(
        to_np(portnn.Cropping2D(((1, 2), (0, 3)))(x)), x[:, :, 1:3, 0:3])
    np.testing.assert_array_equal(to_np(portnn.Permute((3, 1, 2))(x)),
                                  np.transpose(x, (0, 3, 1, 2)))
    with pytest.raises(ValueError, match="leaves nothing"):
        portnn.Cropping1D((3, 3))(x[:, :, 0, :])
    with pytest.raises(ValueError, match="Permute: dims must order the axes 1..2"):
        portnn.Permute((1, 3))
    with pytest.raises(ValueError, match="interpolation must be one of"):
        portnn.UpSampling1D(2, interpolation="bilinear")
    with pytest.raises(ValueError, match=r"UpSampling2D: expected input \(batch, "
                       r"channels, height, width\)"):
        portnn.UpSampling2D(2)(x[0])
