"""Forward values and gradients against PyTorch autograd, with the same
weights; optimizer steps and schedules against torch.optim.

Dropout has no oracle here: its masks come from portnn's own generator;
its gradient is covered by the finite-difference check.
"""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from portnn.random import Generator

from .conftest import to_np

ATOL = {"atol": 1e-10, "rtol": 1e-9}


def _np_input(shape, seed=1):
    rs = np.random.default_rng(seed)
    return rs.normal(size=shape)


def _compare_layer(backend, torch, layer, tmodule, x_np, copy_weights=None):
    """Run both on x; backprop the same upstream gradient; compare."""
    if copy_weights:
        copy_weights(layer, tmodule)
    x = backend.asarray(x_np)
    y = layer.forward(x)
    tx = torch.tensor(x_np, requires_grad=True)
    ty = tmodule(tx)
    np.testing.assert_allclose(to_np(y), ty.detach().numpy(), **ATOL)
    dy_np = _np_input(tuple(ty.shape), seed=7)
    layer.zero_grad()
    dx = layer.backward(backend.asarray(dy_np))
    ty.backward(torch.tensor(dy_np))
    np.testing.assert_allclose(to_np(dx), tx.grad.numpy(), **ATOL)
    return layer, tmodule


ACTIVATIONS = {
    "identity": (portnn.Identity, lambda t: t.nn.Identity()),
    "sigmoid": (portnn.Sigmoid, lambda t: t.nn.Sigmoid()),
    "tanh": (portnn.Tanh, lambda t: t.nn.Tanh()),
    "relu": (portnn.ReLU, lambda t: t.nn.ReLU()),
    "leaky_relu": (lambda: portnn.LeakyReLU(0.1), lambda t: t.nn.LeakyReLU(0.1)),
    "elu": (lambda: portnn.ELU(0.7), lambda t: t.nn.ELU(0.7)),
    "gelu": (portnn.GELU, lambda t: t.nn.GELU(approximate="tanh")),
    "softmax": (portnn.Softmax, lambda t: t.nn.Softmax(dim=-1)),
    "gelu_exact": (lambda: portnn.GELU(approximate="none"), lambda t: t.nn.GELU()),
    "silu": (portnn.SiLU, lambda t: t.nn.SiLU()),
    "swish": (portnn.Swish, lambda t: t.nn.SiLU()),
    "softplus": (portnn.Softplus, lambda t: t.nn.Softplus()),
    "softplus_beta_threshold": (lambda: portnn.Softplus(beta=2.0, threshold=3.0),
                                lambda t: t.nn.Softplus(beta=2.0, threshold=3.0)),
    "mish": (portnn.Mish, lambda t: t.nn.Mish()),
    "selu": (portnn.SELU, lambda t: t.nn.SELU()),
    "log_softmax": (portnn.LogSoftmax, lambda t: t.nn.LogSoftmax(dim=-1)),
    "log_softmax_axis0": (lambda: portnn.LogSoftmax(axis=0),
                          lambda t: t.nn.LogSoftmax(dim=0)),
}


@pytest.mark.parametrize("n", [1, 5])
def test_prelu_matches_torch(backend, torch, n):
    with portnn.default_dtype("float64"):
        layer = portnn.PReLU(n, init=0.2)
    ref = torch.nn.PReLU(n, init=0.2).double()
    with torch.no_grad():  # distinct slopes per channel
        ref.weight.copy_(torch.linspace(0.1, 0.5, n, dtype=torch.float64))
    layer.W.value = backend.asarray(ref.weight.detach().numpy())
    _compare_layer(backend, torch, layer, ref, _np_input((4, 5, 3)) * 3.0)
    np.testing.assert_allclose(to_np(layer.W.grad), ref.weight.grad.numpy(), **ATOL)
    with pytest.raises(ValueError, match="PReLU: 5 slopes need 5 channels"):
        portnn.PReLU(5)(backend.asarray(np.ones((2, 4), np.float32)))



@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_matches_torch(backend, torch, name):
    make, tmake = ACTIVATIONS[name]
    x = _np_input((4, 5)) * 3.0  # wide range: both tails of each activation
    _compare_layer(backend, torch, make(), tmake(torch).double(), x)


def test_sigmoid_saturates_without_overflow(backend):
    x = backend.asarray([-1000.0, 0.0, 1000.0], dtype="float32")
    y = to_np(portnn.Sigmoid()(x))
    np.testing.assert_array_equal(y, [0.0, 0.5, 1.0])


