import psutil
import pytest

from helpers.threads import busy_cores


def gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_spinning_processes_run_during_the_block_and_are_gone_after_it():
    with busy_cores(2) as spinners:
        pids = [p.pid for p in spinners]
        assert len(pids) == 2 and all(psutil.Process(pid).is_running() for pid in pids)
    assert all(gone(pid) for pid in pids)


def test_spinning_processes_are_killed_when_the_block_raises():
    with pytest.raises(KeyboardInterrupt):
        with busy_cores(1) as spinners:
            pid = spinners[0].pid
            raise KeyboardInterrupt  # what interrupting the kernel raises inside a cell
    assert gone(pid)


def test_zero_is_allowed_and_negative_counts_are_refused():
    with busy_cores(0) as spinners:
        assert spinners == []
    with pytest.raises(ValueError, match="count must be an int >= 0"):
        with busy_cores(-1):
            pass
