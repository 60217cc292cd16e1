"""The GPU check: one command for the day a GPU is there.

    python benchmarks/gpu_check.py            # everything, a few minutes
    python benchmarks/gpu_check.py --quick    # tests and the example only

On every usable GPU backend (``cupy``, ``torch:cuda``) it

1. prints the device: name, memory, compute capability, CUDA runtime;
2. runs the test suite's GPU-parametrized tests (``pytest -k "cupy or
   cuda"``: every layer, loss, optimizer, gradient check and training loop
   of the CPU suite, on the GPU);
3. trains ``examples/cnn_digits.py`` there and checks its test accuracy;
4. runs the benchmark suite's GPU columns (``benchmarks/run.py``) next to
   PyTorch on the same GPU;

and on ``jax:gpu`` and ``torch:cuda``, where usable, the compiled step
(``benchmarks/compiled_check.py``: eager and ``jit_compile=True`` fits from
the same weights, step times and how far the losses are apart);

and ends with one verdict line. Exit status: 0 all passed, 1 something
failed, 2 no GPU backend is usable here (nothing was run; the reasons are
printed).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from portnn.cli import gpu_report  # noqa: E402

CNN_MIN_ACCURACY = 0.95  # 0.98 on NumPy with the full 15 epochs


def _run(title, cmd) -> bool:
    print(f"\n== {title}\n$ {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    ok = subprocess.run(cmd, cwd=ROOT).returncode == 0
    print(f"-- {'ok' if ok else 'FAILED'} in {time.perf_counter() - t0:.1f} s",
          flush=True)
    return ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="skip the benchmark columns")
    args = p.parse_args(argv)

    print("GPU backends:")
    usable, compilers = [], []
    for spec, ok, text in gpu_report():
        print(f"  {spec:12s} {'usable  ' if ok else 'unusable'} {text}")
        if ok and spec != "jax:gpu":  # JAX's GPU: the compiled step only
            usable.append(spec)
        if ok and spec in ("jax:gpu", "torch:cuda"):
            compilers.append(spec)
    if not usable and not compilers:
        print("\nverdict: NO GPU - no GPU backend is usable here; nothing was run")
        return 2

    results = {}
    if usable:
        selector = " or ".join(["cupy" if s == "cupy" else "cuda" for s in usable])
        results["tests"] = _run("GPU-parametrized tests", [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "-k", selector, "tests"])
    for spec in usable:
        print(f"\n== examples/cnn_digits.py on {spec}", flush=True)
        import cnn_digits

        result = cnn_digits.main(["--backend", spec, "--quiet"])
        acc = result["test_accuracy"]
        ok = acc >= CNN_MIN_ACCURACY
        print(f"-- test accuracy {acc:.4f} ({'ok' if ok else 'FAILED'}, "
              f"needs {CNN_MIN_ACCURACY})")
        results[f"cnn on {spec}"] = ok
    for spec in compilers:
        import compiled_check

        print(f"\n== the compiled step on {spec}", flush=True)
        r = compiled_check.check(spec)
        print(f"-- eager {r['eager_ms']:.3f} ms/step, compiled "
              f"{r['compiled_ms']:.3f} ms/step; losses agree to "
              f"{r['max_rel_diff']:.1e} ({'ok' if r['ok'] else 'FAILED'})")
        results[f"compiled on {spec}"] = r["ok"]
    if not args.quick and usable:
        env_threads = os.environ.get("OMP_NUM_THREADS")
        cmd = [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--reps", "3",
               "--backends", *usable]
        if env_threads is None:
            print("(OMP_NUM_THREADS is unset: the CPU columns use every core)")
        results["benchmark"] = _run("benchmark, GPU columns", cmd)
    failed = [k for k, ok in results.items() if not ok]
    verdict = "PASS" if not failed else f"FAIL ({', '.join(failed)})"
    print(f"\nverdict: {verdict} on {', '.join(dict.fromkeys(usable + compilers))}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
