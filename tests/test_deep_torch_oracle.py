"""Deep layers against PyTorch autograd: torch's weights are copied into the
portnn layer, both run forward on the same input and backward from the same
upstream gradient, and the output, the input gradient and every parameter
gradient must agree (float64).

Intended differences, each tested: portnn's GELU is the tanh form (torch
is given ``approximate="tanh"``), one-sided padding is torch's ``ZeroPad``
followed by an unpadded convolution, and a fully masked attention row gives
zeros in portnn where torch gives NaN.
"""

from __future__ import annotations

import numpy as np
import pytest

import portnn

from .conftest import to_np

TOL = {"atol": 1e-10, "rtol": 1e-8}


def _normal(shape, seed):
    return np.random.default_rng(seed).normal(size=shape)


def _compare(backend, torch, layer, module, x_np, pairs, training=False,
             call=None, tcall=None, integer=False):
    """Copy torch -> portnn along `pairs`, run both, compare everything.

    `pairs` lists ``(portnn Parameter, torch Parameter, to_portnn)`` where
    ``to_portnn`` maps torch's layout to portnn's (identity when None).
    """
    for p, tp, fn in pairs:
        value = tp.detach().numpy()
        p.value = backend.asarray(np.ascontiguousarray(fn(value) if fn else value))
    module.train(training)
    tx = torch.tensor(x_np, requires_grad=not integer)
    ty = (tcall or (lambda m, v: m(v)))(module, tx)
    x = backend.asarray(x_np)
    y = (call or (lambda la, v: la(v, training=training)))(layer, x)
    np.testing.assert_allclose(to_np(y), ty.detach().numpy(), **TOL)
    dy_np = _normal(tuple(ty.shape), seed=7)
    layer.zero_grad()
    dx = layer.backward(backend.asarray(dy_np))
    ty.backward(torch.tensor(dy_np))
    if not integer:
        np.testing.assert_allclose(to_np(dx), tx.grad.numpy(), **TOL)
    for p, tp, fn in pairs:
        g = tp.grad.numpy()
        np.testing.assert_allclose(to_np(p.grad), fn(g) if fn else g, **TOL,
                                   err_msg=p.name)
    return y, ty


def _conv_pairs(layer, conv):
    pairs = [(layer.W, conv.weight, None)]
    if layer.b is not None:
        pairs.append((layer.b, conv.bias, None))
    return pairs


CONV2D = {
    "plain": ({"kernel_size": 3}, (2, 3, 6, 5)),
    "stride2_pad1": ({"kernel_size": 3, "stride": 2, "padding": 1}, (2, 3, 7, 6)),
    "same": ({"kernel_size": (2, 3), "padding": "same"}, (1, 3, 5, 5)),
    "dilation": ({"kernel_size": 3, "dilation": (2, 1), "padding": (2, 1)},
                 (2, 3, 6, 6)),
    "depthwise": ({"kernel_size": 3, "groups": 3, "padding": 1, "out": 6},
                  (2, 3, 5, 5)),
    "no_bias_1x1": ({"kernel_size": 1, "bias": False}, (2, 3, 4, 4)),
}


# torch's own note that it copies for an even kernel with padding="same"
@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
@pytest.mark.parametrize("case", sorted(CONV2D))
def test_conv2d_matches_torch(backend, torch, case):
    kw, shape = CONV2D[case]
    kw = dict(kw)
    out = kw.pop("out", 4)
    with portnn.default_dtype("float64"):
        layer = portnn.Conv2D(3, out, **kw)
    conv = torch.nn.Conv2d(3, out, **kw).double()
    _compare(backend, torch, layer, conv, _normal(shape, 1), _conv_pairs(layer, conv))


def test_conv2d_one_sided_padding_matches_torch_zeropad(backend, torch):
    with portnn.default_dtype("float64"):
        layer = portnn.Conv2D(2, 3, 3, padding=((0, 2), (1, 0)))
    conv = torch.nn.Conv2d(2, 3, 3).double()
    module = torch.nn.Sequential(torch.nn.ZeroPad2d((1, 0, 0, 2)), conv)
    _compare(backend, torch, layer, module, _normal((2, 2, 4, 5), 1),
             _conv_pairs(layer, conv))


@pytest.mark.parametrize("kw", [{"kernel_size": 3}, {"kernel_size": 4, "stride": 3,
                                "padding": 2}, {"kernel_size": 3, "padding": "same",
                                                "dilation": 2, "groups": 2}])
