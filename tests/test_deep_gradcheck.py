"""Finite-difference gradient checks (float64) of the deep layers, on every
backend: inputs, weights and biases, in training and evaluation mode where
they differ, on odd shapes (batch 1, kernel larger than the stride, padding
on one side, sequence length 1)."""

from __future__ import annotations

import pytest

import portnn
from portnn.random import Generator

from .test_gradcheck import _input


class WithArgs(portnn.Layer):
    """Calls the wrapped layer with fixed keyword arguments (masks, state)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer.backend)
        self.layer, self.kwargs = layer, kwargs

    def children(self):
        return [self.layer]

    def forward(self, x, training=False):
        kwargs = {k: v() if callable(v) else v for k, v in self.kwargs.items()}
        return self.layer.forward(x, training, **kwargs)

    def backward(self, dy):
        return self.layer.backward(dy)


def _padding_mask():
    b = portnn.get_backend()
    return b.asarray([[False, False, True, True], [False, False, False, False]])


def _attn_mask():
    b = portnn.get_backend()
    return b.asarray([[False, True, False, True]] * 4)


def _steps(*rows):
    """A (batch, time) mask of real steps (padding anywhere, not only last)."""
    b = portnn.get_backend()
    return lambda: b.asarray([list(r) for r in rows])


def _state(*shape):
    b = portnn.get_backend()
    return lambda: Generator(5).normal(shape, dtype="float64", backend=b)


# name -> (factory, input shape)
CASES = {
    "conv2d": (lambda: portnn.Conv2D(2, 3, 3), (2, 2, 5, 5)),
    "conv2d_stride2_pad1_batch1": (
        lambda: portnn.Conv2D(2, 3, 3, stride=2, padding=1), (1, 2, 5, 6)),
    "conv2d_same_even_kernel": (
        lambda: portnn.Conv2D(2, 2, (2, 4), padding="same"), (1, 2, 4, 5)),
    "conv2d_dilation": (lambda: portnn.Conv2D(2, 3, 3, dilation=2), (2, 2, 6, 5)),
    "conv2d_one_sided_padding": (
        lambda: portnn.Conv2D(2, 2, 3, padding=((0, 1), (2, 0))), (2, 2, 4, 4)),
    "conv2d_depthwise": (
        lambda: portnn.Conv2D(4, 8, 3, padding=1, groups=4), (2, 4, 4, 4)),
    "conv2d_groups_no_bias": (
        lambda: portnn.Conv2D(4, 2, (1, 3), groups=2, bias=False), (2, 4, 3, 4)),
    "conv2d_relu": (
        lambda: portnn.Conv2D(2, 3, 2, stride=(1, 2), activation="relu"),
        (2, 2, 4, 5)),
    "conv1d": (lambda: portnn.Conv1D(3, 4, 3), (2, 3, 7)),
    "conv1d_stride_one_sided": (
        lambda: portnn.Conv1D(3, 4, 3, stride=2, padding=(1, 0)), (1, 3, 6)),
    "conv1d_same_dilated_groups": (
        lambda: portnn.Conv1D(2, 4, 3, padding="same", dilation=2, groups=2),
        (2, 2, 6)),
    "maxpool2d": (lambda: portnn.MaxPool2D(2), (2, 2, 4, 5)),
    "maxpool2d_overlapping_padded": (
        lambda: portnn.MaxPool2D(3, stride=2, padding=1), (1, 2, 5, 5)),
    "avgpool2d": (lambda: portnn.AvgPool2D(2), (2, 2, 4, 4)),
    "avgpool2d_overlapping_padded": (
        lambda: portnn.AvgPool2D(3, stride=1, padding=1), (2, 1, 3, 4)),
    "maxpool1d": (lambda: portnn.MaxPool1D(2), (2, 3, 6)),
    "avgpool1d": (lambda: portnn.AvgPool1D(3, stride=2), (2, 2, 7)),
    "global_avgpool2d": (portnn.GlobalAvgPool2D, (2, 3, 2, 3)),
    "global_maxpool2d": (portnn.GlobalMaxPool2D, (2, 3, 2, 3)),
    "global_maxpool1d": (portnn.GlobalMaxPool1D, (2, 3, 4)),
    "zero_padding2d": (lambda: portnn.ZeroPadding2D(((1, 0), (0, 2))), (2, 2, 3, 3)),
    "zero_padding1d": (lambda: portnn.ZeroPadding1D(1), (2, 2, 3)),
    "cropping2d": (lambda: portnn.Cropping2D(((1, 0), (1, 1))), (2, 2, 3, 4)),
    "cropping1d": (lambda: portnn.Cropping1D((0, 2)), (2, 2, 5)),
    "conv2d_transpose": (lambda: portnn.Conv2DTranspose(2, 3, 3), (2, 2, 3, 3)),
    "conv2d_transpose_stride_crop_output_padding": (
        lambda: portnn.Conv2DTranspose(2, 2, 3, stride=2, padding=1,
                                       output_padding=1), (1, 2, 3, 2)),
    "conv2d_transpose_groups_dilation_no_bias": (
        lambda: portnn.Conv2DTranspose(4, 2, (2, 3), dilation=(2, 1), groups=2,
                                       bias=False, padding=((0, 1), (1, 0))),
        (2, 4, 3, 3)),
    "conv2d_transpose_same_relu": (
        lambda: portnn.Conv2DTranspose(2, 3, 2, stride=2, padding="same",
                                       activation="relu"), (2, 2, 2, 3)),
    "conv1d_transpose": (
        lambda: portnn.Conv1DTranspose(3, 2, 4, stride=3, padding=1,
                                       output_padding=2), (2, 3, 4)),
    "reversible_embedding_reverse": (
        lambda: WithArgs(portnn.ReversibleEmbedding(6, 4), reverse=True), (2, 3, 4)),
    "reversible_embedding_reverse_untied_padding": (
        lambda: WithArgs(portnn.ReversibleEmbedding(5, 3, tie_weights=False,
                                                    padding_idx=1), reverse=True),
        (4, 3)),
    "upsampling2d_nearest": (lambda: portnn.UpSampling2D((2, 3)), (2, 2, 2, 3)),
    "upsampling2d_bilinear": (
        lambda: portnn.UpSampling2D(2, interpolation="bilinear"), (2, 2, 3, 3)),
    "upsampling1d_linear": (
        lambda: portnn.UpSampling1D(3, interpolation="linear"), (2, 2, 4)),
    "permute": (lambda: portnn.Permute((3, 1, 2)), (2, 3, 4, 2)),
    "flatten": (portnn.Flatten, (2, 2, 3, 2)),
    "reshape": (lambda: portnn.Reshape((3, -1)), (2, 12)),
    "batchnorm1d": (lambda: portnn.BatchNorm1D(4), (5, 4)),
    "batchnorm1d_sequence": (lambda: portnn.BatchNorm1D(3), (2, 3, 4)),
    "batchnorm2d": (lambda: portnn.BatchNorm2D(3), (2, 3, 2, 3)),
    "batchnorm2d_no_affine": (lambda: portnn.BatchNorm2D(2, affine=False),
                              (3, 2, 2, 2)),
    "layernorm": (lambda: portnn.LayerNorm(5), (2, 3, 5)),
    "layernorm_2d_shape": (lambda: portnn.LayerNorm((3, 4)), (2, 3, 4)),
    "layernorm_no_affine": (
        lambda: portnn.LayerNorm(4, elementwise_affine=False), (3, 4)),
    "rmsnorm": (lambda: portnn.RMSNorm(5, eps=1e-6), (2, 3, 5)),
    "rmsnorm_2d_shape_default_eps": (lambda: portnn.RMSNorm((3, 4)), (2, 3, 4)),
    "rmsnorm_no_affine": (
        lambda: portnn.RMSNorm(4, elementwise_affine=False), (3, 4)),
    "groupnorm": (lambda: portnn.GroupNorm(2, 4), (2, 4, 3, 2)),
    "groupnorm_sequence_one_group": (lambda: portnn.GroupNorm(1, 3), (2, 3, 5)),
    "groupnorm_instance_no_affine": (
        lambda: portnn.GroupNorm(3, 3, affine=False), (2, 3, 4)),
    "rnn": (lambda: portnn.RNN(3, 4), (2, 3, 3)),
    "rnn_last_step": (lambda: portnn.RNN(3, 4, return_sequences=False), (2, 3, 3)),
    "lstm": (lambda: portnn.LSTM(3, 4), (2, 3, 3)),
    "lstm_last_step_batch1": (
        lambda: portnn.LSTM(2, 3, return_sequences=False), (1, 4, 2)),
    "lstm_length1": (lambda: portnn.LSTM(3, 2), (2, 1, 3)),
    "lstm_initial_state": (
        lambda: WithArgs(portnn.LSTM(3, 4), initial_state=lambda: (
            _state(2, 4)(), _state(2, 4)())), (2, 3, 3)),
    "gru": (lambda: portnn.GRU(3, 4), (2, 3, 3)),
    "gru_last_step_no_bias": (
        lambda: portnn.GRU(3, 4, return_sequences=False, bias=False), (2, 3, 3)),
    "gru_initial_state": (
        lambda: WithArgs(portnn.GRU(2, 3), initial_state=_state(2, 3)), (2, 2, 2)),
    "bidirectional_lstm": (lambda: portnn.Bidirectional(portnn.LSTM(3, 2)),
                           (2, 4, 3)),
    "bidirectional_gru_masked_sum": (
        lambda: WithArgs(portnn.Bidirectional(portnn.GRU(3, 2), merge_mode="sum"),
                         mask=_steps((True, True, True, False),
                                     (True, False, False, False))), (2, 4, 3)),
    "bidirectional_rnn_last_mul": (
        lambda: portnn.Bidirectional(portnn.RNN(2, 3, return_sequences=False),
                                     merge_mode="mul"), (2, 3, 2)),
    "bidirectional_lstm_masked_last_ave": (
        lambda: WithArgs(portnn.Bidirectional(
            portnn.LSTM(2, 3, return_sequences=False), merge_mode="ave"),
            mask=_steps((True, True, False), (True, True, True))), (2, 3, 2)),
    "mha": (lambda: portnn.MultiHeadAttention(8, 2), (2, 3, 8)),
    "mha_causal": (lambda: portnn.MultiHeadAttention(6, 3, causal=True), (2, 4, 6)),
    "mha_padding_mask": (
        lambda: WithArgs(portnn.MultiHeadAttention(4, 2),
                         key_padding_mask=_padding_mask), (2, 4, 4)),
    "mha_attn_mask_no_bias": (
        lambda: WithArgs(portnn.MultiHeadAttention(4, 1, bias=False),
                         attn_mask=_attn_mask), (2, 4, 4)),
    "transformer_encoder": (
        lambda: portnn.TransformerEncoderLayer(8, 2, dim_feedforward=12), (2, 3, 8)),
    "transformer_encoder_causal": (
        lambda: portnn.TransformerEncoderLayer(4, 2, dim_feedforward=6, causal=True),
        (1, 3, 4)),
    "transformer_encoder_dropout": (
        lambda: portnn.TransformerEncoderLayer(4, 2, dim_feedforward=6, dropout=0.3),
        (2, 3, 4)),
    "positional_encoding": (lambda: portnn.PositionalEncoding(6, 4), (2, 3, 4)),
    "positional_encoding_learned": (
        lambda: portnn.PositionalEncoding(5, 3, learned=True), (2, 4, 3)),
    "rnn_masked": (lambda: WithArgs(portnn.RNN(3, 4), mask=_steps(
        (True, True, False), (True, False, True))), (2, 3, 3)),
    "lstm_masked_last_step": (
        lambda: WithArgs(portnn.LSTM(3, 4, return_sequences=False), mask=_steps(
            (True, True, False), (False, True, True))), (2, 3, 3)),
    "gru_masked": (lambda: WithArgs(portnn.GRU(2, 3), mask=_steps(
        (True, False, True, False), (True, True, True, True))), (2, 4, 2)),
    "mha_sequence_mask": (
        lambda: WithArgs(portnn.MultiHeadAttention(4, 2), mask=_steps(
            (True, True, False, True), (True, False, False, False))), (2, 4, 4)),
    "global_avgpool1d": (portnn.GlobalAvgPool1D, (2, 3, 4)),
    "global_avgpool1d_masked": (
        lambda: WithArgs(portnn.GlobalAvgPool1D(data_format="channels_last"),
                         mask=_steps((True, False, True), (False, False, False))),
        (2, 3, 4)),
    "masking": (lambda: portnn.Masking(mask_value=0.5), (2, 3, 4)),
    "spatial_dropout1d": (lambda: portnn.SpatialDropout1D(0.4), (3, 4, 5)),
    "spatial_dropout2d": (lambda: portnn.SpatialDropout2D(0.4), (2, 4, 3, 3)),
    "residual": (lambda: portnn.Residual(portnn.Sequential(
        portnn.Dense(4, 3), portnn.Tanh(), portnn.Dense(3, 4))), (2, 4)),
}

# layers whose backward differs between training and evaluation
TRAINING_MODES = {"batchnorm1d", "batchnorm1d_sequence", "batchnorm2d",
                  "batchnorm2d_no_affine", "transformer_encoder_dropout",
                  "spatial_dropout1d", "spatial_dropout2d"}
RUNS = [(name, False) for name in sorted(CASES)] + [
    (name, True) for name in sorted(TRAINING_MODES)]


def _make(backend, name, training):
    factory, shape = CASES[name]
    with portnn.default_dtype("float64"):
        portnn.seed(0)
        layer = factory()
        if name.startswith("batchnorm") and not training:
            # eval uses running statistics: give them non-trivial values
            layer.forward(_input(backend, shape, seed=9) * 2.0 + 1.0, training=True)
    return layer, _input(backend, shape)


@pytest.mark.parametrize(("name", "training"), RUNS,
                         ids=[f"{n}-{'train' if t else 'eval'}" for n, t in RUNS])
def test_deep_layer_gradcheck(backend, name, training):
    layer, x = _make(backend, name, training)
    result = portnn.gradcheck(layer, x, training=training)
    assert result.ok, str(result)
    assert sorted(result.errors) == sorted(
        ["input"] + [n for n, _ in layer.named_parameters()])


@pytest.mark.parametrize("ids", [[[1, 4, 1], [0, 4, 4]], [[2]]])
def test_embedding_gradcheck_with_repeated_ids(backend, ids):
    with portnn.default_dtype("float64"):
        layer = portnn.Embedding(5, 3)
    result = portnn.gradcheck(layer, backend.asarray(ids))
    assert result.ok, str(result)
    assert sorted(result.errors) == ["W"]  # ids have no gradient


def test_gradcheck_catches_a_wrong_conv_backward(backend):
    class Wrong(portnn.Conv2D):
        def backward(self, dy):
            return super().backward(dy) * 1.01

    with portnn.default_dtype("float64"):
        layer = Wrong(2, 2, 3, padding=1)
    with pytest.raises(portnn.GradcheckError, match="input"):
        portnn.gradcheck(layer, _input(backend, (1, 2, 3, 3)))
