"""The benchmark cases: one network each, built in portnn, in hand-written
NumPy (where there is one) and in PyTorch, from the same initial weights.

A case lists implementations; each factory returns ``(step, sync)``:
``step()`` runs one training step on the next batch of a fixed pool and
returns the loss (possibly still on the device), ``sync()`` waits for the
device.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field

import handwritten
import keras_peer
import numpy as np

import portnn


@dataclass
class Case:
    name: str
    batch: int
    steps: int  # timed steps per repetition
    flops: int | None  # multiply-adds x 2 of one training step (GEMMs)
    impls: dict = field(default_factory=dict)


def _pool(make_xy, batches=4, seed=0):
    rs = np.random.default_rng(seed)
    return [make_xy(rs) for _ in range(batches)]


def _cycle(pool):
    i = 0

    def nxt():
        nonlocal i
        item = pool[i % len(pool)]
        i += 1
        return item

    return nxt


def _portnn(build, state, pool, loss, optimizer, lr, backend_name):
    """portnn's step on `backend_name`; "jax-jit", "torch-compile": compiled
    as one program (portnn.training.compiled, as ``compile(jit_compile=True)``)."""
    jit = backend_name.endswith(("-jit", "-compile"))
    backend_name = backend_name.removesuffix("-jit").removesuffix("-compile")

    def factory():
        with portnn.use_backend(backend_name) as b:
            model = build()
            model.load_state_dict(state)
            opt = getattr(portnn, optimizer)(model.parameters(), lr=lr)
            data = [(b.asarray(x), b.asarray(y)) for x, y in pool]
        nxt = _cycle(data)
        if jit:
            from portnn._validation import validated_data
            from portnn.training.compiled import CompiledStep
            from portnn.training.precision import Precision

            compiled = CompiledStep(model, loss, opt, None, Precision("float32", b))
            # its own generator: between steps a compiled step keeps the
            # counter as one of its device arrays, which another backend's
            # step, interleaved with this one, could not read
            context = contextvars.copy_context()
            context.run(portnn.seed, 0)

            def run():
                x, y = nxt()
                with validated_data():  # labels are in range (fit checks first)
                    return compiled(x, y)[0]

            return (lambda: context.run(run)), _synchronizer(model, b)

        def step():
            x, y = nxt()
            value, _ = model.train_step(x, y, loss, opt)
            return value

        return step, _synchronizer(model, b)

    return factory


def _synchronizer(model, backend):
    """Wait for the device; JAX dispatches asynchronously and its
    ``effects_barrier`` waits for side effects only: wait for the weights."""
    if backend.name != "jax":
        return backend.synchronize

    def sync():
        for p in model.parameters():
            p.value.block_until_ready()

    return sync


def _handwritten(cls, weights, pool, **kw):
    def factory():
        net = cls(weights, **kw)
        nxt = _cycle(pool)

        def step():
            x, y = nxt()
            return net.step(x, y)

        return step, lambda: None

    return factory


def _torch(build, pool, loss_cls, optimizer, lr, device="cpu", long_target=True):
    """PyTorch's step; a device "cpu-compile" (or "cuda-compile"): with the
    model, loss and optimizer step under torch.compile (Inductor), as
    PyTorch's tutorials compile a training step."""
    compiled = device.endswith("-compile")
    device = device.removesuffix("-compile")

    def factory():
        import torch

        model = build(torch).to(device)
        opt = getattr(torch.optim, optimizer)(model.parameters(), lr=lr)
        lossf = getattr(torch.nn, loss_cls)()
        if compiled:
            forward = torch.compile(lambda x, y: lossf(model(x), y))
            opt.step = torch.compile(opt.step)
        else:
            def forward(x, y):
                return lossf(model(x), y)
        data = [(torch.from_numpy(x).to(device),
                 torch.from_numpy(y.astype(np.int64) if long_target else y).to(device))
                for x, y in pool]
        nxt = _cycle(data)

        def step():
            x, y = nxt()
            opt.zero_grad(set_to_none=True)
            value = forward(x, y)
            value.backward()
            opt.step()
            return value.detach()

        sync = (lambda: torch.cuda.synchronize()) if device != "cpu" else (
            lambda: None)
        return step, sync

    return factory


