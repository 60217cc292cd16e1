"""``model.export(path)``: onnxruntime's outputs equal ``predict``'s for
every exportable layer, on every backend the model is built on."""

from __future__ import annotations

import numpy as np
import pytest

import portnn
from portnn.export import EXPORTABLE, ExportError

from .conftest import to_np

pytest.importorskip("onnx", reason="onnx is not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")


def _seq(*layers):
    return lambda: portnn.Sequential(*layers)


def _skip_graph():
    """A one-input graph with a skip, merges and a shared layer."""
    x = portnn.Input((5,))
    shared = portnn.Dense(5, 5, activation="tanh")
    h = shared(shared(x))
    merged = portnn.Concatenate(axis=1)([portnn.Add()([x, h]),
                                         portnn.Multiply()([x, h])])
    out = portnn.Average()([portnn.Dense(10, 5)(merged),
                            portnn.Subtract()([x, h])])
    return portnn.Model(inputs=x, outputs=out)


#: name -> (model factory, the shape of one sample; None: token ids)
CASES = {
    "dense": (lambda: portnn.Sequential(portnn.Dense(6, 5, activation="tanh"),
                                        portnn.Dense(5, 3)), (6,)),
    "dense-3d": (lambda: portnn.Sequential(portnn.Dense(6, 4)), (3, 6)),
    "conv2d": (lambda: portnn.Sequential(
        portnn.Conv2D(2, 4, 3, padding=1, activation="relu"),
        portnn.Conv2D(4, 3, 3, stride=2, dilation=1),
        portnn.Conv2D(3, 4, 2, padding="same", groups=1)), (2, 9, 9)),
    "conv2d-groups": (lambda: portnn.Sequential(
        portnn.Conv2D(4, 4, 3, groups=2, dilation=2)), (4, 9, 9)),
    "conv1d": (lambda: portnn.Sequential(portnn.Conv1D(3, 5, 3, padding=1),
                                         portnn.MaxPool1D(2), portnn.AvgPool1D(2)),
               (3, 12)),
    "pool2d": (lambda: portnn.Sequential(
        portnn.MaxPool2D(2), portnn.AvgPool2D(3, stride=1, padding=1)), (2, 8, 8)),
    "global-pools": (lambda: portnn.Sequential(
        portnn.Conv2D(2, 3, 3), portnn.GlobalAvgPool2D()), (2, 6, 6)),
    "global-max": (lambda: portnn.Sequential(portnn.GlobalMaxPool2D()), (3, 4, 4)),
    "global-1d": (lambda: portnn.Sequential(
        portnn.Conv1D(3, 4, 3), portnn.GlobalMaxPool1D()), (3, 9)),
    "global-1d-last": (lambda: portnn.Sequential(
        portnn.GlobalAvgPool1D(data_format="channels_last")), (5, 4)),
    "batchnorm": (lambda: portnn.Sequential(
        portnn.Conv2D(2, 3, 3), portnn.BatchNorm2D(3), portnn.Flatten(),
        portnn.Dense(12, 4), portnn.BatchNorm1D(4)), (2, 4, 4)),
    "norms": (lambda: portnn.Sequential(
        portnn.Dense(6, 8), portnn.LayerNorm(8), portnn.RMSNorm(8),
        portnn.Reshape((2, 4)), portnn.RMSNorm(4, eps=1e-3)), (6,)),
    "groupnorm": (lambda: portnn.Sequential(
        portnn.Conv2D(2, 4, 3), portnn.GroupNorm(2, 4)), (2, 5, 5)),
    "embedding": (lambda: portnn.Sequential(
        portnn.Embedding(11, 6), portnn.LayerNorm(6),
        portnn.GlobalAvgPool1D(data_format="channels_last"), portnn.Dense(6, 2)),
        None),
    "dropout-flatten-residual": (lambda: portnn.Sequential(
        portnn.Dropout(0.5), portnn.Residual(portnn.Dense(5, 5)),
        portnn.SpatialDropout1D(0.3), portnn.Flatten()), (2, 5)),
    "spatial-dropout-2d": (lambda: portnn.Sequential(
        portnn.SpatialDropout2D(0.5), portnn.Conv2D(2, 2, 1)), (2, 3, 3)),
    "lstm": (lambda: portnn.Sequential(portnn.LSTM(3, 5), portnn.LSTM(
        5, 4, return_sequences=False)), (6, 3)),
    "gru-rnn": (lambda: portnn.Sequential(portnn.GRU(3, 5), portnn.RNN(
        5, 4, return_sequences=False)), (6, 3)),
    "recurrent-no-bias": (lambda: portnn.Sequential(portnn.GRU(3, 4, bias=False),
                                                    portnn.LSTM(4, 2, bias=False)),
                          (5, 3)),
    "conv-transpose": (lambda: portnn.Sequential(
        portnn.Conv2DTranspose(2, 3, 3, stride=2, padding=1, output_padding=1),
        portnn.Conv2DTranspose(3, 2, 2, activation="relu")), (2, 4, 4)),
    "conv1d-transpose-upsampling": (lambda: portnn.Sequential(
        portnn.Conv1DTranspose(3, 4, 3, stride=2, dilation=2),
        portnn.UpSampling1D(2)), (3, 5)),
    "upsampling-permute": (lambda: portnn.Sequential(
        portnn.UpSampling2D((2, 3)), portnn.Permute((3, 1, 2))), (2, 3, 4)),
    "bidirectional": (lambda: portnn.Sequential(
        portnn.Bidirectional(portnn.LSTM(3, 4)),
        portnn.Bidirectional(portnn.GRU(8, 3), merge_mode="sum"),
        portnn.Bidirectional(portnn.RNN(3, 2, return_sequences=False),
                             merge_mode="ave")), (6, 3)),
    "bidirectional-mul-last": (lambda: portnn.Sequential(
        portnn.Bidirectional(portnn.LSTM(3, 4, return_sequences=False),
                             merge_mode="mul")), (5, 3)),
    "bidirectional-concat-last": (lambda: portnn.Sequential(
        portnn.Bidirectional(portnn.GRU(3, 4, return_sequences=False))), (5, 3)),
    "transformer-encoder": (lambda: portnn.Sequential(
        portnn.Embedding(11, 8), portnn.PositionalEncoding(16, 8),
        portnn.TransformerEncoderLayer(8, 2, 16, causal=True),
        portnn.PositionalEncoding(16, 8, learned=True),
        portnn.TransformerEncoderLayer(8, 2, 16, activation="relu",
                                       norm_first=False),
        portnn.LayerNorm(8), portnn.Dense(8, 11)), None),
    "attention": (lambda: portnn.Sequential(
        portnn.MultiHeadAttention(6, 3, causal=True),
        portnn.MultiHeadAttention(6, 2, bias=False)), (5, 6)),
    "graph-in-sequential": (lambda: portnn.Sequential(
        _skip_graph(), portnn.Dense(5, 2)), (5,)),
    "nested": (lambda: portnn.Sequential(
        portnn.Sequential(portnn.Dense(4, 4), portnn.ReLU()), portnn.Dense(4, 2)),
        (4,)),
}
ACTIVATIONS = ["ReLU", "Tanh", "Sigmoid", "Identity", "SELU", "LeakyReLU", "ELU",
               "SiLU", "Swish", "Mish", "Softplus", "Softmax", "LogSoftmax", "GELU",
               "PReLU"]
