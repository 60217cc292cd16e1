"""Graph models: the chain rule over a DAG, as `Sequential` is over a list.

``x = portnn.Input((784,))`` is a symbolic tensor; calling a layer on
symbolic tensors records a node (the layer, its input tensors, its output)
and returns the output's symbolic tensor. ``portnn.Model(inputs, outputs)``
orders the nodes once. Forward runs them in that order; backward runs them
in reverse, adding up the gradients of a tensor that feeds several nodes::

    for node in reversed(nodes):
        dy = grads[node.output]                   # summed over its consumers
        dxs = node.layer.backward(dy)             # one per input for merges
        for tensor, dx in zip(node.inputs, dxs):
            grads[tensor] = grads.get(tensor, 0) + dx

A layer called by several nodes is one set of weights: it keeps one cache
per call (as weight sharing in `Sequential` does) and its gradients add up.
The graph is stored as data (layer indices and edges), never as code, so a
checkpoint rebuilds it without the user's script.
"""

from __future__ import annotations

from typing import Any

from ..data.structure import Structure
from ..training.model import Model
from .base import Layer, any_mask
from .symbolic import SymbolicTensor, output_shape


def _trace(inputs: list, outputs: list):
    """Nodes reachable from `outputs`, in an order where every node comes
    after the nodes it reads (depth-first post-order), as index data."""
    input_ids = {id(t): i for i, t in enumerate(inputs)}
    order, seen, on_path = [], {}, set()

    def visit(t: SymbolicTensor):
        kind, owner = t.source
        if kind == "input":
            if id(t) not in input_ids:
                what = f"Input {t.name!r}" if t.name else repr(t)
                msg = (f"an output depends on {what}, which is not among the "
                       "model's inputs: list it in Model(inputs=[...])")
                raise ValueError(msg)
            return
        if id(owner) in seen:
            return
        if id(owner) in on_path:  # cannot happen with calls, but files lie
            raise ValueError("the graph has a cycle")
        on_path.add(id(owner))
        for src in owner.inputs:
            visit(src)
        on_path.discard(id(owner))
        seen[id(owner)] = len(order)
        order.append(owner)

    for t in outputs:
        if not isinstance(t, SymbolicTensor):
            msg = (f"Model outputs must be symbolic tensors (layers called on "
                   f"portnn.Input), got {type(t).__name__}")
            raise TypeError(msg)
        visit(t)
    layers: list[Layer] = []
    for node in order:
        if not any(layer is node.layer for layer in layers):
            layers.append(node.layer)

    def ref(t):
        kind, owner = t.source
        return ["input", input_ids[id(t)]] if kind == "input" else [
            "node", seen[id(owner)]]

    graph = {
        "inputs": [{"shape": list(t.shape[1:]), "dtype": t.dtype, "name": t.name}
                   for t in inputs],
        "nodes": [{"layer": next(i for i, la in enumerate(layers) if la is n.layer),
                   "args": [ref(t) for t in n.inputs], "list": n.is_list,
                   "kwargs": n.kwargs} for n in order],
        "outputs": [ref(t) for t in outputs],
    }
    return layers, graph


