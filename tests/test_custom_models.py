"""Subclassing: a custom model's forward and backward call its children
through the public `forward_child` / `backward_child` (a child called twice
included) and get exact gradients; the ways that would give wrong ones
(a direct second call, then two backwards; a layer not listed among the
children) are clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import portnn

from .conftest import to_np

TOL = {"atol": 1e-10, "rtol": 1e-8}


class Twice(portnn.Model):
    """``head(block(block(x)) + skip(x))``: one block applied twice."""

    def __init__(self):
        super().__init__()
        self.block = portnn.Dense(4, 4, activation="tanh")
        self.skip = portnn.Dense(4, 4)
        self.head = portnn.Dense(4, 2)

    def children(self):
        return [self.block, self.skip, self.head]

    def forward(self, x, training=False):
        self.begin_calls()
        h = self.forward_child(self.block, x, training)
        h = self.forward_child(self.block, h, training)
        s = self.forward_child(self.skip, x, training)
        return self.forward_child(self.head, h + s, training)

    def backward(self, dy):
        dz = self.backward_child(self.head, dy)
        # independent children may go back in any order; the block's two
        # calls go back in the reverse order of the calls
        dx = self.backward_child(self.skip, dz)
        dh = self.backward_child(self.block, dz)
        return dx + self.backward_child(self.block, dh)


def _twice():
    with portnn.default_dtype("float64"):
        portnn.seed(0)
        return Twice()


def test_a_child_called_twice_gradchecks(backend):
    x = backend.asarray(np.random.default_rng(1).normal(size=(3, 4)))
    result = portnn.gradcheck(_twice(), x)
    assert result.ok, result
    assert sorted(result.errors) == ["0.W", "0.b", "1.W", "1.b", "2.W", "2.b",
                                     "input"]


def test_a_child_called_twice_matches_torch(backend, torch):
    model = _twice()
    lin = {}
    for name in ("block", "skip", "head"):
        dense = getattr(model, name)
        lin[name] = torch.nn.Linear(4, dense.out_features).double()
        with torch.no_grad():
            lin[name].weight.copy_(torch.tensor(to_np(dense.W.value).T))
            lin[name].bias.copy_(torch.tensor(to_np(dense.b.value)))
    x = np.random.default_rng(2).normal(size=(5, 4))
    tx = torch.tensor(x, requires_grad=True)
    h = torch.tanh(lin["block"](torch.tanh(lin["block"](tx))))
    ty = lin["head"](h + lin["skip"](tx))
    dy = np.random.default_rng(3).normal(size=(5, 2))
    ty.backward(torch.tensor(dy))
    y = model(backend.asarray(x), training=True)
    dx = model.backward(backend.asarray(dy))
    np.testing.assert_allclose(to_np(y), ty.detach().numpy(), **TOL)
    np.testing.assert_allclose(to_np(dx), tx.grad.numpy(), **TOL)
    for name in ("block", "skip", "head"):
        np.testing.assert_allclose(to_np(getattr(model, name).W.grad),
                                   lin[name].weight.grad.numpy().T, **TOL)


def test_a_custom_model_trains_with_fit(backend):
    model = _twice()
    rs = np.random.default_rng(4)
    x = rs.normal(size=(64, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    history = model.fit(backend.asarray(x), backend.asarray(y), loss="cross_entropy",
                        optimizer=portnn.Adam(model.parameters(), lr=0.05),
                        epochs=30, batch_size=16, verbose=0)
    assert history["loss"][-1] < 0.5 * history["loss"][0]


class Direct(portnn.Model):
    """PyTorch's style: children called directly, each once."""

    def __init__(self, twice=False):
        super().__init__()
        self.twice = twice
        self.a, self.b = portnn.Dense(3, 3, activation="tanh"), portnn.Dense(3, 2)

    def children(self):
        return [self.a, self.b]

    def forward(self, x, training=False):
        h = self.a(x, training=training)
        if self.twice:
            h = self.a(h, training=training)
        return self.b(h, training=training)

    def backward(self, dy):
        dh = self.b.backward(dy)
        if self.twice:
            dh = self.a.backward(dh)
        return self.a.backward(dh)


def test_children_called_directly_once_each_are_exact(backend):
    with portnn.default_dtype("float64"):
        portnn.seed(5)
        model = Direct()
    x = backend.asarray(np.random.default_rng(6).normal(size=(4, 3)))
    assert portnn.gradcheck(model, x).ok


def test_a_direct_second_call_then_two_backwards_is_an_error(backend):
    with portnn.default_dtype("float64"):
        portnn.seed(7)
        model = Direct(twice=True)
    x = backend.asarray(np.random.default_rng(8).normal(size=(4, 3)))
    model(x, training=True)
    with pytest.raises(RuntimeError, match="called more than once before its "
                       "backward.*self.forward_child"):
        model.backward(backend.asarray(np.ones((4, 2))))
    # a fresh forward is fine again (the error does not stick)
    model.twice = False
    model(x, training=True)
    model.backward(backend.asarray(np.ones((4, 2))))


def test_calling_a_layer_twice_then_one_backward_is_the_last_calls():
    """One backward after several calls serves the last call (MC-dropout
    style repeated calls stay allowed); only a second backward raises."""
    portnn.seed(9)
    dense = portnn.Dense(3, 3)
    x1, x2 = np.ones((2, 3), np.float32), np.full((2, 3), 2.0, np.float32)
    dense(x1, training=True)
    dense(x2, training=True)
    dense.backward(np.ones((2, 3), np.float32))
    np.testing.assert_allclose(to_np(dense.W.grad), x2.T @ np.ones((2, 3)))
    with pytest.raises(RuntimeError, match="called more than once"):
        dense.backward(np.ones((2, 3), np.float32))


def test_backward_child_without_its_forward_says_so():
    model = Twice()
    x = np.ones((2, 4), np.float32)
    model(x, training=True)
    model.backward(np.ones((2, 2), np.float32))
    with pytest.raises(RuntimeError, match="no forward call of Dense is waiting"):
        model.backward_child(model.block, np.ones((2, 4), np.float32))


def test_a_child_not_listed_in_children_is_refused():
    class Unlisted(Direct):
        def children(self):
            return [self.a]

    with pytest.raises(TypeError, match=r"Unlisted.b holds a Dense that is not "
                       r"among Unlisted's children.*children\(\)"):
        Unlisted().fit(np.ones((4, 3), np.float32), np.zeros(4, np.int64),
                       loss="cross_entropy", verbose=0)
