"""ONNX export: a trained model as a graph that onnxruntime (or any ONNX
runtime) runs without Python or portnn (``model.export(path)``).

The model is walked layer by layer, as its forward pass runs: each layer
kind has a converter that appends its ONNX nodes and stores its weights as
initializers, once per parameter (a shared layer's weights too). A sample
runs through the layers alongside, so every converter knows the shapes
its input has. The batch axis stays dynamic. The graph is written with
the ``onnx`` package's builders and checked with ``onnx.checker``.

Layers without a converter are an error naming them and the layers that
can be exported (:data:`EXPORTABLE`); a converter is a function of
``(graph, layer, input name, input sample)`` returning its output's name.
"""

from __future__ import annotations

import math

from . import config
from .layers import activations as act
from .layers import (
    attention,
    bidirectional,
    conv,
    conv_transpose,
    dense,
    dropout,
    embedding,
    merge,
    normalization,
    pooling,
    recurrent,
    resampling,
    reshape,
    residual,
    reversible_embedding,
    transformer,
)
from .layers.base import no_grad

#: the opset written by default, and the lowest one accepted
#: (LayerNormalization is an operator from opset 17 on)
DEFAULT_OPSET = 17
INSTALL_HINT = 'pip install onnx onnxruntime  (or pip install -e ".[onnx]")'


class ExportError(TypeError):
    """A model, layer or argument that cannot be exported."""


class _Graph:
    """The nodes and initializers being written, with fresh names."""

    def __init__(self, opset: int, backend) -> None:
        self.opset, self.backend = opset, backend
        self.nodes, self.initializers = [], []
        self._weights: dict[int, str] = {}
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def node(self, op: str, inputs, hint=None, **attrs) -> str:
        from onnx import helper

        out = self.name(hint or op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [out], **attrs))
        return out

    def constant(self, array, hint="const") -> str:
        """An initializer holding `array` (a NumPy array)."""
        from onnx import numpy_helper

        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def weight(self, param, hint="w", transform=None) -> str:
        """A parameter's value as an initializer, stored once however many
        layers use it (a `transform` of it is stored under its own key)."""
        key = (id(param), transform)
        found = self._weights.get(key)
        if found is None:
            value = self.backend.to_numpy(getattr(param, "value", param))
            if transform is not None:
                value = transform(value)
            found = self._weights[key] = self.constant(value, hint)
        return found

    def ints(self, values, hint="shape") -> str:
        import numpy as np

        return self.constant(np.asarray(values, dtype=np.int64), hint)

    def dtype(self, like):
        """The NumPy dtype of the backend array `like`."""
        return self.backend.to_numpy(like[:1]).dtype

    def scalar(self, value, like, hint="c") -> str:
        import numpy as np

        return self.constant(np.asarray(value, dtype=self.dtype(like)), hint)

    def reduce(self, op: str, x: str, axes, keepdims: int = 1) -> str:
        """A Reduce* node; its axes are an attribute up to opset 17 and an
        input after (ReduceMean: 18)."""
        if self.opset >= 18:
            return self.node(op, [x, self.ints(list(axes), "axes")], keepdims=keepdims)
        return self.node(op, [x], axes=list(axes), keepdims=keepdims)


# -- converters ---------------------------------------------------------------

def _activation(g, layer, x, sample):
    kind = type(layer)
    simple = {act.ReLU: "Relu", act.Tanh: "Tanh", act.Sigmoid: "Sigmoid",
              act.Identity: "Identity", act.SELU: "Selu"}
    if kind in simple:
        return g.node(simple[kind], [x])
    if kind is act.LeakyReLU:
        return g.node("LeakyRelu", [x], alpha=float(layer.negative_slope))
    if kind is act.ELU:
        return g.node("Elu", [x], alpha=float(layer.alpha))
    if kind in (act.SiLU, act.Swish):
        return g.node("Mul", [x, g.node("Sigmoid", [x])])
    if kind is act.Mish:
        return g.node("Mul", [x, g.node("Tanh", [g.node("Softplus", [x])])])
    if kind is act.Softplus:
        beta = float(layer.beta)
        if beta == 1.0:
            return g.node("Softplus", [x])
        scaled = g.node("Mul", [x, g.scalar(beta, sample)])
        return g.node("Div", [g.node("Softplus", [scaled]), g.scalar(beta, sample)])
    if kind in (act.Softmax, act.LogSoftmax):
        op = "Softmax" if kind is act.Softmax else "LogSoftmax"
        return g.node(op, [x], axis=int(layer.axis))
    if kind is act.GELU:
        return _gelu(g, layer, x, sample)
    if kind is act.PReLU:
        def per_channel(w):  # PRelu broadcasts from the right: (C, 1, ..., 1)
            return w.reshape((-1,) + (1,) * (sample.ndim - 2)) if w.size > 1 else w

        return g.node("PRelu", [x, g.weight(layer.W, "slope", per_channel)])
    return None


