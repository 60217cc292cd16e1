"""`Model.summary`: a table of a model's layers, shapes and parameters."""

from __future__ import annotations

from ..layers.base import no_grad


def summarize(model, print_fn=print) -> str:
    """The table :meth:`portnn.training.Model.summary` prints (see there)."""
    from ..layers.base import _recording_shapes

    shape = getattr(model, "_input_shape", None)
    if shape is not None:
        xp, b = model.backend.xp, model.backend
        dtype = xp.int64 if model.integer_input else model._model_dtype()
        token = _recording_shapes.set(True)
        try:
            with no_grad():
                model.forward(xp.zeros((1, *shape), dtype=dtype, device=b.device))
        finally:
            _recording_shapes.reset(token)
    children = model.children() or [model]
    rows = [("#", "Layer", "Output shape", "Params", "Frozen")]
    for i, child in enumerate(children):
        params = child.parameters()
        built = all(None not in p.shape for p in params)
        count = sum(p.size for p in params) if built else "?"
        frozen = sum(p.size for p in params if not p.trainable) if built else "?"
        name = repr(child) if child.parameters() else type(child).__name__
        if child.children():  # a container: one line, not its nested repr
            name = f"{type(child).__name__} ({len(child.children())} layers)"
        name = name if len(name) <= 30 else name[:27] + "..."
        out = getattr(child, "_output_shape", None)
        rows.append((str(i), name, str(out) if out else "?", f"{count:,}"
                     if built else count, f"{frozen:,}" if built else frozen))
    widths = [max(len(r[k]) for r in rows) for k in range(5)]
    lines = [f"Model: {type(model).__name__}"]
    for r in rows:
        lines.append(f" {r[0]:>{widths[0]}}  {r[1]:<{widths[1]}}  "
                     f"{r[2]:<{widths[2]}}  {r[3]:>{widths[3]}}  "
                     f"{r[4]:>{widths[4]}}")
    lines.append(model._totals_line())
    if shape is None and model.children():
        lines.append("(output shapes: call model.build(input_shape))")
    text = "\n".join(lines)
    if print_fn is not None:
        print_fn(text)
    return text


def totals_line(model) -> str:
    """The last line of a summary: parameter counts and their bytes."""
    params = model.parameters()
    if not all(None not in p.shape for p in params):
        return "Not built yet: call model.build(input_shape) or fit it"
    total = sum(p.size for p in params)
    trainable = sum(p.size for p in params if p.trainable)
    size = sum(p.size * _itemsize(model.backend.xp, p.dtype) for p in params)
    return (f"Total params: {total:,} ({_bytes(size)}); trainable: "
            f"{trainable:,}; frozen: {total - trainable:,}")


def _itemsize(xp, dtype) -> int:
    try:
        return xp.finfo(dtype).bits // 8
    except (TypeError, ValueError):
        return xp.iinfo(dtype).bits // 8


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover
