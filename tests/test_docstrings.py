"""Docstring examples of the backend adapters (the core's run through
--doctest-modules), and numpydoc coverage of the public API."""

from __future__ import annotations

import doctest
import importlib
import inspect

import pytest

import portnn

BACKEND_MODULES = ["portnn.backends", "portnn.backends.base"]


@pytest.mark.parametrize("name", BACKEND_MODULES)
def test_backend_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


def test_every_public_name_has_a_docstring():
    missing = []
    for name in portnn.__all__:
        obj = getattr(portnn, name)
        if inspect.ismodule(obj) or name == "__version__":
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            for meth, fn in vars(obj).items():
                if (not meth.startswith("_") and inspect.isfunction(fn)
                        and not inspect.getdoc(fn)):
                    missing.append(f"{name}.{meth}")
    assert missing == []