class Functional(Model):
    """A model whose layers form a graph: several inputs and outputs,
    merges, skips, shared layers. Made by ``portnn.Model(inputs=...,
    outputs=...)`` (one, a list or a dict of each).

    The forward pass runs the nodes in topological order; the backward
    pass runs them in reverse and sums the gradients of every tensor that
    feeds several nodes. It is a layer like any other: it trains with
    `fit` (one input and one output), saves and loads (the graph is stored
    as data), and can be a node of another graph or a child of
    `Sequential`.

    Examples
    --------
    A skip connection around a block, joined by a merge:

    >>> import portnn
    >>> x = portnn.Input((8,))
    >>> h = portnn.Dense(8, 8)(x)
    >>> y = portnn.Add()([x, portnn.ReLU()(h)])
    >>> model = portnn.Model(inputs=x, outputs=portnn.Dense(8, 1)(y))
    >>> [type(la).__name__ for la in model.layers]
    ['Dense', 'ReLU', 'Add', 'Dense']
    """

    _cache_attrs = ("_child_calls",)
    _call_outputs = ("_out_mask",)
    uses_mask = True

    def __init__(self, *layers: Layer, inputs=None, outputs=None, graph=None,
                 backend=None) -> None:
        if graph is None:
            if inputs is None or outputs is None:
                msg = "Model(inputs=..., outputs=...) needs both"
                raise TypeError(msg)
            in_list, self._input_names = _flatten("inputs", inputs)
            out_list, self._output_names = _flatten("outputs", outputs)
            layers, graph = _trace(in_list, out_list)
            graph["input_keys"] = self._input_names
            graph["output_keys"] = self._output_names
            counted = True  # calls already counted each node's use
        else:
            self._input_names = graph.get("input_keys")
            self._output_names = graph.get("output_keys")
            counted = False
        _check_graph(graph, len(layers))
        if backend is None:
            owners = [la for la in layers if la.parameters()]
            backend = owners[0].backend if owners else None
        super().__init__(backend)
        self.layers: list[Layer] = list(layers)
        self.graph = graph
        if not counted:
            for node in graph["nodes"]:
                self.layers[node["layer"]]._uses += 1

    # -- structure ------------------------------------------------------------
    def children(self) -> list[Layer]:
        return self.layers

    def get_config(self) -> dict:
        """The graph as data: inputs, nodes (layer index, edges), outputs."""
        return {"graph": self.graph}

    @property
    def integer_input(self) -> bool:
        return self.integer_inputs[0]

    @property
    def integer_inputs(self) -> list[bool]:
        return [spec["dtype"].startswith(("int", "uint"))
                for spec in self.graph["inputs"]]

    @property
    def input_structure(self) -> Structure:
        names = [spec["name"] for spec in self.graph["inputs"]]
        return Structure(self._input_names, len(self.graph["inputs"]),
                         aliases=names if all(names) else None)

    @property
    def output_structure(self) -> Structure:
        return Structure(self._output_names, len(self.graph["outputs"]))

    def check_input(self, x) -> None:
        """Each input checked by the layers that read it (token-id ranges)."""
        xs = self._inputs_of(x)
        for node in self.graph["nodes"]:
            if not node["list"] and node["args"][0][0] == "input":
                self.layers[node["layer"]].check_input(xs[node["args"][0][1]])

    def _inputs_of(self, x) -> list:
        keys, n = self._input_names, len(self.graph["inputs"])
        if isinstance(x, dict):  # keyed as Model(inputs={...}), else by Input name
            if not isinstance(keys, list):
                keys = [spec["name"] or f"input_{i}"
                        for i, spec in enumerate(self.graph["inputs"])]
            missing = [k for k in keys if k not in x]
            if missing:
                msg = (f"the inputs dict lacks {missing}; the model's inputs are "
                       f"{keys}")
                raise KeyError(msg)
            return [x[k] for k in keys]
        xs = list(x) if isinstance(x, (list, tuple)) else [x]
        if len(xs) != n:
            msg = f"the model takes {n} input(s), got {len(xs)}"
            raise ValueError(msg)
        return xs

    def _outputs_as_given(self, outs: list):
        keys = self._output_names
        if keys is None:
            return outs[0]
        if keys == "list":
            return outs
        return dict(zip(keys, outs, strict=True))

    def _output_grads(self, dy) -> list:
        keys = self._output_names
        if keys is None:
            return [dy]
        if keys == "list":
            return list(dy)
        return [dy[k] for k in keys]

    # -- the chain rule over the DAG -------------------------------------------
    @property
    def makes_mask(self) -> bool:
        return any(layer.makes_mask for layer in self.layers)

    def forward(self, x, training=False, mask=None):
        self.begin_calls()
        values: dict[tuple, Any] = {("input", i): v
                                    for i, v in enumerate(self._inputs_of(x))}
        # the masks of padded sequences, for the tensors that carry one
        masks: dict[tuple, Any] = {}
        if mask is not None:
            given = mask if isinstance(mask, (list, tuple)) else [mask]
            masks = {("input", i): m for i, m in enumerate(given) if m is not None}
        for j, node in enumerate(self.graph["nodes"]):
            args = [values[tuple(ref)] for ref in node["args"]]
            arg = args if node["list"] else args[0]
            layer = self.layers[node["layer"]]
            if not masks and not layer.makes_mask:
                values[("node", j)] = self.forward_child(
                    layer, arg, training, **node["kwargs"])
                continue
            arg_masks = [masks.get(tuple(ref)) for ref in node["args"]]
            arg_mask = (arg_masks if any_mask(arg_masks) else None) if node[
                "list"] else arg_masks[0]
            values[("node", j)], out = self._forward_masked(
                layer, arg, training, arg_mask, **node["kwargs"])
            if out is not None:
                masks[("node", j)] = out
        outs = [masks.get(tuple(ref)) for ref in self.graph["outputs"]]
        self._keep_mask(outs if any_mask(outs) else None)
        return self._outputs_as_given(
            [values[tuple(ref)] for ref in self.graph["outputs"]])

    def compute_mask(self, x, mask):
        """The masks of the last forward's outputs (None where an output
        has none; None for all when none has)."""
        outs = self.__dict__.get("_out_mask")
        return outs if outs is None else self._outputs_as_given(outs)

    def backward(self, dy):
        grads = self._reverse(dy, params_only=False)
        xs = [grads.get(("input", i)) for i in range(len(self.graph["inputs"]))]
        keys = self._input_names
        if keys is None:
            return xs[0]
        return xs if keys == "list" else dict(zip(keys, xs, strict=True))

    def backward_params(self, dy):
        self._reverse(dy, params_only=True)

    def _reverse(self, dy, params_only: bool) -> dict:
        grads: dict[tuple, Any] = {}
        for ref, g in zip(self.graph["outputs"], self._output_grads(dy),
                          strict=True):
            _add(grads, tuple(ref), g)
        for j in reversed(range(len(self.graph["nodes"]))):
            node = self.graph["nodes"][j]
            layer = self.layers[node["layer"]]
            g = grads.pop(("node", j), None)
            if g is None:  # nothing downstream reaches the loss
                self.skip_child(layer)
                continue
            # inputs of the model need no gradient when only parameters do
            only_inputs = all(ref[0] == "input" for ref in node["args"])
            if params_only and only_inputs:
                self.backward_child(layer, g, params_only=True)
                continue
            dx = self.backward_child(layer, g)
            dxs = dx if node["list"] else [dx]
            for ref, d in zip(node["args"], dxs, strict=True):
                if d is not None:
                    _add(grads, tuple(ref), d)
        return grads

    # -- what a user reads -------------------------------------------------------
    def summary(self, print_fn=print) -> str:
        """A table of the graph's nodes: layer, output shape, parameters
        (counted at a layer's first node), and what each node reads
        (*connected to*).

        Examples
        --------
        >>> import portnn
        >>> a, b = portnn.Input((3,), name="a"), portnn.Input((3,), name="b")
        >>> shared = portnn.Dense(3, 2)
        >>> out = portnn.Add()([shared(a), shared(b)])
        >>> print(portnn.Model(inputs=[a, b], outputs=out).summary(print_fn=None))
        Model: Functional
         #  Layer        Output shape  Params  Connected to
         -  Input a      (None, 3)          0
         -  Input b      (None, 3)          0
         0  Dense(3, 2)  (None, 2)          8  a
         1  Dense(3, 2)  (None, 2)          0  b (shared with 0)
         2  Add          (None, 2)          0  0, 1
        Total params: 8 (32 B); trainable: 8; frozen: 0
        """
        shapes = self._node_shapes()
        rows = [("#", "Layer", "Output shape", "Params", "Connected to")]
        names = []
        for i, spec in enumerate(self.graph["inputs"]):
            name = spec["name"] or f"input_{i}"
            names.append(name)
            rows.append(("-", f"Input {name}", str((None, *spec["shape"])), "0", ""))
        first_use: dict[int, int] = {}
        for j, node in enumerate(self.graph["nodes"]):
            k = node["layer"]
            layer = self.layers[k]
            label = repr(layer) if layer.parameters() else type(layer).__name__
            label = label if len(label) <= 30 else label[:27] + "..."
            sources = ", ".join(names[r[1]] if r[0] == "input" else str(r[1])
                                for r in node["args"])
            if k in first_use:
                count = "0"
                sources += f" (shared with {first_use[k]})"
            else:
                first_use[k] = j
                count = f"{sum(p.size for p in layer.parameters()):,}"
            rows.append((str(j), label, str(shapes[j]), count, sources))
        widths = [max(len(r[c]) for r in rows) for c in range(5)]
        lines = [f"Model: {type(self).__name__}"]
        for r in rows:
            lines.append(f" {r[0]:>{widths[0]}}  {r[1]:<{widths[1]}}  "
                         f"{r[2]:<{widths[2]}}  {r[3]:>{widths[3]}}  {r[4]}".rstrip())
        lines.append(self._totals_line())
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    def _node_shapes(self) -> list:
        """Each node's output shape, from a symbolic pass over the stored
        graph (one sample of batch 1; unknown sizes stay None)."""
        tensors = [SymbolicTensor((None, *spec["shape"]), spec["dtype"],
                                  ("input", None)) for spec in self.graph["inputs"]]
        values: dict[tuple, SymbolicTensor] = {
            ("input", i): t for i, t in enumerate(tensors)}
        shapes = []
        for j, node in enumerate(self.graph["nodes"]):
            args = [values[tuple(ref)] for ref in node["args"]]
            layer = self.layers[node["layer"]]
            shape, dtype, masked = output_shape(layer, args, node["list"],
                                                 node["kwargs"])
            values[("node", j)] = SymbolicTensor(shape, dtype, ("node", None),
                                                 masked=masked)
            shapes.append(shape)
        return shapes

    def __repr__(self) -> str:
        return (f"Functional({len(self.graph['inputs'])} input(s), "
                f"{len(self.graph['nodes'])} nodes, "
                f"{len(self.graph['outputs'])} output(s))")


