"""Tests of helpers/ch01_measure/: the phases of a training step, busy cores, the benchmark-loop exercise check."""

import time

import numpy as np
import psutil
import pytest
import torch

from helpers.ch01_measure.phases import PHASES, compare_step_phases, time_step_phases
from helpers.ch01_measure.threads import busy_cores
from helpers.workload.data import load_digits_split
from helpers.workload.models import small_cnn


class SlowBatches:
    """A re-iterable source of `count` batches of `sizes`, each costing `delay_s` to produce (like a loader)."""

    def __init__(self, sizes: list[int], delay_s: float):
        self.sizes, self.delay_s = sizes, delay_s

    def __iter__(self):
        for size in self.sizes:
            time.sleep(self.delay_s)
            yield torch.randn(size, 1, 16, 16), torch.randint(0, 10, (size,))


def benchmark_loop(fn, *, clock, sync, warmup, calls, do_sync=True, skip_warmup=True, sync_before_start=True):
    if skip_warmup:
        for _ in range(warmup):
            fn()
    times = []
    for _ in range(calls if skip_warmup else warmup + calls):
        if do_sync and sync_before_start:
            sync()
        start = clock()
        fn()
        if do_sync:
            sync()
        times.append(clock() - start)
    times = times[-calls:] if skip_warmup else times[:calls]
    p50, p95, p99 = np.percentile(np.array(times) * 1e3, [50, 95, 99])
    return {"p50_ms": p50, "p95_ms": p95, "p99_ms": p99}


def gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_step_phases_are_measured_for_every_pipeline():
    split = load_digits_split()
    batches = [(split.x_train[:32], split.y_train[:32])]
    model_a, model_b = small_cnn((8,)), small_cnn((8,))
    result = compare_step_phases({"a": (model_a, batches, torch.optim.SGD(model_a.parameters(), lr=0.1)),
                                  "b": (model_b, batches, torch.optim.SGD(model_b.parameters(), lr=0.1))},
                                 rounds=2, steps_per_round=2, warmup=1)
    assert set(result) == {"a", "b"}
    for times in result.values():
        assert tuple(times.phases_ms) == PHASES and times.steps == 4
        assert all(ms > 0 for ms in times.phases_ms.values())
        assert sum(times.fractions().values()) == pytest.approx(1.0)
    single = time_step_phases(model_a, batches, torch.optim.SGD(model_a.parameters(), lr=0.1), steps=3, warmup=0)
    assert single.steps == 3
    with pytest.raises(ValueError, match="rounds must be an int >= 1"):
        compare_step_phases({"a": (model_a, batches, torch.optim.SGD(model_a.parameters(), lr=0.1))}, rounds=0)


def test_the_data_phase_is_paid_every_step_not_replayed_after_one_epoch():
    model = small_cnn((4,))
    # 3 batches per epoch, 20 ms each: 12 recorded steps span four epochs; every one must pay the 20 ms.
    times = time_step_phases(model, SlowBatches([8, 8, 8], 0.020), torch.optim.SGD(model.parameters(), lr=0.1),
                             steps=12, warmup=0)
    assert times.steps == 12
    assert times.phases_ms["data"] >= 20.0 and times.mean_ms["data"] >= 20.0
    assert set(times.mean_ms) == {*PHASES, "step"}


def test_a_ragged_last_batch_runs_but_is_not_recorded():
    model = small_cnn((4,))
    result = compare_step_phases({"a": (model, SlowBatches([8, 8, 3], 0.0), torch.optim.SGD(model.parameters(), lr=0.1))},
                                 rounds=2, steps_per_round=4, warmup=1)["a"]
    assert result.steps == 8, "eight full-size steps recorded; the 3-image steps ran in between"
    assert len(result.round_step_ms) == 2
    rest = result.round_step_without_ms("data")
    assert all(r == pytest.approx(step - data) for r, step, data in
               zip(rest, result.round_step_ms, result.round_mean_ms["data"]))
    with pytest.raises(ValueError, match="phase must be one of"):
        result.round_step_without_ms("loss")


def test_a_generator_used_up_after_one_pass_is_refused():
    model = small_cnn((4,))
    once = (batch for batch in SlowBatches([8], 0.0))
    with pytest.raises(ValueError, match="generator is used up"):
        time_step_phases(model, once, torch.optim.SGD(model.parameters(), lr=0.1), steps=3, warmup=0)


def test_the_benchmark_loop_check_passes_a_correct_loop_and_names_each_mistake(capsys):
    from functools import partial

    from helpers.ch01_measure.exercises import check_benchmark_loop

    assert check_benchmark_loop("E", benchmark_loop)
    assert not check_benchmark_loop("E", partial(benchmark_loop, do_sync=False))
    assert "sync()" in capsys.readouterr().out
    assert not check_benchmark_loop("E", lambda fn, **kw: None)
    assert "not implemented" in capsys.readouterr().out