def _gelu(g, layer, x, sample):
    half = g.node("Mul", [x, g.scalar(0.5, sample)])
    if layer.approximate == "tanh":
        cube = g.node("Mul", [g.node("Mul", [x, x]), x])
        inner = g.node("Add", [x, g.node("Mul", [cube, g.scalar(0.044715, sample)])])
        t = g.node("Tanh", [g.node("Mul", [inner, g.scalar(math.sqrt(2 / math.pi),
                                                            sample)])])
    else:
        t = g.node("Erf", [g.node("Div", [x, g.scalar(math.sqrt(2.0), sample)])])
    return g.node("Mul", [half, g.node("Add", [t, g.scalar(1.0, sample)])])


def _owned_activation(g, layer, y, sample):
    if layer.activation is None:
        return y
    return _convert(g, layer.activation, y,
                    _output_of(layer, sample, before_activation=True))


def _dense(g, layer, x, sample):
    y = g.node("MatMul", [x, g.weight(layer.W, "W")])
    if layer.b is not None:
        y = g.node("Add", [y, g.weight(layer.b, "b")])
    return _owned_activation(g, layer, y, sample)


def _conv(g, layer, x, sample):
    spatial = sample.ndim - 2
    kernel = tuple(layer.kernel_size)
    pads = _pads(layer.padding, kernel, tuple(layer.dilation), spatial)
    inputs = [x, g.weight(layer.W, "W")]
    if layer.b is not None:
        inputs.append(g.weight(layer.b, "b"))
    y = g.node("Conv", inputs, kernel_shape=list(kernel), strides=list(layer.stride),
               dilations=list(layer.dilation), group=int(layer.groups), pads=pads)
    return _owned_activation(g, layer, y, sample)


def _conv_transpose(g, layer, x, sample):
    # ONNX's ConvTranspose has PyTorch's weight layout (in, out / groups, k...)
    # and output size
    inputs = [x, g.weight(layer.W, "W")]
    if layer.b is not None:
        inputs.append(g.weight(layer.b, "b"))
    pads = [p[0] for p in layer._pads] + [p[1] for p in layer._pads]
    y = g.node("ConvTranspose", inputs, kernel_shape=list(layer.kernel_size),
               strides=list(layer.stride), dilations=list(layer.dilation),
               group=int(layer.groups), pads=pads,
               output_padding=list(layer.output_padding))
    return _owned_activation(g, layer, y, sample)