def test_conv1d_matches_torch(backend, torch, kw):
    with portnn.default_dtype("float64"):
        layer = portnn.Conv1D(4, 6, **kw)
    conv = torch.nn.Conv1d(4, 6, **kw).double()
    _compare(backend, torch, layer, conv, _normal((2, 4, 9), 1),
             _conv_pairs(layer, conv))


CONV_TRANSPOSE = {
    "plain": (2, {"kernel_size": 3}, (2, 3, 4, 5)),
    "stride2_pad1_output_pad1": (
        2, {"kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1},
        (2, 3, 4, 3)),
    "asymmetric": (2, {"kernel_size": (2, 3), "stride": (3, 2), "padding": (1, 0),
                       "output_padding": (2, 1)}, (1, 3, 3, 4)),
    "dilation_groups": (2, {"kernel_size": 3, "stride": 2, "dilation": (3, 1),
                            "output_padding": (2, 1), "groups": 3, "out": 6},
                        (2, 3, 3, 3)),
    "no_bias_1x1": (2, {"kernel_size": 1, "bias": False}, (2, 3, 2, 2)),
    "1d": (1, {"kernel_size": 4, "stride": 3, "padding": 1, "output_padding": 2},
           (2, 3, 5)),
    "1d_dilation_groups": (1, {"kernel_size": 3, "stride": 2, "dilation": 2,
                               "groups": 3, "out": 3}, (2, 3, 6)),
}


@pytest.mark.parametrize("case", sorted(CONV_TRANSPOSE))
def test_conv_transpose_matches_torch(backend, torch, case):
    nd, kw, shape = CONV_TRANSPOSE[case]
    kw = dict(kw)
    out = kw.pop("out", 4)
    cls = portnn.Conv2DTranspose if nd == 2 else portnn.Conv1DTranspose
    with portnn.default_dtype("float64"):
        layer = cls(3, out, **kw)
    tcls = torch.nn.ConvTranspose2d if nd == 2 else torch.nn.ConvTranspose1d
    conv = tcls(3, out, **kw).double()
    assert tuple(layer.W.shape) == tuple(conv.weight.shape)
    _compare(backend, torch, layer, conv, _normal(shape, 1), _conv_pairs(layer, conv))


def test_conv_transpose_same_is_stride_times_the_input(backend, torch):
    # Keras's padding="same" (TensorFlow's SAME: the odd row and column are
    # cropped at the end): PyTorch's unpadded layer, its last row and column
    # dropped. (PyTorch's padding=1, output_padding=1 crops the first ones.)
    with portnn.default_dtype("float64"):
        layer = portnn.Conv2DTranspose(3, 2, 3, stride=2, padding="same")
    conv = torch.nn.ConvTranspose2d(3, 2, 3, stride=2).double()
    y, _ = _compare(backend, torch, layer, conv, _normal((2, 3, 4, 5), 1),
                    _conv_pairs(layer, conv),
                    tcall=lambda m, v: m(v)[..., :-1, :-1])
    assert tuple(y.shape) == (2, 2, 8, 10)


POOLS = {
    "max2d": (lambda: portnn.MaxPool2D(2), lambda t: t.nn.MaxPool2d(2), (2, 3, 4, 6)),
    "max2d_overlap_pad": (lambda: portnn.MaxPool2D(3, stride=2, padding=1),
                          lambda t: t.nn.MaxPool2d(3, 2, 1), (2, 2, 7, 5)),
    "avg2d": (lambda: portnn.AvgPool2D((2, 3)), lambda t: t.nn.AvgPool2d((2, 3)),
              (2, 3, 4, 6)),
    "avg2d_pad": (lambda: portnn.AvgPool2D(3, stride=2, padding=1),
                  lambda t: t.nn.AvgPool2d(3, 2, 1), (1, 2, 5, 5)),
    "max1d": (lambda: portnn.MaxPool1D(3, stride=2), lambda t: t.nn.MaxPool1d(3, 2),
              (2, 3, 9)),
    "avg1d": (lambda: portnn.AvgPool1D(2), lambda t: t.nn.AvgPool1d(2), (2, 3, 8)),
    "global_avg": (portnn.GlobalAvgPool2D, lambda t: t.nn.Sequential(
        t.nn.AdaptiveAvgPool2d(1), t.nn.Flatten()), (2, 3, 4, 5)),
    "global_avg1d": (portnn.GlobalAvgPool1D, lambda t: t.nn.Sequential(
        t.nn.AdaptiveAvgPool1d(1), t.nn.Flatten()), (2, 3, 5)),
    "flatten": (portnn.Flatten, lambda t: t.nn.Flatten(), (2, 3, 2, 2)),
    "global_max2d": (portnn.GlobalMaxPool2D, lambda t: t.nn.Sequential(
        t.nn.AdaptiveMaxPool2d(1), t.nn.Flatten()), (2, 3, 4, 5)),
    "global_max1d": (portnn.GlobalMaxPool1D, lambda t: t.nn.Sequential(
        t.nn.AdaptiveMaxPool1d(1), t.nn.Flatten()), (2, 3, 7)),
    "zero_pad2d": (lambda: portnn.ZeroPadding2D(((1, 0), (2, 1))),
                   lambda t: t.nn.ZeroPad2d((2, 1, 1, 0)), (2, 3, 4, 5)),
    "zero_pad1d": (lambda: portnn.ZeroPadding1D((1, 2)),
                   lambda t: t.nn.ConstantPad1d((1, 2), 0.0), (2, 3, 4)),
    "upsample2d_nearest": (lambda: portnn.UpSampling2D((2, 3)),
                           lambda t: t.nn.Upsample(scale_factor=(2, 3)), (2, 3, 4, 5)),
    "upsample2d_bilinear": (
        lambda: portnn.UpSampling2D((3, 2), interpolation="bilinear"),
        lambda t: t.nn.Upsample(scale_factor=(3, 2), mode="bilinear",
                                align_corners=False), (2, 3, 4, 5)),
    "upsample1d_nearest": (lambda: portnn.UpSampling1D(2),
                           lambda t: t.nn.Upsample(scale_factor=2), (2, 3, 5)),
    "upsample1d_linear": (
        lambda: portnn.UpSampling1D(3, interpolation="linear"),
        lambda t: t.nn.Upsample(scale_factor=3, mode="linear", align_corners=False),
        (2, 3, 5)),
}


@pytest.mark.parametrize("case", sorted(POOLS))
def test_pooling_matches_torch(backend, torch, case):
    make, tmake, shape = POOLS[case]
    _compare(backend, torch, make(), tmake(torch), _normal(shape, 1), [])


def test_maxpool_ties_route_to_the_first_maximum_like_torch(backend, torch):
    x = np.zeros((1, 1, 4, 4))
    _compare(backend, torch, portnn.MaxPool2D(2), torch.nn.MaxPool2d(2), x, [])


def _bn_pairs(layer, bn):
    return [(layer.gamma, bn.weight, None), (layer.beta, bn.bias, None)]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("kind", ["1d", "1d_sequence", "2d"])
def test_batchnorm_matches_torch(backend, torch, kind, training):
    shape = {"1d": (6, 4), "1d_sequence": (3, 4, 5), "2d": (3, 4, 2, 3)}[kind]
    cls = portnn.BatchNorm2D if kind == "2d" else portnn.BatchNorm1D
    tcls = torch.nn.BatchNorm2d if kind == "2d" else torch.nn.BatchNorm1d
    with portnn.default_dtype("float64"):
        layer = cls(4, momentum=0.2)
    bn = tcls(4, momentum=0.2).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(_normal(4, 3)))
        bn.bias.copy_(torch.tensor(_normal(4, 4)))
        bn.running_mean.copy_(torch.tensor(_normal(4, 5)))
        bn.running_var.copy_(torch.tensor(np.abs(_normal(4, 6)) + 0.5))
    layer.load_state_dict({"gamma": bn.weight.detach().numpy(),
                           "beta": bn.bias.detach().numpy(),
                           "running_mean": bn.running_mean.numpy(),
                           "running_var": bn.running_var.numpy()})
    _compare(backend, torch, layer, bn, _normal(shape, 1) * 2 + 1,
             _bn_pairs(layer, bn), training=training)
    np.testing.assert_allclose(to_np(layer.running_mean), bn.running_mean.numpy(),
                               **TOL)
    np.testing.assert_allclose(to_np(layer.running_var), bn.running_var.numpy(),
                               **TOL)