def _copy_linear(torch, lin, W, b):
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
        lin.bias.copy_(torch.from_numpy(b))


def _state(build):
    with portnn.use_backend("numpy"):
        portnn.seed(0)
        model = build()
        return {k: np.array(v) for k, v in model.state_dict().items()}


def mlp(batch, optimizer, backends, torch_devices):
    sizes = (784, 512, 512, 10)

    def build():
        return portnn.Sequential(portnn.Dense(784, 512), portnn.ReLU(),
                                 portnn.Dense(512, 512), portnn.ReLU(),
                                 portnn.Dense(512, 10))

    state = _state(build)
    weights = [state[k] for k in ("0.W", "0.b", "2.W", "2.b", "4.W", "4.b")]
    pool = _pool(lambda rs: (rs.normal(size=(batch, 784)).astype(np.float32),
                             rs.integers(0, 10, size=batch)))
    lr = 0.01 if optimizer == "SGD" else 1e-3
    pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
    fwd = sum(2 * batch * i * o for i, o in pairs)
    flops = 2 * fwd + sum(2 * batch * i * o for i, o in pairs[1:])
    case = Case(f"mlp b{batch} {optimizer.lower()}", batch, 40 if batch > 16 else 200,
                flops)
    case.impls["numpy hand-written"] = _handwritten(
        handwritten.MLP, weights, pool, optimizer=optimizer.lower(), lr=lr)
    for name in backends:
        case.impls[f"portnn-{name}"] = _portnn(
            build, state, pool, portnn.CrossEntropy(), optimizer, lr, name)

    def tbuild(torch):
        nn = torch.nn
        m = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512),
                          nn.ReLU(), nn.Linear(512, 10))
        for i, k in ((0, "0"), (2, "2"), (4, "4")):
            _copy_linear(torch, m[i], state[f"{k}.W"], state[f"{k}.b"])
        return m

    for dev in torch_devices:
        case.impls[f"pytorch-{dev}"] = _torch(tbuild, pool, "CrossEntropyLoss",
                                              optimizer, lr, dev)

    def kbuild(keras):
        d = keras_peer.dense
        return keras.Sequential([
            keras.Input((784,)), d(keras, state["0.W"], state["0.b"], "relu"),
            d(keras, state["2.W"], state["2.b"], "relu"),
            d(keras, state["4.W"], state["4.b"])])

    if keras_peer.available():
        case.impls["keras-jax-jit"] = keras_peer.peer(kbuild, pool, "sparse_ce",
                                                      optimizer, lr)
    return case


def xor(backends, torch_devices):
    def build():
        return portnn.Sequential(portnn.Dense(2, 16), portnn.Tanh(),
                                 portnn.Dense(16, 1))

    state = _state(build)
    weights = [state[k] for k in ("0.W", "0.b", "2.W", "2.b")]
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    y = np.array([[0], [1], [1], [0]], dtype=np.float32)
    pool = [(x, y)]
    case = Case("xor 2-16-1 b4", 4, 2000, 3 * 2 * 4 * (2 * 16 + 16))
    case.impls["numpy hand-written"] = _handwritten(handwritten.XOR, weights, pool,
                                                    lr=0.5)
    for name in backends:
        case.impls[f"portnn-{name}"] = _portnn(build, state, pool,
                                               portnn.BCEWithLogits(), "SGD", 0.5, name)

    def tbuild(torch):
        nn = torch.nn
        m = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))
        _copy_linear(torch, m[0], state["0.W"], state["0.b"])
        _copy_linear(torch, m[2], state["2.W"], state["2.b"])
        return m

    for dev in torch_devices:
        case.impls[f"pytorch-{dev}"] = _torch(tbuild, pool, "BCEWithLogitsLoss", "SGD",
                                              0.5, dev, long_target=False)

    def kbuild(keras):
        d = keras_peer.dense
        return keras.Sequential([
            keras.Input((2,)), d(keras, state["0.W"], state["0.b"], "tanh"),
            d(keras, state["2.W"], state["2.b"])])

    if keras_peer.available():
        case.impls["keras-jax-jit"] = keras_peer.peer(kbuild, pool, "bce", "SGD", 0.5)
    return case


