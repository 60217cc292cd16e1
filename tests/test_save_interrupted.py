"""A save interrupted by a signal leaves no temporary file behind (issue
18): SIGTERM during the write removes it and ends the process as SIGTERM
does; a save killed outright (SIGKILL) is cleaned up by the next save to
that folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from portnn import safetensors

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX only")

_CHILD = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from portnn import safetensors

    folder, how = sys.argv[1], sys.argv[2]
    real_fsync = os.fsync
    def fsync(fd):  # the signal arrives in the middle of the write
        os.kill(os.getpid(), getattr(signal, how))
        real_fsync(fd)
    os.fsync = fsync
    safetensors.write_atomic(os.path.join(folder, "m.safetensors"),
                             {"w": np.ones((256, 256), np.float32)})
    print("returned")
""")


def _run_child(tmp_path, how):
    return subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path), how],
                          capture_output=True, text=True, timeout=120)


def test_sigterm_during_a_save_leaves_no_temporary_file(tmp_path):
    (tmp_path / "m.safetensors").write_bytes(b"previous")
    proc = _run_child(tmp_path, "SIGTERM")
    assert proc.returncode == -signal.SIGTERM, proc.stderr  # ended as SIGTERM ends
    assert "returned" not in proc.stdout
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]
    assert (tmp_path / "m.safetensors").read_bytes() == b"previous"


def test_the_next_save_removes_a_killed_saves_temporary_file(tmp_path):
    proc = _run_child(tmp_path, "SIGKILL")
    assert proc.returncode == -signal.SIGKILL
    left = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert len(left) == 1 and left[0].startswith(".portnn-")
    live = tmp_path / f".portnn-{os.getpid()}-0123456789ab.tmp"  # a live writer's
    live.write_bytes(b"in progress")
    safetensors.write_atomic(tmp_path / "other.safetensors",
                             {"w": np.zeros(3, np.float32)})
    assert sorted(os.listdir(tmp_path)) == sorted(["other.safetensors", live.name])


def test_a_handler_that_survives_the_signal_makes_the_save_fail(tmp_path):
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda *a: seen.append(a[0]))
    real_fsync = os.fsync

    def fsync(fd):
        os.kill(os.getpid(), signal.SIGTERM)
        real_fsync(fd)

    try:
        os.fsync = fsync
        with pytest.raises(InterruptedError, match="interrupted by signal"):
            safetensors.write_atomic(tmp_path / "m.safetensors",
                                     {"w": np.ones(4, np.float32)})
    finally:
        os.fsync = real_fsync
        signal.signal(signal.SIGTERM, previous)
    assert seen == [signal.SIGTERM]  # the user's handler still ran
    assert os.listdir(tmp_path) == []