@pytest.mark.parametrize("shape", [(5,), (3, 5)])
def test_layernorm_matches_torch(backend, torch, shape):
    with portnn.default_dtype("float64"):
        layer = portnn.LayerNorm(shape)
    ln = torch.nn.LayerNorm(shape).double()
    with torch.no_grad():
        ln.weight.copy_(torch.tensor(_normal(shape, 3)))
        ln.bias.copy_(torch.tensor(_normal(shape, 4)))
    _compare(backend, torch, layer, ln, _normal((2, 3, 5), 1),
             [(layer.gamma, ln.weight, None), (layer.beta, ln.bias, None)])


@pytest.mark.parametrize(("shape", "eps"), [((5,), None), ((3, 5), 1e-3)])
def test_rmsnorm_matches_torch(backend, torch, shape, eps):
    with portnn.default_dtype("float64"):
        layer = portnn.RMSNorm(shape, eps=eps)
    ref = torch.nn.RMSNorm(shape, eps=eps).double()
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(_normal(shape, 3)))
    _compare(backend, torch, layer, ref, _normal((2, 3, 5), 1) * 0.1,
             [(layer.gamma, ref.weight, None)])


@pytest.mark.parametrize(("groups", "shape"), [(2, (2, 4, 3, 3)), (1, (3, 4, 5)),
                                               (4, (2, 4, 6))])
