"""The packages of portnn import one another in one direction: no circle
of imports crosses a package boundary, counting the imports inside
functions (they are dependencies too, only later ones)."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "portnn"


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = ("portnn", *path.relative_to(ROOT).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _edges(modules) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")
                if node.level:
                    base = base[:len(base) - node.level + 1]
                target = ".".join(base) if node.level else ""
                if node.module:
                    target = f"{target}.{node.module}" if target else node.module
                subs = [f"{target}.{a.name}" for a in node.names
                        if f"{target}.{a.name}" in modules]
                # `from .. import backends` names a package outside the tree
                found = subs or ([target] if target in modules and target != "portnn"
                                 else [])
            elif isinstance(node, ast.Import):
                found = [a.name for a in node.names if a.name in modules]
            else:
                continue
            edges[name].update(t for t in found if t != name)
    return edges


def _cycles(edges) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def test_no_import_circle_crosses_a_package():
    modules = _modules()
    crossing = [c for c in _cycles(_edges(modules))
                if len({_package(m) for m in c}) > 1]
    assert crossing == []


def test_the_check_sees_a_circle():
    edges = {"portnn.a.x": {"portnn.b.y"}, "portnn.b.y": {"portnn.a.x"},
             "portnn.c": set()}
    assert _cycles(edges) == [["portnn.a.x", "portnn.b.y"]]
