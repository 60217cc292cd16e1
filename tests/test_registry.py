"""The backend registry: names, errors, the current backend, mixed arrays."""

from __future__ import annotations

import ast
import io
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import portnn
import portnn.cli
from portnn import backends
from portnn.backends import Backend, BackendMismatchError, BackendUnavailableError

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_builtin_backends_are_registered():
    assert {"numpy", "cupy", "torch", "array_api_strict"} <= set(backends.names())
    assert "numpy" in backends.available()
    assert "array_api_strict" in backends.available()


def test_status_gives_a_reason_for_every_backend():
    report = {s.name: s for s in backends.status()}
    assert report["numpy"].usable and report["numpy"].reason == "ok"
    for s in report.values():
        assert s.usable or s.reason  # unusable ones say why


def test_cupy_reports_why_it_is_unusable_without_crashing():
    report = {s.name: s for s in backends.status()}
    try:
        import cupy  # noqa: F401
    except ImportError:
        assert not report["cupy"].usable
        assert "not installed" in report["cupy"].reason
        # a package that exists on PyPI, named once
        assert report["cupy"].reason.count("pip install cupy-cuda12x") == 1
        return
    if not report["cupy"].usable:
        assert "CUDA" in report["cupy"].reason


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown backend 'nope'.*numpy"):
        portnn.set_backend("nope")


def test_unusable_backend_says_why_and_how_to_install():
    def broken(device=None):
        raise BackendUnavailableError("libfoo is not installed")

    backends.register("foo", broken, install_hint="pip install foo")
    try:
        with pytest.raises(BackendUnavailableError, match="libfoo is not installed"):
            portnn.set_backend("foo")
        report = {s.name: s for s in backends.status()}
        assert report["foo"].usable is False
        assert "foo" not in backends.available()
    finally:
        backends._factories.pop("foo")
        backends._failures.clear()


def test_register_a_third_party_backend():
    from portnn.backends.numpy_backend import make_numpy_backend

    def factory(device=None):
        b = make_numpy_backend(device)
        return Backend("mine", b.xp, to_numpy=np.asarray, array_types=b.array_types)

    backends.register("mine", factory)
    try:
        with portnn.use_backend("mine") as b:
            assert portnn.get_backend() is b
            assert b.name == "mine"
    finally:
        backends._factories.pop("mine")
        backends._cache.pop(("mine", None), None)


def test_use_backend_restores_on_exception():
    before = portnn.get_backend()
    with pytest.raises(RuntimeError), portnn.use_backend("array_api_strict"):
        assert portnn.get_backend().name == "array_api_strict"
        raise RuntimeError("boom")
    assert portnn.get_backend() is before


def test_use_backend_nests():
    with portnn.use_backend("array_api_strict"):
        with portnn.use_backend("numpy"):
            assert portnn.get_backend().name == "numpy"
        assert portnn.get_backend().name == "array_api_strict"


def _run(code: str, **env) -> str:
    full_env = {**os.environ, **env}
    full_env.pop("PORTNN_BACKEND", None) if "PORTNN_BACKEND" not in env else None
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=full_env, check=True)
    return out.stdout.strip()


def test_env_var_picks_the_default_backend():
    code = "import portnn; print(portnn.get_backend().name)"
    assert _run(code, PORTNN_BACKEND="array_api_strict") == "array_api_strict"
    assert _run(code) == "numpy"


def test_set_backend_sets_the_current_one():
    code = ("import portnn; portnn.set_backend('array_api_strict'); "
            "print(portnn.get_backend().name)")
    assert _run(code) == "array_api_strict"


def test_import_portnn_imports_no_array_library():
    code = ("import sys, portnn; print(sorted(m for m in "
            "('numpy', 'cupy', 'torch', 'array_api_strict') if m in sys.modules))")
    assert _run(code) == "[]"


def test_mixed_backends_in_a_layer_name_both():
    with portnn.use_backend("numpy"):
        layer = portnn.Dense(3, 2)
    strict = backends.get("array_api_strict")
    x = strict.asarray([[1.0, 2.0, 3.0]], dtype="float32")
    with pytest.raises(BackendMismatchError, match="Dense.*numpy.*array_api_strict"):
        layer(x)


def test_mixed_backends_in_a_loss_name_both():
    strict = backends.get("array_api_strict")
    pred = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(BackendMismatchError, match="numpy.*array_api_strict"):
        portnn.MSE()(pred, strict.asarray(np.zeros((2, 3), dtype=np.float32)))


def test_asarray_converts_lists_and_numpy(backend):
    x = backend.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert backend.owns(x)
    assert backend.to_numpy(x).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert backend.owns(backend.asarray([1.0, 2.0], dtype="float32"))


CORE_DIRS = ["portnn/layers", "portnn/losses", "portnn/optim", "portnn/training",
             "portnn/ops"]
CORE_FILES = ["portnn/init.py", "portnn/random.py", "portnn/parameter.py",
              "portnn/data/preprocessing.py", "portnn/data/sources.py",
              "portnn/gradcheck.py",
              "portnn/config.py", "portnn/_namespace.py", "portnn/safetensors.py",
              "portnn/checkpoint.py", "portnn/transfer.py"]
FORBIDDEN = {"numpy", "cupy", "cupyx", "torch"}


