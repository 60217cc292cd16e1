"""The ``portnn`` command line."""

from __future__ import annotations

import io
import pathlib
import subprocess
import sys
from types import SimpleNamespace

import pytest

import portnn
from portnn import cli


def test_info_lists_every_backend_with_a_verdict():
    out = io.StringIO()
    assert cli.info(out) == 0
    text = out.getvalue()
    assert f"portnn {portnn.__version__}" in text
    backend_lines = text.split("backends:")[1].splitlines()
    for name in portnn.backends.names():
        line = next(ln for ln in backend_lines if ln.strip().startswith(name + " "))
        assert " usable " in line or " unusable " in line
    numpy_line = next(ln for ln in backend_lines if ln.strip().startswith("numpy "))
    assert "native fast paths: add_into_views" in numpy_line
    assert "scatter_add" in numpy_line  # numpy's add.at path


def test_info_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "portnn", "info"], check=True,
                         capture_output=True, text=True).stdout
    assert "backends:" in out and "numpy" in out


def test_train_saves_a_loadable_checkpoint(tmp_path):
    pytest.importorskip("sklearn")
    path = tmp_path / "digits.safetensors"
    args = SimpleNamespace(example="digits-mlp", backend="numpy", epochs=3, seed=0,
                           save=str(path), quiet=True)
    out = io.StringIO()
    assert cli.train(args, out) == 0
    assert "test accuracy" in out.getvalue() and path.exists()
    model = portnn.load(path)
    assert model[0].W.shape == (64, 256)
    from portnn.safetensors import read

    _, meta = read(path)
    assert len(meta["user.input_mean"].split(",")) == 64


def test_bad_command_exits_with_usage():
    with pytest.raises(SystemExit):
        cli.main(["frobnicate"])


def test_train_digits_cnn_saves_a_loadable_checkpoint(tmp_path, capsys):
    pytest.importorskip("sklearn")
    path = tmp_path / "cnn.safetensors"
    assert cli.main(["train", "digits-cnn", "--epochs", "2", "--save", str(path),
                     "--quiet"]) == 0
    text = capsys.readouterr().out
    accuracy = float(text.split("test accuracy")[1].split()[0].strip(":"))
    assert accuracy > 0.5  # two epochs; the default 15 reach 0.98+
    model = portnn.load(path)
    assert isinstance(model[0], portnn.Conv2D) and model[0].W.shape == (32, 1, 3, 3)
    from portnn.safetensors import read

    _, meta = read(path)
    assert meta["user.input_shape"] == "1,8,8"
    assert meta["user.input_scale"].split(",")[:2] == ["16", "16"]
    # the saved BatchNorm statistics are the trained ones, not the defaults
    assert float(portnn.backends.get("numpy").xp.max(model[1].running_mean)) > 0


def test_info_has_a_gpu_section_with_a_verdict_per_gpu_backend():
    out = io.StringIO()
    cli.info(out)
    gpu_lines = out.getvalue().split("GPUs:")[1].splitlines()[1:]
    specs = {line.split()[0]: line for line in gpu_lines}
    assert set(specs) == set(cli.GPU_SPECS)
    for spec, usable, text in cli.gpu_report():
        assert specs[spec].split()[1] == ("usable" if usable else "unusable")
        assert text in specs[spec]  # the device, or why not


def test_describe_device_names_memory_capability_and_cuda():
    line = cli.describe_device({"name": "NVIDIA H100", "memory_gib": 79.6,
                                "compute_capability": "9.0", "cuda_runtime": "12.4",
                                "cuda_driver": "12.8"})
    assert line == ("NVIDIA H100, 79.6 GiB, compute capability 9.0, "
                    "CUDA runtime 12.4, driver 12.8")


def test_a_backend_reports_its_device_info():
    from portnn.backends import Backend

    b = portnn.backends.get("numpy")
    assert b.device_info() == {}
    fake = Backend("fake", b.xp, to_numpy=b.to_numpy, array_types=b.array_types,
                   device_info=lambda: {"name": "Fake GPU", "memory_gib": 8.0})
    assert cli.describe_device(fake.device_info()) == "Fake GPU, 8.0 GiB"


def test_gpu_check_says_no_gpu_and_runs_nothing_without_one():
    if any(usable for spec, usable, _ in cli.gpu_report() if spec != "jax:gpu"):
        pytest.skip("a GPU is usable here: benchmarks/gpu_check.py runs for real")
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--quick"],
                          capture_output=True, text=True,
                          cwd=pathlib.Path(__file__).resolve().parents[1])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "verdict: NO GPU" in proc.stdout
    assert "cupy" in proc.stdout and "torch:cuda" in proc.stdout


@pytest.mark.parametrize(("argv", "message"), [
    (["--epochs", "0"], "--epochs: must be a positive whole number, got '0'"),
    (["--epochs", "-3"], "--epochs: must be a positive whole number, got '-3'"),
    (["--epochs", "2.5"], "--epochs: must be a positive whole number"),
    (["--seed", "-1"], "--seed: must be a whole number in [0, 2**63), got '-1'"),
])
def test_train_arguments_are_validated_in_one_line(argv, message, capsys,
                                                   monkeypatch):
    ran = []
    monkeypatch.setattr(cli, "train", lambda args: ran.append(args) or 0)
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", *argv])
    assert exc.value.code == 2 and not ran
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_epochs_given_are_the_epochs_run(monkeypatch):
    ran = []
    monkeypatch.setattr(cli, "train", lambda args: ran.append(args) or 0)
    cli.main(["train", "--epochs", "1"])
    assert ran[0].epochs == 1
    cli.main(["train"])
    assert ran[1].epochs is None  # the example's default


@pytest.mark.parametrize("where", ["missing", "folder"])
def test_save_destination_is_checked_before_training(where, tmp_path, capsys,
                                                     monkeypatch):
    ran = []
    monkeypatch.setattr(cli, "train", lambda args: ran.append(args) or 0)
    path = tmp_path / "no" / "x.safetensors" if where == "missing" else tmp_path
    assert cli.main(["train", "--save", str(path)]) == 2 and not ran
    err = capsys.readouterr().err.strip()
    assert err.startswith("portnn: cannot save") and len(err.splitlines()) == 1
    assert ("does not exist" if where == "missing" else "it is a folder") in err
