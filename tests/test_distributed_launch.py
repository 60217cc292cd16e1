"""Real multi-process jobs, started from one test process: a failure on one
rank ends the whole job (never a hang), and torch.distributed on gloo trains
two processes to the weights of one.

The MPI equivalence tests themselves run under two ranks:
``mpiexec -n 2 python -m mpi4py -m pytest tests/distributed``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

import portnn

JOB = os.path.join(os.path.dirname(__file__), "distributed", "job.py")
TIMEOUT = 120  # generous on a loaded machine; a hang still fails


def _mpiexec():
    pytest.importorskip("mpi4py", reason="needs mpi4py: pip install mpi4py mpich")
    found = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or \
        shutil.which("mpiexec")
    if found is None:
        pytest.skip("needs an mpiexec: pip install mpich")
    return found


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "OMPI_", "PMIX_", "SLURM_", "MPI_"))
           and k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                         "LOCAL_RANK", "TORCHELASTIC_RUN_ID")}
    env.update(OMP_NUM_THREADS="1", **extra)
    return env


def test_an_error_on_one_rank_ends_every_rank_with_its_traceback():
    start = time.monotonic()
    done = subprocess.run([_mpiexec(), "-n", "2", sys.executable, JOB, "fault",
                           "mpi", "numpy"], capture_output=True, text=True,
                          timeout=TIMEOUT, env=_clean_env())
    took = time.monotonic() - start
    assert done.returncode != 0
    assert "rank 1 fails in its third step" in done.stderr
    assert "Traceback" in done.stderr
    assert took < TIMEOUT


def test_two_mpi_ranks_train_to_the_weights_of_one_process(tmp_path):
    # each rank answers in its own file: mpiexec merges the ranks' stdout,
    # and two lines written at once can interleave there
    done = subprocess.run([_mpiexec(), "-n", "2", sys.executable, JOB,
                           "equivalence", "auto", "numpy", str(tmp_path)],
                          capture_output=True, text=True, timeout=TIMEOUT,
                          env=_clean_env())
    assert done.returncode == 0, done.stderr[-3000:]
    said = [(tmp_path / f"rank{r}").read_text().strip() if
            (tmp_path / f"rank{r}").exists() else None for r in range(2)]
    assert said == ["EQUIVALENT 0 mpi", "EQUIVALENT 1 mpi"], done.stdout


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torch_distributed_on_gloo_trains_two_processes_to_the_weights_of_one():
    try:
        portnn.backends.get("torch")
    except portnn.backends.BackendUnavailableError as exc:
        pytest.skip(str(exc))
    port = str(_free_port())
    ranks = [subprocess.Popen(
        [sys.executable, JOB, "equivalence", "auto", "torch"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_clean_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2",
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
        for r in range(2)]
    try:
        outs = [p.communicate(timeout=TIMEOUT) for p in ranks]
    finally:
        for p in ranks:
            p.kill()
    for r, (p, (out, err)) in enumerate(zip(ranks, outs, strict=True)):
        assert p.returncode == 0, err[-3000:]
        assert out.strip() == f"EQUIVALENT {r} torch.distributed"


@pytest.mark.parametrize(("mode", "says"), [
    # only rank 0 calls fit: its first collective, the ranks' fingerprint
    # gather, gives up and names itself
    ("main-only", "rank 0 of 2: all_gather in fit waited 3 s"),
    # sys.exit in a callback skips the abort hook: fit ends the job itself
    ("exit", "rank 1 of 2 left fit with SystemExit(0)"),
    # a rank that catches its error: the other's collective gives up
    ("caught", "rank 0 of 2: all_reduce in fit (via train_step) waited 3 s"),
])
def test_a_rank_that_leaves_never_hangs_the_job(mode, says):
    start = time.monotonic()
    done = subprocess.run([_mpiexec(), "-n", "2", sys.executable, JOB, mode, "mpi",
                           "numpy"], capture_output=True, text=True,
                          timeout=TIMEOUT,
                          env=_clean_env(PORTNN_COLLECTIVE_TIMEOUT="3"))
    assert done.returncode != 0, done.stdout + done.stderr
    assert says in done.stderr, done.stderr[-3000:]
    assert time.monotonic() - start < 60
