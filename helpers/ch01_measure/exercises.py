"""Chapter 1's exercise checks: the ridge points of a datasheet, and a benchmark loop run on a simulated device."""

from __future__ import annotations

from collections.abc import Callable

from helpers.core.validate import require_callable
from helpers.support.checks import FAIL, PASS, TODO, Verdict, announce, check_choice, check_number, is_close

# NVIDIA H100 SXM datasheet: float32 without tensor cores, bfloat16 on tensor cores (dense), HBM3 bandwidth.
H100_FP32_FLOPS, H100_BF16_FLOPS, H100_BYTES_PER_S = 67e12, 989e12, 3.35e12


def _side_of_ridge(n: int, bytes_per_element: int, ridge: float) -> str:
    """'memory' or 'compute': where an n x n product with its three matrices moved once falls against a ridge."""
    return "compute" if 2 * n**3 / (3 * n**2 * bytes_per_element) > ridge else "memory"


def check_ridge_exercise(ridge_fp32: object, ridge_bf16: object, side_fp32: object, side_bf16: object) -> Verdict:
    """Exercise 3b and 3c: the H100's two ridge points, and the side of each a 512 x 512 product falls on."""
    ridges = {"float32": H100_FP32_FLOPS / H100_BYTES_PER_S, "bf16": H100_BF16_FLOPS / H100_BYTES_PER_S}
    passed = [check_number(f"Exercise 3b ({label} ridge)", answer, ridges[label], rtol=0.005,
                           hint="Peak FLOP/s divided by bytes/s.").passed
              for label, answer in (("float32", ridge_fp32), ("bf16", ridge_bf16))]
    for label, answer, element_bytes in (("float32", side_fp32, 4), ("bf16", side_bf16, 2)):
        passed.append(check_choice(f"Exercise 3c ({label})", answer,
                                   _side_of_ridge(512, element_bytes, ridges[label]), ("memory", "compute"),
                                   hint="Compare matmul_intensity(512, bytes per element) with that precision's "
                                        "ridge.").passed)
    return Verdict(all(passed))


class SimulatedDevice:
    """A pretend asynchronous accelerator with its own clock, so a benchmark loop can be checked exactly.

    Each call of `work` queues a job and returns after 1 microsecond, as a GPU launch does; `sync`
    waits for the queue; `clock` reads the simulated time in seconds. The first `cold_calls` jobs
    take 50 ms (first-call overhead); after them, every 50 jobs hold 45 of 1 ms, 4 of 10 ms and 1 of
    30 ms, so the median is 1 ms, the 95th percentile 10 ms and the 99th 30 ms.
    """

    def __init__(self, cold_calls: int) -> None:
        self.cold_calls, self.calls, self.now_s, self.queued_s = cold_calls, 0, 0.0, 0.0
        self.reads_while_busy = 0  # clock readings taken while work was still queued: the asynchronous bug

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
        self.reads_while_busy += self.queued_s > 0
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
    if device.reads_while_busy:
        return announce(FAIL, exercise, f"{device.reads_while_busy} clock reading(s) were taken while work was still "
                        "queued on the device (for example the first start, right after the warm-up): call sync() "
                        "before every clock() reading.", False)
    wrong = [key for key, value in expected.items() if not is_close(float(got[key]), value, 0.05)]
    if wrong:
        return announce(FAIL, exercise, f"{', '.join(wrong)} should be {', '.join(f'{expected[k]:g}' for k in wrong)} ms "
                    f"on this simulated device; got {got!r}. Percentiles are in milliseconds.", False)
    return announce(PASS, exercise, "correct: warm-up skipped, device synchronised, tail measured.", True)