def _pads(padding, kernel, dilation, spatial) -> list[int]:
    """ONNX's pads (all the starts, then all the ends) for portnn's padding."""
    if padding == "valid":
        return [0] * (2 * spatial)
    if padding == "same":  # stride 1: the extra cell at the end, as PyTorch
        total = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        return [t // 2 for t in total] + [t - t // 2 for t in total]
    pad = (padding,) * spatial if isinstance(padding, int) else tuple(padding)
    return list(pad) + list(pad)


def _pool(g, layer, x, sample):
    spatial = sample.ndim - 2
    op = "MaxPool" if isinstance(layer, (pooling.MaxPool1D, pooling.MaxPool2D)) \
        else "AveragePool"
    kernel = _tuple(layer.kernel_size, spatial)
    attrs = {"kernel_shape": list(kernel),
             "strides": list(_tuple(layer.stride, spatial)),
             "pads": list(_tuple(layer.padding, spatial)) * 2}
    if op == "AveragePool":
        attrs["count_include_pad"] = 1  # as PyTorch's default
    return g.node(op, [x], **attrs)


def _tuple(value, n):
    return (value,) * n if isinstance(value, int) else tuple(value)


def _global_pool(g, layer, x, sample):
    mean = isinstance(layer, (pooling.GlobalAvgPool1D, pooling.GlobalAvgPool2D))
    op = "ReduceMean" if mean else "ReduceMax"
    first = getattr(layer, "data_format", "channels_first") == "channels_first"
    axes = list(range(2, sample.ndim)) if first else [1]
    return g.reduce(op, x, axes, keepdims=0)


def _batch_norm(g, layer, x, sample):
    import numpy as np

    c = layer.num_features
    scale = (g.weight(layer.gamma, "gamma") if layer.gamma is not None
             else g.constant(np.ones(c, g.dtype(sample)), "gamma"))
    shift = (g.weight(layer.beta, "beta") if layer.beta is not None
             else g.constant(np.zeros(c, g.dtype(sample)), "beta"))
    mean = g.weight(layer._buffers["running_mean"], "mean")
    var = g.weight(layer._buffers["running_var"], "var")
    return g.node("BatchNormalization", [x, scale, shift, mean, var],
                  epsilon=float(layer.eps))


def _layer_norm(g, layer, x, sample):
    import numpy as np

    shape = tuple(layer.normalized_shape)
    scale = (g.weight(layer.gamma, "gamma") if layer.gamma is not None
             else g.constant(np.ones(shape, g.dtype(sample)), "gamma"))
    inputs = [x, scale]
    if layer.beta is not None:
        inputs.append(g.weight(layer.beta, "beta"))
    return g.node("LayerNormalization", inputs, axis=-len(shape),
                  epsilon=float(layer.eps))


def _rms_norm(g, layer, x, sample):
    import numpy as np

    axes = list(range(sample.ndim - len(layer.normalized_shape), sample.ndim))
    eps = (layer.eps if layer.eps is not None
           else float(np.finfo(g.dtype(sample)).eps))
    square = g.reduce("ReduceMean", g.node("Mul", [x, x]), axes)
    root = g.node("Sqrt", [g.node("Add", [square, g.scalar(eps, sample)])])
    y = g.node("Div", [x, root])
    if layer.gamma is not None:
        y = g.node("Mul", [y, g.weight(layer.gamma, "gamma")])
    return y


def _group_norm(g, layer, x, sample):
    # (N, G, rest) normalized over its last axis, then the input's shape again
    grouped = g.node("Reshape", [x, g.ints([0, layer.num_groups, -1])])
    mean = g.reduce("ReduceMean", grouped, [2])
    centred = g.node("Sub", [grouped, mean])
    var = g.reduce("ReduceMean", g.node("Mul", [centred, centred]), [2])
    root = g.node("Sqrt", [g.node("Add", [var, g.scalar(layer.eps, sample)])])
    y = g.node("Reshape", [g.node("Div", [centred, root]), g.node("Shape", [x])])
    if layer.gamma is not None:
        def per_channel(w):
            return w.reshape((-1,) + (1,) * (sample.ndim - 2))

        y = g.node("Mul", [y, g.weight(layer.gamma, "gamma", per_channel)])
        y = g.node("Add", [y, g.weight(layer.beta, "beta", per_channel)])
    return y


def _embedding(g, layer, x, sample):
    if layer.mask_zero:  # the graph would ignore the padding: refuse
        msg = ("Embedding(mask_zero=True) cannot be exported to ONNX yet: the "
               "layers after it would see the padded steps as real ones")
        raise ExportError(msg)
    return g.node("Gather", [g.weight(layer.W, "table"), x], axis=0)


def _reversible_embedding(g, layer, x, sample, reverse=False):
    """Ids to vectors, or (``reverse=True``) vectors to logits ``h @ W.T``
    through the same stored table."""
    if not reverse:
        return _embedding(g, layer, x, sample)
    table = g.weight(layer.W, "table")
    return g.node("MatMul", [x, g.node("Transpose", [table], perm=[1, 0])])


#: ONNX's gate order from portnn's (PyTorch's), as blocks of the weights:
#: LSTM i f g o -> i o f c; GRU r z n -> z r h
_GATES = {"LSTM": (0, 3, 1, 2), "GRU": (1, 0, 2), "RNN": (0,)}


def _recurrence(g, layers, x, hint):
    """One ONNX recurrent node over `layers` (one layer, or a forward and a
    backward one); returns its ``Y`` (T, directions, N, H) and ``Y_h``
    (directions, N, H)."""
    import numpy as np

    first = layers[0]
    kind = type(first).__name__
    order = _GATES[kind]

    def gates(w):  # (k H, ...) with blocks reordered, one direction first
        blocks = np.split(w, len(order))
        return np.concatenate([blocks[i] for i in order])[None]

    def stacked(name, role):  # the directions stacked on axis 0
        return g.node("Concat", [g.weight(getattr(la, name), role, gates)
                                 for la in layers], axis=0)

    one = len(layers) == 1
    # time-major: onnxruntime runs no batch-first (layout=1) recurrence
    inputs = [g.node("Transpose", [x], perm=[1, 0, 2])]
    inputs += ([g.weight(first.W_ih, "W", gates), g.weight(first.W_hh, "R", gates)]
               if one else [stacked("W_ih", "W"), stacked("W_hh", "R")])
    if first.b_ih is not None:
        inputs.append(g.node("Concat", [
            g.node("Concat", [g.weight(la.b_ih, "Wb", gates),
                              g.weight(la.b_hh, "Rb", gates)], axis=1)
            for la in layers], axis=0) if not one else g.node(
            "Concat", [g.weight(first.b_ih, "Wb", gates),
                       g.weight(first.b_hh, "Rb", gates)], axis=1))
    attrs = {"hidden_size": first.hidden_size}
    if not one:
        attrs["direction"] = "bidirectional"
    if kind == "GRU":
        attrs["linear_before_reset"] = 1  # r * (h W_hn + b_hn), as PyTorch
    if kind == "RNN":
        attrs["activations"] = ["Tanh"] * len(layers)
    from onnx import helper

    outs = [g.name("y"), g.name("y_h")] + ([g.name("y_c")] if kind == "LSTM" else [])
    g.nodes.append(helper.make_node(kind, inputs, outs, **attrs))
    return outs[0], outs[1]


def _recurrent(g, layer, x, sample):
    y, y_h = _recurrence(g, [layer], x, "rnn")
    if layer.return_sequences:  # Y: (T, 1, N, H)
        y = g.node("Squeeze", [y, g.ints([1], "axes")])
        return g.node("Transpose", [y], perm=[1, 0, 2])
    return g.node("Squeeze", [y_h, g.ints([0], "axes")])  # Y_h: (1, N, H)


def _bidirectional(g, layer, x, sample):
    fwd, bwd = layer.forward_layer, layer.backward_layer
    if type(fwd) is not type(bwd) or not isinstance(fwd, (recurrent.RNN,
                                                           recurrent.LSTM,
                                                           recurrent.GRU)):
        msg = ("Bidirectional exports over RNN, LSTM or GRU of one kind, got "
               f"{type(fwd).__name__} and {type(bwd).__name__}")
        raise ExportError(msg)
    y, y_h = _recurrence(g, [fwd, bwd], x, "birnn")
    if layer.return_sequences:  # Y: (T, 2, N, H) -> (N, T, 2, H)
        both, axis = g.node("Transpose", [y], perm=[2, 0, 1, 3]), 2
    else:  # Y_h: (2, N, H) -> (N, 2, H); the backward one ends at step 0
        both, axis = g.node("Transpose", [y_h], perm=[1, 0, 2]), 1
    if layer.merge_mode == "concat":  # forward's features, then backward's
        shape = [0, 0, -1] if layer.return_sequences else [0, -1]
        return g.node("Reshape", [both, g.ints(shape)])
    f, b = (g.node("Squeeze", [part, g.ints([axis], "axes")])
            for part in _split(g, both, axis, 2))
    if layer.merge_mode == "sum":
        return g.node("Add", [f, b])
    if layer.merge_mode == "mul":
        return g.node("Mul", [f, b])
    return g.node("Mul", [g.node("Add", [f, b]), g.scalar(0.5, sample)])


def _split(g, x, axis, n):
    from onnx import helper

    outs = [g.name("part") for _ in range(n)]
    g.nodes.append(helper.make_node("Split", [x], outs, axis=axis,
                                    num_outputs=n) if g.opset >= 18 else
                   helper.make_node("Split", [x], outs, axis=axis))
    return outs


def _flatten(g, layer, x, sample):
    return g.node("Flatten", [x], axis=1)


def _reshape(g, layer, x, sample):
    return g.node("Reshape", [x, g.ints([0, *layer.shape])])


def _permute(g, layer, x, sample):
    return g.node("Transpose", [x], perm=[0, *layer.dims])


def _upsampling(g, layer, x, sample):
    if layer.interpolation != "nearest":
        msg = (f"{type(layer).__name__}(interpolation={layer.interpolation!r}) "
               "cannot be exported yet; interpolation='nearest' can")
        raise ExportError(msg)
    import numpy as np

    size = _tuple(layer.size, sample.ndim - 2)
    scales = np.asarray([1.0, 1.0, *size], dtype=np.float32)
    return g.node("Resize", [x, "", g.constant(scales, "scales")], mode="nearest",
                  nearest_mode="floor", coordinate_transformation_mode="asymmetric")


def _merge(op):
    def convert(g, layer, xs, samples):
        if op == "Mul":  # binary in ONNX
            y = xs[0]
            for other in xs[1:]:
                y = g.node("Mul", [y, other])
            return y
        if op == "Concat":
            return g.node("Concat", xs, axis=int(layer.axis))
        return g.node(op, xs)
    return convert


def _identity(g, layer, x, sample):
    return g.node("Identity", [x])


def _sequential(g, layer, x, sample):
    for child in layer.layers:
        x, sample = _convert(g, child, x, sample), _forward(child, sample)
    return x


def _residual(g, layer, x, sample):
    return g.node("Add", [x, _convert(g, layer.layer, x, sample)])


def _transposed(w):
    return w.T.copy()


def _in_block(i):
    """``W_in``'s (or ``b_in``'s) i-th third: the query, key or value
    projection (PyTorch's ``in_proj_weight`` layout), transposed for MatMul."""
    def block(w):
        third = w.shape[0] // 3
        part = w[i * third:(i + 1) * third]
        return part.T.copy() if part.ndim == 2 else part.copy()
    block.__qualname__ = f"in_block_{i}"
    return block


_IN_BLOCKS = [_in_block(i) for i in range(3)]


def _time(g, x):
    """The length of axis 1 of `x`, as a 1-element int64 tensor."""
    return g.node("Gather", [g.node("Shape", [x]), g.ints([1], "t")], axis=0)


def _attention(g, layer, x, sample):
    """Scaled dot-product attention over heads, PyTorch's layouts;
    ``[query, key, value]`` for cross-attention. Masks given at call time
    (``attn_mask``, padding) are not part of a layer and are refused where
    the graph passes them; ``causal=True`` is built from the length."""
    e, h = layer.embed_dim, layer.num_heads
    d = e // h
    cross = isinstance(x, list)
    query, key, value = x if cross else (x, x, x)

    def project(i, a):
        y = g.node("MatMul", [a, g.weight(layer.W_in, "W_in", _IN_BLOCKS[i])])
        if layer.b_in is not None:
            y = g.node("Add", [y, g.weight(layer.b_in, "b_in", _IN_BLOCKS[i])])
        # (N, T, E) -> (N, H, T, d)
        y = g.node("Reshape", [y, g.ints([0, 0, h, d])])
        return g.node("Transpose", [y], perm=[0, 2, 1, 3])

    q, k, v = project(0, query), project(1, key), project(2, value)
    scores = g.node("Mul", [g.node("MatMul", [q, g.node("Transpose", [k],
                                                        perm=[0, 1, 3, 2])]),
                            g.scalar(1.0 / math.sqrt(d), sample[0] if cross
                                     else sample)])
    if layer.causal:
        t = _time(g, query)
        ones = g.node("ConstantOfShape", [g.node("Concat", [t, t], axis=0)],
                      value=_onnx_tensor(1, "int64"))
        keep = g.node("Cast", [g.node("Trilu", [ones], upper=0)], to=9)  # bool
        low = float(_finfo_min(g, sample[0] if cross else sample))
        scores = g.node("Where", [keep, scores, g.scalar(low, sample[0] if cross
                                                          else sample)])
    p = g.node("Softmax", [scores], axis=-1)
    o = g.node("Transpose", [g.node("MatMul", [p, v])], perm=[0, 2, 1, 3])
    o = g.node("Reshape", [o, g.ints([0, 0, e])])
    y = g.node("MatMul", [o, g.weight(layer.W_out, "W_out", _transposed)])
    if layer.b_out is not None:
        y = g.node("Add", [y, g.weight(layer.b_out, "b_out")])
    return y


def _onnx_tensor(value, dtype):
    import numpy as np
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray([value], dtype=dtype))


