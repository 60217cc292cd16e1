"""The README stays true: its set-up commands match CI, its code runs."""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
# the user guide goes on from the README's quickstart: one reader's session
GUIDE = (ROOT / "docs" / "guide.md").read_text()


def _importable(*modules):
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in modules)


def _blocks(lang, text=README + GUIDE):
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_readme_has_the_two_setup_commands_and_ci_runs_the_test_one():
    commands = [b.strip() for b in _blocks("bash", README)]
    assert commands[0] == ('pip install -e ".[examples]" && '
                           "python examples/digits.py --backend numpy")
    assert commands[1] == 'pip install -e ".[test]" && python -m pytest'
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci
    # and the documentation's build, with warnings as errors
    assert commands[2] == ('pip install -e ".[docs]" && '
                           "python -m sphinx -W -b html docs docs/_build/html")
    assert commands[2] in ci


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_readme_python_blocks_run(index, tmp_path, monkeypatch):
    pytest.importorskip("numpy")
    monkeypatch.chdir(tmp_path)
    blocks = _blocks("python")
    namespace = {}
    # Later blocks build on the quickstart's names, as a reader's session would.
    for i, code in enumerate(blocks[: index + 1]):
        if "cupy" in code and "use_backend" in code:
            continue  # the backend-picking snippet needs a GPU
        if '"torch"' in code:
            pytest.importorskip("torch")
        if "onnxruntime" in code and not _importable("onnx", "onnxruntime"):
            if i == index:
                pytest.skip("onnx and onnxruntime are not installed")
            continue  # an optional extra: later blocks do not need it
        exec(compile(code, f"README block {index}", "exec"), namespace)
