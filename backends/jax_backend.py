"""JAX arrays (CPU, or a GPU as ``jax:gpu``) through the array API.

JAX arrays are immutable: ``a -= b`` rebinds (optimizers store their state
back, so that just works), but slice assignment does not exist. The core's
portable paths that assign into slices (padding, col2im) get native
versions here written with ``x.at[...]`` and ``jnp.pad``, tested against the
portable ones; scatter-add uses ``x.at[idx].add``.

portnn's counter-based generator needs exact int64 arithmetic and gradient
checks need float64, so creating this backend turns on JAX's
``jax_enable_x64`` (float32 stays portnn's default dtype).
"""

from __future__ import annotations

from .base import Backend, BackendUnavailableError
from .jax_conv import JaxConv2d

INSTALL_HINT = "pip install jax  (from a checkout: pip install -e '.[jax]')"


def _scatter_add(target, indices, values):
    return target.at[indices].add(values)


def _add_into_views(out, keys, pieces):
    for key, piece in zip(keys, pieces, strict=True):
        out = out.at[key].add(piece)
    return out


def _pad2d(x, pads, value):
    import jax.numpy as jnp

    widths = [(0, 0)] * (x.ndim - 2) + [tuple(p) for p in pads]
    return jnp.pad(x, widths, constant_values=value)


def _to_numpy(x):
    import numpy

    return numpy.asarray(x)


def _device(jax, spec):
    """A jax Device from ``None``, ``"cpu"``, ``"gpu"``/``"cuda"`` with an
    optional ``:N``, or a plain index."""
    if spec is None:
        return jax.devices()[0]
    kind, _, index = str(spec).partition(":")
    if kind.isdigit():
        kind, index = None, kind
    if kind == "cuda":
        kind = "gpu"
    try:
        devices = jax.devices(kind) if kind else jax.devices()
    except RuntimeError as exc:
        msg = f"JAX has no {kind!r} device here ({exc})"
        raise BackendUnavailableError(msg) from exc
    i = int(index or 0)
    if not 0 <= i < len(devices):
        msg = f"JAX device {spec!r} requested, but JAX sees {len(devices)}"
        raise BackendUnavailableError(msg)
    return devices[i]


def _scan(step, carry, xs, reverse=False):
    """``jax.lax.scan``: a recurrence traced once, run as an XLA loop
    (``portnn.ops.scan``)."""
    import jax

    return jax.lax.scan(step, carry, xs, reverse=reverse)


def _matmul_tn(a, b):
    """``a.T @ b`` with the transpose made a real array: XLA's CPU runtime
    contracts over the leading axes 1.7-3.4x slower than over a trailing
    one (``portnn.ops.matmul.matmul_tn``); the barrier keeps XLA from
    folding the transpose back into the product."""
    import jax

    return jax.lax.optimization_barrier(a.T) @ b


def _jit(fn):
    """``jax.jit(fn)``, tracing `fn` with JAX's traced arrays answering the
    array API's ``.device`` with None (they raise instead: jax-ml/jax#26000),
    so portnn's ``xp.zeros(..., device=x.device)`` places new arrays with the
    computation, as array-api-compat's ``device()`` does for them."""
    import jax
    from jax._src.core import Tracer

    def traced(*args):
        kind = Tracer.device
        Tracer.device = property(lambda self: None)
        try:
            return fn(*args)
        finally:
            Tracer.device = kind

    return jax.jit(traced)


def make_jax_backend(device=None) -> Backend:
    """Build the JAX backend on `device` (default: JAX's default device)."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as exc:
        msg = f"JAX is not installed ({exc})"
        raise BackendUnavailableError(msg) from exc
    from jax._src.core import Tracer

    jax.config.update("jax_enable_x64", True)
    dev = _device(jax, device)
    _conv2d = JaxConv2d()
    return Backend(
        "jax",
        jnp,
        device=dev,
        to_numpy=_to_numpy,
        # traced arrays too: the natives serve the compiled step
        array_types=(jax.Array, Tracer),
        inplace=False,
        native={"scatter_add": _scatter_add, "add_into_views": _add_into_views,
                "pad2d": _pad2d, "erf": jax.scipy.special.erf,
                # a GPU's GEMMs take transposed operands as they are
                "matmul_tn": _matmul_tn if dev.platform == "cpu" else None,
                "conv2d": _conv2d, "conv_transpose2d": _conv2d.transpose,
                # the whole training step as one XLA program
                # (portnn.training.compiled), its recurrences as XLA loops
                "jit": _jit, "scan": _scan},
        synchronize=lambda: jax.effects_barrier(),
        install_hint=INSTALL_HINT,
    )
