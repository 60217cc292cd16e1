"""The benchmark suite runs, and its implementations agree on the losses
(a benchmark of a wrong network would be meaningless)."""

from __future__ import annotations

import json
import pathlib
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
def test_suite_runs_and_implementations_agree(tmp_path, capsys):
    sys.path.insert(0, str(BENCH))
    try:
        import run
    finally:
        sys.path.remove(str(BENCH))
    out = tmp_path / "bench.json"
    rows = run.main(["--cases", "xor", "mlp-b16", "--reps", "1", "--json", str(out)])
    assert {r["impl"] for r in rows} >= {"numpy hand-written", "portnn-numpy"}
    assert all(r["loss_agrees"] for r in rows), [
        (r["impl"], r["losses"]) for r in rows]
    assert json.loads(out.read_text())["rows"][0]["median_s"] > 0
    assert "samples/s" in capsys.readouterr().out


def test_ratios_pair_each_repetition_with_the_reference_in_it():
    sys.path.insert(0, str(BENCH))
    try:
        import run
    finally:
        sys.path.remove(str(BENCH))
    # the machine slows in the middle repetition, for both alike; a ratio of
    # medians would read 1.1 where every repetition but one says 1.0
    assert run._paired_ratio([1.0, 2.2, 3.0], [1.0, 2.0, 3.0]) == 1.0
    assert run._paired_ratio([2.0, 4.0, 6.0], [1.0, 2.0, 3.0]) == 2.0


def test_the_xor_step_benchmark_compares_the_same_network():
    sys.path.insert(0, str(BENCH))
    try:
        import xor_step
    finally:
        sys.path.remove(str(BENCH))
    ours, model = xor_step.portnn_step()
    theirs = xor_step.handwritten_step(model)
    for _ in range(50):  # the same weights, the same steps: the same losses
        a, b = float(ours()), float(theirs())
        assert a == pytest.approx(b, rel=1e-5)


@pytest.mark.parametrize("spec", ["jax", "torch"])
def test_the_compiled_check_runs_on_the_cpu(spec):
    # what gpu_check.py runs on jax:gpu and torch:cuda, here on the CPU
    pytest.importorskip(spec)
    sys.path.insert(0, str(BENCH))
    try:
        import compiled_check
    finally:
        sys.path.remove(str(BENCH))
    r = compiled_check.check(spec, epochs=1, rows=512)
    assert r["ok"], r
    assert r["eager_ms"] > 0 and r["compiled_ms"] > 0
