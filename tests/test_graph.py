"""Graph models: the chain rule over a DAG, checked against PyTorch autograd
(float64) on every backend, by finite differences through every merge
layer, against `Sequential` under `fit`, and through save and load."""

from __future__ import annotations

import json

import numpy as np
import pytest

import portnn
from portnn.checkpoint import CheckpointError

from .conftest import to_np

TOL = {"atol": 1e-10, "rtol": 1e-8}


def _normal(shape, seed):
    return np.random.default_rng(seed).normal(size=shape)


def _linear(torch, dense):
    """A torch Linear holding `dense`'s weights (W is (in, out) in portnn)."""
    lin = torch.nn.Linear(dense.in_features, dense.out_features).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(to_np(dense.W.value).T))
        lin.bias.copy_(torch.tensor(to_np(dense.b.value)))
    return lin


def _check_grads(pairs):
    for dense, lin in pairs:
        np.testing.assert_allclose(to_np(dense.W.grad), lin.weight.grad.numpy().T,
                                   **TOL)
        np.testing.assert_allclose(to_np(dense.b.grad), lin.bias.grad.numpy(), **TOL)


# -- PyTorch oracles ---------------------------------------------------------------


def test_branches_a_concatenation_and_a_skip_match_torch(backend, torch):
    with portnn.default_dtype("float64"):
        portnn.seed(0)
        x = portnn.Input((6,))
        d1, d2, d3, d4 = (portnn.Dense(6, 8), portnn.Dense(6, 4),
                          portnn.Dense(12, 6), portnn.Dense(6, 3))
        a = portnn.Tanh()(d1(x))
        c = portnn.Concatenate(axis=1)([a, d2(x)])
        skip = portnn.Add()([x, d3(c)])
        model = portnn.Model(inputs=x, outputs=d4(skip))
    t1, t2, t3, t4 = (_linear(torch, d) for d in (d1, d2, d3, d4))
    x_np = _normal((5, 6), 1)
    tx = torch.tensor(x_np, requires_grad=True)
    ty = t4(tx + t3(torch.cat([torch.tanh(t1(tx)), t2(tx)], dim=1)))
    y = model(backend.asarray(x_np))
    np.testing.assert_allclose(to_np(y), ty.detach().numpy(), **TOL)
    dy = _normal((5, 3), 2)
    dx = model.backward(backend.asarray(dy))
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(to_np(dx), tx.grad.numpy(), **TOL)
    _check_grads([(d1, t1), (d2, t2), (d3, t3), (d4, t4)])


def test_a_shared_encoder_over_two_inputs_sums_its_gradients(backend, torch):
    with portnn.default_dtype("float64"):
        portnn.seed(1)
        a, b = portnn.Input((5,), name="a"), portnn.Input((5,), name="b")
        enc, head = portnn.Dense(5, 4), portnn.Dense(4, 1)
        tanh = portnn.Tanh()  # stateless, but used twice: one cache per call
        diff = portnn.Subtract()([tanh(enc(a)), tanh(enc(b))])
        model = portnn.Model(inputs=[a, b], outputs=head(portnn.Multiply()([diff,
                                                                           diff])))
    t_enc, t_head = _linear(torch, enc), _linear(torch, head)
    a_np, b_np = _normal((4, 5), 3), _normal((4, 5), 4)
    ta = torch.tensor(a_np, requires_grad=True)
    tb = torch.tensor(b_np, requires_grad=True)
    td = torch.tanh(t_enc(ta)) - torch.tanh(t_enc(tb))
    ty = t_head(td * td)
    y = model([backend.asarray(a_np), backend.asarray(b_np)])
    np.testing.assert_allclose(to_np(y), ty.detach().numpy(), **TOL)
    dy = _normal((4, 1), 5)
    da, db = model.backward(backend.asarray(dy))
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(to_np(da), ta.grad.numpy(), **TOL)
    np.testing.assert_allclose(to_np(db), tb.grad.numpy(), **TOL)
    _check_grads([(enc, t_enc), (head, t_head)])
    # dict inputs, keyed by the Input names, give the same
    again = model({"b": backend.asarray(b_np), "a": backend.asarray(a_np)})
    np.testing.assert_allclose(to_np(again), ty.detach().numpy(), **TOL)


