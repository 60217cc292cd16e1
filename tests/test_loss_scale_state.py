"""The float16 loss scale is training state (issue 18): it goes on from one
`fit` to the next and through a checkpoint, and a run whose gradients are
NaN at every scale stops with TrainingDivergedError instead of skipping
every step in silence."""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from portnn.layers.base import Layer


def _half_backends():
    out = ["numpy"]
    try:
        portnn.backends.get("torch")
    except portnn.backends.BackendUnavailableError:
        return out
    return [*out, "torch"]


@pytest.fixture(params=_half_backends())
def half(request):
    with portnn.use_backend(request.param) as b:
        yield b


def _big_regression(n=64, seed=0):
    # targets in the hundreds: the first scaled gradients overflow float16
    rs = np.random.default_rng(seed)
    x = rs.normal(size=(n, 8)).astype(np.float32) * 4
    return x, (x @ rs.normal(size=(8, 1)) * 300).astype(np.float32)


def _regressor():
    portnn.seed(0)
    return portnn.Sequential(portnn.Dense(8, 32), portnn.ReLU(), portnn.Dense(32, 1))


def test_the_loss_scale_goes_on_across_fits(half):
    x, y = _big_regression()
    model = _regressor()
    opt = portnn.SGD(model.parameters(), lr=1e-6)
    scaler = None
    for _ in range(6):  # six one-epoch fits of 8 batches: 48 batches
        model.fit(x, y, loss="mse", optimizer=opt, batch_size=8, verbose=0,
                  precision="mixed_float16")
        assert scaler is None or getattr(model, "loss_scaler", None) is scaler
        scaler = model.loss_scaler
    # the backing off from 2**16 happens once, not in every fit
    assert float(scaler.scale) < 2.0**16
    assert opt.steps >= 24, opt.steps  # 31 here; 0-1 a fit when it restarted


def test_the_loss_scale_is_saved_and_loaded(half, tmp_path):
    x, y = _big_regression()
    model = _regressor()
    model.fit(x, y, loss="mse", optimizer=portnn.SGD(model.parameters(), lr=1e-6),
              batch_size=8, verbose=0, precision="mixed_float16")
    scale = float(model.loss_scaler.scale)
    assert scale < 2.0**16
    model.save(tmp_path / "m.safetensors")
    loaded = portnn.load(tmp_path / "m.safetensors", backend=half)
    assert float(loaded.loss_scaler.scale) == scale
    assert loaded.loss_scaler.state_dict() == model.loss_scaler.state_dict()
    # the loaded model goes on exactly as the saved one does
    for m in (model, loaded):
        m.fit(x, y, batch_size=8, epochs=3, verbose=0, precision="mixed_float16",
              shuffle=False)
    assert loaded.optimizer.steps == model.optimizer.steps > 0
    assert loaded.loss_scaler.state_dict() == model.loss_scaler.state_dict()


def test_a_malformed_loss_scale_in_a_checkpoint_is_refused(tmp_path):
    from portnn.checkpoint import CheckpointError
    from portnn.safetensors import read, write_atomic

    model = _regressor()
    model.save(tmp_path / "m.safetensors")
    tensors, meta = read(tmp_path / "m.safetensors")
    meta["portnn.loss_scale"] = '{"scale": -1.0, "growth_tracker": 0}'
    write_atomic(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match="malformed loss-scale state"):
        portnn.load(tmp_path / "bad.safetensors")


class NaNGradient(Layer):
    """The identity, with a parameter whose gradient is always NaN."""

    def __init__(self, features):
        super().__init__()
        xp = self.backend.xp
        self.w = self.add_parameter("w", xp.zeros((features,), dtype=xp.float32))

    def forward(self, x, training=False):
        return x

    def backward(self, dy):
        xp = self.backend.xp
        self.w.grad = xp.full(self.w.shape, float("nan"), dtype=self.w.dtype)
        return dy


@pytest.mark.parametrize("batches_per_epoch", [64, 8])
def test_nan_gradients_under_float16_raise_and_name_the_layer(half,
                                                               batches_per_epoch):
    x, y = _big_regression(n=8 * batches_per_epoch)
    y = y / 300.0  # no overflow: only the NaN gradient skips steps
    portnn.seed(0)
    model = portnn.Sequential(portnn.Dense(8, 8), NaNGradient(8), portnn.Dense(8, 1))
    with pytest.raises(portnn.TrainingDivergedError,
                       match=r"mixed_float16 no step succeeded for 32 batches.*"
                             r"first non-finite: 1\.w \(NaNGradient\)") as info:
        model.fit(x, y, loss="mse", batch_size=8, epochs=10, verbose=0,
                  precision="mixed_float16")
    # 32 batches in a row: within the first epoch, or the fourth of 8 batches
    assert len(info.value.history.epoch) == (0 if batches_per_epoch == 64 else 3)


def test_float32_raises_on_the_same_nan_gradients():
    x, y = _big_regression()
    portnn.seed(0)
    model = portnn.Sequential(portnn.Dense(8, 8), NaNGradient(8), portnn.Dense(8, 1))
    with pytest.raises(portnn.TrainingDivergedError, match="a gradient became NaN"):
        model.fit(x, y / 300, loss="mse", batch_size=8, verbose=0)


def test_inputs_beyond_float16s_range_are_named(half):
    x, y = _big_regression()
    x[3, 2] = 1e6
    model = _regressor()
    with pytest.raises(ValueError, match=r"x holds values up to 1e\+06, beyond "
                                         r"float16's range \(\+-65504\)"):
        model.fit(x, y, loss="mse", verbose=0, precision="mixed_float16")
    assert model.optimizer is None
    batches = [(x[:32], y[:32]), (x[32:], y[32:])]  # per batch for streams
    with pytest.raises(ValueError, match="beyond float16's range"):
        _regressor().fit(batches, loss="mse", verbose=0, precision="mixed_float16")
    if half.name == "torch":  # bfloat16 has float32's range: fine
        _regressor().fit(x, y, loss="mse", verbose=0, precision="mixed_bfloat16")


class AddFloat32Constant(Layer):
    """A user's layer that makes its constant in float32."""

    def forward(self, x, training=False):
        xp = self.backend.xp
        return x + xp.ones((1, x.shape[-1]), dtype=xp.float32, device=x.device)

    def backward(self, dy):
        return dy


def test_a_layer_that_mixes_dtypes_is_named_with_the_policy(torch):
    with portnn.use_backend("torch"):
        x, y = _big_regression()
        portnn.seed(0)
        model = portnn.Sequential(portnn.Dense(8, 8), AddFloat32Constant(),
                                  portnn.Dense(8, 1))
        with pytest.raises(TypeError, match=r"Dense\(8, 1\) forward failed under "
                                            r"precision='mixed_float16'.*dtype=x\."
                                            r"dtype"):
            model.fit(x, y / 300, loss="mse", verbose=0, precision="mixed_float16")
        model.fit(x, y / 300, loss="mse", verbose=0)  # float32: fine
