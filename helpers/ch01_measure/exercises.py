"""Chapter 1's exercise check: a benchmark loop run on a simulated asynchronous device, checked exactly."""

from __future__ import annotations

from collections.abc import Callable

from helpers.core.validate import require_callable
from helpers.support.checks import FAIL, PASS, TODO, Verdict, announce, is_close


class SimulatedDevice:
    """A pretend asynchronous accelerator with its own clock, so a benchmark loop can be checked exactly.

    Each call of `work` queues a job and returns after 1 microsecond, as a GPU launch does; `sync`
    waits for the queue; `clock` reads the simulated time in seconds. The first `cold_calls` jobs
    take 50 ms (first-call overhead); after them, every 50 jobs hold 45 of 1 ms, 4 of 10 ms and 1 of
    30 ms, so the median is 1 ms, the 95th percentile 10 ms and the 99th 30 ms.
    """

    def __init__(self, cold_calls: int) -> None:
        self.cold_calls, self.calls, self.now_s, self.queued_s = cold_calls, 0, 0.0, 0.0

    def job_seconds(self, index: int) -> float:
        """How long the index-th job runs."""
        if index < self.cold_calls:
            return 0.050
        position = (index - self.cold_calls) % 50
        return 0.030 if position == 49 else 0.010 if position >= 45 else 0.001

    def work(self) -> None:
        self.queued_s += self.job_seconds(self.calls)
        self.calls += 1
        self.now_s += 1e-6

    def sync(self) -> None:
        self.now_s, self.queued_s = self.now_s + self.queued_s, 0.0

    def clock(self) -> float:
        return self.now_s


def check_benchmark_loop(exercise: str, candidate: Callable[..., object], *, warmup: int = 5,
                         calls: int = 200) -> Verdict:
    """Run candidate(fn, clock=..., sync=..., warmup=..., calls=...) on a SimulatedDevice; check its percentiles."""
    require_callable("candidate", candidate)
    device = SimulatedDevice(cold_calls=warmup)
    got = candidate(device.work, clock=device.clock, sync=device.sync, warmup=warmup, calls=calls)
    if got is None or got is Ellipsis:
        return announce(TODO, exercise, "not implemented yet: your function returned nothing.", False)
    if not isinstance(got, dict) or set(got) != {"p50_ms", "p95_ms", "p99_ms"}:
        return announce(FAIL, exercise, f"return a dict with keys p50_ms, p95_ms, p99_ms; got {got!r}.", False)
    if device.calls != warmup + calls:
        return announce(FAIL, exercise, f"fn was called {device.calls} times; expected {warmup} warm-up + {calls} timed.", False)
    expected = {"p50_ms": 1.0, "p95_ms": 10.0, "p99_ms": 30.0}
    if all(is_close(float(got[key]), value / 1e3, 0.05) for key, value in expected.items()):
        return announce(FAIL, exercise, "your percentiles are in seconds: multiply by 1000 for milliseconds.", False)
    if got["p50_ms"] < 0.1:
        return announce(FAIL, exercise, "your median is about the launch time: call sync() before each clock() reading, "
                    "or you time the queueing, not the work.", False)
    if got["p99_ms"] > 40:
        return announce(FAIL, exercise, "the 50 ms warm-up calls are in your timings: run the warm-up calls before "
                    "the timed ones, and do not record them.", False)
    wrong = [key for key, value in expected.items() if not is_close(float(got[key]), value, 0.05)]
    if wrong:
        return announce(FAIL, exercise, f"{', '.join(wrong)} should be {', '.join(f'{expected[k]:g}' for k in wrong)} ms "
                    f"on this simulated device; got {got!r}. Percentiles are in milliseconds.", False)
    return announce(PASS, exercise, "correct: warm-up skipped, device synchronised, tail measured.", True)