@pytest.mark.parametrize("bias", [True, False])
def test_dense_matches_torch_linear(backend, torch, bias):
    with portnn.default_dtype("float64"):
        layer = portnn.Dense(5, 3, bias=bias)
    lin = torch.nn.Linear(5, 3, bias=bias).double()

    def copy(layer, lin):
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(to_np(layer.W.value).T))
            if bias:
                lin.bias.copy_(torch.tensor(to_np(layer.b.value) + 0.3))
        if bias:
            layer.b.value = backend.asarray(lin.bias.detach().numpy())

    _compare_layer(backend, torch, layer, lin, _np_input((4, 5)), copy)
    np.testing.assert_allclose(to_np(layer.W.grad), lin.weight.grad.numpy().T, **ATOL)
    if bias:
        np.testing.assert_allclose(to_np(layer.b.grad), lin.bias.grad.numpy(), **ATOL)


def test_mlp_matches_torch(backend, torch):
    with portnn.default_dtype("float64"):
        model = portnn.Sequential(portnn.Dense(6, 8), portnn.GELU(),
                                  portnn.Dense(8, 4), portnn.Tanh())
    tmodel = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.GELU("tanh"),
                                 torch.nn.Linear(8, 4), torch.nn.Tanh()).double()
    with torch.no_grad():
        for i in (0, 2):
            tmodel[i].weight.copy_(torch.tensor(to_np(model[i].W.value).T))
            tmodel[i].bias.copy_(torch.tensor(to_np(model[i].b.value)))
    _compare_layer(backend, torch, model, tmodel, _np_input((3, 6)))
    for i in (0, 2):
        np.testing.assert_allclose(to_np(model[i].W.grad),
                                   tmodel[i].weight.grad.numpy().T, **ATOL)


def _loss_pairs(torch):
    nn = torch.nn
    return {
        "mse": (portnn.MSE(), nn.MSELoss(), "float"),
        "mse_sum": (portnn.MSE("sum"), nn.MSELoss(reduction="sum"), "float"),
        "mae": (portnn.MAE(), nn.L1Loss(), "float"),
        "huber": (portnn.Huber(0.5), nn.HuberLoss(delta=0.5), "float"),
        "bce": (portnn.BCE(), nn.BCELoss(), "prob"),
        "bce_logits": (portnn.BCEWithLogits(), nn.BCEWithLogitsLoss(), "binary"),
        "ce": (portnn.CrossEntropy(), nn.CrossEntropyLoss(), "labels"),
        "ce_smooth": (portnn.CrossEntropy(label_smoothing=0.2),
                      nn.CrossEntropyLoss(label_smoothing=0.2), "labels"),
        "ce_sum": (portnn.CrossEntropy(reduction="sum"),
                   nn.CrossEntropyLoss(reduction="sum"), "labels"),
        "ce_probs": (portnn.CrossEntropy(label_smoothing=0.1),
                     nn.CrossEntropyLoss(label_smoothing=0.1), "probs"),
        "ce_weight": (portnn.CrossEntropy(weight=[1.0, 2.0, 0.5, 3.0]),
                      nn.CrossEntropyLoss(weight=torch.tensor(
                          [1.0, 2.0, 0.5, 3.0], dtype=torch.float64)), "labels"),
        "ce_weight_smooth": (
            portnn.CrossEntropy(weight=[1.0, 2.0, 0.5, 3.0], label_smoothing=0.2),
            nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 0.5, 3.0],
                                                    dtype=torch.float64),
                                label_smoothing=0.2), "labels"),
        "ce_weight_probs": (
            portnn.CrossEntropy(weight=[1.0, 2.0, 0.5, 3.0]),
            nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 0.5, 3.0],
                                                    dtype=torch.float64)), "probs"),
        "ce_weight_sum": (
            portnn.CrossEntropy(weight=[1.0, 2.0, 0.5, 3.0], reduction="sum"),
            nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 0.5, 3.0],
                                                    dtype=torch.float64),
                                reduction="sum"), "labels"),
        "bce_logits_pos_weight": (
            portnn.BCEWithLogits(pos_weight=[1.0, 3.0, 0.5, 2.0]),
            nn.BCEWithLogitsLoss(pos_weight=torch.tensor([1.0, 3.0, 0.5, 2.0],
                                                         dtype=torch.float64)),
            "binary"),
        # Keras's categorical_crossentropy on (unnormalized, one tiny) probabilities
        "ce_from_probabilities": (
            portnn.CrossEntropy(from_logits=False),
            lambda p, y: nn.NLLLoss()(torch.log(torch.clamp(
                p / p.sum(-1, keepdim=True), 1e-7, 1 - 1e-7)), y),
            "probabilities"),
    }


@pytest.mark.parametrize("name", ["mse", "mse_sum", "mae", "huber", "bce",
                                  "bce_logits", "ce", "ce_smooth", "ce_sum",
                                  "ce_probs", "ce_from_probabilities", "ce_weight",
                                  "ce_weight_smooth", "ce_weight_probs",
                                  "ce_weight_sum", "bce_logits_pos_weight"])
