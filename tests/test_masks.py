"""Masks for padded sequences: ``Embedding(mask_zero=True)`` and ``Masking``
mark the real steps; the mask travels through `Sequential` and graphs to
RNNs (checked against PyTorch's packed sequences), attention (against its
``key_padding_mask``), the masked average pool, the loss and the metrics.
The invariant behind them all: padding changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

import portnn

from .conftest import to_np

TOL = {"atol": 1e-10, "rtol": 1e-8}
LENGTHS = np.array([6, 3, 1, 4])  # one full row, one of a single step


def _real(lengths=LENGTHS, steps=6):
    return np.arange(steps)[None, :] < lengths[:, None]


def _ids(seed=0, vocab=12, lengths=LENGTHS, steps=6):
    """Token ids in [1, vocab) with 0 after each row's length."""
    ids = np.random.default_rng(seed).integers(1, vocab, (len(lengths), steps))
    return np.where(_real(lengths, steps), ids, 0)


# -- RNNs: PyTorch's packed sequences ---------------------------------------------


def _torch_rnn(torch, layer, kind):
    ref = getattr(torch.nn, kind)(layer.input_size, layer.hidden_size,
                                  batch_first=True).double()
    with torch.no_grad():
        for ours, theirs in (("W_ih", "weight_ih_l0"), ("W_hh", "weight_hh_l0"),
                             ("b_ih", "bias_ih_l0"), ("b_hh", "bias_hh_l0")):
            getattr(ref, theirs).copy_(torch.tensor(to_np(getattr(layer, ours).value)))
    return ref


@pytest.mark.parametrize("sequences", [True, False])
@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_masked_recurrent_layers_equal_torch_packed_sequences(backend, torch, kind,
                                                              sequences):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    with portnn.default_dtype("float64"):
        portnn.seed(1)
        layer = getattr(portnn, kind)(3, 5, return_sequences=sequences)
    ref = _torch_rnn(torch, layer, kind)
    rs = np.random.default_rng(2)
    x = rs.normal(size=(4, 6, 3))
    tx = torch.tensor(x, requires_grad=True)
    packed = pack_padded_sequence(tx, torch.tensor(LENGTHS), batch_first=True,
                                  enforce_sorted=False)
    out, state = ref(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=6)
    h_n = (state[0] if kind == "LSTM" else state)[0]
    ty = out if sequences else h_n
    y = layer(backend.asarray(x), training=True, mask=backend.asarray(_real()))
    np.testing.assert_allclose(to_np(y), ty.detach().numpy(), **TOL)
    finals = layer.final_state if kind == "LSTM" else (layer.final_state,)
    theirs = (state[0][0], state[1][0]) if kind == "LSTM" else (state[0],)
    for a, b in zip(finals, theirs, strict=True):  # the last *real* step's state
        np.testing.assert_allclose(to_np(a), b.detach().numpy(), **TOL)
    dy = rs.normal(size=tuple(ty.shape))
    dx = layer.backward(backend.asarray(dy))
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(to_np(dx), tx.grad.numpy(), **TOL)
    for ours, name in (("W_ih", "weight_ih_l0"), ("W_hh", "weight_hh_l0"),
                       ("b_ih", "bias_ih_l0"), ("b_hh", "bias_hh_l0")):
        np.testing.assert_allclose(to_np(getattr(layer, ours).grad),
                                   getattr(ref, name).grad.numpy(), **TOL)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_masked_recurrent_models_gradcheck(backend, kind):
    portnn.seed(3)
    model = portnn.Sequential(
        portnn.Embedding(12, 4, mask_zero=True),
        getattr(portnn, kind)(4, 5),
        getattr(portnn, kind)(5, 3, return_sequences=False),
        portnn.Dense(3, 2))
    result = portnn.gradcheck(model, backend.asarray(_ids(4)), training=True)
    assert result.ok, result


def test_padding_changes_nothing(backend):
    """The same sequences, padded to 6 or to 9 steps with anything in the
    padding's embedding row: identical outputs and gradients."""
    portnn.seed(5)
    emb = portnn.Embedding(12, 4, mask_zero=True)
    x = portnn.Input((None,), dtype="int64")
    h = portnn.LSTM(4, 6)(emb(x))
    attended = portnn.MultiHeadAttention(6, 2)(h)
    pooled = portnn.GlobalAvgPool1D(data_format="channels_last")(
        portnn.Add()([h, attended]))
    last = portnn.GRU(6, 3, return_sequences=False)(h)
    model = portnn.Model(inputs=x, outputs=portnn.Concatenate()([pooled, last]))
    emb.W.value = backend.asarray(np.where(np.arange(12)[:, None] == 0, 7.0, to_np(
        emb.W.value)).astype(np.float32))  # padding's row: far from zero
    short, long = _ids(6), np.pad(_ids(6), ((0, 0), (0, 3)))
    results = []
    for ids in (short, long):
        y = model(backend.asarray(ids), training=True)
        model.backward(backend.asarray(np.ones(tuple(y.shape), np.float32)))
        results.append((to_np(y), [to_np(p.grad) for p in model.parameters()]))
        model.zero_grad()
    (y1, g1), (y2, g2) = results
    np.testing.assert_allclose(y1, y2, rtol=1e-5, atol=1e-6)
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


