"""Tests of helpers/core/measure.py."""

import time
from itertools import cycle

import pytest
import torch

from helpers.core.measure import (
    WHOLE_NETWORK, Timing, compare_variants, latency_percentiles, measure_interleaved, measure_latency,
    measure_percentiles, throughput, time_layers_by_round, timing_table,
)
from helpers.workload.models import small_cnn


def test_time_layers_by_round_sums_each_kind_of_each_network_per_round():
    model = small_cnn((4,)).eval()
    table = time_layers_by_round({"a": (model, torch.randn(2, 1, 8, 8)), "b": (model, torch.randn(2, 1, 8, 8))},
                                 min_run_time=0.01, rounds=3)
    assert list(table.columns) == ["network", "kind", "round", "ms"]
    assert {"Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Linear", WHOLE_NETWORK} <= set(table["kind"])
    assert len(table) == 2 * table["kind"].nunique() * 3  # one row per network, kind and round
    assert (table["ms"] > 0).all()
    with pytest.raises(ValueError, match="networks must map a name"):
        time_layers_by_round({})


def test_measure_latency_returns_a_positive_median_from_several_runs():
    calls = []
    timing = measure_latency(lambda: calls.append(1), min_run_time=0.05, warmup=3)
    assert isinstance(timing, Timing)
    assert timing.median_s > 0 and timing.block_iqr_s >= 0 and timing.blocks >= 1
    assert timing.median_ms == pytest.approx(timing.median_s * 1e3)
    assert timing.calls >= timing.blocks, "each block holds at least one call"
    assert len(calls) >= 3 + timing.calls, "warm-up, calibration and the timed calls that `calls` counts"


def test_calls_count_every_timed_call_not_blocks():
    timing = measure_latency(lambda: None, min_run_time=0.05, warmup=0)
    assert timing.calls > timing.blocks, "a block of a fast call holds many calls"


def test_measure_interleaved_times_every_variant_in_rounds():
    timings = measure_interleaved({"a": lambda: None, "b": lambda: sum(range(100))}, rounds=2, min_run_time=0.04)
    assert set(timings) == {"a", "b"}
    assert all(t.blocks >= 2 for t in timings.values()), "at least one block per round"
    assert all(len(t.round_medians_s) == 2 for t in timings.values()), "one median per round"


def test_odd_rounds_run_the_variants_in_reverse_order():
    calls = []
    measure_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=2,
                        min_run_time=0.02, warmup=0)
    runs = [name for i, name in enumerate(calls) if i == 0 or calls[i - 1] != name]
    assert runs == ["a", "b", "a"], "round 1: a then b; round 2: b then a"


def test_each_variant_can_run_on_its_own_thread_count():
    seen = {}
    variants = {"one": lambda: seen.setdefault("one", torch.get_num_threads()),
                "two": lambda: seen.setdefault("two", torch.get_num_threads())}
    seen.clear()
    measure_interleaved(variants, rounds=1, min_run_time=0.02, warmup=0, num_threads={"one": 1, "two": 2})
    assert seen == {"one": 1, "two": 2}
    with pytest.raises(ValueError, match="must name every variant"):
        measure_interleaved(variants, num_threads={"one": 1})


def test_percentiles_see_the_tail_of_a_known_delay_distribution():
    # One call in ten sleeps 40 ms, the others 2 ms: the median is fast, p95 and p99 are in the slow tail.
    delays = cycle([0.002] * 9 + [0.040])
    result = measure_percentiles(lambda: time.sleep(next(delays)), calls=100, warmup=0)
    assert result.calls == 100
    assert 2.0 <= result.p50_ms < 20.0, "sleep never returns early; the median call is a fast one"
    assert result.p95_ms >= 40.0 and result.p99_ms >= 40.0
    assert result.p50_ms <= result.p95_ms <= result.p99_ms


def test_percentiles_interpolate_between_ordered_calls():
    exact = latency_percentiles([i / 1000 for i in range(1, 101)])  # 1 ms .. 100 ms
    assert exact.p50_ms == pytest.approx(50.5) and exact.p95_ms == pytest.approx(95.05)
    assert exact.p99_ms == pytest.approx(99.01)
    with pytest.raises(ValueError, match="at least 2 timed calls"):
        latency_percentiles([0.1])


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
    assert set(table.columns) >= {"median_ms", "block_iqr_ms", "calls", "items_per_s"}


def test_timing_table_reads_timings_measured_earlier():
    timings = measure_interleaved({"a": lambda: None, "b": lambda: None}, rounds=1, min_run_time=0.02)
    table = timing_table(timings, baseline="b")
    assert table.loc["b", "speedup"] == 1.0 and list(table.index) == ["a", "b"]
    with pytest.raises(ValueError, match="baseline 'c'"):
        timing_table(timings, baseline="c")


def test_speedup_is_the_median_of_paired_round_ratios_like_the_claims():
    from helpers.core.claims import timing_ratio
    from helpers.core.measure import Timing, speedup

    base = Timing(median_s=2.0, block_iqr_s=0.0, blocks=3, calls=3, round_medians_s=(2.0, 2.0, 4.0))
    fast = Timing(median_s=1.0, block_iqr_s=0.0, blocks=3, calls=3, round_medians_s=(1.0, 2.0, 1.0))
    assert speedup(base, fast) == 2.0 == timing_ratio(base, fast).median
    assert timing_table({"base": base, "fast": fast}).loc["fast", "speedup"] == 2.0
    single = Timing(median_s=0.5, block_iqr_s=0.0, blocks=1, calls=1, round_medians_s=(0.5,))
    assert speedup(base, single) == 4.0  # unpaired: the ratio of the medians


def test_compare_variants_rejects_an_unknown_baseline_or_no_variants():
    with pytest.raises(ValueError, match="baseline 'c' is not one of the variants: a, b"):
        compare_variants({"a": lambda: None, "b": lambda: None}, baseline="c")
    with pytest.raises(ValueError, match="non-empty mapping"):
        compare_variants({})


def test_time_layers_by_round_rejects_non_sequential_models_and_non_tensor_inputs():
    with pytest.raises(TypeError, match="model must be a Sequential"):
        time_layers_by_round({"a": (torch.nn.Linear(2, 2), torch.randn(1, 2))})
    with pytest.raises(TypeError, match="input must be a Tensor"):
        time_layers_by_round({"a": (small_cnn((4,)), [1, 2])})
