from helpers.checks import Verdict, check_function, check_number


def test_check_number_passes_within_tolerance(capsys):
    assert check_number("Ex", 101.0, 100.0, rtol=0.02)
    assert "✅ Ex: correct." in capsys.readouterr().out


def test_check_number_explains_a_wrong_answer(capsys):
    verdict = check_number("Ex", 150.0, 100.0, hint="Divide by the latency in seconds.")
    assert isinstance(verdict, Verdict) and not verdict
    out = capsys.readouterr().out
    assert "❌" in out and "too high" in out and "Divide by the latency" in out
    assert "50%" not in out and "factor" not in out  # how far off would give the answer away
    check_number("Ex", 10.0, 100.0)
    assert "too low, by more than a factor of 2" in capsys.readouterr().out


def test_check_number_handles_unanswered_and_non_numbers(capsys):
    assert not check_number("Ex", ..., 1.0)
    assert "not answered yet" in capsys.readouterr().out
    assert not check_number("Ex", "12", 12.0)
    assert "expected a number, got str" in capsys.readouterr().out


def test_check_function_reports_the_first_failing_case(capsys):
    cases = [((2,), 4.0), ((3,), 9.0)]
    assert check_function("Sq", lambda x: x * x, cases)
    assert "correct on all 2 cases" in capsys.readouterr().out
    assert not check_function("Sq", lambda x: 2 * x, cases)
    assert "for (3) expected 9, got 6" in capsys.readouterr().out


def test_check_function_recognises_an_unimplemented_stub(capsys):
    def stub(x):
        ...

    assert not check_function("Sq", stub, [((2,), 4.0)])
    assert "not implemented yet: stub(2) returned None" in capsys.readouterr().out


def benchmark_loop(fn, *, clock, sync, warmup, calls, do_sync=True, skip_warmup=True):
    import numpy as np

    if skip_warmup:
        for _ in range(warmup):
            fn()
    times = []
    for _ in range(calls if skip_warmup else warmup + calls):
        if do_sync:
            sync()
        start = clock()
        fn()
        if do_sync:
            sync()
        times.append(clock() - start)
    times = times[-calls:] if skip_warmup else times[:calls]
    p50, p95, p99 = np.percentile(np.array(times) * 1e3, [50, 95, 99])
    return {"p50_ms": p50, "p95_ms": p95, "p99_ms": p99}


def test_the_benchmark_loop_check_passes_a_correct_loop_and_names_each_mistake(capsys):
    from functools import partial

    from helpers.checks import check_benchmark_loop

    assert check_benchmark_loop("E", benchmark_loop)
    assert not check_benchmark_loop("E", partial(benchmark_loop, do_sync=False))
    assert "sync()" in capsys.readouterr().out
    assert not check_benchmark_loop("E", lambda fn, **kw: None)
    assert "not implemented" in capsys.readouterr().out


def test_the_benchmark_loop_check_catches_timed_warm_up_calls(capsys):
    from helpers.checks import check_benchmark_loop

    def timed_warmup(fn, *, clock, sync, warmup, calls):
        return benchmark_loop(fn, clock=clock, sync=sync, warmup=warmup, calls=calls + warmup)

    assert not check_benchmark_loop("E", timed_warmup)
    assert "called 210 times" in capsys.readouterr().out


def test_the_benchmark_loop_check_names_a_unit_mistake_and_a_swapped_tail(capsys):
    from helpers.checks import check_benchmark_loop

    def in_seconds(fn, **kw):
        return {key: value / 1e3 for key, value in benchmark_loop(fn, **kw).items()}

    def max_as_p95(fn, **kw):
        got = benchmark_loop(fn, **kw)
        return {**got, "p95_ms": got["p99_ms"]}

    assert not check_benchmark_loop("E", in_seconds)
    assert "in seconds" in capsys.readouterr().out
    assert not check_benchmark_loop("E", max_as_p95)
    assert "p95_ms should be 10" in capsys.readouterr().out


def test_check_choice_lists_the_allowed_answers(capsys):
    from helpers.checks import check_choice

    assert check_choice("E", "memory", "memory", ("memory", "compute"))
    assert not check_choice("E", "disk", "memory", ("memory", "compute"))
    assert "answer one of 'memory', 'compute'" in capsys.readouterr().out
    assert not check_choice("E", ..., "memory", ("memory", "compute"))