def test_the_benchmark_loop_check_catches_timed_warm_up_calls(capsys):
    from helpers.ch01_measure.exercises import check_benchmark_loop

    def timed_warmup(fn, *, clock, sync, warmup, calls):
        return benchmark_loop(fn, clock=clock, sync=sync, warmup=warmup, calls=calls + warmup)

    assert not check_benchmark_loop("E", timed_warmup)
    assert "called 210 times" in capsys.readouterr().out


def test_the_benchmark_loop_check_names_a_unit_mistake_and_a_swapped_tail(capsys):
    from helpers.ch01_measure.exercises import check_benchmark_loop

    def in_seconds(fn, **kw):
        return {key: value / 1e3 for key, value in benchmark_loop(fn, **kw).items()}

    def max_as_p95(fn, **kw):
        got = benchmark_loop(fn, **kw)
        return {**got, "p95_ms": got["p99_ms"]}

    assert not check_benchmark_loop("E", in_seconds)
    assert "in seconds" in capsys.readouterr().out
    assert not check_benchmark_loop("E", max_as_p95)
    assert "p95_ms should be 10" in capsys.readouterr().out


def test_the_benchmark_loop_check_catches_a_clock_read_before_the_warm_up_finished(capsys):
    from helpers.ch01_measure.exercises import check_benchmark_loop

    from functools import partial

    no_sync_after_warmup = partial(benchmark_loop, sync_before_start=False)  # the classic bug: start = clock() at once
    assert not check_benchmark_loop("E", no_sync_after_warmup)
    assert "while work was still queued" in capsys.readouterr().out


def test_the_ridge_exercise_check_computes_its_answers_from_the_datasheet(capsys):
    from helpers.ch01_measure.exercises import check_ridge_exercise

    assert check_ridge_exercise(67 / 3.35, 989 / 3.35, "compute", "memory")
    assert not check_ridge_exercise(67 / 3.35, 989 / 3.35, "compute", "compute")
    assert "Exercise 3c (bf16)" in capsys.readouterr().out
    assert not check_ridge_exercise(..., ..., ..., ...)


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


def test_the_amdahl_verdict_can_fail_and_reads_each_premise():
    from helpers.ch01_measure.amdahl import amdahl_speedup, amdahl_verdict, data_premise, prediction_position
    from helpers.core.claims import Ratio

    assert amdahl_speedup(0.5, 2.0) == pytest.approx(4 / 3)
    assert amdahl_speedup(0.2, float("inf")) == pytest.approx(1.25)
    step, alone = Ratio(1.19, 1.15, 1.22, 20), Ratio(20.0, 18.0, 22.0, 5)
    assert prediction_position(1.19, 1.20, step) == "inside"
    assert prediction_position(1.19, 1.20, Ratio(1.30, 1.25, 1.35, 20)) == "above the ceiling"
    assert prediction_position(1.19, 1.50, Ratio(1.05, 1.02, 1.08, 20)) == "below"
    assert prediction_position(1.10, 1.50, Ratio(1.30, 1.25, 1.35, 20)) == "above"
    assert data_premise(Ratio(8.6, 8.0, 9.0, 20), alone) == "less"
    assert data_premise(Ratio(20.0, 17.0, 23.0, 20), alone) == "held"
    share = 1 - 1 / 1.2  # ceiling 1.2x; with s = 20 the prediction is 1.19x
    held = amdahl_verdict(share=share, step=step, data_inside=Ratio(20.0, 17.0, 23.0, 20), data_alone=alone,
                          rest=Ratio(1.0, 0.98, 1.02, 20))
    assert "predicted the step" in held and "broke" not in held
    wide = amdahl_verdict(share=share, step=step, data_inside=Ratio(20.0, 17.0, 23.0, 20), data_alone=alone,
                          rest=Ratio(1.0, 0.95, 1.15, 20))
    assert "not shown: the interval is too wide" in wide and "does not test the law" in wide
    broken = amdahl_verdict(share=share, step=Ratio(1.26, 1.21, 1.30, 20), data_inside=Ratio(8.6, 8.0, 9.0, 20),
                            data_alone=alone, rest=Ratio(1.05, 1.03, 1.07, 20))
    assert "above the ceiling" in broken and "Only a faster rest of the step can lift it" in broken
    assert "gained less inside" in broken and "got faster too" in broken and "the faster rest raises it" in broken
    assert f"Amdahl predicts {amdahl_speedup(share, 8.6):.2f}x" in broken
    accounted = 1 / ((1 - share) / 1.05 + share / 8.6)
    assert f"gives {accounted:.2f}x against the measured 1.26x" in broken and "closes within" not in broken
    assert "misses the measured step" in broken  # rest 1.03 to 1.07x cannot account for 1.26x
    with pytest.raises(ValueError, match="share must be <= 1"):
        amdahl_verdict(share=1.5, step=step, data_inside=step, data_alone=alone, rest=step)