def cnn(backends, torch_devices, batch=128):
    def build():
        return portnn.Sequential(
            portnn.Conv2D(1, 16, 3), portnn.ReLU(), portnn.Conv2D(16, 32, 3),
            portnn.ReLU(), portnn.MaxPool2D(2), portnn.Flatten(),
            portnn.Dense(32 * 12 * 12, 10))

    state = _state(build)
    weights = [state[k] for k in ("0.W", "0.b", "2.W", "2.b", "6.W", "6.b")]
    pool = _pool(lambda rs: (rs.normal(size=(batch, 1, 28, 28)).astype(np.float32),
                             rs.integers(0, 10, size=batch)))
    c1 = 2 * batch * 26 * 26 * 16 * 9
    c2 = 2 * batch * 24 * 24 * 32 * 16 * 9
    d = 2 * batch * 4608 * 10
    case = Case(f"cnn b{batch} 1x28x28", batch, 5, 2 * c1 + 3 * c2 + 3 * d)
    case.impls["numpy hand-written"] = _handwritten(handwritten.CNN, weights, pool)
    for name in backends:
        case.impls[f"portnn-{name}"] = _portnn(
            build, state, pool, portnn.CrossEntropy(), "SGD", 0.01, name)

    def tbuild(torch):
        nn = torch.nn
        m = nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.Conv2d(16, 32, 3),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4608, 10))
        with torch.no_grad():
            for i in (0, 2):
                m[i].weight.copy_(torch.from_numpy(state[f"{i}.W"]))
                m[i].bias.copy_(torch.from_numpy(state[f"{i}.b"]))
        _copy_linear(torch, m[6], state["6.W"], state["6.b"])
        return m

    for dev in torch_devices:
        case.impls[f"pytorch-{dev}"] = _torch(tbuild, pool, "CrossEntropyLoss", "SGD",
                                              0.01, dev)

    def kbuild(keras):
        c, layers = keras_peer.conv2d, keras.layers
        return keras.Sequential([
            keras.Input((1, 28, 28)), c(keras, state["0.W"], state["0.b"]),
            layers.ReLU(), c(keras, state["2.W"], state["2.b"]), layers.ReLU(),
            layers.MaxPooling2D(2, data_format="channels_first"),
            layers.Flatten(),  # (C, H, W) order, as portnn's and PyTorch's
            keras_peer.dense(keras, state["6.W"], state["6.b"])])

    if keras_peer.available():
        case.impls["keras-jax-jit"] = keras_peer.peer(kbuild, pool, "sparse_ce",
                                                      "SGD", 0.01)
    return case


