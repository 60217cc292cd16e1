"""Padded sequences without a mask (issue 19): CrossEntropy's ignore_index
with PyTorch's semantics, metrics that leave ignored positions out, and
Keras's temporal sample weights of shape (N, T)."""

from __future__ import annotations

import numpy as np
import pytest

import portnn

from .conftest import to_np

TOL = {"atol": 1e-12, "rtol": 1e-10}


@pytest.mark.parametrize("options", [{}, {"weight": [1.0, 2.0, 0.5]},
                                     {"label_smoothing": 0.2},
                                     {"reduction": "sum"}])
def test_ignore_index_matches_torch(backend, torch, options):
    rs = np.random.default_rng(0)
    z = rs.normal(size=(4, 5, 3))
    y = rs.integers(0, 3, (4, 5))
    y[0, 2:] = -100  # padding
    y[3, :] = -100
    loss = portnn.CrossEntropy(ignore_index=-100, **options)
    value = loss.forward(backend.asarray(z), backend.asarray(y))
    grad = loss.backward()
    tz = torch.tensor(z, requires_grad=True)
    kw = {k: torch.tensor(v, dtype=torch.float64) if k == "weight" else v
          for k, v in options.items()}
    ref = torch.nn.functional.cross_entropy(tz.reshape(-1, 3),
                                            torch.tensor(y).reshape(-1),
                                            ignore_index=-100, **kw)
    ref.backward()
    assert float(value) == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(to_np(grad), tz.grad.numpy(), **TOL)


def test_every_position_ignored_gives_zero_not_nan(backend):
    loss = portnn.CrossEntropy(ignore_index=0)
    z = backend.asarray(np.ones((2, 3, 4)))
    y = backend.asarray(np.zeros((2, 3), np.int64))
    assert float(loss.forward(z, y)) == 0.0
    assert not np.any(to_np(loss.backward()))


def test_fit_leaves_ignored_positions_out_of_labels_checks_and_metrics(backend):
    rs = np.random.default_rng(1)
    x = rs.normal(size=(32, 6, 4)).astype(np.float32)
    y = rs.integers(0, 3, (32, 6))
    y[:, 4:] = -1  # the last two steps of every sequence are padding
    portnn.seed(0)
    model = portnn.Sequential(portnn.Dense(4, 8), portnn.Tanh(), portnn.Dense(8, 3))
    loss = portnn.CrossEntropy(ignore_index=-1)
    model.fit(x, y, loss=loss, epochs=2, verbose=0,  # -1 passes the label check
              metrics=["accuracy", "top_2_accuracy", "f1_macro"])
    logs = model.evaluate(x, y, loss=loss,
                          metrics=["accuracy", "top_2_accuracy", "f1_macro"])
    guess = to_np(model.predict(x)).argmax(-1)
    kept = y != -1
    assert logs["accuracy"] == pytest.approx(np.mean(guess[kept] == y[kept]))
    sk = pytest.importorskip("sklearn.metrics")
    assert logs["f1_macro"] == pytest.approx(
        sk.f1_score(y[kept], guess[kept], average="macro", zero_division=0))
    scores = to_np(model.predict(x))[kept]
    assert logs["top_2_accuracy"] == pytest.approx(
        sk.top_k_accuracy_score(y[kept], scores, k=2, labels=range(3)))


def test_temporal_sample_weights_weigh_each_step(backend):
    rs = np.random.default_rng(2)
    z = rs.normal(size=(3, 4, 2))
    y = rs.integers(0, 2, (3, 4))
    w = rs.random((3, 4))
    loss = portnn.CrossEntropy()
    value = loss.forward(backend.asarray(z), backend.asarray(y),
                         sample_weight=backend.asarray(w))
    e = np.exp(z - z.max(-1, keepdims=True))
    logp = np.log(e / e.sum(-1, keepdims=True))
    per_step = -np.take_along_axis(logp, y[..., None], -1)[..., 0]
    # Keras's sum_over_batch_size: the weighted sum over every position
    assert float(value) == pytest.approx((per_step * w).sum() / w.size, rel=1e-12)
    mse = portnn.MSE()
    t = rs.normal(size=(3, 4, 2))
    value = mse.forward(backend.asarray(z), backend.asarray(t),
                        sample_weight=backend.asarray(w))
    assert float(value) == pytest.approx(
        (((z - t) ** 2) * w[..., None]).sum() / z.size, rel=1e-12)
    assert portnn.gradcheck(portnn.CrossEntropy(), (backend.asarray(z),
                                                    backend.asarray(y))).ok


def test_temporal_weights_in_fit_equal_zeroed_labels():
    # weights of 0 on padded steps train as ignore_index on them does, up
    # to the mean's denominator (Keras divides by every position): scale w
    rs = np.random.default_rng(3)
    x = rs.normal(size=(16, 5, 3)).astype(np.float32)
    y = rs.integers(0, 2, (16, 5))
    padded = np.zeros((16, 5), bool)
    padded[:, 3:] = True
    w = np.where(padded, 0.0, 1.0).astype(np.float32) * (w_scale := 5 / 3)
    runs = []
    for kind in ("weights", "ignore"):
        portnn.seed(0)
        model = portnn.Sequential(portnn.Dense(3, 2))
        if kind == "weights":
            h = model.fit(x, y, loss="cross_entropy", sample_weight=w, epochs=3,
                          batch_size=16, verbose=0, shuffle=False)
        else:
            h = model.fit(x, np.where(padded, -1, y), epochs=3, batch_size=16,
                          loss=portnn.CrossEntropy(ignore_index=-1), verbose=0,
                          shuffle=False)
        runs.append((h["loss"], to_np(model[0].W.value)))
    np.testing.assert_allclose(runs[0][1], runs[1][1], rtol=1e-5, atol=1e-6)
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-5)
    assert w_scale > 1


def test_embedding_padding_idx_matches_torch_and_stays_zero(backend, torch, tmp_path):
    with portnn.default_dtype("float64"):
        portnn.seed(0)
        emb = portnn.Embedding(6, 3, padding_idx=-1)  # the last row: id 5
    assert emb.padding_idx == 5 and not np.any(to_np(emb.W.value)[5])
    ref = torch.nn.Embedding(6, 3, padding_idx=5).double()
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(to_np(emb.W.value)))
    ids = np.array([[0, 5, 2, 5], [5, 1, 1, 3]])
    y = emb(backend.asarray(ids))
    ty = ref(torch.tensor(ids))
    dy = np.random.default_rng(0).normal(size=tuple(y.shape))
    emb.backward(backend.asarray(dy))
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(to_np(y), ty.detach().numpy(), **TOL)
    np.testing.assert_allclose(to_np(emb.W.grad), ref.weight.grad.numpy(), **TOL)
    # trained, the padding row stays zero; saved and loaded, it stays padding
    portnn.seed(1)
    model = portnn.Sequential(portnn.Embedding(6, 3, padding_idx=5), portnn.Flatten(),
                              portnn.Dense(12, 2))
    model.fit(ids.repeat(8, axis=0), np.arange(16) % 2, loss="cross_entropy",
              optimizer="adamw", epochs=3, verbose=0)
    assert not np.any(to_np(model[0].W.value)[5])
    model.save(tmp_path / "emb.safetensors")
    assert portnn.load(tmp_path / "emb.safetensors")[0].padding_idx == 5