# -- attention and pooling ----------------------------------------------------------


def test_a_mask_is_attentions_key_padding_mask(backend, torch):
    with portnn.default_dtype("float64"):
        portnn.seed(7)
        emb = portnn.Embedding(12, 8, mask_zero=True)
        mha = portnn.MultiHeadAttention(8, 2)
        model = portnn.Sequential(emb, mha)
    ref = torch.nn.MultiheadAttention(8, 2, batch_first=True).double()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.tensor(to_np(mha.W_in.value)))
        ref.in_proj_bias.copy_(torch.tensor(to_np(mha.b_in.value)))
        ref.out_proj.weight.copy_(torch.tensor(to_np(mha.W_out.value)))
        ref.out_proj.bias.copy_(torch.tensor(to_np(mha.b_out.value)))
    ids = _ids(8)
    e = torch.tensor(to_np(emb.W.value)[ids])
    ty, _ = ref(e, e, e, key_padding_mask=torch.tensor(ids == 0), need_weights=False)
    y = model(backend.asarray(ids))
    np.testing.assert_allclose(to_np(y), ty.detach().numpy(), **TOL)
    # the output carries the query's mask on
    np.testing.assert_array_equal(to_np(model.compute_mask(None, None)), ids != 0)


def test_masked_average_pool_averages_the_real_steps(backend):
    rs = np.random.default_rng(9)
    x = rs.normal(size=(4, 6, 3)).astype(np.float32)
    real = _real()
    pool = portnn.GlobalAvgPool1D(data_format="channels_last")
    y = pool(backend.asarray(x), training=True, mask=backend.asarray(real))
    want = np.stack([x[i, :n].mean(axis=0) for i, n in enumerate(LENGTHS)])
    np.testing.assert_allclose(to_np(y), want, rtol=1e-6)
    dx = to_np(pool.backward(backend.asarray(np.ones((4, 3), np.float32))))
    np.testing.assert_allclose(dx, np.where(real, 1.0 / LENGTHS[:, None], 0.0)[
        ..., None] * np.ones((1, 1, 3)), rtol=1e-6)
    assert pool.compute_mask(x, real) is None  # used up
    with pytest.raises(ValueError, match="data_format='channels_last'"):
        portnn.GlobalAvgPool1D()(backend.asarray(x), mask=backend.asarray(real))


def test_masking_layer_marks_all_mask_value_steps(backend):
    """Masking + LSTM equals the LSTM on each sequence cut to its length."""
    portnn.seed(10)
    lstm = portnn.LSTM(3, 4, return_sequences=False)
    model = portnn.Sequential(portnn.Masking(), lstm)
    x = np.random.default_rng(11).normal(size=(4, 6, 3)).astype(np.float32)
    x = np.where(_real()[..., None], x, 0.0).astype(np.float32)
    y = to_np(model(backend.asarray(x)))
    for i, n in enumerate(LENGTHS):
        alone = to_np(lstm(backend.asarray(x[i:i + 1, :n])))
        np.testing.assert_allclose(y[i:i + 1], alone, rtol=1e-5, atol=1e-6)


def test_merges_combine_masks():
    xp = portnn.get_backend().xp
    a, b = xp.ones((2, 3, 4)), xp.ones((2, 2, 4))
    ma = xp.asarray([[True, True, False], [True, False, False]])
    mb = xp.asarray([[True, False], [True, True]])
    joined = portnn.Concatenate(axis=1).compute_mask([a, b], [ma, mb])
    assert joined.tolist() == [[True, True, False, True, False],
                               [True, False, False, True, True]]
    assert portnn.Concatenate(axis=1).compute_mask([a, b], [ma, None]).tolist() == [
        [True, True, False, True, True], [True, False, False, True, True]]
    both = portnn.Add().compute_mask([a, a], [ma, xp.asarray([[False, True, True],
                                                              [True, True, True]])])
    assert both.tolist() == [[False, True, False], [True, False, False]]
    assert portnn.Add().compute_mask([a, a], [None, None]) is None


# -- loss and metrics ---------------------------------------------------------------


