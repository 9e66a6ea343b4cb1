"""Honest timing: warm-up, device synchronisation, many calls, alternating rounds, medians and tails."""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from helpers.core.rounds import round_order
from helpers.core.validate import require_callable, require_instance, require_int, require_number

# torch.utils.benchmark imports cpp_extension, which logs a warning on CUDA builds without a GPU.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
from torch.utils import benchmark  # noqa: E402


def synchronize() -> None:
    """Wait for work queued on a GPU (CUDA, MPS, ...) so that a clock reading covers it; a no-op on the CPU."""
    if torch.accelerator.is_available():
        torch.accelerator.synchronize()


def synchronized_clock() -> float:
    """Seconds on a monotonic clock, read after the accelerator has finished its queued work."""
    synchronize()
    return time.perf_counter()


@dataclass(frozen=True)
class Timing:
    """Many timed calls of one piece of work, grouped in blocks (one block = several calls, timed together).

    torch.utils.benchmark times a block of calls and divides by their number, so the spread we can
    see is the spread of block means, which is narrower than the spread of single calls. For the
    tail of single calls, use `measure_percentiles`.
    """

    median_s: float
    block_iqr_s: float
    blocks: int
    calls: int
    round_medians_s: tuple[float, ...]

    @property
    def median_ms(self) -> float:
        """Median time per call in milliseconds."""
        return self.median_s * 1e3

    @property
    def round_median_ms(self) -> float:
        """Median over the rounds of each round's median, in ms: the time a ledger entry pairs with a round ratio."""
        return statistics.median(self.round_medians_s) * 1e3

    @property
    def block_iqr_ms(self) -> float:
        """Interquartile range of the block means (the middle half of the blocks) in milliseconds."""
        return self.block_iqr_s * 1e3


def synchronized_timer(fn: Callable[[], object], num_threads: int) -> benchmark.Timer:
    """A torch.utils.benchmark Timer of fn() on num_threads threads whose clock synchronises any accelerator."""
    return benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=num_threads, timer=synchronized_clock)


def _summarise(rounds: list[benchmark.Measurement]) -> Timing:
    """Median and IQR of the block means pooled over rounds; the calls behind them; each round's median."""
    blocks = [t for m in rounds for t in m.times]
    q1, median, q3 = (statistics.quantiles(blocks, n=4, method="inclusive") if len(blocks) > 1
                      else (blocks[0],) * 3)
    calls = sum(len(m.times) * m.number_per_run for m in rounds)
    return Timing(median, q3 - q1, len(blocks), calls, tuple(m.median for m in rounds))


def _thread_counts(names: list, num_threads: int | Mapping | None) -> dict:
    """Threads per variant: torch's current count, one count for all, or one per variant."""
    if num_threads is None:
        return {name: torch.get_num_threads() for name in names}
    if isinstance(num_threads, Mapping):
        if set(num_threads) != set(names):
            raise ValueError(f"num_threads must name every variant: {names}, got {list(num_threads)}")
        return {name: require_int(f"num_threads[{name!r}]", num_threads[name], minimum=1) for name in names}
    count = require_int("num_threads", num_threads, minimum=1)
    return {name: count for name in names}


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with torch on `count` threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measure_interleaved(
    variants: Mapping[str, Callable[[], object]],
    *,
    rounds: int = 3,
    min_run_time: float = 0.5,
    warmup: int = 2,
    num_threads: int | Mapping[str, int] | None = None,
) -> dict[str, Timing]:
    """Time several variants in alternating rounds, so that a slow spell of the machine hits them all alike.

    Each variant first runs `warmup` untimed calls on its thread count. Then, in each round, every
    variant gets about min_run_time / rounds seconds of torch.utils.benchmark's blocked_autorange
    (at least one block; it sizes the blocks so that the timer's own overhead is negligible), with
    a clock that synchronises the GPU. Odd rounds run the variants in reverse order, so that no
    variant always follows the same other one. torch.utils.benchmark.Timer runs on ONE thread
    unless told otherwise: by default we pass torch's current thread count so the numbers match
    what the notebook experiences; a mapping gives each variant its own count.
    """
    if not isinstance(variants, Mapping) or not variants:
        raise ValueError("variants must be a non-empty mapping of name -> callable")
    for name, fn in variants.items():
        require_callable(f"variants[{name!r}]", fn)
    require_int("rounds", rounds, minimum=1)
    require_number("min_run_time", min_run_time, strictly_positive=True)
    require_int("warmup", warmup, minimum=0)
    threads = _thread_counts(list(variants), num_threads)
    for name, fn in variants.items():
        with torch_threads(threads[name]):
            for _ in range(warmup):
                fn()
    timers = {name: synchronized_timer(fn, threads[name]) for name, fn in variants.items()}
    measured: dict[str, list[benchmark.Measurement]] = {name: [] for name in variants}
    for round_index in range(rounds):
        for name in round_order(timers, round_index):
            measured[name].append(timers[name].blocked_autorange(min_run_time=min_run_time / rounds))
    return {name: _summarise(runs) for name, runs in measured.items()}


def measure_latency(
    fn: Callable[[], object],
    *,
    min_run_time: float = 0.5,
    warmup: int = 2,
    num_threads: int | None = None,
) -> Timing:
    """Median time per call of fn() after warm-up, synchronising the device (see measure_interleaved)."""
    timings = measure_interleaved({"fn": fn}, rounds=1, min_run_time=min_run_time, warmup=warmup,
                                  num_threads=num_threads)
    return timings["fn"]


@dataclass(frozen=True)
class Percentiles:
    """Per-call latency: the median and the tail (95th and 99th percentiles) of single timed calls."""

    p50_ms: float
    p95_ms: float
    p99_ms: float
    calls: int