def test_groupnorm_matches_torch(backend, torch, groups, shape):
    with portnn.default_dtype("float64"):
        layer = portnn.GroupNorm(groups, 4)
    ref = torch.nn.GroupNorm(groups, 4).double()
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(_normal((4,), 3)))
        ref.bias.copy_(torch.tensor(_normal((4,), 4)))
    _compare(backend, torch, layer, ref, _normal(shape, 1) * 2 + 1,
             [(layer.gamma, ref.weight, None), (layer.beta, ref.bias, None)])


def test_norms_name_a_wrong_input_shape():
    with pytest.raises(ValueError, match=r"GroupNorm: expected input \(batch, 4, "
                       r"...\), got shape \(2, 3, 5\)"):
        portnn.GroupNorm(2, 4)(np.ones((2, 3, 5), np.float32))
    with pytest.raises(ValueError, match="num_groups \\(3\\) must divide"):
        portnn.GroupNorm(3, 4)
    with pytest.raises(ValueError, match=r"RMSNorm: expected input ending in \(4,\)"):
        portnn.RMSNorm(4)(np.ones((2, 3), np.float32))


def test_embedding_matches_torch(backend, torch):
    with portnn.default_dtype("float64"):
        layer = portnn.Embedding(7, 3)
    emb = torch.nn.Embedding(7, 3).double()
    ids = np.array([[1, 6, 1, 0], [6, 6, 2, 1]])
    _compare(backend, torch, layer, emb, ids, [(layer.W, emb.weight, None)],
             integer=True)


@pytest.mark.parametrize("tie_weights", [True, False])
def test_reversible_embedding_in_a_language_model_matches_torch(backend, torch,
                                                                tie_weights):
    """ids -> table -> tanh(Dense) -> table reversed, against torch with one
    nn.Embedding whose weight also projects (GPT-2's tying) or a separate
    bias-free output Linear: logits, and every gradient, the table's being
    the sum of its two uses'."""
    with portnn.use_backend(backend.spec), portnn.default_dtype("float64"):
        ids = portnn.Input((None,), dtype="int64")
        table = portnn.ReversibleEmbedding(7, 4, tie_weights=tie_weights,
                                           padding_idx=0)
        dense = portnn.Dense(4, 4, activation="tanh")
        model = portnn.Model(inputs=ids, outputs=table(dense(table(ids)),
                                                       reverse=True))
    emb = torch.nn.Embedding(7, 4, padding_idx=0).double()
    lin = torch.nn.Linear(4, 4).double()
    out = torch.nn.Linear(4, 7, bias=False).double()

    def tforward(_, x):
        h = torch.tanh(lin(emb(x)))
        if tie_weights:
            return h @ emb.weight.T
        return out(h)

    pairs = [(table.W, emb.weight, None), (dense.W, lin.weight, np.transpose),
             (dense.b, lin.bias, None)]
    if not tie_weights:
        pairs.append((table.reverse_W, out.weight, np.transpose))
    ids_np = np.array([[1, 6, 1, 0], [6, 6, 2, 1]])
    if tie_weights:
        # torch's padding_idx stops only the lookup's gradient; portnn's
        # padding row never learns, from either use: compare the rest
        with torch.no_grad():
            emb.weight[0] = 0.0
        emb.weight.register_hook(lambda g: g * torch.tensor(
            [0.0] + [1.0] * 6, dtype=g.dtype)[:, None])
    _compare(backend, torch, model, torch.nn.ModuleList([emb, lin, out]), ids_np,
             pairs, integer=True, call=lambda m, v: m(v, training=True),
             tcall=tforward)
    assert len(model.parameters()) == (3 if tie_weights else 4)