for _name in ACTIVATIONS:
    CASES[_name] = (lambda name=_name: portnn.Sequential(
        portnn.Conv2D(2, 3, 3), getattr(portnn, name)()), (2, 5, 5))
CASES["gelu-erf"] = (lambda: portnn.Sequential(portnn.Dense(4, 4),
                                               portnn.GELU(approximate="none")), (4,))
CASES["softplus-beta"] = (lambda: portnn.Sequential(portnn.Softplus(beta=2.0)), (4,))
CASES["prelu-channels"] = (lambda: portnn.Sequential(
    portnn.Conv2D(2, 3, 3), portnn.PReLU(num_parameters=3)), (2, 5, 5))


def _backends():
    out = []
    for name in ("numpy", "torch", "jax"):
        try:
            portnn.backends.get(name)
            out.append(name)
        except (portnn.backends.BackendUnavailableError, ValueError):
            pass
    return out


def _inputs(shape, n=5):
    rs = np.random.default_rng(1)
    if shape is None:
        return rs.integers(0, 11, size=(n, 7))
    return rs.normal(size=(n, *shape)).astype(np.float32)


def _trained(factory, shape, backend):
    """A model with non-trivial weights and statistics (one fit)."""
    with portnn.use_backend(backend):
        portnn.seed(0)
        model = factory()
        x = _inputs(shape, 16)
        y = model.build((7,) if shape is None else shape).predict(x)
        if model.parameters():
            model.compile(loss="mse", optimizer=portnn.SGD(model.parameters(),
                                                           lr=0.01))
            model.fit(x, to_np(y) + 0.1, epochs=1, batch_size=8, verbose=0)
    return model


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("case", sorted(CASES))
def test_onnxruntime_gives_what_predict_gives(case, backend, tmp_path):
    factory, shape = CASES[case]
    model = _trained(factory, shape, backend)
    path = tmp_path / "model.onnx"
    model.export(path)
    x = _inputs(shape, 3)  # another batch size than at export: dynamic
    with portnn.use_backend(backend):
        want = to_np(model.predict(x))
    got = ort.InferenceSession(str(path)).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_every_exportable_layer_has_a_case():
    covered = set()
    for factory, _ in CASES.values():
        with portnn.use_backend("numpy"):
            covered |= {type(layer).__name__
                        for layer in portnn.layers.base.walk_layers(factory())}
            covered |= {type(layer.activation).__name__
                        for layer in portnn.layers.base.walk_layers(factory())
                        if getattr(layer, "activation", None) is not None}
    # two inputs: test_a_transformer_decoder_with_cross_attention; reversed
    # (a graph node's keyword): test_every_example_model_exports[char_...]
    covered |= {"TransformerDecoderLayer", "ReversibleEmbedding"}
    assert set(EXPORTABLE) <= covered, set(EXPORTABLE) - covered


