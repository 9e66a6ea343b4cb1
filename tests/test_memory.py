import os

import pytest
import torch

from helpers.memory import process_tree_memory_bytes, track_peak_memory


def test_peak_memory_sees_a_large_allocation():
    with track_peak_memory(interval_s=0.001) as peak:
        block = torch.ones(50_000_000)  # 200 MB, every page touched
        del block
    assert peak.increase_bytes >= 150_000_000
    assert peak.peak_bytes >= peak.start_bytes > 0
    if not torch.cuda.is_available():
        assert peak.cuda_peak_bytes is None


def test_process_tree_memory_includes_this_process():
    assert process_tree_memory_bytes(os.getpid()) >= process_tree_memory_bytes() * 0.9


def test_track_peak_memory_rejects_bad_arguments():
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        track_peak_memory(interval_s=0)
    with pytest.raises(ValueError, match="pid must be an int >= 1"):
        track_peak_memory(pid=0)
