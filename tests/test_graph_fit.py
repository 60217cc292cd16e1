"""Graph models with several inputs and outputs under fit, evaluate and
predict: one SGD step of each equals PyTorch's, the history names each
output's loss and metrics as Keras does, and wrong structures say so."""

from __future__ import annotations

import numpy as np
import pytest

import portnn

from .conftest import to_np
from .test_graph import _linear


def _siamese():
    portnn.seed(0)
    a, b = portnn.Input((6,), name="a"), portnn.Input((6,), name="b")
    enc, head = portnn.Dense(6, 8), portnn.Dense(8, 2)
    d = portnn.Subtract()([portnn.Tanh()(enc(a)), portnn.Tanh()(enc(b))])
    model = portnn.Model(inputs=[a, b], outputs=head(portnn.Multiply()([d, d])))
    return model, enc, head


def _pairs(n=40, seed=0):
    rs = np.random.default_rng(seed)
    x1, x2 = rs.normal(size=(n, 6)), rs.normal(size=(n, 6))
    return x1, x2, (np.abs(x1 - x2).sum(1) > 6.5).astype(np.int64)


def test_one_sgd_step_of_two_inputs_equals_torch(backend, torch):
    x1, x2, y = _pairs()
    with portnn.default_dtype("float64"):
        model, enc, head = _siamese()
    t_enc, t_head = _linear(torch, enc), _linear(torch, head)
    model.fit([x1, x2], y, loss="cross_entropy", batch_size=40, shuffle=False,
              optimizer=portnn.SGD(model.parameters(), lr=0.5), verbose=0)
    opt = torch.optim.SGD([*t_enc.parameters(), *t_head.parameters()], lr=0.5)
    d = (torch.tanh(t_enc(torch.tensor(x1))) - torch.tanh(t_enc(torch.tensor(x2))))
    loss = torch.nn.functional.cross_entropy(t_head(d * d), torch.tensor(y))
    loss.backward()
    opt.step()
    for dense, lin in ((enc, t_enc), (head, t_head)):
        np.testing.assert_allclose(to_np(dense.W.value), lin.weight.detach().numpy().T,
                                   rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(to_np(dense.b.value), lin.bias.detach().numpy(),
                                   rtol=1e-10, atol=1e-12)


def _two_heads():
    portnn.seed(1)
    x = portnn.Input((6,))
    trunk, cls, reg = portnn.Dense(6, 8), portnn.Dense(8, 3), portnn.Dense(8, 1)
    t = portnn.ReLU()(trunk(x))
    model = portnn.Model(inputs=x, outputs={"cls": cls(t), "reg": reg(t)})
    return model, (trunk, cls, reg)


def test_one_sgd_step_of_two_weighted_losses_equals_torch(backend, torch):
    rs = np.random.default_rng(2)
    x, labels, target = rs.normal(size=(30, 6)), rs.integers(0, 3, 30), rs.normal(
        size=(30, 1))
    with portnn.default_dtype("float64"):
        model, layers = _two_heads()
    lins = [_linear(torch, d) for d in layers]
    model.fit(x, {"cls": labels, "reg": target}, shuffle=False, batch_size=30,
              loss={"cls": "cross_entropy", "reg": "mse"}, loss_weights={"reg": 0.3},
              optimizer=portnn.SGD(model.parameters(), lr=0.2), verbose=0)
    opt = torch.optim.SGD([p for lin in lins for p in lin.parameters()], lr=0.2)
    t = torch.relu(lins[0](torch.tensor(x)))
    loss = (torch.nn.functional.cross_entropy(lins[1](t), torch.tensor(labels))
            + 0.3 * torch.nn.functional.mse_loss(lins[2](t), torch.tensor(target)))
    loss.backward()
    opt.step()
    for dense, lin in zip(layers, lins, strict=True):
        np.testing.assert_allclose(to_np(dense.W.value), lin.weight.detach().numpy().T,
                                   rtol=1e-10, atol=1e-12)


def test_the_history_names_each_outputs_loss_and_metrics():
    rs = np.random.default_rng(3)
    x = rs.normal(size=(64, 6)).astype(np.float32)
    labels, target = rs.integers(0, 3, 64), rs.normal(size=(64, 1)).astype(np.float32)
    model, _ = _two_heads()
    model.compile(loss={"cls": "cross_entropy", "reg": "mse"},
                  loss_weights=[1.0, 0.5], metrics={"cls": ["accuracy"],
                                                    "reg": ["mae"]})
    h = model.fit(x, {"cls": labels, "reg": target}, epochs=2, verbose=0,
                  validation_split=0.25)
    assert set(h.history) == {
        "loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_mae", "val_loss",
        "val_cls_loss", "val_reg_loss", "val_cls_accuracy", "val_reg_mae", "lr"}
    for e in range(2):
        assert h["loss"][e] == pytest.approx(h["cls_loss"][e] + 0.5 * h["reg_loss"][e],
                                             rel=1e-5)
    logs = model.evaluate(x, {"cls": labels, "reg": target})
    out = model.predict(x, batch_size=10)
    assert set(out) == {"cls", "reg"} and out["cls"].shape == (64, 3)
    p = to_np(out["cls"]).argmax(1)
    assert logs["cls_accuracy"] == pytest.approx(np.mean(p == labels))


def test_inputs_as_a_list_a_dict_or_batches_train_alike():
    x1, x2, y = _pairs(64, seed=4)
    x1, x2 = x1.astype(np.float32), x2.astype(np.float32)
    runs = []
    for kind in ("list", "dict", "generator"):
        model, _, _ = _siamese()
        if kind == "generator":
            data = ((([x1[i:i + 16], x2[i:i + 16]]), y[i:i + 16])
                    for i in range(0, 64, 16))
            h = model.fit(data, loss="cross_entropy", verbose=0, steps_per_epoch=4)
        else:
            xs = [x1, x2] if kind == "list" else {"b": x2, "a": x1}
            h = model.fit(xs, y, loss="cross_entropy", batch_size=16, verbose=0,
                          shuffle=False)
        runs.append(h["loss"][0])
    assert runs[0] == pytest.approx(runs[1]) == pytest.approx(runs[2])


def test_wrong_structures_say_what_is_expected():
    x1, x2, y = _pairs(16)
    model, _, _ = _siamese()
    with pytest.raises(ValueError, match="expected a list of 2 arrays, got 1 items"):
        model.fit([x1], y, loss="cross_entropy", verbose=0)
    with pytest.raises(KeyError, match=r"lacks \['b'\]"):
        model.fit({"a": x1}, y, loss="cross_entropy", verbose=0)
    with pytest.raises(ValueError, match="different numbers of samples"):
        model.fit([x1, x2[:8]], y, loss="cross_entropy", verbose=0)
    heads, _ = _two_heads()
    with pytest.raises(ValueError, match="loss has 3 entries for 2 outputs"):
        heads.fit(x1, {"cls": y, "reg": x1[:, :1]}, loss=["mse"] * 3, verbose=0)
    with pytest.raises(ValueError, match=r"keyed by output name.*missing \['reg'\]"):
        heads.fit(x1, {"cls": y, "reg": x1[:, :1]}, loss={"cls": "mse"}, verbose=0)
    with pytest.raises(KeyError, match=r"y: the dict lacks \['reg'\]"):
        heads.fit(x1, {"cls": y}, loss={"cls": "cross_entropy", "reg": "mse"},
                  verbose=0)
    with pytest.raises(ValueError, match="loss_weights is for models with several"):
        portnn.Sequential(portnn.Dense(6, 2)).fit(x1, y, loss="cross_entropy",
                                                  loss_weights=[2.0], verbose=0)


def test_a_two_output_models_losses_are_saved_and_loaded(tmp_path):
    rs = np.random.default_rng(5)
    x = rs.normal(size=(32, 6)).astype(np.float32)
    y = {"cls": rs.integers(0, 3, 32), "reg": rs.normal(size=(32, 1)).astype(np.float32)}
    model, _ = _two_heads()
    model.fit(x, y, loss={"cls": "cross_entropy", "reg": portnn.Huber(delta=2.0)},
              loss_weights={"reg": 0.25}, verbose=0)
    model.save(tmp_path / "heads.safetensors")
    loaded = portnn.load(tmp_path / "heads.safetensors")
    assert isinstance(loaded.loss, portnn.losses.MultiLoss)
    assert loaded.loss.weights == [1.0, 0.25]
    assert loaded.loss.losses[1].delta == 2.0 and loaded.loss.names == ["cls", "reg"]
    for m in (model, loaded):  # the same training goes on, no loss given
        m.fit(x, y, epochs=2, verbose=0, shuffle=False)
    for k in ("cls", "reg"):
        np.testing.assert_allclose(to_np(loaded.predict(x)[k]),
                                   to_np(model.predict(x)[k]), rtol=1e-6)


def test_a_dataset_of_two_inputs_and_outputs_trains_as_its_arrays(tmp_path):
    from portnn.data import Dataset

    rs = np.random.default_rng(6)
    x1, x2 = (rs.normal(size=(48, 6)).astype(np.float32) for _ in range(2))
    np.save(tmp_path / "x2.npy", x2)  # one input memory-mapped from a file
    y = {"cls": rs.integers(0, 3, 48), "reg": rs.normal(size=(48, 1)).astype(
        np.float32)}
    runs = []
    for data in ("arrays", "dataset"):
        portnn.seed(0)
        a, b = portnn.Input((6,), name="a"), portnn.Input((6,), name="b")
        joined = portnn.Concatenate()([portnn.Dense(6, 4)(a), portnn.Dense(6, 4)(b)])
        model = portnn.Model(inputs={"a": a, "b": b},
                             outputs={"cls": portnn.Dense(8, 3)(joined),
                                      "reg": portnn.Dense(8, 1)(joined)})
        kw = {"loss": {"cls": "cross_entropy", "reg": "mse"}, "epochs": 2,
              "batch_size": 16, "verbose": 0}
        if data == "arrays":
            h = model.fit({"a": x1, "b": x2}, y, **kw)
        else:
            xs = {"a": x1, "b": np.load(tmp_path / "x2.npy", mmap_mode="r")}
            h = model.fit(Dataset.from_arrays(xs, y), **kw)
        runs.append((h["loss"], h["reg_loss"], to_np(model.predict(
            {"a": x1, "b": x2})["reg"])))
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-6)
    assert runs[0][1] == pytest.approx(runs[1][1], rel=1e-6)
    np.testing.assert_allclose(runs[0][2], runs[1][2], rtol=1e-5, atol=1e-6)


