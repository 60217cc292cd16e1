"""The documentation covers the API: every public name has a page in
docs/api.rst and a docstring with an example; every tutorial is a script
the site can render."""

from __future__ import annotations

import importlib
import inspect
import pathlib
import re

import pytest

import portnn

ROOT = pathlib.Path(__file__).resolve().parents[1]
SUBPACKAGES = ["layers", "losses", "optim", "training", "data", "distributed",
               "init", "ops", "checkpoint", "backends"]


def _public():
    """``(spelling, object)`` for every public name, each object once."""
    seen = {}
    for name in ["portnn"] + [f"portnn.{s}" for s in SUBPACKAGES]:
        module = importlib.import_module(name)
        for attr in module.__all__:
            obj = getattr(module, attr)
            if inspect.ismodule(obj) or attr == "__version__":
                continue
            seen.setdefault(id(obj), (f"{name}.{attr}", obj))
    return list(seen.values())


PUBLIC = _public()


def _documented():
    """The objects docs/api.rst lists (autosummary entries, relative to
    ``portnn``)."""
    text = (ROOT / "docs" / "api.rst").read_text()
    found = {}
    for entry in re.findall(r"^   ([A-Za-z_][\w.]*)$", text, flags=re.M):
        obj = portnn
        for part in entry.split("."):
            obj = getattr(obj, part)
        found[id(obj)] = entry
    return found


def test_every_public_name_has_an_api_page():
    documented = _documented()
    missing = [name for name, obj in PUBLIC if id(obj) not in documented]
    assert not missing, f"add these to docs/api.rst: {missing}"


@pytest.mark.parametrize("name, obj", PUBLIC, ids=[n for n, _ in PUBLIC])
def test_every_public_name_has_a_docstring_example(name, obj):
    doc = inspect.getdoc(obj) or ""
    assert doc.strip(), f"{name} has no docstring"
    assert re.search(r"^Examples\n-+\n", doc, flags=re.M), (
        f"{name}'s docstring has no Examples section")
    assert ">>> " in doc.split("Examples", 1)[1], f"{name}'s example has no code"


TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))


def test_the_tutorial_series_is_complete():
    assert (ROOT / "tutorials" / "README.rst").exists()
    assert [p.name[:2] for p in TUTORIALS] == [f"{i:02d}" for i in range(1, 10)]


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_a_tutorial_opens_with_a_titled_docstring(path):
    # sphinx-gallery takes the title from the module docstring's first
    # underlined line, and fails the build without one.
    source = path.read_text()
    match = re.match(r'"""\n(.+)\n(=+)\n', source)
    assert match, f"{path.name} must open with a docstring and an = title"
    assert len(match.group(2)) >= len(match.group(1)), f"{path.name}: short underline"
