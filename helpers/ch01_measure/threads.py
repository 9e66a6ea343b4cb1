"""CPU threads: other processes that keep some cores busy, to measure what oversubscription costs."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

from helpers.core.validate import require_int

READY = "ready"
# Each competitor is a bare Python loop on one core: a few MB, no torch (a process that imports a
# CUDA build of torch holds over 800 MB of memory of its own).
SPIN = f"print({READY!r}, flush=True)\nwhile True:\n    pass\n"


@contextlib.contextmanager
def busy_cores(count: int) -> Iterator[list[subprocess.Popen]]:
    """Keep `count` cores busy with spinning processes while the block runs; all are killed when it ends.

    They never outlive the block: not on success, not on an error, not when the kernel is interrupted.
    """
    require_int("count", count, minimum=0)
    processes: list[subprocess.Popen] = []
    try:
        for _ in range(count):
            processes.append(subprocess.Popen([sys.executable, "-c", SPIN], stdout=subprocess.PIPE, text=True))
        for process in processes:
            if process.stdout.readline().strip() != READY:
                raise RuntimeError("a spinning process did not start")
        yield processes
    finally:
        for process in processes:
            process.kill()
            process.wait()