def _rnn_pairs(layer, module):
    pairs = [(layer.W_ih, module.weight_ih_l0, None),
             (layer.W_hh, module.weight_hh_l0, None)]
    if layer.b_ih is not None:
        pairs += [(layer.b_ih, module.bias_ih_l0, None),
                  (layer.b_hh, module.bias_hh_l0, None)]
    return pairs


RECURRENT = {"rnn": ("RNN", "RNN"), "lstm": ("LSTM", "LSTM"), "gru": ("GRU", "GRU")}


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("kind", sorted(RECURRENT))
def test_recurrent_matches_torch(backend, torch, kind, return_sequences, bias):
    ours, theirs = RECURRENT[kind]
    with portnn.default_dtype("float64"):
        layer = getattr(portnn, ours)(3, 5, return_sequences=return_sequences,
                                      bias=bias)
    module = getattr(torch.nn, theirs)(3, 5, batch_first=True, bias=bias).double()

    def tcall(m, x):
        out = m(x)[0]
        return out if return_sequences else out[:, -1, :]

    _compare(backend, torch, layer, module, _normal((2, 6, 3), 1),
             _rnn_pairs(layer, module), tcall=tcall)


@pytest.mark.parametrize("kind", sorted(RECURRENT))
def test_recurrent_initial_state_and_final_state_match_torch(backend, torch, kind):
    ours, theirs = RECURRENT[kind]
    with portnn.default_dtype("float64"):
        layer = getattr(portnn, ours)(2, 4)
    module = getattr(torch.nn, theirs)(2, 4, batch_first=True).double()
    names = ("h", "c") if kind == "lstm" else ("h",)
    states_np = [_normal((3, 4), 10 + i) for i in range(len(names))]
    tstates = [torch.tensor(s[None], requires_grad=True) for s in states_np]
    tfinal = {}

    def tcall(m, x):
        out, final = m(x, tuple(tstates) if kind == "lstm" else tstates[0])
        tfinal["state"] = final
        return out

    def call(la, x):
        states = [backend.asarray(s) for s in states_np]
        return la(x, initial_state=tuple(states) if kind == "lstm" else states[0])

    _compare(backend, torch, layer, module, _normal((3, 5, 2), 1),
             _rnn_pairs(layer, module), call=call, tcall=tcall)
    ours_final = layer.final_state if kind == "lstm" else (layer.final_state,)
    theirs_final = tfinal["state"] if kind == "lstm" else (tfinal["state"],)
    grads = layer.initial_state_grad if kind == "lstm" else (
        layer.initial_state_grad,)
    for mine, ref in zip(ours_final, theirs_final, strict=True):
        np.testing.assert_allclose(to_np(mine), ref.detach().numpy()[0], **TOL)
    for mine, ref in zip(grads, tstates, strict=True):
        np.testing.assert_allclose(to_np(mine), ref.grad.numpy()[0], **TOL)


def _mha_pairs(layer, mha):
    pairs = [(layer.W_in, mha.in_proj_weight, None),
             (layer.W_out, mha.out_proj.weight, None)]
    if layer.b_in is not None:
        pairs += [(layer.b_in, mha.in_proj_bias, None),
                  (layer.b_out, mha.out_proj.bias, None)]
    return pairs


