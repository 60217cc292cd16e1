"""Recurrent layers `RNN`, `LSTM` and `GRU`, with backpropagation through time.

Inputs are batch-first ``(batch, time, features)``. The input projection of
every time step is one GEMM before the loop; the loop does only the
``h @ W_hh.T`` product and the gate arithmetic. The backward walks the
steps in reverse, collects the gate gradients, and turns them into the
weight gradients with one GEMM each after the loop.

Weights follow PyTorch's layout and gate order, so they copy across:
``W_ih`` is ``(gates * hidden, input)``, ``W_hh`` is ``(gates * hidden,
hidden)``; LSTM gates are ``(i, f, g, o)``, GRU gates ``(r, z, n)``.
"""

from __future__ import annotations

import math

from .. import init as initializers
from .._namespace import namespace
from ..ops.lstm import lstm_gates_impl, lstm_layer_impl
from ..ops.matmul import matmul_tn
from ..ops.scan import native_scan
from .base import Layer, dtype_name, float_dtype


def _sigmoid(xp, x):
    # sigmoid(x) = (1 + tanh(x / 2)) / 2: exact, never overflows, and one
    # pass instead of a where over two branches (3x faster on NumPy)
    return 0.5 * xp.tanh(0.5 * x) + 0.5


class _Recurrent(Layer):
    """Shared loop of the recurrent layers; a subclass writes one step."""

    gates = 1
    state_names = ("h",)
    _cache_attrs = ("_x", "_caches", "_prev", "_keep", "_scanned")
    #: whether `_step` uses the input and hidden parts only as their sum
    #: (GRU's reset gate scales the hidden part alone)
    _sums_gates = True
    _call_outputs = ("final_state", "initial_state_grad")
    uses_mask = True

    def __init__(self, input_size: int, hidden_size: int,
                 return_sequences: bool = True, bias: bool = True, *,
                 backend=None, dtype=None, rng=None) -> None:
        super().__init__(backend)
        name = type(self).__name__
        for arg, v in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                msg = f"{name}: {arg} must be a positive int, got {v!r}"
                raise ValueError(msg)
        self.input_size, self.hidden_size = input_size, hidden_size
        self.return_sequences = bool(return_sequences)
        self._dtype = float_dtype(self.backend, dtype)
        g = self.gates * hidden_size
        # PyTorch's init: every weight and bias uniform in +-1/sqrt(hidden)
        bound = 1.0 / math.sqrt(hidden_size)
        kw = {"backend": self.backend, "dtype": self._dtype, "rng": rng}
        self.W_ih = self.add_parameter(
            "W_ih", initializers.uniform((g, input_size), bound, **kw))
        self.W_hh = self.add_parameter(
            "W_hh", initializers.uniform((g, hidden_size), bound, **kw))
        self.b_ih = self.b_hh = None
        if bias:
            self.b_ih = self.add_parameter("b_ih", initializers.uniform((g,), bound,
                                                                          **kw))
            self.b_hh = self.add_parameter("b_hh", initializers.uniform((g,), bound,
                                                                          **kw))
        #: The state after the last step (``h``, or ``(h, c)`` for LSTM).
        self.final_state = None
        #: Gradient of the loss with respect to the initial state, after backward.
        self.initial_state_grad = None

    # -- one step, written by each subclass ---------------------------------
    def _step(self, gx, state, gh):
        """New state and the cache for `_step_backward` from the input part
        `gx` and hidden part `gh` of the gate pre-activations."""
        raise NotImplementedError

    def _step_backward(self, cache, dstate):
        """``(d gx, d gh, d state_prev)``, the last without the path through
        ``W_hh`` (``None`` for a part with no other path)."""
        raise NotImplementedError

    # -- the loop ----------------------------------------------------------------
    def _initial(self, xp, n, initial_state, x):
        hshape = (n, self.hidden_size)
        if initial_state is None:
            zero = xp.zeros(hshape, dtype=x.dtype, device=x.device)
            return tuple(zero for _ in self.state_names)
        states = (initial_state,) if len(self.state_names) == 1 else tuple(
            initial_state)
        if len(states) != len(self.state_names) or any(
                tuple(s.shape) != hshape for s in states):
            got = [tuple(getattr(s, "shape", ())) for s in states]
            msg = (
                f"{type(self).__name__}: initial_state must be "
                f"{' and '.join(self.state_names)} of shape {hshape}, got shapes "
                f"{got}"
            )
            raise ValueError(msg)
        return states

    def _check_input(self, x):
        if type(x) is not type(self.W_ih.value):
            self._check_backend(x, self.W_ih)
        if x.ndim != 3 or x.shape[2] != self.input_size:
            msg = (
                f"{type(self).__name__}: expected input (batch, time, features) with "
                f"{self.input_size} features, got shape {tuple(x.shape)}"
            )
            raise ValueError(msg)

    def compute_mask(self, x, mask):
        """The mask goes on with the sequence; a last state uses it up."""
        return mask if self.return_sequences else None

    def _check_mask(self, xp, mask, x):
        shape = tuple(x.shape[:2])
        if tuple(mask.shape) != shape or mask.dtype != xp.bool:
            msg = (f"{type(self).__name__}: mask must be a boolean (batch, time) "
                   f"array of shape {shape} (True at the real steps), got shape "
                   f"{tuple(mask.shape)} and dtype {mask.dtype}")
            raise ValueError(msg)

    def forward(self, x, training=False, initial_state=None, mask=None):
        self._check_input(x)
        xp = namespace(x)
        n, steps, _ = x.shape
        state = self._initial(xp, n, initial_state, x)
        scan = native_scan(x) if mask is None else None
        if scan is not None:  # traced: the compiler's loop, not 50 copies
            return self._forward_scanned(scan, xp, x, state)
        gx = self._input_gates(xp, x)
        keep = None
        if mask is not None:  # a padded step keeps the state and outputs 0
            self._check_mask(xp, mask, x)
            keep = [xp.expand_dims(mask[:, t], 1) for t in range(steps)]
        w_hh_t = self.W_hh.value.T
        caches, hs, prev = [], [], []
        for t in range(steps):
            prev.append(state[0])
            gh = state[0] @ w_hh_t
            if self.b_hh is not None:
                gh = gh + self.b_hh.value
            new, cache = self._step(gx[:, t, :], state, gh)
            caches.append(cache)
            if keep is not None:
                new = tuple(xp.where(keep[t], a, b) for a, b in zip(new, state,
                                                                    strict=True))
                hs.append(xp.where(keep[t], new[0], 0.0))
            else:
                hs.append(new[0])
            state = new
        self._x, self._caches, self._prev, self._scanned = x, caches, prev, None
        self._keep = None if keep is None else [xp.astype(k, x.dtype) for k in keep]
        self.final_state = state[0] if len(state) == 1 else state
        if self.return_sequences:
            return xp.stack(hs, axis=1)
        return state[0]  # the last real step's (the last step without a mask)

    def _input_gates(self, xp, x, bias=True):
        """Every step's input part of the gate pre-activations, ``x W_ih^T +
        b_ih``, as one GEMM: ``(a, b, input) -> (a, b, gates)`` for either
        order of batch and time."""
        a, b, _ = x.shape
        gx = xp.reshape(xp.reshape(x, (a * b, self.input_size)) @ self.W_ih.value.T,
                        (a, b, -1))
        return gx if self.b_ih is None or not bias else gx + self.b_ih.value

    def _prepare(self, xp, like) -> None:
        """Make what the steps share before a scan traces them (a traced
        step must not memoize arrays of its own trace)."""

    def _forward_scanned(self, scan, xp, x, state):
        """The loop of :meth:`forward` as one traced step under the
        backend's scan (:mod:`portnn.ops.scan`): the same `_step`, every
        array time-major (the scan's axis), so that no stack of gates is
        ever transposed."""
        w_hh_t = self.W_hh.value.T
        x_tm = xp.permute_dims(x, (1, 0, 2))  # the input is the small one
        # both biases join the small per-step product, not a pass over
        # every step's gates
        joined = self.b_ih is not None and self._sums_gates
        gx = self._input_gates(xp, x_tm, bias=not joined)
        b_hh = None if self.b_hh is None else self.b_hh.value
        if joined:
            b_hh = b_hh + self.b_ih.value
        self._prepare(xp, gx)

        def step(state, gx_t):
            gh = state[0] @ w_hh_t
            if b_hh is not None:
                gh = gh + b_hh
            new, cache = self._step(gx_t, state, gh)
            return new, (state[0], cache)

        last, (prev, caches) = scan(step, state, gx)
        self._x, self._scanned, self._keep = x, (x_tm, prev, caches), None
        self.final_state = last[0] if len(last) == 1 else last
        if self.return_sequences:
            # each step's output is the state the next one starts from
            hs = xp.concat([prev[1:], xp.expand_dims(last[0], axis=0)], axis=0)
            return xp.permute_dims(hs, (1, 0, 2))
        return last[0]

    def _backward_scanned(self, scan, dy, need_dx):
        """:meth:`_backward`'s loop under the backend's scan, in reverse,
        time-major as :meth:`_forward_scanned` left it."""
        xp = namespace(dy)
        x_tm, prev, caches = self._scanned
        n = x_tm.shape[1]
        dstate = tuple(xp.zeros((n, self.hidden_size), dtype=dy.dtype,
                                device=dy.device) for _ in self.state_names)
        dys = None
        if self.return_sequences:
            dys = xp.permute_dims(dy, (1, 0, 2))
        else:
            dstate = (dy, *dstate[1:])
        w_hh = self.W_hh.value
        self._prepare(xp, dy)

        def step(dstate, inputs):
            dy_t, cache = inputs
            if dy_t is not None:
                dstate = (dstate[0] + dy_t, *dstate[1:])
            dgx_t, dgh_t, dstate = self._step_backward(cache, dstate)
            back = dgh_t @ w_hh
            dstate = (back if dstate[0] is None else dstate[0] + back, *dstate[1:])
            # one array for RNN and LSTM: stacked once
            return dstate, (dgx_t, None if dgh_t is dgx_t else dgh_t)

        dstate, (dgx, dgh) = scan(step, dstate, (dys, caches), reverse=True)
        self.initial_state_grad = dstate[0] if len(dstate) == 1 else dstate
        dx = self._param_grads(xp, dgx, dgx if dgh is None else dgh, prev,
                               need_dx, x_tm)
        return None if dx is None else xp.permute_dims(dx, (1, 0, 2))

    def _backward(self, dy, need_dx):
        if self.__dict__.get("_scanned") is not None:
            return self._backward_scanned(native_scan(dy), dy, need_dx)
        xp = namespace(dy)
        n, steps, _ = self._x.shape
        dstate = tuple(xp.zeros((n, self.hidden_size), dtype=dy.dtype,
                                device=dy.device) for _ in self.state_names)
        if not self.return_sequences:  # the output is the last state's h
            dstate = (dy, *dstate[1:])
        keep = self._keep
        w_hh = self.W_hh.value
        dgx, dgh = [None] * steps, [None] * steps
        for t in reversed(range(steps)):
            passed = None
            if keep is not None:
                # state_t = k new + (1 - k) state_{t-1} and output_t = k new
                # (k: 1 at a real step, 0 at a padded one): the carried state
                # gets (1 - k) d state_t, the step k (d state_t + d output_t)
                k = keep[t]
                passed = tuple(d * (1.0 - k) for d in dstate)
                dstate = tuple(d * k for d in dstate)
                if self.return_sequences:
                    dstate = (dstate[0] + dy[:, t, :] * k, *dstate[1:])
            elif self.return_sequences:
                dstate = (dstate[0] + dy[:, t, :], *dstate[1:])
            dgx[t], dgh[t], dstate = self._step_backward(self._caches[t], dstate)
            back = dgh[t] @ w_hh
            dstate = (back if dstate[0] is None else dstate[0] + back, *dstate[1:])
            if passed is not None:
                dstate = tuple(d + p for d, p in zip(dstate, passed, strict=True))
        self.initial_state_grad = dstate[0] if len(dstate) == 1 else dstate
        gx = xp.stack(dgx, axis=1)
        gh = gx if dgh[0] is dgx[0] else xp.stack(dgh, axis=1)
        return self._param_grads(xp, gx, gh, xp.stack(self._prev, axis=1), need_dx)

    def _param_grads(self, xp, gx, gh, prev, need_dx, x=None):
        """The weights' gradients from every step's ``d gx``, ``d gh`` and
        previous state: one product each. The arrays are ``(batch, time,
        ...)`` with the layer's input, or any order of the two first axes
        with `x` the input in that order; ``d x`` comes back in it."""
        x = self._x if x is None else x
        rows = x.shape[0] * x.shape[1]
        same = gh is gx
        gx = xp.reshape(gx, (rows, -1))
        gh = gx if same else xp.reshape(gh, (rows, -1))
        prev = xp.reshape(prev, (rows, self.hidden_size))
        flat = xp.reshape(x, (rows, self.input_size))
        if self.W_ih.trainable:
            self.W_ih.accumulate(matmul_tn(gx, flat))
        if self.W_hh.trainable:
            self.W_hh.accumulate(matmul_tn(gh, prev))
        if self.b_ih is not None:
            self.b_ih.accumulate(xp.sum(gx, axis=0))
            self.b_hh.accumulate(xp.sum(gh, axis=0))
        if need_dx:
            return xp.reshape(gx @ self.W_ih.value, tuple(x.shape))
        return None

    def backward(self, dy):
        return self._backward(dy, need_dx=True)

    def backward_params(self, dy):
        self._backward(dy, need_dx=False)

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "return_sequences": self.return_sequences,
                "bias": self.b_ih is not None, "dtype": dtype_name(self._dtype)}

    def __repr__(self) -> str:
        last = "" if self.return_sequences else ", return_sequences=False"
        return f"{type(self).__name__}({self.input_size}, {self.hidden_size}{last})"


