"""`gradcheck`: compare a layer's or a loss's hand-written backward with
central finite differences, in float64."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._namespace import namespace
from .backends import backend_of, get_backend
from .layers.base import Layer
from .losses.base import Loss
from .random import Generator, global_generator


class GradcheckError(AssertionError):
    """Analytic and numerical gradients disagree.

    Examples
    --------
    A layer whose backward is wrong fails the check:

    >>> import portnn
    >>> class Wrong(portnn.Layer):
    ...     def forward(self, x, training=False):
    ...         return x * x
    ...     def backward(self, dy):
    ...         return dy  # should be 2 x dy
    >>> x = portnn.asarray([[0.5, -1.5]], dtype="float64")
    >>> try:
    ...     portnn.gradcheck(Wrong(), x)
    ... except portnn.GradcheckError:
    ...     print("caught")
    caught
    """


@dataclass
class GradcheckResult:
    """Largest disagreement per checked array (``"input"`` or a parameter
    name), as ``|analytic - numeric| - rtol * |numeric|``; ``ok`` when none
    exceeds ``atol``."""

    errors: dict[str, float] = field(default_factory=dict)
    atol: float = 0.0
    ok: bool = True

    def __str__(self) -> str:
        rows = ", ".join(f"{k}: {v:.3g}" for k, v in self.errors.items())
        return f"gradcheck {'passed' if self.ok else 'FAILED'} (excess error {rows})"


def gradcheck(fn, inputs, *, training: bool = False, eps: float = 1e-6,
              atol: float = 1e-6, rtol: float = 1e-4, seed: int = 0,
              raise_exception: bool = True) -> GradcheckResult:
    """Check the backward of a layer or a loss against finite differences.

    The check runs in float64: the inputs and, for a layer, its parameters
    are cast for the duration (and restored after). A layer's output is
    projected on a fixed random tensor ``r``, so the scalar checked is
    ``sum(layer(x) * r)`` and ``backward(r)`` must return its gradient.
    Random layers (dropout) see the same masks in every evaluation. Integer
    input (token ids) has no gradient and is not checked.

    Parameters
    ----------
    fn : Layer or Loss
        What to check.
    inputs : array or tuple
        ``x`` for a layer; ``(pred, target)`` for a loss.
    training : bool
        Run the layer in training mode.
    eps, atol, rtol : float
        Finite-difference step and tolerances.
    seed : int
        Seed of the projection tensor.
    raise_exception : bool
        Raise :class:`GradcheckError` on failure (else just report).

    Returns
    -------
    GradcheckResult

    Examples
    --------
    >>> import portnn
    >>> x = portnn.get_backend().asarray([[0.5, -1.0, 2.0]])
    >>> portnn.gradcheck(portnn.Dense(3, 2), x).ok
    True
    """
    if isinstance(fn, Loss):
        result = _check_loss(fn, inputs, eps, atol, rtol)
    elif isinstance(fn, Layer):
        result = _check_layer(fn, inputs, training, eps, atol, rtol, seed)
    else:
        msg = f"gradcheck takes a Layer or a Loss, got {type(fn).__name__}"
        raise TypeError(msg)
    if raise_exception and not result.ok:
        raise GradcheckError(str(result))
    return result


def _to_float64(x, backend):
    x = backend.asarray(x)
    xp = backend.xp
    if xp.isdtype(x.dtype, "real floating"):
        return xp.astype(x, xp.float64)
    return x


def _numeric(f, x, eps):
    """Central differences of scalar ``f`` at every element of ``x``."""
    xp = namespace(x)
    shape, n = tuple(x.shape), 1
    for s in x.shape:
        n *= s
    flat = xp.reshape(x, (n,))
    idx = xp.arange(n, device=x.device)
    out = []
    for i in range(n):
        e = xp.astype(idx == i, flat.dtype) * eps
        plus = float(f(xp.reshape(flat + e, shape)))
        minus = float(f(xp.reshape(flat - e, shape)))
        out.append((plus - minus) / (2.0 * eps))
    return xp.reshape(xp.asarray(out, dtype=xp.float64, device=x.device), shape)


def _excess(analytic, numeric, rtol):
    xp = namespace(numeric)
    if analytic is None:
        analytic = xp.zeros_like(numeric)
    if tuple(analytic.shape) != tuple(numeric.shape):
        msg = (
            f"gradient has shape {tuple(analytic.shape)}, expected "
            f"{tuple(numeric.shape)}"
        )
        raise GradcheckError(msg)
    analytic = xp.astype(analytic, xp.float64)
    diff = xp.abs(analytic - numeric) - rtol * xp.abs(numeric)
    return float(xp.max(diff)) if diff.ndim and diff.shape[0] else 0.0


def _check_loss(loss, inputs, eps, atol, rtol):
    pred, target = inputs
    backend = backend_of(pred) or get_backend()
    pred = _to_float64(pred, backend)
    target = _to_float64(target, backend)
    loss.forward(pred, target)
    analytic = loss.backward()
    numeric = _numeric(lambda p: loss.forward(p, target), pred, eps)
    err = _excess(analytic, numeric, rtol)
    return GradcheckResult({"input": err}, atol, err <= atol)


def _check_layer(layer, x, training, eps, atol, rtol, seed):
    backend = backend_of(x) or layer.backend
    xp = backend.xp
    x = _to_float64(x, backend)
    params = list(layer.named_parameters())
    saved = [(p, p.value, p.grad) for _, p in params]
    rng_state = global_generator().get_state()
    try:
        for _, p in params:
            p.value = xp.astype(p.value, xp.float64)
            p.grad = None

        def f(inp):
            global_generator().set_state(rng_state)
            return xp.sum(layer.forward(inp, training) * r)

        global_generator().set_state(rng_state)
        y = layer.forward(x, training)
        r = Generator(seed).normal(tuple(y.shape), dtype=xp.float64, backend=backend)
        dx = layer.backward(r)
        errors = {}
        if xp.isdtype(x.dtype, "real floating"):  # token ids have no gradient
            errors["input"] = _excess(dx, _numeric(f, x, eps), rtol)
        for name, p in params:
            base = p.value

            def g(v, p=p):
                p.value = v
                return f(x)

            numeric = _numeric(g, base, eps)
            p.value = base
            errors[name] = _excess(p.grad, numeric, rtol)
    finally:
        for p, value, grad in saved:
            p.value, p.grad = value, grad
        global_generator().set_state(rng_state)
    return GradcheckResult(errors, atol, all(e <= atol for e in errors.values()))