def _tagger(classes=3):
    portnn.seed(12)
    return portnn.Sequential(portnn.Embedding(12, 6, mask_zero=True),
                             portnn.GRU(6, 8), portnn.Dense(8, classes))


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def test_loss_and_metrics_leave_padded_steps_out(backend):
    sk = pytest.importorskip("sklearn.metrics")
    model = _tagger()
    ids = _ids(13)
    real = ids != 0
    tags = np.random.default_rng(14).integers(0, 3, ids.shape)
    logs = model.evaluate(backend.asarray(ids), backend.asarray(tags),
                          loss="cross_entropy", metrics=["accuracy", "f1_macro",
                                                         "top_2_accuracy"])
    z = to_np(model.predict(backend.asarray(ids)))
    nll = -np.take_along_axis(_log_softmax(z), tags[..., None], axis=-1)[..., 0]
    assert logs["loss"] == pytest.approx(nll[real].mean(), rel=1e-5)
    guess = z.argmax(axis=-1)
    assert logs["accuracy"] == pytest.approx((guess == tags)[real].mean())
    assert logs["f1_macro"] == pytest.approx(
        sk.f1_score(tags[real], guess[real], average="macro"))
    assert logs["top_2_accuracy"] == pytest.approx(
        sk.top_k_accuracy_score(tags[real], z[real], k=2, labels=[0, 1, 2]))
    # whatever the targets hold at padded steps: the same figures
    garbage = np.where(real, tags, 2 - tags)
    again = model.evaluate(backend.asarray(ids), backend.asarray(garbage),
                           loss="cross_entropy", metrics=["accuracy", "f1_macro",
                                                          "top_2_accuracy"])
    for key, value in logs.items():
        assert again[key] == pytest.approx(value, rel=1e-6), key


def test_the_training_gradient_leaves_padded_steps_out(backend):
    """One SGD step on garbage targets at padded steps equals one on any
    other targets there."""
    ids, real = _ids(15), _ids(15) != 0
    tags = np.random.default_rng(16).integers(0, 3, ids.shape)
    weights = []
    for targets in (tags, np.where(real, tags, (tags + 1) % 3)):
        model = _tagger()
        model.fit(backend.asarray(ids), backend.asarray(targets), epochs=1,
                  batch_size=4, loss="cross_entropy", optimizer="sgd", verbose=0,
                  shuffle=False)
        weights.append([to_np(p.value) for p in model.parameters()])
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_ignore_index_and_a_mask_leave_out_both(backend):
    model = _tagger()
    ids = _ids(17)
    tags = np.random.default_rng(18).integers(0, 3, ids.shape)
    tags[0, :2] = -100  # ignored real steps
    loss = portnn.CrossEntropy(ignore_index=-100)
    logs = model.evaluate(backend.asarray(ids), backend.asarray(tags), loss=loss)
    z = to_np(model.predict(backend.asarray(ids)))
    kept = (ids != 0) & (tags != -100)
    safe = np.where(kept, tags, 0)
    nll = -np.take_along_axis(_log_softmax(z), safe[..., None], axis=-1)[..., 0]
    assert logs["loss"] == pytest.approx(nll[kept].mean(), rel=1e-5)


def test_a_metric_that_cannot_leave_padding_out_says_so(backend):
    model = _tagger(1)
    ids = _ids(19)
    with pytest.raises(ValueError, match="'r2' cannot leave out padded steps"):
        model.evaluate(backend.asarray(ids), backend.asarray(
            np.zeros((4, 6, 1), np.float32)), loss="mse", metrics=["r2"])


def test_two_outputs_one_masked_one_pooled(backend):
    portnn.seed(20)
    x = portnn.Input((None,), dtype="int64", name="tokens")
    h = portnn.LSTM(5, 6)(portnn.Embedding(12, 5, mask_zero=True)(x))
    tags = portnn.Dense(6, 3)(h)
    label = portnn.Dense(6, 2)(portnn.GlobalAvgPool1D(data_format="channels_last")(h))
    model = portnn.Model(inputs=x, outputs={"tags": tags, "label": label})
    assert tags.masked and not label.masked
    ids = _ids(21)
    y = {"tags": np.random.default_rng(22).integers(0, 3, ids.shape),
         "label": np.array([0, 1, 1, 0])}
    logs = model.evaluate(backend.asarray(ids), {k: backend.asarray(v)
                                                 for k, v in y.items()},
                          loss="cross_entropy")
    z = to_np(model.predict(backend.asarray(ids))["tags"])
    nll = -np.take_along_axis(_log_softmax(z), y["tags"][..., None], axis=-1)[..., 0]
    assert logs["tags_loss"] == pytest.approx(nll[ids != 0].mean(), rel=1e-5)
    history = model.fit(backend.asarray(ids), {k: backend.asarray(v)
                                               for k, v in y.items()},
                        loss="cross_entropy", epochs=2, verbose=0)
    assert np.isfinite(history["loss"]).all()


# -- refusals and files -------------------------------------------------------------