_RECURRENT_DOC = """
    Parameters
    ----------
    input_size, hidden_size : int
        Features per input step and size of the hidden state.
    return_sequences : bool, default True
        Return every step's hidden state ``(batch, time, hidden)`` (as
        PyTorch does), or only the last one ``(batch, hidden)``.
    bias : bool
        Learn ``b_ih`` and ``b_hh``.
    backend, dtype, rng : optional

    Notes
    -----
    Call as ``layer(x, training, initial_state=...)`` to start from a given
    state; afterwards ``layer.final_state`` holds the last state and, after
    ``backward``, ``layer.initial_state_grad`` its gradient. One layer,
    one direction: stack layers in a :class:`Sequential` for depth.
"""


class RNN(_Recurrent):
    __doc__ = """Elman RNN: ``h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``.
    """ + _RECURRENT_DOC + """
    Examples
    --------
    >>> import portnn
    >>> rnn = portnn.RNN(3, 5)
    >>> x = portnn.get_backend().xp.ones((2, 7, 3), dtype=rnn.W_ih.dtype)
    >>> rnn(x).shape
    (2, 7, 5)
    """

    def _step(self, gx, state, gh):
        h = namespace(gx).tanh(gx + gh)
        return (h,), h

    def _step_backward(self, h, dstate):
        da = dstate[0] * (1.0 - h * h)
        return da, da, (None,)


