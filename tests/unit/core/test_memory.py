"""Tests of helpers/core/memory.py."""

from __future__ import annotations

import os
import time

import pytest
import torch

from helpers.core.memory import process_tree_memory_bytes, release_freed_memory, track_peak_memory


def _wait_for_increase(peak, minimum_bytes: int, timeout_s: float = 30.0) -> None:
    """Poll until the background sampler has recorded the increase (a busy CI machine may delay it)."""
    deadline = time.monotonic() + timeout_s
    while peak.increase_bytes < minimum_bytes and time.monotonic() < deadline:
        time.sleep(0.01)


def test_release_freed_memory_reports_bytes():
    assert release_freed_memory() >= 0


def test_background_sampler_sees_memory_freed_before_exit():
    with track_peak_memory(interval_s=0.01) as peak:
        block = torch.ones(50_000_000)  # 200 MB, every page touched
        _wait_for_increase(peak, 150_000_000)
        del block
    assert peak.increase_bytes >= 150_000_000
    assert peak.peak_bytes >= peak.start_bytes > 0
    if not torch.cuda.is_available():
        assert peak.cuda_peak_bytes is None


def test_exit_takes_a_last_sample():
    with track_peak_memory(interval_s=60) as peak:  # the thread sleeps: only the exit sample can see the block
        block = torch.ones(50_000_000)
    assert peak.increase_bytes >= 150_000_000
    del block


def test_process_tree_memory_includes_this_process():
    assert process_tree_memory_bytes(os.getpid()) >= process_tree_memory_bytes() * 0.9


def test_track_peak_memory_rejects_bad_arguments():
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        track_peak_memory(interval_s=0)
    with pytest.raises(ValueError, match="pid must be an int >= 1"):
        track_peak_memory(pid=0)