def test_two_outputs_backward_from_both(backend, torch):
    with portnn.default_dtype("float64"):
        portnn.seed(2)
        x = portnn.Input((4,))
        trunk, h1, h2 = portnn.Dense(4, 6), portnn.Dense(6, 3), portnn.Dense(6, 1)
        t = portnn.ReLU()(trunk(x))
        model = portnn.Model(inputs=x, outputs={"cls": h1(t), "reg": h2(t)})
    tt, th1, th2 = (_linear(torch, d) for d in (trunk, h1, h2))
    x_np = _normal((6, 4), 6)
    tx = torch.tensor(x_np, requires_grad=True)
    tr = torch.relu(tt(tx))
    out = model(backend.asarray(x_np))
    assert set(out) == {"cls", "reg"}
    g1, g2 = _normal((6, 3), 7), _normal((6, 1), 8)
    dx = model.backward({"cls": backend.asarray(g1), "reg": backend.asarray(g2)})
    ((th1(tr) * torch.tensor(g1)).sum() + (th2(tr) * torch.tensor(g2)).sum()).backward()
    np.testing.assert_allclose(to_np(dx), tx.grad.numpy(), **TOL)
    _check_grads([(trunk, tt), (h1, th1), (h2, th2)])


# -- finite differences through every merge ------------------------------------------


@pytest.mark.parametrize("merge", [portnn.Concatenate, portnn.Add, portnn.Subtract,
                                   portnn.Multiply, portnn.Average])
def test_gradcheck_through_each_merge(backend, merge):
    portnn.seed(3)
    x = portnn.Input((4,))
    a = portnn.Tanh()(portnn.Dense(4, 3)(x))
    b = portnn.Dense(4, 3)(x)
    model = portnn.Model(inputs=x, outputs=portnn.Dense(
        6 if merge is portnn.Concatenate else 3, 2)(merge()([a, b])))
    result = portnn.gradcheck(model, backend.asarray(_normal((3, 4), 9)))
    assert result.ok, result


def test_three_way_merges_and_a_graph_inside_sequential(backend):
    portnn.seed(4)
    x = portnn.Input((3,))
    parts = [portnn.Dense(3, 2)(x) for _ in range(3)]
    inner = portnn.Model(inputs=x, outputs=portnn.Multiply()(parts))
    model = portnn.Sequential(portnn.Dense(3, 3), portnn.Tanh(), inner,
                              portnn.Dense(2, 1))
    assert portnn.gradcheck(model, backend.asarray(_normal((4, 3), 10))).ok


# -- training --------------------------------------------------------------------


def test_a_chain_as_a_graph_trains_as_sequential_does(backend):
    rs = np.random.default_rng(0)
    x = rs.normal(size=(64, 5)).astype(np.float32)
    y = (x[:, 0] > x[:, 1]).astype(np.int64)
    weights = []
    for kind in ("sequential", "graph"):
        portnn.seed(0)
        # (Tanh: a Sequential re-draws a Dense before ReLU with He's init,
        # a graph keeps the layer's own; Dropout: the same masks in both)
        layers = [portnn.Dense(5, 16), portnn.Tanh(), portnn.Dropout(0.2),
                  portnn.Dense(16, 2)]
        if kind == "sequential":
            model = portnn.Sequential(*layers)
        else:
            inp = portnn.Input((5,))
            h = inp
            for layer in layers:
                h = layer(h)
            model = portnn.Model(inputs=inp, outputs=h)
        h = model.fit(x, y, loss="cross_entropy", epochs=3, batch_size=16,
                      verbose=0, optimizer="sgd")
        weights.append([to_np(p.value) for p in model.parameters()])
        assert 0 <= h["accuracy"][-1] <= 1
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# -- save and load -------------------------------------------------------------------


def _shared_nested_two_outputs():
    portnn.seed(5)
    a, b = portnn.Input((4,), name="a"), portnn.Input((4,), name="b")
    enc = portnn.Dense(4, 3)
    x = portnn.Input((3,))
    inner = portnn.Model(inputs=x, outputs=portnn.Tanh()(portnn.Dense(3, 3)(x)))
    ea, eb = inner(enc(a)), inner(enc(b))
    return portnn.Model(inputs=[a, b], outputs=[portnn.Add()([ea, eb]),
                                                 portnn.Concatenate()([ea, eb])])


def test_save_load_gives_identical_predictions(backend, tmp_path):
    model = _shared_nested_two_outputs()
    xs = [backend.asarray(_normal((5, 4), s).astype(np.float32)) for s in (1, 2)]
    before = model(xs)
    model.save(tmp_path / "g.safetensors")
    loaded = portnn.load(tmp_path / "g.safetensors", backend=backend)
    after = loaded(xs)
    assert len(after) == 2
    for p, q in zip(before, after, strict=True):
        np.testing.assert_array_equal(to_np(p), to_np(q))
    # shared layers stay shared: the loaded graph has one encoder
    assert len(loaded.parameters()) == len(model.parameters()) == 4