def test_loss_matches_torch(backend, torch, name):
    loss, tloss, kind = _loss_pairs(torch)[name]
    rs = np.random.default_rng(3)
    pred = rs.normal(size=(6, 4))
    if kind == "float":
        target = rs.normal(size=(6, 4))
    elif kind == "prob":
        pred = rs.uniform(0.02, 0.98, size=(6, 4))
        target = (rs.uniform(size=(6, 4)) > 0.5).astype(np.float64)
    elif kind == "binary":
        target = (rs.uniform(size=(6, 4)) > 0.5).astype(np.float64)
    elif kind == "labels":
        target = rs.integers(0, 4, size=6)
    elif kind == "probabilities":
        pred = rs.uniform(0.05, 1.0, size=(6, 4))
        pred[0, 1] = 1e-12  # clipped: no gradient there, as in torch.clamp
        target = rs.integers(0, 4, size=6)
        target[0] = 1
    else:
        target = rs.dirichlet(np.ones(4), size=6)
    value = loss.forward(backend.asarray(pred), backend.asarray(target))
    grad = loss.backward()
    tpred = torch.tensor(pred, requires_grad=True)
    tvalue = tloss(tpred, torch.tensor(target))
    tvalue.backward()
    np.testing.assert_allclose(float(value), tvalue.item(), **ATOL)
    np.testing.assert_allclose(to_np(grad), tpred.grad.numpy(), **ATOL)


def test_bce_clips_the_log_like_torch(backend, torch):
    pred = np.array([0.0, 1.0, 0.5])
    target = np.array([1.0, 0.0, 1.0])
    value = portnn.BCE()(backend.asarray(pred), backend.asarray(target))
    expected = torch.nn.BCELoss()(torch.tensor(pred), torch.tensor(target)).item()
    assert np.isfinite(float(value))
    np.testing.assert_allclose(float(value), expected, **ATOL)


OPTIMIZERS = {
    "sgd": (lambda p: portnn.SGD(p, lr=0.1), lambda t, p: t.optim.SGD(p, lr=0.1)),
    "sgd_momentum": (
        lambda p: portnn.SGD(p, lr=0.1, momentum=0.9, dampening=0.1,
                             weight_decay=0.01),
        lambda t, p: t.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1,
                                 weight_decay=0.01)),
    "sgd_nesterov": (
        lambda p: portnn.SGD(p, lr=0.05, momentum=0.8, nesterov=True),
        lambda t, p: t.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True)),
    "adam": (lambda p: portnn.Adam(p, lr=0.01, weight_decay=0.1),
             lambda t, p: t.optim.Adam(p, lr=0.01, weight_decay=0.1)),
    "adamw": (lambda p: portnn.AdamW(p, lr=0.01, betas=(0.8, 0.99)),
              lambda t, p: t.optim.AdamW(p, lr=0.01, betas=(0.8, 0.99))),
    "rmsprop": (lambda p: portnn.RMSprop(p, lr=0.01),
                lambda t, p: t.optim.RMSprop(p, lr=0.01)),
    "rmsprop_centered_momentum": (
        lambda p: portnn.RMSprop(p, lr=0.01, momentum=0.5, centered=True,
                                 weight_decay=0.01),
        lambda t, p: t.optim.RMSprop(p, lr=0.01, momentum=0.5, centered=True,
                                     weight_decay=0.01)),
    "adagrad": (lambda p: portnn.Adagrad(p, lr=0.1, lr_decay=0.01,
                                         initial_accumulator_value=0.1),
                lambda t, p: t.optim.Adagrad(p, lr=0.1, lr_decay=0.01,
                                             initial_accumulator_value=0.1)),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_matches_torch(backend, torch, name):
    make, tmake = OPTIMIZERS[name]
    rs = np.random.default_rng(0)
    init = [rs.normal(size=(3, 2)), rs.normal(size=(2,))]
    params = [portnn.Parameter(backend.asarray(v.copy())) for v in init]
    tparams = [torch.tensor(v.copy(), requires_grad=True) for v in init]
    opt, topt = make(params), tmake(torch, tparams)
    for _ in range(6):
        grads = [rs.normal(size=v.shape) for v in init]
        for p, tp, g in zip(params, tparams, grads, strict=True):
            p.grad = backend.asarray(g)
            tp.grad = torch.tensor(g)
        opt.step()
        topt.step()
        opt.zero_grad()
    for p, tp in zip(params, tparams, strict=True):
        np.testing.assert_allclose(to_np(p.value), tp.detach().numpy(), **ATOL)
        assert p.grad is None
    # The parameters did move: the comparison is not between two no-ops.
    assert not np.allclose(to_np(params[0].value), init[0])


