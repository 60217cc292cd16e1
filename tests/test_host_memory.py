"""The CPU backends keep freed memory for reuse: a loop that allocates and
frees the same large arrays stops faulting pages in after the first pass."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="mallopt tuning is glibc's (Linux)")

# Each run is a fresh process: the tuning is process-wide and happens once.
_LOOP = textwrap.dedent("""
    import resource, sys
    import numpy as np
    import portnn
    portnn.backends.get("numpy")  # building a CPU backend tunes malloc
    from portnn.backends import host_memory
    a = [np.ones(1 << 20, np.float32) for _ in range(6)]  # a 24 MiB step
    del a
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        a = [np.ones(1 << 20, np.float32) for _ in range(6)]
        del a
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    print(host_memory.keep_freed_memory(), faults)
""")


def _run(env_extra):
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", _LOOP], capture_output=True,
                         text=True, env=env, timeout=120, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@glibc
def test_freed_arrays_are_reused_without_faulting_pages_in():
    applied, faults = _run({"PORTNN_KEEP_FREED_MEMORY": "1"})
    assert applied
    # 60 arrays of 4 MiB: about 61k fresh pages each time without the tuning
    assert faults < 500, faults


@glibc
def test_opting_out_leaves_malloc_alone():
    applied, faults = _run({"PORTNN_KEEP_FREED_MEMORY": "0"})
    assert not applied
    assert faults > 10_000, faults  # the loop the tuning saves is real
