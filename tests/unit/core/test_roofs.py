import pytest

from helpers.core.roofs import (ACCESS_PROBES, COMPUTE_PROBES, IN_PLACE_PROBE, NEW_OUTPUT_PROBE, READ_PROBE,
                                ROOF_ELEMENTS, Roofs, probe_bytes, roof_operations, roofs_from_seconds)


def test_roofs_count_the_minimum_bytes_of_probes_with_one_footprint():
    vector = 4 * ROOF_ELEMENTS
    assert probe_bytes() == {"read": vector, "in place": 2 * vector, "new output": vector}  # the copy: half to half
    roofs = roofs_from_seconds({"matmul 512": 2 * 512**3 / 100e9, "matmul 1024": 2 * 1024**3 / 90e9,
                                READ_PROBE: vector / 50e9, IN_PLACE_PROBE: vector / 50e9,
                                NEW_OUTPUT_PROBE: vector / 25e9, "a layer": 1.0})
    assert roofs.gflops == pytest.approx(100.0)  # the better of the two products
    assert roofs.read_gbps == pytest.approx(50.0)
    assert roofs.in_place_gbps == pytest.approx(100.0)  # the same time as the sum, twice the bytes counted
    assert roofs.new_output_gbps == pytest.approx(25.0)  # the sum's bytes in twice its time
    assert roofs.ridge("read") == pytest.approx(2.0)
    assert roofs.ridge("in place") == pytest.approx(1.0)
    assert roofs.attainable_gflops(0.5, "new output") == pytest.approx(12.5)
    assert roofs.attainable_gflops(10.0, "in place") == pytest.approx(100.0)
    assert [roofs.side(i, "read") for i in (1.0, 1.9, 2.1, 3.0)] == ["memory", "at the ridge", "at the ridge", "compute"]
    assert "a lower bound" in roofs.summary() and "new output 25.0 GB/s" in roofs.summary()
    with pytest.raises(ValueError, match="missing"):
        roofs_from_seconds({READ_PROBE: 1.0})
    with pytest.raises(ValueError, match="access must be one of"):
        roofs.ridge("write")


def test_cache_note_says_when_the_vector_may_sit_in_cache(monkeypatch):
    roofs = Roofs(gflops=1.0, read_gbps=1.0, in_place_gbps=2.0, new_output_gbps=1.5, footprint_bytes=64 * 2**20)
    monkeypatch.setattr("helpers.core.roofs.last_level_cache_bytes", lambda: 480 * 2**20)
    assert "not main-memory bandwidth" in roofs.cache_note()
    monkeypatch.setattr("helpers.core.roofs.last_level_cache_bytes", lambda: 8 * 2**20)
    assert "main-memory roofs" in roofs.cache_note()
    monkeypatch.setattr("helpers.core.roofs.last_level_cache_bytes", lambda: None)
    assert "does not report" in roofs.cache_note()


def test_roof_operations_run_and_check_their_argument():
    operations = roof_operations(1024)
    assert set(operations) == {*COMPUTE_PROBES, *ACCESS_PROBES.values()}
    for probe in operations.values():
        probe()
    with pytest.raises(ValueError, match="elements"):
        roof_operations(1)