def _core_files():
    for d in CORE_DIRS:
        yield from sorted((ROOT / d).glob("*.py"))
    for f in CORE_FILES:
        yield ROOT / f


def test_core_modules_never_import_numpy_cupy_or_torch():
    offenders = []
    files = list(_core_files())
    assert len(files) > 15
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                mods = [node.module or ""]
            else:
                continue
            for mod in mods:
                if mod.partition(".")[0] in FORBIDDEN:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {mod}")
    assert offenders == []


def test_entry_point_backends_are_discovered(monkeypatch):
    from importlib import metadata

    from portnn.backends.numpy_backend import make_numpy_backend

    class FakeEntryPoint:
        name = "plugin_np"

        def load(self):
            return make_numpy_backend

    def fake_entry_points(group=None):
        return [FakeEntryPoint()] if group == backends.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(metadata, "entry_points", fake_entry_points)
    monkeypatch.setattr(backends, "_entry_points_loaded", False)
    try:
        assert "plugin_np" in backends.names()
        assert backends.get("plugin_np").name == "numpy"
    finally:
        backends._factories.pop("plugin_np", None)
        backends._cache.pop(("plugin_np", None), None)


@pytest.mark.parametrize(("missing", "says"), [
    ("cupy", "CuPy is not installed; pip install cupy-cuda12x"),
    ("cuda", "CuPy is installed but cannot be imported"),
])
def test_cupy_import_failures_say_what_is_missing(monkeypatch, missing, says):
    import builtins

    from portnn.backends.cupy_backend import make_cupy_backend

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.partition(".")[0] == "cupy" or name == "array_api_compat.cupy":
            raise ModuleNotFoundError(f"No module named {missing!r}", name=missing)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(BackendUnavailableError, match=says):
        make_cupy_backend()


@pytest.mark.parametrize("spec", [None, 123, 1.5])
def test_get_takes_a_name_or_a_backend(spec):
    with pytest.raises(TypeError, match=r"a backend is a name such as 'numpy'"):
        backends.get(spec)


@pytest.mark.parametrize(("spec", "says"), [
    ("torch:garbage", r"backend 'torch:garbage': 'garbage' is not a PyTorch device"),
    ("numpy:gpu", r"numpy backend runs on the CPU only"),
    ("array_api_strict:nope", r"'nope' is not a valid choice.*devices are"),
])
def test_unknown_devices_are_named_early(spec, says):
    if spec.startswith("torch"):
        pytest.importorskip("torch")
    with pytest.raises(ValueError, match=says):
        backends.get(spec)


def test_a_device_torch_knows_but_cannot_use_is_unusable():
    torch = pytest.importorskip("torch")
    if torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    with pytest.raises(BackendUnavailableError, match="cannot use device 'mps'"):
        backends.get("torch:mps")


@pytest.mark.parametrize("failure", [ImportError("no libfoo"), RuntimeError("boom"),
                                     SystemExit(3), 42])
def test_a_broken_plugin_is_named_and_status_keeps_working(monkeypatch, failure):
    from importlib import metadata

    class BrokenEntryPoint:
        name = "broken"
        value = "brokenpkg.backend:factory"

        def load(self):
            if isinstance(failure, BaseException):
                raise failure
            return lambda device=None: failure  # not a Backend

    monkeypatch.setattr(metadata, "entry_points", lambda group=None: (
        [BrokenEntryPoint()] if group == backends.ENTRY_POINT_GROUP else []))
    monkeypatch.setattr(backends, "_entry_points_loaded", False)
    try:
        report = {s.name: s for s in backends.status()}
        assert report["numpy"].usable
        broken = report["broken"]
        assert not broken.usable
        assert "brokenpkg.backend:factory" in broken.reason
        with pytest.raises(BackendUnavailableError, match="entry point 'broken'"):
            portnn.set_backend("broken")
        out = io.StringIO()
        assert portnn.cli.info(out) == 0
        assert "broken" in out.getvalue()
    finally:
        backends._factories.pop("broken", None)
        backends._failures.clear()


def test_a_bad_portnn_backend_variable_is_named():
    code = ("import portnn\ntry:\n    portnn.get_backend()\n"
            "except ValueError as e:\n    print(e)")
    out = _run(code, PORTNN_BACKEND="garbage")
    assert "PORTNN_BACKEND='garbage'" in out and "unknown backend 'garbage'" in out
    info = _run("import portnn.cli; portnn.cli.info()", PORTNN_BACKEND="garbage")
    assert "default backend: none" in info and "PORTNN_BACKEND='garbage'" in info


def test_the_lookup_memo_follows_the_registry():
    import numpy as np

    from portnn.ops._native import native

    def scan(x):  # what backend_of answers without its memo
        return next((b for b in backends._cache.values() if b.owns(x)), None)

    x = np.ones(3)
    first = backends.backend_of(x)
    assert first is scan(x)
    assert native(x, "matmul") is first.native.get("matmul")
    key = next(k for k, b in backends._cache.items() if b is first)
    backends._cache.pop(key)  # dropped: never answered from the memo again
    try:
        again = backends.get("numpy")
        assert backends.backend_of(x) is scan(x)
        assert backends.backend_of(x) is not first
        assert native(x, "matmul") is scan(x).native.get("matmul")
    finally:
        backends._cache.pop(("numpy", None), None)
        backends._cache[key] = first
    assert backends.backend_of(x) is scan(x)
    assert again is not first