def test_shared_weights_are_stored_once(tmp_path):
    shared = portnn.Dense(4, 4)
    model = portnn.Sequential(shared, portnn.ReLU(), shared).build((4,))
    proto = model.export(tmp_path / "m.onnx")
    assert len(proto.graph.initializer) == 2  # W and b, once
    x = _inputs((4,))
    np.testing.assert_allclose(
        ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"input": x})[0],
        to_np(model.predict(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", _backends())
def test_a_graph_with_two_inputs_and_two_outputs(backend, tmp_path):
    # inputs by their Input names (token ids of open length, and features),
    # outputs by their keys; a layer shared by two branches stored once
    with portnn.use_backend(backend):
        portnn.seed(0)
        ids = portnn.Input((None,), dtype="int64", name="ids")
        feats = portnn.Input((4,), name="feats")
        text = portnn.GlobalAvgPool1D(data_format="channels_last")(
            portnn.Bidirectional(portnn.GRU(6, 3))(portnn.Embedding(11, 6)(ids)))
        shared = portnn.Dense(4, 6)
        both = portnn.Concatenate(axis=-1)([text, shared(feats)])
        out = {"cls": portnn.Dense(12, 3)(both),
               "diff": portnn.Subtract()([shared(feats), text]),
               "mean": portnn.Average()([text, shared(feats)])}
        model = portnn.Model(inputs=[ids, feats], outputs=out)
        proto = model.export(tmp_path / "g.onnx")
        rs = np.random.default_rng(2)
        x = {"ids": rs.integers(0, 11, (3, 9)),  # another length than exported
             "feats": rs.normal(size=(3, 4)).astype(np.float32)}
        want = {k: to_np(v) for k, v in model.predict(x).items()}
    assert [i.name for i in proto.graph.input] == ["ids", "feats"]
    shared_weights = [t for t in proto.graph.initializer
                      if tuple(t.dims) == (4, 6)]
    assert len(shared_weights) == 1
    session = ort.InferenceSession(str(tmp_path / "g.onnx"))
    names = [o.name for o in session.get_outputs()]
    assert names == ["cls", "diff", "mean"]
    for name, got in zip(names, session.run(None, x), strict=True):
        np.testing.assert_allclose(got, want[name], rtol=1e-5, atol=1e-5,
                                   err_msg=name)


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("backend", _backends())
def test_a_transformer_decoder_with_cross_attention(backend, norm_first,
                                                   tmp_path):
    # target and memory of open, different lengths
    with portnn.use_backend(backend):
        portnn.seed(0)
        tgt, mem = portnn.Input((None, 8), name="tgt"), portnn.Input((None, 8),
                                                                     name="mem")
        h = portnn.TransformerDecoderLayer(8, 2, 16, norm_first=norm_first)(
            [tgt, mem])
        h = portnn.MultiHeadAttention(8, 4)([h, mem, mem])
        model = portnn.Model(inputs=[tgt, mem], outputs=portnn.Dense(8, 3)(h))
        model.export(tmp_path / "d.onnx")
        rs = np.random.default_rng(1)
        x = {"tgt": rs.normal(size=(2, 5, 8)).astype(np.float32),
             "mem": rs.normal(size=(2, 6, 8)).astype(np.float32)}
        want = to_np(model.predict(x))
    got = ort.InferenceSession(str(tmp_path / "d.onnx")).run(None, x)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_what_cannot_be_exported_says_so(tmp_path):
    model = portnn.Sequential(portnn.Dense(4, 4), portnn.Masking()).build((4,))
    with pytest.raises(ExportError,
                       match=r"Masking cannot be exported.*Conv2D.*Dense"):
        model.export(tmp_path / "m.onnx")
    with pytest.raises(ExportError, match="interpolation='nearest' can"):
        portnn.Sequential(portnn.UpSampling1D(2, interpolation="linear")).build(
            (2, 4)).export(tmp_path / "m.onnx")
    masked = portnn.Sequential(portnn.Embedding(5, 3, mask_zero=True),
                               portnn.LSTM(3, 2)).build((4,))
    with pytest.raises(ExportError, match=r"mask_zero=True\) cannot be exported"):
        masked.export(tmp_path / "m.onnx")
    with pytest.raises(ExportError, match=r"input shape.*build"):
        portnn.Sequential(portnn.Dense(4, 2)).export(tmp_path / "m.onnx")
    built = portnn.Sequential(portnn.Dense(4, 2)).build((4,))
    with pytest.raises(ExportError, match="opset must be"):
        built.export(tmp_path / "m.onnx", opset=11)
    with pytest.raises(ValueError, match="format must be 'onnx'"):
        built.export(tmp_path / "m.tflite", format="tflite")
    assert not (tmp_path / "m.onnx").exists()


def _example(name):
    import importlib.util
    import pathlib
    import sys

    folder = pathlib.Path(__file__).resolve().parents[1] / "examples"
    sys.path.insert(0, str(folder))  # the examples import their _common
    try:
        spec = importlib.util.spec_from_file_location(
            f"example_{name}", folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    return module


#: example -> (its model, small; a sample's shape for a stack, else None)
EXAMPLES = {
    "digits": (lambda m: m.build_model(), (64,)),
    "cnn_digits": (lambda m: m.build_model(8), (1, 8, 8)),
    "conv_autoencoder": (lambda m: m.build(8), (1, 8, 8)),
    "transformer_sort": (lambda m: m.build_model(6, 16, 1), "ids6"),
    "multi_output": (lambda m: m.build_model(16), None),
    "siamese_digits": (lambda m: m.build_model(16), None),
    "unet_segmentation": (lambda m: m.build(4), None),
    "char_transformer": (lambda m: m.build(20, 16, 1, 2), None),
}


def _example_inputs(model, shape, rs):
    if shape == "ids6":
        return {"input": rs.integers(0, 10, (3, 6))}
    if shape is not None:
        return {"input": rs.normal(size=(3, *shape)).astype(np.float32)}
    feed = {}
    for i, spec in enumerate(model.graph["inputs"]):
        name = spec["name"] or ("input" if len(model.graph["inputs"]) == 1
                                else f"input_{i}")
        dims = [7 if d is None else d for d in spec["shape"]]
        feed[name] = (rs.integers(0, 20, (3, *dims)) if spec["dtype"] == "int64"
                      else rs.normal(size=(3, *dims)).astype(np.float32))
    return feed


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_example_model_exports(name, tmp_path):
    make, shape = EXAMPLES[name]
    portnn.seed(0)
    model = make(_example(name))
    if shape is not None:
        model.build((6,) if shape == "ids6" else shape)
    model.export(tmp_path / "e.onnx")
    feed = _example_inputs(model, shape, np.random.default_rng(0))
    want = model.predict(feed["input"] if list(feed) == ["input"] else feed)
    want = list(want.values()) if isinstance(want, dict) else [want]
    got = ort.InferenceSession(str(tmp_path / "e.onnx")).run(None, feed)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, to_np(w), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["bidirectional_tagger", "seq2seq_dates"])
def test_example_models_with_padding_masks_are_refused_by_name(name, tmp_path):
    module = _example(name)
    model = (module.build(True, 8) if name == "bidirectional_tagger"
             else module.build(12, 8, 16, 1))
    if name == "bidirectional_tagger":
        model.build((5,))
    with pytest.raises(ExportError, match=r"mask_zero=True\) cannot be exported"):
        model.export(tmp_path / "e.onnx")
