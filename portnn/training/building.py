"""Lazy layers (``Dense(64)``) built from the first data, only once the
call that builds them has succeeded."""

from __future__ import annotations

import contextlib

from ..layers.base import no_grad


@contextlib.contextmanager
def tentative_build(model):
    """Lazy layers built inside are unbuilt again if the block fails
    (a bad input must not leave them sized for it), and the generator
    goes back to where it was (a retry draws the same weights)."""
    if not any(None in p.shape for p in model.parameters()):
        yield
        return
    from ..layers.base import walk_layers
    from ..random import global_generator

    generator = global_generator()
    rng = generator.get_state()
    saved = []
    for layer in walk_layers(model):
        params = [(p, {k: getattr(p, k) for k in p.__slots__})
                  for p in getattr(layer, "_params", {}).values()]
        saved.append((layer, dict(layer.__dict__), params))
    try:
        yield
    except BaseException:
        for layer, attrs, params in saved:
            layer.__dict__.clear()
            layer.__dict__.update(attrs)
            for p, slots in params:
                for k, v in slots.items():
                    setattr(p, k, v)
        generator.set_state(rng)
        raise


def build_lazy(model, x) -> None:
    """Size the lazy layers on `x` (one sample), then draw their weights
    in the order the same model with its sizes given would have: one
    seed gives the same weights, lazy or not."""
    if not any(None in p.shape for p in model.parameters()):
        return
    from ..layers.base import shape_pass
    from ..layers.dense import replay_draws

    with no_grad(), shape_pass():
        model.forward(x, training=False)
    replay_draws(model)


def build_from_shape(model, input_shape) -> None:
    """:meth:`Model.build`: one zero sample of `input_shape` (a leading None
    for the batch allowed) through the model, lazy layers built only if it
    succeeds."""
    shape = tuple(input_shape)
    if shape and shape[0] is None:
        shape = shape[1:]
    if not all(isinstance(s, int) and s > 0 for s in shape):
        msg = f"build: input_shape must be positive ints, got {input_shape!r}"
        raise ValueError(msg)
    xp, b = model.backend.xp, model.backend
    dtype = xp.int64 if model.integer_input else model._model_dtype()
    with tentative_build(model):
        build_lazy(model, xp.zeros((1, *shape), dtype=dtype, device=b.device))
    model._input_shape = shape