def _add(grads: dict, ref: tuple, g) -> None:
    grads[ref] = g if ref not in grads else grads[ref] + g


def _flatten(what: str, structure):
    """One tensor, a list or a dict of them -> (list, keys): keys None for
    one, "list" for a list, the names for a dict."""
    if isinstance(structure, SymbolicTensor):
        return [structure], None
    if isinstance(structure, (list, tuple)) and structure:
        return list(structure), "list"
    if isinstance(structure, dict) and structure:
        return list(structure.values()), [str(k) for k in structure]
    msg = (f"Model {what} must be a symbolic tensor, a list or a dict of them, "
           f"got {type(structure).__name__}")
    raise TypeError(msg)


def _check_graph(graph: dict, n_layers: int) -> None:
    """A graph read from a file is checked whole: edges only to inputs or
    earlier nodes (so no cycle), known layers, every node used."""
    try:
        inputs, nodes, outputs = graph["inputs"], graph["nodes"], graph["outputs"]
    except (KeyError, TypeError):
        msg = "malformed graph: it needs inputs, nodes and outputs"
        raise ValueError(msg) from None
    if not (isinstance(inputs, list) and inputs and isinstance(nodes, list)
            and isinstance(outputs, list) and outputs):
        raise ValueError("malformed graph: inputs, nodes and outputs must be lists")
    for spec in inputs:
        if not (isinstance(spec, dict) and isinstance(spec.get("shape"), list)
                and all(s is None or (isinstance(s, int) and s > 0)
                        for s in spec["shape"])
                and isinstance(spec.get("dtype"), str)):
            raise ValueError(f"malformed graph input {str(spec)[:100]}")

    def check_ref(ref, before: int, where: str):
        ok = (isinstance(ref, list) and len(ref) == 2 and ref[0] in ("input", "node")
              and isinstance(ref[1], int) and not isinstance(ref[1], bool)
              and 0 <= ref[1] < (len(inputs) if ref[0] == "input" else before))
        if not ok:
            msg = (f"{where} reads {str(ref)[:60]}, which is not an input or an "
                   "earlier node (a cycle or a dangling edge)")
            raise ValueError(msg)

    used = set()
    for j, node in enumerate(nodes):
        if not (isinstance(node, dict) and isinstance(node.get("layer"), int)
                and 0 <= node["layer"] < n_layers
                and isinstance(node.get("args"), list) and node["args"]
                and isinstance(node.get("list"), bool)
                and isinstance(node.get("kwargs", {}), dict)):
            raise ValueError(f"malformed graph node {j}: {str(node)[:100]}")
        node.setdefault("kwargs", {})
        if not node["list"] and len(node["args"]) != 1:
            raise ValueError(f"graph node {j} has several inputs but is not a list")
        for ref in node["args"]:
            check_ref(ref, j, f"graph node {j}")
            if ref[0] == "node":
                used.add(ref[1])
    for ref in outputs:
        check_ref(ref, len(nodes), "a graph output")
        if ref[0] == "node":
            used.add(ref[1])
    dangling = [j for j in range(len(nodes)) if j not in used]
    if dangling:
        msg = f"graph nodes {dangling} feed nothing (dangling)"
        raise ValueError(msg)


Model.graph_class = Functional  # portnn.Model(inputs=..., outputs=...)
