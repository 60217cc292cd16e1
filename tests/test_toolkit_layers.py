"""Gradient clipping, freezing for fine-tuning, lazy input sizes, build and
summary."""

from __future__ import annotations

import numpy as np
import pytest

import portnn

from .conftest import to_np


def _data(n=64, seed=0):
    rs = np.random.default_rng(seed)
    x = rs.normal(size=(n, 5)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def _mlp(seed=0):
    portnn.seed(seed)
    return portnn.Sequential(portnn.Dense(5, 8), portnn.Tanh(), portnn.Dense(8, 8),
                             portnn.ReLU(), portnn.Dense(8, 2))


# -- clipping --------------------------------------------------------------------

def _grads(model, backend, scale=50.0):
    xp = backend.xp
    for i, p in enumerate(model.parameters()):
        p.grad = xp.full(p.shape, scale * (i + 1), dtype=p.dtype, device=backend.device)


@pytest.mark.parametrize("kind", ["clipnorm", "clipvalue", "global_clipnorm"])
def test_clipping_in_the_optimizer_matches_clipping_by_hand(backend, kind):
    model = _mlp()
    before = [to_np(p.value).copy() for p in model.parameters()]
    opt = portnn.SGD(model.parameters(), lr=0.1, **{kind: 1.5})
    _grads(model, backend)
    grads = [to_np(p.grad).astype(np.float64) for p in model.parameters()]
    opt.step()
    if kind == "clipnorm":
        expect = [g * min(1.0, 1.5 / (np.linalg.norm(g) + 1e-6)) for g in grads]
    elif kind == "clipvalue":
        expect = [np.clip(g, -1.5, 1.5) for g in grads]
    else:
        total = np.sqrt(sum((g * g).sum() for g in grads))
        expect = [g * min(1.0, 1.5 / (total + 1e-6)) for g in grads]
    for p, b, g in zip(model.parameters(), before, expect, strict=True):
        np.testing.assert_allclose(to_np(p.value), b - 0.1 * g, rtol=1e-5, atol=1e-6)


def test_global_clipnorm_matches_torch(torch):
    model = _mlp()
    rs = np.random.default_rng(1)
    grads = [rs.normal(size=p.shape) * 10 for p in model.parameters()]
    for p, g in zip(model.parameters(), grads, strict=True):
        p.grad = portnn.asarray(g.astype(np.float32))
    opt = portnn.SGD(model.parameters(), lr=1.0, global_clipnorm=2.0)
    before = [to_np(p.value).copy() for p in model.parameters()]
    opt.step()
    tparams = [torch.nn.Parameter(torch.zeros(g.shape)) for g in grads]
    for tp, g in zip(tparams, grads, strict=True):
        tp.grad = torch.tensor(g, dtype=torch.float32)
    torch.nn.utils.clip_grad_norm_(tparams, 2.0)
    for p, b, tp in zip(model.parameters(), before, tparams, strict=True):
        np.testing.assert_allclose(b - to_np(p.value), tp.grad.numpy(), rtol=1e-5,
                                   atol=1e-6)


def test_clipping_is_kept_in_checkpoints_and_one_kind_at_a_time(tmp_path):
    model = _mlp()
    model.fit(*_data(), loss="cross_entropy", verbose=0,
              optimizer=portnn.Adam(model.parameters(), clipnorm=1.0))
    model.save(tmp_path / "c.safetensors")
    assert portnn.load(tmp_path / "c.safetensors").optimizer.clipnorm == 1.0
    with pytest.raises(ValueError, match="at most one of clipnorm"):
        portnn.SGD(model.parameters(), clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(ValueError, match="clipvalue must be > 0"):
        portnn.SGD(model.parameters(), clipvalue=-1.0)


def test_clipping_reads_nothing_from_the_device(monkeypatch):
    from .sync_counter import count_syncs

    b = portnn.backends.get("array_api_strict:device1")
    with portnn.use_backend(b):
        model = _mlp()
        opt = portnn.Adam(model.parameters(), global_clipnorm=1.0)
        _grads(model, b)
        opt.step(where=b.asarray(True))  # the first step reads once
        _grads(model, b)
        with count_syncs(b, monkeypatch) as counter:
            opt.step(where=b.asarray(True))
    assert counter.count == 0


# -- freezing ---------------------------------------------------------------------

def test_frozen_layers_keep_their_weights_and_get_no_gradient(backend):
    model = _mlp()
    model[0].trainable = False
    frozen = {k: to_np(v).copy() for k, v in model.state_dict().items()
              if k.startswith("0.")}
    h = model.fit(*_data(), loss="cross_entropy", epochs=3, verbose=0,
                  optimizer=portnn.Adam(model.parameters(), lr=0.05))
    assert h["loss"][-1] < h["loss"][0]
    for k, v in frozen.items():
        np.testing.assert_array_equal(to_np(model.state_dict()[k]), v)
    assert model[0].W.grad is None and model[0].b.grad is None
    assert model.num_parameters(trainable_only=True) == model.num_parameters() - 48


def test_a_frozen_base_is_not_backpropagated_through(backend, monkeypatch):
    model = _mlp()
    for layer in model[:3]:
        layer.trainable = False
    calls = []
    dense = type(model[0])
    original = dense.backward

    def spy(self, dy):
        calls.append(self)
        return original(self, dy)

    monkeypatch.setattr(dense, "backward", spy)
    x, y = _data()
    model.train_step(backend.asarray(x), backend.asarray(y), portnn.CrossEntropy(),
                     portnn.SGD(model.trainable_parameters(), lr=0.1))
    assert calls == []  # only the head (backward_params) ran; no dx anywhere


def test_frozen_batch_norm_uses_its_running_statistics(backend):
    portnn.seed(0)
    bn = portnn.BatchNorm1D(3)
    x = backend.asarray(np.random.default_rng(0).normal(3.0, 2.0, size=(16, 3)))
    bn.trainable = False
    y = bn(x, training=True)
    np.testing.assert_allclose(to_np(y), to_np(bn(x, training=False)))
    np.testing.assert_array_equal(to_np(bn.running_mean), np.zeros(3))


def test_freezing_survives_save_and_load(tmp_path):
    model = _mlp()
    model[0].trainable = False
    model[2].b.trainable = False
    model.save(tmp_path / "f.safetensors")
    loaded = portnn.load(tmp_path / "f.safetensors")
    assert not loaded[0].trainable and not loaded[0].W.trainable
    assert loaded[2].trainable and loaded[2].W.trainable and not loaded[2].b.trainable
    assert "frozen: 56" in loaded.build((5,)).summary(print_fn=None)  # 48 + 8


def test_a_named_optimizer_skips_frozen_parameters():
    model = _mlp()
    model[0].trainable = False
    model.fit(*_data(), loss="cross_entropy", optimizer="adam", verbose=0)
    assert len(model.optimizer.params) == len(model.parameters()) - 2


# -- lazy sizes, build, summary ------------------------------------------------------

def test_lazy_layers_get_the_weights_they_would_have_got_eagerly(backend):
    portnn.seed(3)
    eager = portnn.Sequential(
        portnn.Conv2D(2, 4, 3, padding=1), portnn.ReLU(), portnn.Flatten(),
        portnn.Dense(4 * 5 * 5, 8), portnn.ReLU(), portnn.Dense(8, 2))
    portnn.seed(3)
    lazy = portnn.Sequential(
        portnn.Conv2D(out_channels=4, kernel_size=3, padding=1), portnn.ReLU(),
        portnn.Flatten(), portnn.Dense(8), portnn.ReLU(), portnn.Dense(2))
    x = np.random.default_rng(0).normal(size=(6, 2, 5, 5)).astype(np.float32)
    y = np.arange(6) % 2
    # lazy weights are drawn at fit's first look at the data, before any
    # shuffle; each fit shuffles with its own generator
    h_lazy = lazy.fit(x, y, loss="cross_entropy", epochs=2, batch_size=3, verbose=0,
                      rng=portnn.random.Generator(7))
    h_eager = eager.fit(x, y, loss="cross_entropy", epochs=2, batch_size=3,
                        verbose=0, rng=portnn.random.Generator(7))
    assert h_lazy["loss"] == pytest.approx(h_eager["loss"], rel=1e-6)
    for (k, a), b in zip(lazy.state_dict().items(), eager.state_dict().values(),
                         strict=True):
        np.testing.assert_allclose(to_np(a), to_np(b), rtol=1e-6, err_msg=k)


def test_lazy_layers_in_nested_containers_draw_in_eager_order(backend):
    def model(lazy):
        d = (lambda i, o: portnn.Dense(o)) if lazy else portnn.Dense
        return portnn.Sequential(
            portnn.Sequential(d(3, 6), portnn.ReLU(), d(6, 6)), portnn.Tanh(),
            portnn.Residual(portnn.Sequential(d(6, 6), portnn.ReLU())), d(6, 2))

    portnn.seed(11)
    eager = model(False)
    portnn.seed(11)
    lazy = model(True).build((3,))
    for (k, a), b in zip(lazy.state_dict().items(), eager.state_dict().values(),
                         strict=True):
        np.testing.assert_array_equal(to_np(a), to_np(b), err_msg=k)


def test_build_then_summary_lists_shapes_counts_and_bytes():
    model = portnn.Sequential(portnn.Dense(32), portnn.ReLU(), portnn.Dropout(0.1),
                              portnn.Dense(10))
    with pytest.raises(ValueError, match="not built"):
        model.num_parameters()
    text = model.build((None, 784)).summary(print_fn=None)
    assert "(None, 32)" in text and "(None, 10)" in text
    assert "Total params: 25,450 (99.4 KiB); trainable: 25,450; frozen: 0" in text
    assert model[0].W.shape == (784, 32)


def test_summary_after_fit_knows_the_output_shapes():
    model = _mlp()
    model.fit(*_data(), loss="cross_entropy", verbose=0)
    assert "(None, 2)" in model.summary(print_fn=None)


def test_an_unbuilt_model_cannot_be_saved(tmp_path):
    with pytest.raises(ValueError, match="not built.*build"):
        portnn.Sequential(portnn.Dense(3)).save(tmp_path / "u.safetensors")


def test_a_built_lazy_model_round_trips(tmp_path):
    model = portnn.Sequential(portnn.Dense(4), portnn.Tanh(), portnn.Dense(2))
    model.build((3,))
    model.save(tmp_path / "lazy.safetensors")
    loaded = portnn.load(tmp_path / "lazy.safetensors")
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(to_np(loaded.predict(x)), to_np(model.predict(x)))