class LSTM(_Recurrent):
    __doc__ = """Long short-term memory, gates ``(i, f, g, o)`` as in PyTorch.

    One step::

        i, f, o = sigmoid(...), g = tanh(...)
        c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)
    """ + _RECURRENT_DOC + """
    Examples
    --------
    >>> import portnn
    >>> lstm = portnn.LSTM(3, 5, return_sequences=False)
    >>> x = portnn.get_backend().xp.ones((2, 7, 3), dtype=lstm.W_ih.dtype)
    >>> lstm(x).shape
    (2, 5)
    """

    gates = 4
    state_names = ("h", "c")
    _cache_attrs = (*_Recurrent._cache_attrs, "_rows", "_native")

    def forward(self, x, training=False, initial_state=None, mask=None):
        # the backend's whole-layer kernel where it has one (portnn.ops.lstm);
        # the loop below is the portable path, the reference, and the one
        # that skips padded steps
        impl = lstm_layer_impl(x, self) if mask is None else None
        if impl is None:
            self._native = None
            return super().forward(x, training, initial_state, mask)
        self._check_input(x)
        h0, c0 = self._initial(namespace(x), x.shape[0], initial_state, x)
        bias = (None, None) if self.b_ih is None else (self.b_ih.value, self.b_hh.value)
        y, h, c, ctx = impl.forward(x, h0, c0, self.W_ih.value, self.W_hh.value, *bias)
        self._native = (impl, ctx)
        self.final_state = (h, c)
        return y if self.return_sequences else h

    def _backward(self, dy, need_dx):
        if self._native is None:
            return super()._backward(dy, need_dx)
        impl, ctx = self._native
        dx, dw_ih, dw_hh, db_ih, db_hh, dh0, dc0 = impl.backward(
            ctx, dy, self.return_sequences)
        self.initial_state_grad = (dh0, dc0)
        for param, grad in ((self.W_ih, dw_ih), (self.W_hh, dw_hh),
                            (self.b_ih, db_ih), (self.b_hh, db_hh)):
            if param is not None and param.trainable:
                param.accumulate(grad)
        return dx if need_dx else None

    def _prepare(self, xp, like) -> None:
        self._gate_rows(xp, like)  # memoized outside the scan's trace

    def _gate_rows(self, xp, like):
        """``(scale, shift)`` rows over the 4 gates: sigmoid(a) is
        0.5 tanh(0.5 a) + 0.5 and tanh(a) is 1 tanh(1 a) + 0, so one tanh
        over all four gates computes them all (:mod:`portnn.ops.lstm`), and
        the backward reads each gate's slope off `shift`."""
        rows = getattr(self, "_rows", None)
        if rows is None or rows[0].dtype != like.dtype:
            hs = self.hidden_size

            def row(sig, tanh):
                parts = [xp.full((hs,), v, dtype=like.dtype, device=like.device)
                         for v in (sig, sig, tanh, sig)]
                return xp.concat(parts)

            rows = self._rows = (row(0.5, 1.0), row(0.5, 0.0))
        return rows

    def _step(self, gx, state, gh):
        xp = namespace(gx)
        _, c = state
        scale, shift = self._gate_rows(xp, gx)
        a = gx + gh
        gates = lstm_gates_impl(a)(a, scale, shift)  # (i, f, g, o) side by side
        hs = self.hidden_size
        i, f = gates[:, :hs], gates[:, hs:2 * hs]
        g, o = gates[:, 2 * hs:3 * hs], gates[:, 3 * hs:]
        c_new = f * c
        c_new += i * g
        tc = xp.tanh(c_new)
        return (o * tc, c_new), (gates, c, tc)

    def _step_backward(self, cache, dstate):
        xp = namespace(dstate[0])
        gates, c_prev, tc = cache
        hs = self.hidden_size
        i, f = gates[:, :hs], gates[:, hs:2 * hs]
        g, o = gates[:, 2 * hs:3 * hs], gates[:, 3 * hs:]
        dh, dc = dstate
        dtc = tc * tc
        dtc -= 1.0
        dtc *= dh * o
        dc = dc - dtc  # dc + dh o (1 - tc**2)
        # d gate / d a: s - s**2 for a sigmoid gate s, 1 - g**2 for tanh;
        # with shift = (0.5, 0.5, 0, 0.5): 2 shift gates + (1 - 2 shift) - gates**2
        _, shift = self._gate_rows(xp, gates)
        da = gates * (2.0 * shift)
        da += 1.0 - 2.0 * shift
        da -= gates * gates
        da *= xp.concat([dc * g, dc * c_prev, dc * i, dh * tc], axis=1)
        return da, da, (None, dc * f)