def _arch_with(tmp_path, edit):
    model = _shared_nested_two_outputs()
    model.save(tmp_path / "g.safetensors")
    from portnn.safetensors import read, write_atomic

    tensors, meta = read(tmp_path / "g.safetensors")
    arch = json.loads(meta["portnn.architecture"])
    edit(arch["config"]["graph"])
    meta["portnn.architecture"] = json.dumps(arch)
    write_atomic(tmp_path / "bad.safetensors", tensors, meta)
    return tmp_path / "bad.safetensors"


@pytest.mark.parametrize(("edit", "says"), [
    (lambda g: g["nodes"][0].update(args=[["node", 3]]), "cycle or a dangling"),
    (lambda g: g["nodes"].append({"layer": 0, "args": [["input", 0]],
                                  "list": False}), "feed nothing"),
    (lambda g: g["nodes"][1].update(layer=40), "malformed graph node 1"),
    (lambda g: g.update(outputs=[]), "must be lists"),
])
def test_a_malformed_graph_in_a_file_is_a_checkpoint_error(tmp_path, edit, says):
    with pytest.raises(CheckpointError, match=says):
        portnn.load(_arch_with(tmp_path, edit))


# -- errors that say what is wrong -----------------------------------------------


def test_an_output_from_another_graphs_input_is_named():
    a, b = portnn.Input((3,), name="a"), portnn.Input((3,), name="b")
    out = portnn.Add()([a, b])
    with pytest.raises(ValueError, match="depends on Input 'b', which is not among"):
        portnn.Model(inputs=a, outputs=out)


def test_mismatched_merge_shapes_name_both():
    a, b = portnn.Input((3,)), portnn.Input((4,))
    with pytest.raises(ValueError, match=r"input 0 has shape \(2, 3\) and input 1 "
                                         r"has shape \(2, 4\)"):
        portnn.Add()([a, b])
    with pytest.raises(ValueError, match="all axes but 1 must agree"):
        portnn.Concatenate(axis=1)([portnn.Input((3, 2)), portnn.Input((3, 5))])


def test_a_dict_missing_an_input_is_named():
    a, b = portnn.Input((3,), name="a"), portnn.Input((3,), name="b")
    model = portnn.Model(inputs={"a": a, "b": b}, outputs=portnn.Add()([a, b]))
    with pytest.raises(KeyError, match=r"lacks \['b'\]"):
        model({"a": np.ones((2, 3), np.float32)})


def test_training_is_keyword_only():
    layer = portnn.Dense(3, 2)
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="training is keyword-only"):
        layer(x, True)
    assert layer(x, training=True).shape == (2, 2)
    mha = portnn.MultiHeadAttention(4, 2)
    q = np.random.default_rng(0).normal(size=(1, 3, 4)).astype(np.float32)
    # the second argument is the key (it was taken for `training` before)
    np.testing.assert_allclose(to_np(mha(q, q)), to_np(mha(q)), rtol=1e-6)
    with pytest.raises(TypeError, match="training is keyword-only"):
        portnn.Dense(4, 4)(q, q)


def test_summary_keeps_nested_containers_on_one_row():
    inner = portnn.Sequential(portnn.Dense(4, 4), portnn.ReLU())
    model = portnn.Sequential(portnn.Dense(3, 4), inner, portnn.Dense(4, 2)).build((3,))
    text = model.summary(print_fn=None)
    rows = text.splitlines()
    assert len(rows) == 1 + 1 + 3 + 1  # title, header, three children, totals
    assert "Sequential (2 layers)  (None, 4)" in text



# -- cross-attention ----------------------------------------------------------------


def _torch_mha(torch, mha):
    ref = torch.nn.MultiheadAttention(mha.embed_dim, mha.num_heads,
                                      batch_first=True).double()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.tensor(to_np(mha.W_in.value)))
        ref.in_proj_bias.copy_(torch.tensor(to_np(mha.b_in.value)))
        ref.out_proj.weight.copy_(torch.tensor(to_np(mha.W_out.value)))
        ref.out_proj.bias.copy_(torch.tensor(to_np(mha.b_out.value)))
    return ref