def test_one_sgd_step_with_per_output_sample_and_class_weights_equals_torch(
        backend, torch):
    """Weights for one output only: the regression head's per sample, the
    classification head's per class; the other output weighs 1."""
    rs = np.random.default_rng(8)
    x, labels, target = rs.normal(size=(30, 6)), rs.integers(0, 3, 30), rs.normal(
        size=(30, 1))
    w_reg = rs.uniform(0.1, 2.0, 30)
    class_w = np.array([1.0, 4.0, 0.5])
    with portnn.default_dtype("float64"):
        model, layers = _two_heads()
    lins = [_linear(torch, d) for d in layers]
    model.fit(x, {"cls": labels, "reg": target}, shuffle=False, batch_size=30,
              loss={"cls": "cross_entropy", "reg": "mse"},
              sample_weight={"reg": w_reg},
              class_weight={"cls": dict(enumerate(class_w))},
              optimizer=portnn.SGD(model.parameters(), lr=0.2), verbose=0)
    opt = torch.optim.SGD([p for lin in lins for p in lin.parameters()], lr=0.2)
    t = torch.relu(lins[0](torch.tensor(x)))
    per_sample = torch.nn.functional.cross_entropy(
        lins[1](t), torch.tensor(labels), reduction="none")
    # Keras's weighted mean: sum(w * loss) / N
    loss = ((per_sample * torch.tensor(class_w[labels])).mean()
            + ((lins[2](t) - torch.tensor(target)) ** 2 * torch.tensor(
                w_reg[:, None])).mean())
    loss.backward()
    opt.step()
    for dense, lin in zip(layers, lins, strict=True):
        np.testing.assert_allclose(to_np(dense.W.value), lin.weight.detach().numpy().T,
                                   rtol=1e-10, atol=1e-12)


