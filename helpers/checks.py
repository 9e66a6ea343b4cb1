"""Auto-checks for exercises: each says what is right, or what is wrong and where to look."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

from .validate import require_callable, require_number

PASS, FAIL, TODO = "✅", "❌", "⏳"


class Verdict:
    """The outcome of a check: truthy when it passed; shows nothing itself (the check printed why)."""

    def __init__(self, passed: bool) -> None:
        self.passed = passed

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"Verdict(passed={self.passed})"

    def _ipython_display_(self) -> None:
        """Display nothing: the printed sentence is the verdict."""


def _say(mark: str, exercise: str, message: str, passed: bool) -> Verdict:
    print(f"{mark} {exercise}: {message}")
    return Verdict(passed)


def _close(answer: float, expected: float, rtol: float) -> bool:
    return math.isclose(answer, expected, rel_tol=rtol, abs_tol=1e-12)


def check_number(exercise: str, answer: object, expected: float, *, rtol: float = 0.02, hint: str = "") -> Verdict:
    """Compare a numeric answer with the expected value within a relative tolerance; print why it fails."""
    require_number("rtol", rtol, minimum=0)
    if answer is None or answer is Ellipsis:
        return _say(TODO, exercise, "not answered yet: replace the `...` with your answer and re-run this cell.", False)
    if isinstance(answer, bool) or not isinstance(answer, numbers.Real):
        return _say(FAIL, exercise, f"expected a number, got {type(answer).__name__} {answer!r}.", False)
    if _close(float(answer), expected, rtol):
        return _say(PASS, exercise, "correct.", True)
    direction = "too high" if answer > expected else "too low"
    if not 0.5 <= answer / expected <= 2:
        direction += ", by more than a factor of 2"
    return _say(FAIL, exercise, f"{float(answer):.4g} is {direction}. {hint}".rstrip(), False)


def check_choice(exercise: str, answer: object, expected: str, choices: Sequence[str], *, hint: str = "") -> Verdict:
    """Check a one-word answer such as 'memory' or 'compute' against the expected one; say what is allowed."""
    if answer is None or answer is Ellipsis:
        return _say(TODO, exercise, "not answered yet: replace the `...` with your answer and re-run this cell.", False)
    if answer not in choices:
        return _say(FAIL, exercise, f"answer one of {', '.join(repr(c) for c in choices)}; got {answer!r}.", False)
    if answer == expected:
        return _say(PASS, exercise, "correct.", True)
    return _say(FAIL, exercise, f"not {answer!r}. {hint}".rstrip(), False)


def _short_repr(value: object) -> str:
    """repr for a message: arrays and tensors by shape, not by their (long) contents."""
    shape = getattr(value, "shape", None)
    return f"<{type(value).__name__} of shape {tuple(shape)}>" if shape is not None else repr(value)


def check_function(
    exercise: str,
    candidate: Callable[..., object],
    cases: Sequence[tuple[tuple, float]],
    *,
    rtol: float = 1e-6,
    hint: str = "",
) -> Verdict:
    """Call candidate(*args) for each (args, expected) case; report the first case that fails."""
    require_callable("candidate", candidate)
    if not cases:
        raise ValueError("cases must hold at least one (args, expected) pair")
    for args, expected in cases:
        got = candidate(*args)
        shown = ", ".join(_short_repr(a) for a in args)
        if got is None or got is Ellipsis:
            return _say(TODO, exercise, f"not implemented yet: {getattr(candidate, '__name__', 'it')}({shown}) returned {got!r}.", False)
        if isinstance(got, bool) or not isinstance(got, numbers.Real) or not _close(float(got), expected, rtol):
            return _say(FAIL, exercise, f"for ({shown}) expected {expected:.6g}, got {got!r}. {hint}".rstrip(), False)
    return _say(PASS, exercise, f"correct on all {len(cases)} cases.", True)


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
        return _say(TODO, exercise, "not implemented yet: your function returned nothing.", False)
    if not isinstance(got, dict) or set(got) != {"p50_ms", "p95_ms", "p99_ms"}:
        return _say(FAIL, exercise, f"return a dict with keys p50_ms, p95_ms, p99_ms; got {got!r}.", False)
    if device.calls != warmup + calls:
        return _say(FAIL, exercise, f"fn was called {device.calls} times; expected {warmup} warm-up + {calls} timed.", False)
    expected = {"p50_ms": 1.0, "p95_ms": 10.0, "p99_ms": 30.0}
    if all(_close(float(got[key]), value / 1e3, 0.05) for key, value in expected.items()):
        return _say(FAIL, exercise, "your percentiles are in seconds: multiply by 1000 for milliseconds.", False)
    if got["p50_ms"] < 0.1:
        return _say(FAIL, exercise, "your median is about the launch time: call sync() before each clock() reading, "
                    "or you time the queueing, not the work.", False)
    if got["p99_ms"] > 40:
        return _say(FAIL, exercise, "the 50 ms warm-up calls are in your timings: run the warm-up calls before "
                    "the timed ones, and do not record them.", False)
    wrong = [key for key, value in expected.items() if not _close(float(got[key]), value, 0.05)]
    if wrong:
        return _say(FAIL, exercise, f"{', '.join(wrong)} should be {', '.join(f'{expected[k]:g}' for k in wrong)} ms "
                    f"on this simulated device; got {got!r}. Percentiles are in milliseconds.", False)
    return _say(PASS, exercise, "correct: warm-up skipped, device synchronised, tail measured.", True)
