import pytest
import torch

from helpers.measure import Timing, compare_variants, measure_interleaved, measure_latency, throughput, time_layers
from helpers.models import small_cnn


def test_measure_latency_returns_a_positive_median_from_several_runs():
    calls = []
    timing = measure_latency(lambda: calls.append(1), min_run_time=0.05, warmup=3)
    assert isinstance(timing, Timing)
    assert timing.median_s > 0 and timing.iqr_s >= 0 and timing.runs >= 1
    assert timing.median_ms == pytest.approx(timing.median_s * 1e3)
    assert len(calls) > 3, "warm-up calls plus measured calls"


def test_measure_interleaved_times_every_variant_in_rounds():
    timings = measure_interleaved({"a": lambda: None, "b": lambda: sum(range(100))}, rounds=2, min_run_time=0.04)
    assert set(timings) == {"a", "b"}
    assert all(t.runs >= 2 for t in timings.values()), "at least one block per round"


def test_measure_latency_rejects_bad_arguments():
    with pytest.raises(TypeError, match="callable"):
        measure_latency(42)
    with pytest.raises(ValueError, match="min_run_time must be > 0"):
        measure_latency(lambda: None, min_run_time=0)
    with pytest.raises(ValueError, match="warmup must be an int >= 0"):
        measure_latency(lambda: None, warmup=-1)
    with pytest.raises(ValueError, match="num_threads"):
        measure_latency(lambda: None, num_threads=0)


def test_measure_latency_restores_the_thread_count():
    before = torch.get_num_threads()
    measure_latency(lambda: None, min_run_time=0.02, num_threads=1)
    assert torch.get_num_threads() == before


def test_throughput_is_items_per_second():
    assert throughput(64, 0.5) == 128.0
    with pytest.raises(ValueError, match="seconds must be > 0"):
        throughput(64, 0.0)
    with pytest.raises(ValueError, match="items must be an int >= 1"):
        throughput(0, 1.0)


def test_compare_variants_reports_speedup_against_the_baseline():
    table = compare_variants({"slow": lambda: sum(range(20000)), "fast": lambda: None},
                             items_per_call=10, min_run_time=0.06)
    assert list(table.index) == ["slow", "fast"]
    assert table.loc["slow", "speedup"] == 1.0
    assert table.loc["fast", "speedup"] > 1.0
    assert set(table.columns) >= {"median_ms", "iqr_ms", "runs", "items_per_s"}


def test_compare_variants_rejects_an_unknown_baseline_or_no_variants():
    with pytest.raises(ValueError, match="baseline 'c' is not one of the variants: a, b"):
        compare_variants({"a": lambda: None, "b": lambda: None}, baseline="c")
    with pytest.raises(ValueError, match="non-empty mapping"):
        compare_variants({})


def test_time_layers_gives_one_row_per_layer_and_shares_that_sum_to_one():
    model = small_cnn((4, 8))
    table = time_layers(model, torch.randn(2, 1, 16, 16), min_run_time=0.01)
    assert list(table["kind"]) == [type(layer).__name__ for layer in model]
    assert (table["median_ms"] > 0).all()
    assert table["share"].sum() == pytest.approx(1.0)


def test_time_layers_rejects_non_sequential_models_and_non_tensor_inputs():
    with pytest.raises(TypeError, match="model must be a Sequential"):
        time_layers(torch.nn.Linear(2, 2), torch.randn(1, 2))
    with pytest.raises(TypeError, match="x must be a Tensor"):
        time_layers(small_cnn((4,)), [1, 2])