@pytest.mark.parametrize("layer", [portnn.Flatten(), portnn.Conv1D(4, 4, 3),
                                   portnn.MaxPool1D(2), portnn.BatchNorm1D(4),
                                   portnn.LayerNorm((6, 4)), portnn.Softmax(axis=1)])
def test_a_layer_that_would_mix_padding_in_refuses_the_mask(layer):
    ids = _ids(23)
    model = portnn.Sequential(portnn.Embedding(12, 4, mask_zero=True), layer)
    with pytest.raises(TypeError, match="does not support masking"):
        model(portnn.get_backend().asarray(ids))
    x = portnn.Input((6,), dtype="int64")
    masked = portnn.Embedding(12, 4, mask_zero=True)(x)
    with pytest.raises(TypeError, match="does not support masking"):
        layer(masked)  # at the call that builds the graph


def test_mask_zero_survives_save_and_load(tmp_path):
    portnn.seed(24)
    x = portnn.Input((None,), dtype="int64")
    h = portnn.LSTM(4, 5, return_sequences=False)(
        portnn.Embedding(12, 4, mask_zero=True)(x))
    model = portnn.Model(inputs=x, outputs=portnn.Dense(5, 2)(h))
    model.save(tmp_path / "m")
    loaded = portnn.load(tmp_path / "m")
    ids = np.pad(_ids(25), ((0, 0), (0, 2)))
    np.testing.assert_array_equal(to_np(loaded.predict(ids)), to_np(model.predict(ids)))
    assert loaded.layers[0].mask_zero
    # the padding still changes nothing after the round trip
    np.testing.assert_allclose(to_np(loaded.predict(ids[:, :6])),
                               to_np(loaded.predict(ids)), rtol=1e-6)


@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("sequences", [True, False])
@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_bidirectional_equals_torch_bidirectional(backend, torch, kind, sequences,
                                                  masked):
    """Concatenated, it is torch's bidirectional=True; with a mask, each
    sequence is reversed within its length (torch's packed sequences)."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    with portnn.default_dtype("float64"):
        portnn.seed(30)
        bi = portnn.Bidirectional(getattr(portnn, kind)(3, 4,
                                                        return_sequences=sequences))
    ref = getattr(torch.nn, kind)(3, 4, batch_first=True, bidirectional=True).double()
    with torch.no_grad():
        for suffix, layer in (("", bi.forward_layer), ("_reverse", bi.backward_layer)):
            for ours, theirs in (("W_ih", "weight_ih_l0"), ("W_hh", "weight_hh_l0"),
                                 ("b_ih", "bias_ih_l0"), ("b_hh", "bias_hh_l0")):
                getattr(ref, theirs + suffix).copy_(
                    torch.tensor(to_np(getattr(layer, ours).value)))
    x = np.random.default_rng(31).normal(size=(4, 6, 3))
    tx = torch.tensor(x, requires_grad=True)
    if masked:
        out, state = ref(pack_padded_sequence(tx, torch.tensor(LENGTHS),
                                              batch_first=True, enforce_sorted=False))
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=6)
    else:
        out, state = ref(tx)
    h_n = state[0] if kind == "LSTM" else state
    ty = out if sequences else torch.cat([h_n[0], h_n[1]], dim=-1)
    mask = backend.asarray(_real()) if masked else None
    y = bi(backend.asarray(x), training=True, mask=mask)
    np.testing.assert_allclose(to_np(y), ty.detach().numpy(), **TOL)
    dy = np.random.default_rng(32).normal(size=tuple(ty.shape))
    dx = bi.backward(backend.asarray(dy))
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(to_np(dx), tx.grad.numpy(), **TOL)
    for suffix, layer in (("", bi.forward_layer), ("_reverse", bi.backward_layer)):
        np.testing.assert_allclose(to_np(layer.W_hh.grad),
                                   getattr(ref, "weight_hh_l0" + suffix).grad.numpy(),
                                   **TOL)


def test_bidirectional_in_a_masked_tagger_saves_and_loads(tmp_path):
    portnn.seed(33)
    model = portnn.Sequential(
        portnn.Embedding(12, 4, mask_zero=True),
        portnn.Bidirectional(portnn.LSTM(4, 5), merge_mode="sum"),
        portnn.Bidirectional(portnn.GRU(5, 3, return_sequences=False)),
        portnn.Dense(6, 2))
    ids = _ids(34)
    model.fit(ids, np.array([0, 1, 1, 0]), loss="cross_entropy", epochs=2, verbose=0)
    model.save(tmp_path / "m")
    loaded = portnn.load(tmp_path / "m")
    np.testing.assert_array_equal(to_np(loaded.predict(ids)), to_np(model.predict(ids)))
    padded = np.pad(ids, ((0, 0), (0, 3)))  # padding changes nothing
    np.testing.assert_allclose(to_np(loaded.predict(padded)),
                               to_np(loaded.predict(ids)), rtol=1e-5, atol=1e-6)