def _finfo_min(g, like):
    import numpy as np

    return np.finfo(g.dtype(like)).min


def _positional(g, layer, x, sample):
    import numpy as np

    if layer.learned:
        table = g.weight(layer.P, "positions")
    else:
        if layer.max_len > 100_000:
            msg = (f"PositionalEncoding(max_len={layer.max_len}) would store "
                   "its whole table in the file; build it with max_len <= "
                   "100000 to export")
            raise ExportError(msg)
        rows = layer._sinusoids(sample, layer.max_len)
        table = g.constant(np.asarray(g.backend.to_numpy(rows),
                                      dtype=g.dtype(sample)), "positions")
    rows = g.node("Slice", [table, g.ints([0], "start"), _time(g, x),
                            g.ints([0], "axis")])
    return g.node("Add", [x, rows])


def _sublayer(g, layer, x, sample):
    """`layer` converted, with its output sample."""
    return _convert(g, layer, x, sample), _forward(layer, sample)


def _residual_blocks(g, layer, norms, blocks, x, sample):
    """A Transformer block: each sub-block added to its input, with its
    norm before it (``norm_first``) or after the sum; dropout: identity."""
    for norm, block in zip(norms, blocks, strict=True):
        if layer.norm_first:
            n, ns = _sublayer(g, norm, x, sample)
            y, ys = block(n, ns)
            x, sample = g.node("Add", [x, y]), sample + ys
        else:
            y, ys = block(x, sample)
            x, sample = _sublayer(g, norm, g.node("Add", [x, y]), sample + ys)
    return x


