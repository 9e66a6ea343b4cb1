"""Peak memory of a process tree (proportional set size, so forked workers are not double-counted) and CUDA."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import sys
import threading
from dataclasses import dataclass

import psutil
import torch

from helpers.core.validate import require_int, require_number


def _process_memory_bytes(proc: psutil.Process) -> int:
    """Proportional set size (each shared page split among the processes sharing it); RSS where PSS is unknown."""
    try:
        return proc.memory_full_info().pss
    except (AttributeError, psutil.AccessDenied):
        return proc.memory_info().rss


def process_tree_memory_bytes(pid: int | None = None) -> int:
    """Memory of a process and all its children (DataLoader workers, kernels, compilers), in bytes.

    Forked DataLoader workers share most pages with their parent; summing RSS would count those pages
    once per worker. PSS counts each page once in total, which is what the machine really spends.
    """
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += _process_memory_bytes(proc)
        except psutil.NoSuchProcess:
            continue
    return total


@dataclass
class PeakMemory:
    """What a tracked block cost in memory."""

    start_bytes: int = 0
    peak_bytes: int = 0
    cuda_peak_bytes: int | None = None

    @property
    def increase_bytes(self) -> int:
        """How far the peak rose above the starting memory."""
        return self.peak_bytes - self.start_bytes


class track_peak_memory:
    """Context manager sampling the memory (PSS) of a process tree in a background thread; also CUDA's max allocated.

    >>> with track_peak_memory() as peak:
    ...     work()
    >>> peak.peak_bytes
    """

    def __init__(self, pid: int | None = None, *, interval_s: float = 0.05) -> None:
        self.pid = None if pid is None else require_int("pid", pid, minimum=1)
        self.interval_s = require_number("interval_s", interval_s, strictly_positive=True)
        self.result = PeakMemory()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._update()
            self._stop.wait(self.interval_s)

    def _update(self) -> None:
        try:
            used = process_tree_memory_bytes(self.pid)
        except psutil.NoSuchProcess:
            return
        self.result.peak_bytes = max(self.result.peak_bytes, used)

    def __enter__(self) -> PeakMemory:
        self.result.start_bytes = process_tree_memory_bytes(self.pid)
        self.result.peak_bytes = self.result.start_bytes
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self._thread.start()
        return self.result

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self._update()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            self.result.cuda_peak_bytes = torch.cuda.max_memory_allocated()


def release_freed_memory() -> int:
    """Collect garbage and hand the C heap's free pages back to the system; return the bytes this process gave back.

    Freed memory normally stays inside the process for reuse: after large, short-lived objects (a
    profiler's event records) the process keeps hundreds of MB it no longer uses, which counts
    against a 2 GB machine such as Binder's. glibc's malloc_trim returns it; elsewhere this only
    collects garbage.
    """
    before = _process_memory_bytes(psutil.Process())
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
    return max(0, before - _process_memory_bytes(psutil.Process()))