@pytest.mark.parametrize("mask", ["none", "causal", "attn_mask", "padding", "both"])
def test_multihead_attention_matches_torch(backend, torch, mask):
    n, t, e, h = 2, 5, 8, 2
    with portnn.default_dtype("float64"):
        layer = portnn.MultiHeadAttention(e, h, causal=mask == "causal")
    mha = torch.nn.MultiheadAttention(e, h, batch_first=True).double()
    with torch.no_grad():  # torch zeroes these biases; make them count
        mha.in_proj_bias.copy_(torch.tensor(_normal(3 * e, 3)))
        mha.out_proj.bias.copy_(torch.tensor(_normal(e, 4)))
    attn = np.random.default_rng(2).random((t, t)) < 0.3
    np.fill_diagonal(attn, False)  # every query keeps a key
    pad = np.zeros((n, t), dtype=bool)
    pad[0, 3:] = True
    causal = np.triu(np.ones((t, t), dtype=bool), k=1)
    kw = {"none": {}, "causal": {}, "attn_mask": {"attn_mask": attn},
          "padding": {"key_padding_mask": pad},
          "both": {"attn_mask": attn, "key_padding_mask": pad}}[mask]
    tkw = {k: torch.tensor(v) for k, v in kw.items()}
    if mask == "causal":
        tkw["attn_mask"] = torch.tensor(causal)

    def call(la, x):
        return la(x, attn_mask=backend.asarray(attn) if "attn_mask" in kw else None,
                  key_padding_mask=(backend.asarray(pad) if "key_padding_mask" in kw
                                    else None))

    _compare(backend, torch, layer, mha, _normal((n, t, e), 1), _mha_pairs(layer, mha),
             call=call, tcall=lambda m, x: m(x, x, x, need_weights=False, **tkw)[0])


def test_fully_masked_query_gives_zeros_not_nan(backend):
    with portnn.default_dtype("float64"):
        layer = portnn.MultiHeadAttention(4, 1, bias=False)
    x = backend.asarray(_normal((1, 3, 4), 1))
    y = layer(x, attn_mask=backend.asarray(np.ones((3, 3), dtype=bool)))
    np.testing.assert_array_equal(to_np(y), np.zeros((1, 3, 4)))


@pytest.mark.parametrize("causal", [False, True])
def test_transformer_encoder_layer_matches_torch(backend, torch, causal):
    d, h, ff = 8, 2, 12
    with portnn.default_dtype("float64"):
        layer = portnn.TransformerEncoderLayer(d, h, dim_feedforward=ff, causal=causal)
    tlayer = torch.nn.TransformerEncoderLayer(
        d, h, dim_feedforward=ff, dropout=0.0, batch_first=True, norm_first=True,
        activation=lambda v: torch.nn.functional.gelu(v, approximate="tanh"),
    ).double()
    with torch.no_grad():
        for p in (tlayer.norm1.weight, tlayer.norm1.bias, tlayer.norm2.weight,
                  tlayer.norm2.bias, tlayer.self_attn.in_proj_bias):
            p.copy_(torch.tensor(_normal(tuple(p.shape), 3)))
    pairs = [
        (layer.norm1.gamma, tlayer.norm1.weight, None),
        (layer.norm1.beta, tlayer.norm1.bias, None),
        *_mha_pairs(layer.attn, tlayer.self_attn),
        (layer.norm2.gamma, tlayer.norm2.weight, None),
        (layer.norm2.beta, tlayer.norm2.bias, None),
        (layer.ff1.W, tlayer.linear1.weight, np.transpose),
        (layer.ff1.b, tlayer.linear1.bias, None),
        (layer.ff2.W, tlayer.linear2.weight, np.transpose),
        (layer.ff2.b, tlayer.linear2.bias, None),
    ]
    t = 5
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1) if causal else None
    _compare(backend, torch, layer, tlayer, _normal((2, t, d), 1), pairs,
             tcall=lambda m, x: m(x, src_mask=mask, is_causal=causal))


def _torch_activation(torch, name):
    if name == "gelu_tanh":
        return lambda v: torch.nn.functional.gelu(v, approximate="tanh")
    return name  # torch's own names: "relu", "gelu" (exact)


def _norm_pairs(torch, pairs_of):
    pairs = []
    for ours, theirs in pairs_of:
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(_normal(tuple(theirs.weight.shape), 3)))
            theirs.bias.copy_(torch.tensor(_normal(tuple(theirs.bias.shape), 4)))
        pairs += [(ours.gamma, theirs.weight, None), (ours.beta, theirs.bias, None)]
    return pairs


def _ff_pairs(layer, tlayer):
    return [(layer.ff1.W, tlayer.linear1.weight, np.transpose),
            (layer.ff1.b, tlayer.linear1.bias, None),
            (layer.ff2.W, tlayer.linear2.weight, np.transpose),
            (layer.ff2.b, tlayer.linear2.bias, None)]