def _feed_forward(g, layer):
    def feed(h, s):
        f, fs = _sublayer(g, layer.ff1, h, s)
        return _sublayer(g, layer.ff2, f, fs)
    return feed


def _encoder_layer(g, layer, x, sample):
    def attend(h, s):
        return _sublayer(g, layer.attn, h, s)

    return _residual_blocks(g, layer, (layer.norm1, layer.norm2),
                            (attend, _feed_forward(g, layer)), x, sample)


def _decoder_layer(g, layer, xs, samples):
    (x, memory), (sample, mem) = xs, samples

    def attend(h, s):
        return _sublayer(g, layer.self_attn, h, s)

    def consult(h, s):
        return _sublayer(g, layer.cross_attn, [h, memory, memory], [s, mem, mem])

    return _residual_blocks(g, layer, (layer.norm1, layer.norm2, layer.norm3),
                            (attend, consult, _feed_forward(g, layer)), x, sample)


def _graph_outputs(g, layer, xs, samples) -> list[str]:
    """A graph model's nodes in order, each through its layer's converter,
    with a sample per tensor; the names of its outputs."""
    names = {("input", i): name for i, name in enumerate(xs)}
    values = {("input", i): s for i, s in enumerate(samples)}
    for j, node in enumerate(layer.graph["nodes"]):
        child = layer.layers[node["layer"]]
        given = {k: v for k, v in node["kwargs"].items() if v is not None}
        refs = [tuple(ref) for ref in node["args"]]
        if node["list"]:
            arg, smp = [names[r] for r in refs], [values[r] for r in refs]
        else:
            arg, smp = names[refs[0]], values[refs[0]]
        names[("node", j)] = _convert(g, child, arg, smp, **given)
        values[("node", j)] = _forward(child, smp, **given)
    return [names[tuple(ref)] for ref in layer.graph["outputs"]]


