"""Mixed precision: the loss scaler against torch.amp.GradScaler, half-type
compute with float32 masters, accuracy per policy, checkpoints, errors."""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from portnn.training.precision import LossScaler, Precision

from .conftest import to_np


def _half_backends():
    out = [("numpy", "mixed_float16")]
    try:
        portnn.backends.get("torch")
    except portnn.backends.BackendUnavailableError:
        return out
    return [*out, ("torch", "mixed_float16"), ("torch", "mixed_bfloat16")]


# -- the loss scaler ---------------------------------------------------------------

def test_scaler_follows_torch_grad_scaler_on_a_forced_overflow_sequence(torch):
    """Same init scale, growth interval 3; steps 0, 4, 5 and 9 overflow."""
    overflow = {0, 4, 5, 9}
    steps = 14
    theirs_p = torch.nn.Parameter(torch.zeros(3))
    theirs_opt = torch.optim.SGD([theirs_p], lr=0.1)
    theirs = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=3)
    with portnn.use_backend("numpy") as b:
        layer = portnn.Dense(3, 1, bias=False, init="zeros")
        opt = portnn.SGD(layer.parameters(), lr=0.1)
        ours = Precision("mixed_float16", b)
        ours.scaler.growth_interval = 3
        scales, their_scales, ours_w, their_w = [], [], [], []
        for step in range(steps):
            g = np.full(3, np.inf if step in overflow else 1.0, dtype=np.float32)
            scale = float(ours.scaler.scale)
            # what backward leaves after a scaled loss: scale * true gradient
            layer.W.grad = b.asarray(g.reshape(3, 1) * scale)
            finite = ours.unscale(opt.params)
            opt.step(where=finite)
            ours.update(finite)
            opt.zero_grad()
            # d loss / d p = g; backward of the scaled loss gives scale * g
            theirs.scale((theirs_p * torch.from_numpy(g)).sum()).backward()
            theirs.step(theirs_opt)
            theirs.update()
            theirs_opt.zero_grad()
            scales.append(float(ours.scaler.scale))
            their_scales.append(theirs.get_scale())
            ours_w.append(to_np(layer.W.value)[:, 0].copy())
            their_w.append(theirs_p.detach().numpy().copy())
    assert scales == their_scales
    assert scales[:6] == [2.0**15, 2.0**15, 2.0**15, 2.0**16, 2.0**15, 2.0**14]
    np.testing.assert_allclose(np.array(ours_w), np.array(their_w), rtol=1e-6)


def test_scaler_growth_stops_at_a_non_finite_scale():
    with portnn.use_backend("numpy") as b:
        s = LossScaler(b, init_scale=3e38, growth_interval=1)
        s.update(b.xp.asarray(True))
        assert float(s.scale) == pytest.approx(3e38)  # 6e38 would be inf in float32


# -- the policy ------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "policy"), _half_backends())
def test_layers_compute_in_the_half_type_with_float32_masters(spec, policy):
    seen = []

    class Spy(portnn.Identity):
        def forward(self, x, training=False):
            if training:  # (fit's up-front check runs one sample in float32)
                seen.append(x.dtype)
            return x

    with portnn.use_backend(spec) as b:
        portnn.seed(0)
        model = portnn.Sequential(
            portnn.Conv2D(1, 4, 3, padding=1), portnn.BatchNorm2D(4), portnn.ReLU(),
            Spy(), portnn.Flatten(), portnn.Dropout(0.2), portnn.Dense(64, 3))
        opt = portnn.Adam(model.parameters(), lr=1e-2)
        x = np.random.default_rng(0).normal(size=(8, 1, 4, 4)).astype(np.float32)
        y = np.arange(8) % 3
        model.fit(x, y, loss=portnn.CrossEntropy(), optimizer=opt, epochs=2,
                  batch_size=4, verbose=0, precision=policy)
        half = b.dtype(policy.removeprefix("mixed_"))
        assert seen and all(dt == half for dt in seen)
        f32 = b.xp.float32
        assert all(p.dtype == f32 for p in model.parameters())
        assert all(v.dtype == f32 for v in model[1]._buffers.values())
        for state in opt.state:
            assert all(v.dtype == f32 for v in state.values() if hasattr(v, "dtype"))
        assert model.predict(x).dtype == f32  # evaluation runs in float32


