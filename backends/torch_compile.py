"""The torch backend's compiler for the training step (``jit_compile``).

``torch.compile`` applied to portnn's step directly would meet Dynamo, which
compiles Python by reading its bytecode: portnn's context variables (the
backend in use, ``no_grad``, the precision policy) are graph breaks, so
the step would fall apart into dozens of small graphs. What the step needs
is what ``jax.jit`` does: run the Python once on placeholder arrays and
record the array operations it issues. torch has that tracer too:
``make_fx`` runs the step on fake tensors (shapes and dtypes, no data; a
host read is an error, not a silent constant), ``functionalize`` turns
its in-place updates into pure ones, and the resulting graph of aten
operations, which has no Python left in it, goes to ``torch.compile``
(Inductor: fused C++ loops on a CPU, Triton kernels on a GPU).

One program per input signature (shapes, dtypes, which arguments are
None), as with ``jax.jit``. If Inductor cannot run here (no C++ compiler,
say), a warning says so once and the traced graph runs as it is: the
same operations as the eager step, one at a time.
"""

from __future__ import annotations

import warnings


class CompiledTorchStep:
    """`fn`, a pure function of arrays (lists of them, None), traced and
    compiled per input signature.

    Parameters
    ----------
    fn : callable
        The step: tensors (and None) in, tensors (and None) out.
    compiler : {"inductor", None}
        What compiles the traced graph; None runs the graph as traced
        (for checking the trace on its own).
    """

    def __init__(self, fn, compiler: str | None = "inductor") -> None:
        self.fn, self.compiler = fn, compiler
        self.programs: dict = {}

    def __call__(self, *args):
        import torch.utils._pytree as pytree

        flat, spec = pytree.tree_flatten(args)
        key = (spec, tuple(_signature(a) for a in flat))
        program = self.programs.get(key)
        if program is not None:
            return program(*args)
        graph = self._trace(args)
        if self.compiler is None or _unusable.get(self.compiler):
            self.programs[key] = graph
            return graph(*args)
        import torch

        compiled = torch.compile(graph, dynamic=False, fullgraph=True)
        try:  # Inductor compiles at this first call, before the step runs
            out = compiled(*args)
        except Exception as exc:  # noqa: BLE001 - whatever the compiler lacks
            _unusable[self.compiler] = True
            warnings.warn(
                f"jit_compile: torch.compile (Inductor) cannot compile here "
                f"({type(exc).__name__}: {str(exc)[:300]}); the traced step runs "
                "without it, one operation at a time", RuntimeWarning, stacklevel=2)
            compiled, out = graph, graph(*args)
        self.programs[key] = compiled
        return out

    def _trace(self, args):
        """The step as a graph of aten operations, recorded on fake tensors."""
        import torch
        import torch.utils._pytree as pytree
        from torch.fx.experimental.proxy_tensor import make_fx

        fn = self.fn

        def own(*a):
            # the step updates its state in place (p -= lr * g); on copies,
            # the program returns new tensors and writes into none of its
            # inputs, which other objects may share (a generator's counter)
            return fn(*pytree.tree_map_only(torch.Tensor, torch.clone, a))

        pure = torch.func.functionalize(own, remove="mutations_and_views")
        return make_fx(pure, tracing_mode="fake", _allow_non_fake_inputs=True)(*args)


#: compilers found unusable in this process (warned once)
_unusable: dict[str, bool] = {}


def _signature(a):
    shape = getattr(a, "shape", None)
    if shape is None:
        return a  # None, a Python number (a constant of the program)
    return (tuple(shape), a.dtype, a.device)


def compile_step(fn):
    """The torch backend's native ``jit``: :class:`CompiledTorchStep` of `fn`."""
    return CompiledTorchStep(fn)