def test_step_and_exponential_schedules_match_torch(torch):
    p = portnn.Parameter(portnn.get_backend().asarray([1.0]))
    tp = torch.zeros(1, requires_grad=True)
    for make, tmake in [
        (lambda o: portnn.optim.StepLR(o, step_size=3, gamma=0.5),
         lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5)),
        (lambda o: portnn.optim.ExponentialLR(o, gamma=0.9),
         lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9)),
    ]:
        opt, topt = portnn.SGD([p], lr=0.2), torch.optim.SGD([tp], lr=0.2)
        sched, tsched = make(opt), tmake(topt)
        for _ in range(8):
            topt.step()
            sched.step()
            tsched.step()
            assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12)


def test_cosine_with_warmup_shape():
    p = portnn.Parameter(portnn.get_backend().asarray([1.0]))
    opt = portnn.SGD([p], lr=1.0)
    sched = portnn.optim.CosineWithWarmup(opt, total_steps=10, warmup_steps=4,
                                          min_lr=0.1)
    lrs = [opt.lr] + [sched.step() for _ in range(12)]
    assert lrs[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert lrs[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))
    assert lrs[10] == pytest.approx(0.1) and lrs[12] == pytest.approx(0.1)


def test_clip_grad_norm_matches_torch(backend, torch):
    rs = np.random.default_rng(5)
    grads = [rs.normal(size=(3, 4)) * 5, rs.normal(size=(4,)) * 5]
    params = [portnn.Parameter(backend.asarray(np.zeros_like(g))) for g in grads]
    tparams = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True)
               for g in grads]
    for p, tp, g in zip(params, tparams, grads, strict=True):
        p.grad, tp.grad = backend.asarray(g), torch.tensor(g)
    total = portnn.clip_grad_norm(params, 1.0)
    ttotal = torch.nn.utils.clip_grad_norm_(tparams, 1.0)
    np.testing.assert_allclose(float(total), ttotal.item(), **ATOL)
    for p, tp in zip(params, tparams, strict=True):
        np.testing.assert_allclose(to_np(p.grad), tp.grad.numpy(), rtol=1e-6)
    portnn.clip_grad_value(params, 0.01)
    assert np.abs(to_np(params[0].grad)).max() <= 0.01


def test_generator_normals_look_normal(backend):
    z = to_np(Generator(1).normal((20000,), dtype="float64", backend=backend))
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1.0) < 0.03


def test_new_activations_save_and_load(tmp_path):
    portnn.seed(3)
    model = portnn.Sequential(
        portnn.Dense(4, 6), portnn.PReLU(6, init=0.1), portnn.Dense(6, 6),
        portnn.GELU(approximate="none"), portnn.SiLU(), portnn.Softplus(beta=2.0),
        portnn.Mish(), portnn.SELU(), portnn.Dense(6, 3), portnn.LogSoftmax())
    model[1].W.value = model[1].W.value + 0.05  # a learned slope, saved
    model.save(tmp_path / "m")
    loaded = portnn.load(tmp_path / "m")
    x = np.random.default_rng(4).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_array_equal(to_np(loaded.predict(x)), to_np(model.predict(x)))
    assert repr(loaded[3]) == "GELU(approximate='none')"


def test_new_norms_save_load_and_summary(tmp_path):
    portnn.seed(5)
    model = portnn.Sequential(
        portnn.Conv1D(3, 4, 3, padding=1), portnn.GroupNorm(2, 4), portnn.SiLU(),
        portnn.Reshape((4, 6)), portnn.RMSNorm(6), portnn.Flatten(),
        portnn.Dense(24, 2))
    model[1].gamma.value = model[1].gamma.value * 1.5
    model[4].gamma.value = model[4].gamma.value + 0.25
    model.save(tmp_path / "m")
    loaded = portnn.load(tmp_path / "m")
    x = np.random.default_rng(6).normal(size=(5, 3, 6)).astype(np.float32)
    np.testing.assert_array_equal(to_np(loaded.predict(x)), to_np(model.predict(x)))
    text = loaded.summary(print_fn=None)
    assert "GroupNorm(2, 4)" in text and "RMSNorm((6,))" in text


def test_resampling_layers_save_and_load(tmp_path):
    portnn.seed(7)
    model = portnn.Sequential(
        portnn.Conv2D(2, 3, 3, padding=1), portnn.ZeroPadding2D(((1, 0), (0, 2))),
        portnn.Cropping2D(((0, 1), (1, 0))),
        portnn.UpSampling2D((2, 1), interpolation="bilinear"),
        portnn.Permute((1, 3, 2)), portnn.GlobalMaxPool2D(), portnn.Dense(3, 2))
    model.save(tmp_path / "m")
    loaded = portnn.load(tmp_path / "m")
    x = np.random.default_rng(8).normal(size=(3, 2, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(to_np(loaded.predict(x)), to_np(model.predict(x)))
    assert repr(loaded[3]) == "UpSampling2D(size=(2, 1), interpolation='bilinear')"