@pytest.mark.parametrize(("norm_first", "activation"), [
    (False, "relu"), (False, "gelu"), (True, "gelu"), (True, "relu")])
def test_transformer_encoder_options_match_torch(backend, torch, norm_first,
                                                 activation):
    d, h, ff = 8, 2, 12
    with portnn.default_dtype("float64"):
        layer = portnn.TransformerEncoderLayer(d, h, dim_feedforward=ff,
                                               norm_first=norm_first,
                                               activation=activation)
    tlayer = torch.nn.TransformerEncoderLayer(
        d, h, dim_feedforward=ff, dropout=0.0, batch_first=True,
        norm_first=norm_first, activation=_torch_activation(torch, activation),
    ).double()
    pairs = [*_norm_pairs(torch, [(layer.norm1, tlayer.norm1),
                                  (layer.norm2, tlayer.norm2)]),
             *_mha_pairs(layer.attn, tlayer.self_attn), *_ff_pairs(layer, tlayer)]
    _compare(backend, torch, layer, tlayer, _normal((2, 5, d), 1), pairs)


@pytest.mark.parametrize(("norm_first", "activation"), [
    (True, "gelu_tanh"), (False, "relu"), (True, "gelu")])
def test_transformer_decoder_layer_matches_torch(backend, torch, norm_first,
                                                 activation):
    d, h, ff, t, s = 8, 2, 12, 5, 7
    with portnn.default_dtype("float64"):
        portnn.seed(4)
        layer = portnn.TransformerDecoderLayer(d, h, dim_feedforward=ff,
                                               norm_first=norm_first,
                                               activation=activation)
    tlayer = torch.nn.TransformerDecoderLayer(
        d, h, dim_feedforward=ff, dropout=0.0, batch_first=True,
        norm_first=norm_first, activation=_torch_activation(torch, activation),
    ).double()
    pairs = [*_norm_pairs(torch, [(layer.norm1, tlayer.norm1),
                                  (layer.norm2, tlayer.norm2),
                                  (layer.norm3, tlayer.norm3)]),
             *_mha_pairs(layer.self_attn, tlayer.self_attn),
             *_mha_pairs(layer.cross_attn, tlayer.multihead_attn),
             *_ff_pairs(layer, tlayer)]
    for p, tp, fn in pairs:
        value = tp.detach().numpy()
        p.value = backend.asarray(np.ascontiguousarray(fn(value) if fn else value))
    target, memory = _normal((2, t, d), 1), _normal((2, s, d), 2)
    pad = np.zeros((2, s), bool)
    pad[1, -3:] = True  # padded memory steps
    ttarget = torch.tensor(target, requires_grad=True)
    tmemory = torch.tensor(memory, requires_grad=True)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(t).double()
    ty = tlayer(ttarget, tmemory, tgt_mask=causal, tgt_is_causal=True,
                memory_key_padding_mask=torch.tensor(pad))
    y = layer([backend.asarray(target), backend.asarray(memory)],
              memory_key_padding_mask=backend.asarray(pad))
    np.testing.assert_allclose(to_np(y), ty.detach().numpy(), **TOL)
    dy = _normal((2, t, d), 7)
    dtarget, dmemory = layer.backward(backend.asarray(dy))
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(to_np(dtarget), ttarget.grad.numpy(), **TOL)
    np.testing.assert_allclose(to_np(dmemory), tmemory.grad.numpy(), **TOL)
    for p, tp, fn in pairs:
        g = tp.grad.numpy()
        np.testing.assert_allclose(to_np(p.grad), fn(g) if fn else g, **TOL,
                                   err_msg=p.name)


def test_residual_cnn_block_matches_torch(backend, torch):
    with portnn.default_dtype("float64"):
        conv = portnn.Conv2D(3, 3, 3, padding=1)
        layer = portnn.Residual(portnn.Sequential(conv, portnn.ReLU()))
    tconv = torch.nn.Conv2d(3, 3, 3, padding=1).double()

    class TorchResidual(torch.nn.Module):
        def forward(self, x):
            return x + torch.relu(tconv(x))

    _compare(backend, torch, layer, TorchResidual(), _normal((2, 3, 4, 4), 1),
             _conv_pairs(conv, tconv))