def latency_percentiles(call_times_s: list[float]) -> Percentiles:
    """Median, p95 and p99 (linear interpolation between order statistics) of per-call times in seconds."""
    if len(call_times_s) < 2:
        raise ValueError(f"percentiles need at least 2 timed calls, got {len(call_times_s)}")
    p50, p95, p99 = np.percentile(np.asarray(call_times_s) * 1e3, [50, 95, 99])
    return Percentiles(float(p50), float(p95), float(p99), len(call_times_s))


def measure_percentiles(fn: Callable[[], object], *, calls: int = 200, warmup: int = 5) -> Percentiles:
    """Time `calls` single calls of fn() after warm-up, each between two synchronised clock readings."""
    require_callable("fn", fn)
    require_int("calls", calls, minimum=2)
    require_int("warmup", warmup, minimum=0)
    for _ in range(warmup):
        fn()
    call_times_s = []
    for _ in range(calls):
        start = synchronized_clock()
        fn()
        call_times_s.append(synchronized_clock() - start)
    return latency_percentiles(call_times_s)


def throughput(items: int, seconds: float) -> float:
    """Items processed per second."""
    require_int("items", items, minimum=1)
    require_number("seconds", seconds, strictly_positive=True)
    return items / seconds


def speedup(baseline: Timing, optimized: Timing) -> float:
    """baseline's time over optimized's: the median of the paired rounds' ratios, or of the medians if unpaired."""
    if len(baseline.round_medians_s) == len(optimized.round_medians_s) > 0:
        return statistics.median(b / o for b, o in zip(baseline.round_medians_s, optimized.round_medians_s))
    return baseline.median_s / optimized.median_s


def timing_table(timings: Mapping[str, Timing], *, baseline: str | None = None,
                 items_per_call: int | None = None) -> pd.DataFrame:
    """Median per call, block spread, calls and speedup against the baseline (the first variant unless named).

    The median is the median of the rounds' medians (the time a ledger entry pairs with its ratio); the
    speedup is the estimator the course's claims use: the median of the rounds' ratios when both Timings
    have the same rounds (one measure_interleaved call), else the ratio of the medians.
    """
    if not isinstance(timings, Mapping) or not timings:
        raise ValueError("timings must be a non-empty mapping of name -> Timing")
    baseline = next(iter(timings)) if baseline is None else baseline
    if baseline not in timings:
        raise ValueError(f"baseline {baseline!r} is not one of the variants: {', '.join(map(str, timings))}")
    if items_per_call is not None:
        require_int("items_per_call", items_per_call, minimum=1)
    rows = []
    for name, t in timings.items():
        row = {"variant": name, "median_ms": t.round_median_ms, "block_iqr_ms": t.block_iqr_ms, "calls": t.calls,
               "speedup": speedup(timings[baseline], t)}
        if items_per_call is not None:
            row["items_per_s"] = throughput(items_per_call, t.round_median_ms / 1e3)
        rows.append(row)
    return pd.DataFrame(rows).set_index("variant")


def compare_variants(
    variants: Mapping[str, Callable[[], object]],
    *,
    baseline: str | None = None,
    items_per_call: int | None = None,
    min_run_time: float = 0.5,
    rounds: int = 3,
) -> pd.DataFrame:
    """Time each variant in alternating rounds and tabulate them (speedup > 1: faster than the baseline)."""
    if not isinstance(variants, Mapping) or not variants:
        raise ValueError("variants must be a non-empty mapping of name -> callable")
    if baseline is not None and baseline not in variants:
        raise ValueError(f"baseline {baseline!r} is not one of the variants: {', '.join(map(str, variants))}")
    if items_per_call is not None:
        require_int("items_per_call", items_per_call, minimum=1)
    timings = measure_interleaved(variants, rounds=rounds, min_run_time=min_run_time)
    return timing_table(timings, baseline=baseline, items_per_call=items_per_call)


WHOLE_NETWORK = "(whole network)"  # the kind under which time_layers_by_round reports each network timed whole


def time_layers_by_round(
    networks: Mapping[str, tuple[torch.nn.Sequential, torch.Tensor]], *, min_run_time: float = 0.05, rounds: int = 5
) -> pd.DataFrame:
    """Milliseconds per kind of layer in each network and round (columns network, kind, round, ms).

    All layers of all networks are timed in the same alternating rounds; each layer is fed the input
    it really receives in a forward pass of its network, and the layers of one kind are summed. Each
    whole network is timed in the same rounds too, as the kind WHOLE_NETWORK, so that the sum of its
    layers can be set beside it without a comparison across cells.
    """
    if not isinstance(networks, Mapping) or not networks:
        raise ValueError("networks must map a name to (nn.Sequential, example input)")
    variants, owners = {}, {}
    with torch.inference_mode():
        for name, (model, x) in networks.items():
            require_instance(f"networks[{name!r}] model", model, torch.nn.Sequential)
            require_instance(f"networks[{name!r}] input", x, torch.Tensor)
            variants[f"{name} | whole"], owners[f"{name} | whole"] = (lambda model=model, x=x: model(x)), (
                name, WHOLE_NETWORK)
            for index, layer in enumerate(model):
                key = f"{name} | {index}"
                variants[key], owners[key] = (lambda layer=layer, x=x: layer(x)), (name, type(layer).__name__)
                x = layer(x)
        timings = measure_interleaved(variants, rounds=rounds, min_run_time=min_run_time)
    rows = [{"network": owners[key][0], "kind": owners[key][1], "round": i, "ms": seconds * 1e3}
            for key, t in timings.items() for i, seconds in enumerate(t.round_medians_s)]
    return pd.DataFrame(rows).groupby(["network", "kind", "round"], sort=False, as_index=False)["ms"].sum()