class GRU(_Recurrent):
    __doc__ = """Gated recurrent unit, gates ``(r, z, n)`` as in PyTorch.

    One step::

        r, z = sigmoid(...),  n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))
        h_t = (1 - z) * n + z * h_{t-1}
    """ + _RECURRENT_DOC + """
    Examples
    --------
    >>> import portnn
    >>> gru = portnn.GRU(3, 5)
    >>> x = portnn.get_backend().xp.ones((2, 7, 3), dtype=gru.W_ih.dtype)
    >>> gru(x).shape
    (2, 7, 5)
    """

    gates = 3
    _sums_gates = False

    def _step(self, gx, state, gh):
        xp = namespace(gx)
        (h,) = state
        hs = self.hidden_size
        r = _sigmoid(xp, gx[:, :hs] + gh[:, :hs])
        z = _sigmoid(xp, gx[:, hs:2 * hs] + gh[:, hs:2 * hs])
        ghn = gh[:, 2 * hs:]
        n = xp.tanh(gx[:, 2 * hs:] + r * ghn)
        h_new = (1.0 - z) * n + z * h
        return (h_new,), (r, z, n, ghn, h)

    def _step_backward(self, cache, dstate):
        xp = namespace(dstate[0])
        r, z, n, ghn, h = cache
        (dh,) = dstate
        dn = dh * (1.0 - z) * (1.0 - n * n)
        dr = dn * ghn * r * (1.0 - r)
        dz = dh * (h - n) * z * (1.0 - z)
        dgx = xp.concat([dr, dz, dn], axis=1)
        dgh = xp.concat([dr, dz, dn * r], axis=1)
        return dgx, dgh, (dh * z,)