def test_per_output_weights_that_do_not_fit_say_so():
    x = np.ones((8, 6), np.float32)
    y = {"cls": np.zeros(8, np.int64), "reg": np.zeros((8, 1), np.float32)}
    heads, _ = _two_heads()
    loss = {"cls": "cross_entropy", "reg": "mse"}
    with pytest.raises(ValueError, match=r"sample_weight names outputs \['out'\]"):
        heads.fit(x, y, loss=loss, sample_weight={"out": np.ones(8)}, verbose=0)
    with pytest.raises(ValueError, match="sample_weight has 3 entries for 2 outputs"):
        heads.fit(x, y, loss=loss, sample_weight=[np.ones(8)] * 3, verbose=0)
    with pytest.raises(ValueError, match=r"class_weight names outputs \['out'\]"):
        heads.fit(x, y, loss=loss, class_weight={"out": {0: 2.0}}, verbose=0)
    with pytest.raises(TypeError, match="a dict by output name"):
        heads.fit(x, y, loss=loss, class_weight={0: 2.0}, verbose=0)
    with pytest.raises(ValueError, match="the model has one output"):
        portnn.Sequential(portnn.Dense(6, 2)).fit(
            x, y["cls"], loss="cross_entropy", sample_weight=[np.ones(8)], verbose=0)


def test_one_input_given_by_its_input_name(backend):
    # {Input name: array} works for one input as for several (it ended in
    # an IndexError from the batch slicer)
    with portnn.use_backend(backend):
        portnn.seed(0)
        ids = portnn.Input((None,), dtype="int64", name="characters")
        model = portnn.Model(inputs=ids, outputs=portnn.Dense(4, 2)(
            portnn.Embedding(20, 4)(ids)))
        x = np.random.default_rng(0).integers(0, 20, (6, 5))
        y = np.zeros((6, 5, 2), np.float32)
        want = to_np(model.predict(x))
        for batch_size in (None, 4):
            np.testing.assert_array_equal(
                to_np(model.predict({"characters": x}, batch_size=batch_size)),
                want)
        model.compile(loss="mse", optimizer="sgd")
        by_name = model.evaluate({"characters": x}, y)
        assert by_name == model.evaluate(x, y)
        model.fit({"characters": x}, y, epochs=1, verbose=0)
        with pytest.raises(ValueError, match="a dict with the key 'characters', "
                                             r"got a dict with keys \['chars'\]"):
            model.predict({"chars": x})
    stack = portnn.Sequential(portnn.Dense(3, 2))
    with pytest.raises(ValueError, match=r"expected one array, got a dict"):
        stack.predict({"a": np.ones((2, 3), np.float32)})
