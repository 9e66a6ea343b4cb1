"""Peak memory: process resident set size (RSS), worker processes included, and CUDA allocations."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import psutil
import torch

from .validate import require_int, require_number


def process_tree_rss_bytes(pid: int | None = None) -> int:
    """Resident memory of a process and all its children (DataLoader workers, kernels), in bytes."""
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


@dataclass
class PeakMemory:
    """What a tracked block cost in memory."""

    rss_start_bytes: int = 0
    rss_peak_bytes: int = 0
    cuda_peak_bytes: int | None = None

    @property
    def rss_increase_bytes(self) -> int:
        """How far the peak rose above the starting RSS."""
        return self.rss_peak_bytes - self.rss_start_bytes


class track_peak_memory:
    """Context manager sampling RSS of a process tree in a background thread; also CUDA's max allocated.

    >>> with track_peak_memory() as peak:
    ...     work()
    >>> peak.rss_peak_bytes
    """

    def __init__(self, pid: int | None = None, *, interval_s: float = 0.005) -> None:
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
            rss = process_tree_rss_bytes(self.pid)
        except psutil.NoSuchProcess:
            return
        self.result.rss_peak_bytes = max(self.result.rss_peak_bytes, rss)

    def __enter__(self) -> PeakMemory:
        self.result.rss_start_bytes = process_tree_rss_bytes(self.pid)
        self.result.rss_peak_bytes = self.result.rss_start_bytes
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