@pytest.mark.slow
@pytest.mark.parametrize(("spec", "policy"), _half_backends())
def test_digits_mlp_accuracy_within_one_point_of_float32(spec, policy):
    from sklearn.datasets import load_digits

    def run(precision):
        with portnn.use_backend(spec) as b:
            portnn.seed(0)
            d = load_digits()
            x = b.asarray(d.data, dtype="float32")
            y = b.asarray(d.target, dtype="int64")
            xtr, xte, ytr, yte = portnn.data.train_test_split(x, y, 0.2,
                                                              stratify=True)
            scaler = portnn.data.Standardizer().fit(xtr)
            xtr, xte = scaler.transform(xtr), scaler.transform(xte)
            model = portnn.models.digits_mlp()
            opt = portnn.AdamW(model.parameters(), lr=1e-3)
            model.fit(xtr, ytr, loss=portnn.CrossEntropy(0.1), optimizer=opt,
                      epochs=10, batch_size=32, verbose=0, precision=precision)
            return model.evaluate(xte, yte, loss=portnn.CrossEntropy())["accuracy"]

    full, mixed = run("float32"), run(policy)
    assert full > 0.94
    assert mixed >= full - 0.01, (full, mixed)


@pytest.mark.parametrize(("spec", "policy"), _half_backends())
def test_an_overflowing_scale_skips_the_step_and_halves(spec, policy):
    if policy != "mixed_float16":
        pytest.skip("bfloat16 needs no loss scaling")
    with portnn.use_backend(spec) as b:
        portnn.seed(0)
        model = portnn.Sequential(portnn.Dense(4, 8), portnn.ReLU(),
                                  portnn.Dense(8, 2))
        before = {k: to_np(v).copy() for k, v in model.state_dict().items()}
        opt = portnn.SGD(model.parameters(), lr=0.1)
        policy_obj = Precision(policy, b)
        policy_obj.scaler.scale = b.xp.asarray(2.0**40, dtype=b.xp.float32,
                                               device=b.device)
        x = b.asarray(np.ones((4, 4), dtype=np.float32))
        y = b.asarray(np.array([0, 1, 0, 1]))
        model.train_step(x, y, portnn.CrossEntropy(), opt, precision=policy_obj)
        after = model.state_dict()
        for key, value in before.items():
            np.testing.assert_array_equal(to_np(after[key]), value, err_msg=key)
        assert float(policy_obj.scaler.scale) == 2.0**39


@pytest.mark.parametrize(("spec", "policy"), _half_backends())
def test_mixed_precision_checkpoints_hold_float32_and_load_anywhere(spec, policy,
                                                                   tmp_path):
    with portnn.use_backend(spec):
        portnn.seed(0)
        model = portnn.Sequential(portnn.Dense(4, 8), portnn.GELU(),
                                  portnn.LayerNorm(8), portnn.Dense(8, 2))
        x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
        y = np.arange(16) % 2
        model.fit(x, y, loss="cross_entropy", epochs=2, batch_size=4, verbose=0,
                  precision=policy)
        path = tmp_path / "mixed.safetensors"
        model.save(path)
        expected = to_np(model.predict(x))
    from safetensors.numpy import load_file

    assert {v.dtype for v in load_file(str(path)).values()} == {np.dtype("float32")}
    for target in ("numpy", "array_api_strict"):
        loaded = portnn.load(path, backend=target)
        np.testing.assert_allclose(to_np(loaded.predict(x)), expected, rtol=1e-5,
                                   atol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_transformer_and_lstm_learn_to_copy_in_half_precision(torch, policy):
    with portnn.use_backend("torch"):
        portnn.seed(0)
        model = portnn.Sequential(
            portnn.Embedding(20, 16), portnn.PositionalEncoding(8, 16),
            portnn.TransformerEncoderLayer(16, 2, dropout=0.1, causal=True),
            portnn.LSTM(16, 16), portnn.LayerNorm(16), portnn.Dense(16, 20))
        x = np.random.default_rng(0).integers(0, 20, size=(64, 8))
        h = model.fit(x, x, loss=portnn.CrossEntropy(), epochs=30, batch_size=16,
                      optimizer=portnn.Adam(model.parameters(), lr=1e-2),
                      verbose=0, precision=policy)
        # float32 reaches loss 0.029 and accuracy 0.998 on this schedule
        assert h["loss"][-1] < 0.1 and h["accuracy"][-1] > 0.98


def test_a_backend_without_the_half_type_says_so():
    with portnn.use_backend("numpy"):
        model = portnn.Sequential(portnn.Dense(2, 2))
        with pytest.raises(TypeError, match=r"needs bfloat16, which the 'numpy' "
                           r"backend does not have; use precision='mixed_float16'"):
            model.fit([[0.0, 1.0]], [1], loss="cross_entropy", verbose=0,
                      precision="mixed_bfloat16")
    with portnn.use_backend("array_api_strict"):
        model = portnn.Sequential(portnn.Dense(2, 2))
        with pytest.raises(TypeError, match="needs float16.*torch or jax"):
            model.fit([[0.0, 1.0]], [1], loss="cross_entropy", verbose=0,
                      precision="mixed_float16")
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        model.fit([[0.0, 1.0]], [1], loss="cross_entropy", verbose=0,
                  precision="half")
