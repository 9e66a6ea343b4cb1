import pytest

from helpers.core.roofs import (COMPUTE_PROBES, READ_PROBE, READ_WRITE_PROBE, ROOF_ELEMENTS, Roofs, measure_roofs,
                                roof_operations, roofs_from_seconds)


def test_roofs_from_seconds_counts_one_stream_for_the_sum_and_two_for_the_scale():
    roofs = roofs_from_seconds({"matmul 512": 2 * 512**3 / 100e9, "matmul 1024": 2 * 1024**3 / 90e9,
                                READ_PROBE: 4 * ROOF_ELEMENTS / 50e9, READ_WRITE_PROBE: 4 * ROOF_ELEMENTS / 50e9})
    assert roofs.gflops == pytest.approx(100.0)  # the better of the two products
    assert roofs.read_gbps == pytest.approx(50.0)
    assert roofs.read_write_gbps == pytest.approx(100.0)  # the same time, twice the bytes counted
    assert roofs.ridge(writes=False) == pytest.approx(2.0)
    assert roofs.ridge(writes=True) == pytest.approx(1.0)
    assert roofs.attainable_gflops(0.5, writes=False) == pytest.approx(25.0)
    assert roofs.attainable_gflops(10.0, writes=True) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="missing"):
        roofs_from_seconds({READ_PROBE: 1.0})


def test_cache_note_says_when_the_vector_may_sit_in_cache(monkeypatch):
    roofs = Roofs(gflops=1.0, read_gbps=1.0, read_write_gbps=2.0, vector_bytes=64 * 2**20)
    monkeypatch.setattr("helpers.core.roofs.last_level_cache_bytes", lambda: 480 * 2**20)
    assert "not main-memory bandwidth" in roofs.cache_note()
    monkeypatch.setattr("helpers.core.roofs.last_level_cache_bytes", lambda: 8 * 2**20)
    assert "main-memory roofs" in roofs.cache_note()
    monkeypatch.setattr("helpers.core.roofs.last_level_cache_bytes", lambda: None)
    assert "does not report" in roofs.cache_note()


def test_measure_roofs_returns_positive_rates_and_checks_its_argument():
    assert set(roof_operations(1024)) == {*COMPUTE_PROBES, READ_PROBE, READ_WRITE_PROBE}
    roofs = measure_roofs(min_run_time=0.05)
    assert roofs.gflops > 0 and roofs.read_gbps > 0 and roofs.read_write_gbps > 0
    with pytest.raises(ValueError, match="min_run_time must be > 0"):
        measure_roofs(min_run_time=0)