def _functional(g, layer, x, sample):
    """A graph inside another model: one input, one output."""
    if len(layer.graph["inputs"]) != 1 or len(layer.graph["outputs"]) != 1:
        msg = ("a graph model with several inputs or outputs exports as the "
               "whole model, not inside another one")
        raise ExportError(msg)
    return _graph_outputs(g, layer, [x], [sample])[0]


_CONVERTERS = {
    dense.Dense: _dense,
    conv.Conv1D: _conv, conv.Conv2D: _conv,
    pooling.MaxPool1D: _pool, pooling.MaxPool2D: _pool,
    pooling.AvgPool1D: _pool, pooling.AvgPool2D: _pool,
    pooling.GlobalAvgPool1D: _global_pool, pooling.GlobalAvgPool2D: _global_pool,
    pooling.GlobalMaxPool1D: _global_pool, pooling.GlobalMaxPool2D: _global_pool,
    normalization.BatchNorm1D: _batch_norm, normalization.BatchNorm2D: _batch_norm,
    normalization.LayerNorm: _layer_norm, normalization.RMSNorm: _rms_norm,
    normalization.GroupNorm: _group_norm,
    embedding.Embedding: _embedding,
    reversible_embedding.ReversibleEmbedding: _reversible_embedding,
    recurrent.RNN: _recurrent, recurrent.LSTM: _recurrent, recurrent.GRU: _recurrent,
    reshape.Flatten: _flatten, reshape.Reshape: _reshape,
    reshape.Permute: _permute,
    conv_transpose.Conv1DTranspose: _conv_transpose,
    conv_transpose.Conv2DTranspose: _conv_transpose,
    resampling.UpSampling1D: _upsampling, resampling.UpSampling2D: _upsampling,
    bidirectional.Bidirectional: _bidirectional,
    merge.Add: _merge("Sum"), merge.Subtract: _merge("Sub"),
    merge.Multiply: _merge("Mul"), merge.Average: _merge("Mean"),
    merge.Concatenate: _merge("Concat"),
    attention.MultiHeadAttention: _attention,
    transformer.PositionalEncoding: _positional,
    transformer.TransformerEncoderLayer: _encoder_layer,
    transformer.TransformerDecoderLayer: _decoder_layer,
    dropout.Dropout: _identity, dropout.SpatialDropout1D: _identity,
    dropout.SpatialDropout2D: _identity,
    residual.Residual: _residual,
}
_ACTIVATIONS = (act.ReLU, act.Tanh, act.Sigmoid, act.Identity, act.SELU,
                act.LeakyReLU, act.ELU, act.SiLU, act.Swish, act.Mish, act.Softplus,
                act.Softmax, act.LogSoftmax, act.GELU, act.PReLU)