@pytest.mark.parametrize(("tq", "tk"), [(3, 5), (4, 4)])
def test_cross_attention_with_masks_matches_torch(backend, torch, tq, tk):
    with portnn.default_dtype("float64"):
        portnn.seed(6)
        mha = portnn.MultiHeadAttention(8, 2)
    ref = _torch_mha(torch, mha)
    rs = np.random.default_rng(7)
    q, k, v = rs.normal(size=(2, tq, 8)), rs.normal(size=(2, tk, 8)), rs.normal(
        size=(2, tk, 8))
    pad = np.zeros((2, tk), bool)
    pad[1, -2:] = True
    blocked = np.zeros((tq, tk), bool)
    blocked[0, 1] = True
    tq_, tk_, tv_ = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    ty, _ = ref(tq_, tk_, tv_, key_padding_mask=torch.tensor(pad),
                attn_mask=torch.tensor(blocked), need_weights=False)
    y = mha(*(backend.asarray(a) for a in (q, k, v)),
            key_padding_mask=backend.asarray(pad), attn_mask=backend.asarray(blocked))
    np.testing.assert_allclose(to_np(y), ty.detach().numpy(), **TOL)
    dy = rs.normal(size=tuple(y.shape))
    grads = mha.backward(backend.asarray(dy))
    ty.backward(torch.tensor(dy))
    for g, t in zip(grads, (tq_, tk_, tv_), strict=True):
        np.testing.assert_allclose(to_np(g), t.grad.numpy(), **TOL)
    np.testing.assert_allclose(to_np(mha.W_in.grad), ref.in_proj_weight.grad.numpy(),
                               **TOL)
    np.testing.assert_allclose(to_np(mha.b_in.grad), ref.in_proj_bias.grad.numpy(),
                               **TOL)
    np.testing.assert_allclose(to_np(mha.W_out.grad),
                               ref.out_proj.weight.grad.numpy(), **TOL)


def test_cross_attention_in_a_graph_gradchecks(backend):
    portnn.seed(8)
    x = portnn.Input((4, 6))
    memory = portnn.Dense(6, 6)(x)   # key and value: one tensor, two uses
    attended = portnn.MultiHeadAttention(6, 2)(portnn.Tanh()(x), memory)
    model = portnn.Model(inputs=x, outputs=portnn.Add()([x, attended]))
    result = portnn.gradcheck(model, backend.asarray(_normal((2, 4, 6), 11)))
    assert result.ok, result


@pytest.mark.parametrize("norm_first", [True, False])
def test_a_transformer_decoder_in_a_graph_gradchecks(backend, norm_first):
    with portnn.default_dtype("float64"):
        portnn.seed(9)
        x = portnn.Input((4, 6))
        memory = portnn.Dense(6, 6)(x)
        block = portnn.TransformerDecoderLayer(6, 2, dim_feedforward=8,
                                               norm_first=norm_first,
                                               activation="gelu")
        model = portnn.Model(inputs=x, outputs=block([portnn.Tanh()(x), memory]))
    result = portnn.gradcheck(model, backend.asarray(_normal((2, 4, 6), 12)))
    assert result.ok, result


def test_a_masked_seq2seq_graph_trains_saves_and_loads(tmp_path):
    """Source and target token ids, both padded: the encoder's mask masks
    the memory's keys in the decoder, the target's the loss."""
    portnn.seed(13)
    src = portnn.Input((None,), dtype="int64")
    tgt = portnn.Input((None,), dtype="int64")
    memory = portnn.TransformerEncoderLayer(8, 2, dim_feedforward=16)(
        portnn.Embedding(10, 8, mask_zero=True)(src))
    h = portnn.TransformerDecoderLayer(8, 2, dim_feedforward=16)(
        [portnn.Embedding(10, 8, mask_zero=True)(tgt), memory])
    model = portnn.Model(inputs=[src, tgt], outputs=portnn.Dense(8, 10)(h))
    rs = np.random.default_rng(14)
    s, t = rs.integers(1, 10, (16, 6)), rs.integers(1, 10, (16, 5))
    s[:8, 4:], t[:8, 3:] = 0, 0
    history = model.fit([s, t], (t + 1) % 10, loss="cross_entropy", epochs=2,
                        verbose=0)
    assert np.isfinite(history["loss"]).all()
    model.save(tmp_path / "m")
    loaded = portnn.load(tmp_path / "m")
    np.testing.assert_array_equal(to_np(loaded.predict([s, t])),
                                  to_np(model.predict([s, t])))
    # padding the source further changes nothing (its keys are masked)
    longer = np.pad(s, ((0, 0), (0, 2)))
    np.testing.assert_allclose(to_np(loaded.predict([longer, t])),
                               to_np(loaded.predict([s, t])), rtol=1e-5, atol=1e-6)