def lstm(backends, torch_devices, batch=64, steps=50, features=32, hidden=128):
    def build():
        return portnn.Sequential(portnn.LSTM(features, hidden, return_sequences=False),
                                 portnn.Dense(hidden, 10))

    state = _state(build)
    pool = _pool(lambda rs: (
        rs.normal(size=(batch, steps, features)).astype(np.float32),
        rs.integers(0, 10, size=batch)))
    gates = 4 * hidden
    fwd = 2 * batch * steps * (features + hidden) * gates + 2 * batch * hidden * 10
    flops = 2 * fwd + 2 * batch * steps * hidden * gates + 2 * batch * hidden * 10
    case = Case(f"lstm b{batch} t{steps} h{hidden}", batch, 3, flops)
    for name in backends:
        case.impls[f"portnn-{name}"] = _portnn(
            build, state, pool, portnn.CrossEntropy(), "SGD", 0.01, name)

    def tbuild(torch):
        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm = torch.nn.LSTM(features, hidden, batch_first=True)
                self.out = torch.nn.Linear(hidden, 10)
                with torch.no_grad():
                    for ours, theirs in (
                            ("W_ih", "weight_ih_l0"), ("W_hh", "weight_hh_l0"),
                            ("b_ih", "bias_ih_l0"), ("b_hh", "bias_hh_l0")):
                        getattr(self.lstm, theirs).copy_(
                            torch.from_numpy(state[f"0.{ours}"]))
                _copy_linear(torch, self.out, state["1.W"], state["1.b"])

            def forward(self, x):
                return self.out(self.lstm(x)[0][:, -1, :])

        return Net()

    for dev in torch_devices:
        case.impls[f"pytorch-{dev}"] = _torch(tbuild, pool, "CrossEntropyLoss", "SGD",
                                              0.01, dev)

    def kbuild(keras):
        return keras.Sequential([
            keras.Input((steps, features)),
            keras_peer.lstm(keras, *(state[f"0.{k}"] for k in
                                     ("W_ih", "W_hh", "b_ih", "b_hh"))),
            keras_peer.dense(keras, state["1.W"], state["1.b"])])

    if keras_peer.available():
        case.impls["keras-jax-jit"] = keras_peer.peer(kbuild, pool, "sparse_ce",
                                                      "SGD", 0.01)
    return case


def transformer(backends, torch_devices, batch=32, steps=64, width=128, heads=4):
    ff = 4 * width

    def build():
        return portnn.Sequential(portnn.TransformerEncoderLayer(width, heads, ff))

    state = _state(build)
    pool = _pool(lambda rs: (
        rs.normal(size=(batch, steps, width)).astype(np.float32),
        rs.normal(size=(batch, steps, width)).astype(np.float32)))
    rows = batch * steps
    fwd = 2 * rows * (4 * width * width + 2 * width * ff) + 4 * rows * steps * width
    case = Case(f"transformer b{batch} t{steps} d{width} h{heads}", batch, 3, 3 * fwd)
    for name in backends:
        case.impls[f"portnn-{name}"] = _portnn(build, state, pool, portnn.MSE(), "SGD",
                                               0.01, name)

    def tbuild(torch):
        layer = torch.nn.TransformerEncoderLayer(
            width, heads, ff, dropout=0.0, batch_first=True, norm_first=True,
            activation=lambda v: torch.nn.functional.gelu(v, approximate="tanh"))
        t = {k: torch.from_numpy(v) for k, v in state.items()}
        with torch.no_grad():
            layer.norm1.weight.copy_(t["0.0.gamma"])
            layer.norm1.bias.copy_(t["0.0.beta"])
            layer.self_attn.in_proj_weight.copy_(t["0.1.W_in"])
            layer.self_attn.in_proj_bias.copy_(t["0.1.b_in"])
            layer.self_attn.out_proj.weight.copy_(t["0.1.W_out"])
            layer.self_attn.out_proj.bias.copy_(t["0.1.b_out"])
            layer.norm2.weight.copy_(t["0.2.gamma"])
            layer.norm2.bias.copy_(t["0.2.beta"])
            layer.linear1.weight.copy_(t["0.3.W"].T)
            layer.linear1.bias.copy_(t["0.3.b"])
            layer.linear2.weight.copy_(t["0.4.W"].T)
            layer.linear2.bias.copy_(t["0.4.b"])
        return layer

    for dev in torch_devices:
        case.impls[f"pytorch-{dev}"] = _torch(tbuild, pool, "MSELoss", "SGD", 0.01, dev,
                                              long_target=False)
    if keras_peer.available():
        case.impls["keras-jax-jit"] = keras_peer.peer(
            lambda keras: keras_peer.encoder_layer(keras, state, steps, width, heads),
            pool, "mse", "SGD", 0.01)
    return case


CASES = {
    "mlp": lambda b, t: mlp(128, "SGD", b, t),
    "mlp-adam": lambda b, t: mlp(128, "Adam", b, t),
    "mlp-b16": lambda b, t: mlp(16, "SGD", b, t),
    "xor": xor,
    "cnn": cnn,
    "lstm": lstm,
    "transformer": transformer,
}