_CONVERTERS.update(dict.fromkeys(_ACTIVATIONS, _activation))
#: the converters that take a graph node's keyword arguments
_TAKE_KEYWORDS = (_reversible_embedding,)

#: the names of the layers :func:`export_onnx` converts
EXPORTABLE = sorted({cls.__name__ for cls in _CONVERTERS}
                    | {"Sequential", "Functional"})


#: converters named by module and class: Sequential and graph models are
#: Models, and the training package imports this module (a name keeps the
#: import one-way)
_BY_NAME = {("portnn.layers.sequential", "Sequential"): _sequential,
            ("portnn.layers.graph", "Functional"): _functional}


def _convert(g, layer, x, sample, **kwargs) -> str:
    kind = type(layer)
    converter = _CONVERTERS.get(kind) or _BY_NAME.get((kind.__module__,
                                                       kind.__name__))
    if converter is None:
        msg = (f"{type(layer).__name__} cannot be exported to ONNX yet; the layers "
               f"that can: {', '.join(EXPORTABLE)}")
        raise ExportError(msg)
    if kwargs and converter not in _TAKE_KEYWORDS:
        msg = (f"a graph node calling {kind.__name__} with keyword arguments "
               f"({', '.join(kwargs)}) cannot be exported yet")
        raise ExportError(msg)
    return converter(g, layer, x, sample, **kwargs)


def _forward(layer, sample, **kwargs):
    with no_grad():
        return layer.forward(sample, training=False, **kwargs)


def _output_of(layer, sample, before_activation=False):
    """`layer`'s output for `sample`; with `before_activation`, what its
    owned activation gets."""
    if not before_activation:
        return _forward(layer, sample)
    activation = layer.activation
    layer.activation = None
    try:
        return _forward(layer, sample)
    finally:
        layer.activation = activation


