"""The layer catalogue under mixed precision: each new layer computes in the
half type (its output is half), keeps float32 masters, and trains to the
float32 run's loss within half precision's error."""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from portnn.training.precision import LossScaler

from .test_precision import _half_backends


class Spy(portnn.Identity):
    """Records the dtype of what reaches it in training steps."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x, training=False):
        if training:
            self.seen.append(x.dtype)
        return x


def _image(layer, shape=(2, 4, 4)):
    return (lambda spy: portnn.Sequential(
        portnn.Conv2D(shape[0], 4, 3, padding=1), layer(), spy,
        portnn.Flatten(), portnn.Dense(3)), shape)


def _sequence(layer, shape=(5, 4)):
    return (lambda spy: portnn.Sequential(
        portnn.Dense(shape[-1], 4), layer(), spy, portnn.GlobalAvgPool1D(
            data_format="channels_last"), portnn.Dense(3)), shape)


def _decoder(spy):
    src = portnn.Input((5, 4))
    h = portnn.TransformerDecoderLayer(4, 2, 8)([portnn.Dense(4)(src), src])
    return portnn.Model(inputs=src, outputs=portnn.Dense(3)(
        portnn.GlobalAvgPool1D(data_format="channels_last")(spy(h))))


def _tied(spy):
    ids = portnn.Input((5,), dtype="int64")
    table = portnn.ReversibleEmbedding(6, 4)
    logits = spy(table(portnn.Dense(4, 4)(table(ids)), reverse=True))
    return portnn.Model(inputs=ids, outputs=portnn.Dense(3)(
        portnn.GlobalAvgPool1D(data_format="channels_last")(logits)))


CASES = {
    "conv2d_transpose": _image(lambda: portnn.Conv2DTranspose(
        4, 2, 3, stride=2, padding="same")),
    "conv1d_transpose": (lambda spy: portnn.Sequential(
        portnn.Conv1D(2, 4, 3), portnn.Conv1DTranspose(4, 2, 3, stride=2), spy,
        portnn.Flatten(), portnn.Dense(3)), (2, 6)),
    "groupnorm": _image(lambda: portnn.GroupNorm(2, 4)),
    "upsampling2d_bilinear": _image(
        lambda: portnn.UpSampling2D(2, interpolation="bilinear")),
    "spatial_dropout2d": _image(lambda: portnn.SpatialDropout2D(0.2)),
    "zero_padding_cropping": _image(lambda: portnn.Sequential(
        portnn.ZeroPadding2D(1), portnn.Cropping2D(((0, 1), (1, 0))))),
    "global_max_pool": (lambda spy: portnn.Sequential(
        portnn.Conv2D(2, 4, 3), portnn.GlobalMaxPool2D(), spy, portnn.Dense(3)),
        (2, 4, 4)),
    "rmsnorm": _sequence(lambda: portnn.RMSNorm(4)),
    "silu": _sequence(portnn.SiLU),
    "softplus": _sequence(portnn.Softplus),
    "mish": _sequence(portnn.Mish),
    "selu": _sequence(portnn.SELU),
    "prelu": _image(lambda: portnn.PReLU(4)),
    "gelu_exact": _sequence(lambda: portnn.GELU(approximate="none")),
    "log_softmax": _sequence(portnn.LogSoftmax),
    "permute": _sequence(lambda: portnn.Sequential(
        portnn.Permute((2, 1)), portnn.Permute((2, 1)))),
    "bidirectional_gru": _sequence(lambda: portnn.Bidirectional(
        portnn.GRU(4, 2))),
    "transformer_encoder_post_norm": _sequence(lambda: portnn.TransformerEncoderLayer(
        4, 2, 8, norm_first=False, activation="gelu")),
    "transformer_decoder": (_decoder, (5, 4)),
    "reversible_embedding": (_tied, None),
}


def _fit(spec, name, policy):
    factory, shape = CASES[name]
    with portnn.use_backend(spec) as b:
        portnn.seed(0)
        spy = Spy()
        model = factory(spy)
        # a scale the gradients cannot overflow: a skipped step (the default
        # 2**16 overflows once in the decoder's first step) would put the
        # two runs one step apart
        model.loss_scaler = LossScaler(b, init_scale=2.0**8)
        rs = np.random.default_rng(0)
        x = (rs.integers(0, 6, (32, 5)) if shape is None
             else rs.normal(size=(32, *shape)).astype(np.float32))
        y = np.arange(32) % 3 if shape is not None else x[:, 0] % 3
        history = model.fit(x, y, loss="cross_entropy",
                            optimizer=portnn.Adam(model.parameters(), lr=1e-2),
                            epochs=3, batch_size=8, verbose=0, precision=policy)
        return model, spy, history.history["loss"]


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize(("spec", "policy"), _half_backends())
def test_the_layer_computes_in_the_half_type_and_trains(spec, policy, name):
    model, spy, losses = _fit(spec, name, policy)
    _, _, reference = _fit(spec, name, "float32")
    with portnn.use_backend(spec) as b:
        half = b.dtype(policy.removeprefix("mixed_"))
        assert spy.seen and all(dt == half for dt in spy.seen)
        assert all(p.dtype == b.xp.float32 for p in model.parameters())
    assert float(model.loss_scaler.scale) == 2.0**8  # no step was skipped
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.99 * losses[0]
    # 3 epochs of Adam on the same batches: the half type's rounding only
    # (bfloat16 keeps 8 bits of mantissa, float16 11); the worst case seen
    # is 3.3e-4 for float16 and 1.5e-3 for bfloat16 (the decoder)
    tol = 1e-2 if policy == "mixed_bfloat16" else 2e-3
    np.testing.assert_allclose(losses, reference, rtol=tol)