def _is_graph(model) -> bool:
    kind = type(model)
    return _BY_NAME.get((kind.__module__, kind.__name__)) is _functional


def _stack_input(model):
    """A stack's one input: ``[(name, dims, dtype)]`` and a sample."""
    shape = getattr(model, "_input_shape", None)
    if shape is None:
        msg = ("export needs the model's input shape: train it, or call "
               "model.build(input_shape) first (the shape of one sample)")
        raise ExportError(msg)
    backend = model.backend
    xp = backend.xp
    dtype = xp.int64 if model.integer_input else (model._model_dtype()
                                                  or config.float_dtype(backend))
    sample = xp.zeros((2, *shape), dtype=dtype, device=backend.device)
    return [("input", list(shape), dtype)], [sample]


def _graph_inputs(model):
    """A graph's inputs, named as ``predict`` takes them in a dict (its
    keys, else the ``Input`` names), with a sample each (3 steps where a
    size is left open, which stays open in the file)."""
    backend = model.backend
    specs = model.graph["inputs"]
    keys = model._input_names
    if not isinstance(keys, list):
        keys = [spec["name"] or ("input" if len(specs) == 1 else f"input_{i}")
                for i, spec in enumerate(specs)]
    inputs, samples = [], []
    for key, spec in zip(keys, specs, strict=True):
        dims = [d if d is not None else f"{key}_{i}"
                for i, d in enumerate(spec["shape"], 1)]
        shape = [d if isinstance(d, int) else 3 for d in dims]
        dtype = backend.dtype(spec["dtype"])
        inputs.append((key, dims, dtype))
        samples.append(backend.xp.zeros((2, *shape), dtype=dtype,
                                        device=backend.device))
    return inputs, samples


def _named(g, out, name) -> str:
    """`out` under the name the model's output has (its key)."""
    from onnx import helper

    g.nodes.append(helper.make_node("Identity", [out], [name]))
    return name


def export_onnx(model, path, opset: int | None = None):
    """Write `model` as an ONNX file at `path` (see :meth:`Model.export`).

    Returns
    -------
    onnx.ModelProto
        The model written (checked by ``onnx.checker``).
    """
    try:
        import onnx
        from onnx import helper
    except ImportError as exc:
        msg = f"ONNX export needs the onnx package ({exc}): {INSTALL_HINT}"
        raise ImportError(msg) from exc
    opset = DEFAULT_OPSET if opset is None else opset
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < DEFAULT_OPSET:
        msg = (f"opset must be an int >= {DEFAULT_OPSET} (LayerNormalization's), "
               f"got {opset!r}")
        raise ExportError(msg)
    backend = model.backend
    g = _Graph(opset, backend)
    if _is_graph(model):
        inputs, samples = _graph_inputs(model)
        outs = _graph_outputs(g, model, [name for name, _, _ in inputs], samples)
        results = _forward(model, samples)
        keys = model._output_names
        if isinstance(results, dict):
            results = [results[k] for k in keys]
        elif not isinstance(results, list):
            results = [results]
        names = (keys if isinstance(keys, list) else ["output"] if len(outs) == 1
                 else [f"output_{i}" for i in range(len(outs))])
        outs = [_named(g, out, name) for out, name in zip(outs, names, strict=True)]
    else:
        inputs, samples = _stack_input(model)
        outs = [_convert(g, model, "input", samples[0])]
        results = [_forward(model, samples[0])]
    results = [backend.to_numpy(r) for r in results]
    # a size left open in an input may change any output size but the batch
    open_size = any(not isinstance(d, int) for _, dims, _ in inputs for d in dims)
    graph = helper.make_graph(
        g.nodes, type(model).__name__,
        [helper.make_tensor_value_info(
            name, helper.np_dtype_to_tensor_dtype(backend.to_numpy(smp).dtype),
            ["batch", *dims])
         for (name, dims, _), smp in zip(inputs, samples, strict=True)],
        [helper.make_tensor_value_info(
            out, helper.np_dtype_to_tensor_dtype(r.dtype),
            ["batch", *([None] * (r.ndim - 1) if open_size else r.shape[1:])])
         for out, r in zip(outs, results, strict=True)],
        g.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="portnn")
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return proto
