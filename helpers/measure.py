"""Honest timing: warm-up, device synchronisation, many runs, median and spread."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd
import torch

from .validate import require_callable, require_instance, require_int, require_number

# torch.utils.benchmark imports cpp_extension, which logs a warning on CUDA builds without a GPU.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
from torch.utils import benchmark  # noqa: E402


@dataclass(frozen=True)
class Timing:
    """Summary of many timed runs of one piece of work."""

    median_s: float
    iqr_s: float
    runs: int

    @property
    def median_ms(self) -> float:
        """Median wall time in milliseconds."""
        return self.median_s * 1e3

    @property
    def iqr_ms(self) -> float:
        """Interquartile range (spread of the middle half of runs) in milliseconds."""
        return self.iqr_s * 1e3


def _timer(fn: Callable[[], object], num_threads: int) -> benchmark.Timer:
    return benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=num_threads)


def _summarise(block_times: list[float]) -> Timing:
    """Median and IQR of per-call times pooled from several measurement blocks."""
    if len(block_times) < 2:
        return Timing(median_s=block_times[0], iqr_s=0.0, runs=len(block_times))
    q1, median, q3 = statistics.quantiles(block_times, n=4, method="inclusive")
    return Timing(median_s=median, iqr_s=q3 - q1, runs=len(block_times))


def measure_interleaved(
    variants: Mapping[str, Callable[[], object]],
    *,
    rounds: int = 3,
    min_run_time: float = 0.5,
    warmup: int = 2,
    num_threads: int | None = None,
) -> dict[str, Timing]:
    """Time several variants in alternating rounds, so that a slow spell of the machine hits them all alike.

    Each round gives every variant min_run_time / rounds seconds of torch.utils.benchmark's
    blocked_autorange (which synchronises the device); the per-call times of all rounds are pooled.
    torch.utils.benchmark.Timer runs on ONE thread unless told otherwise: we pass torch's current
    thread count so the numbers match what the notebook experiences.
    """
    if not isinstance(variants, Mapping) or not variants:
        raise ValueError("variants must be a non-empty mapping of name -> callable")
    for name, fn in variants.items():
        require_callable(f"variants[{name!r}]", fn)
    require_int("rounds", rounds, minimum=1)
    require_number("min_run_time", min_run_time, strictly_positive=True)
    require_int("warmup", warmup, minimum=0)
    threads = torch.get_num_threads() if num_threads is None else require_int("num_threads", num_threads, minimum=1)
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    timers = {name: _timer(fn, threads) for name, fn in variants.items()}
    pooled: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, timer in timers.items():
            pooled[name] += timer.blocked_autorange(min_run_time=min_run_time / rounds).times
    return {name: _summarise(times) for name, times in pooled.items()}


def measure_latency(
    fn: Callable[[], object],
    *,
    min_run_time: float = 0.5,
    warmup: int = 2,
    num_threads: int | None = None,
) -> Timing:
    """Median wall time of fn() after warm-up, synchronising the device (see measure_interleaved)."""
    timings = measure_interleaved({"fn": fn}, rounds=1, min_run_time=min_run_time, warmup=warmup,
                                  num_threads=num_threads)
    return timings["fn"]


def throughput(items: int, seconds: float) -> float:
    """Items processed per second."""
    require_int("items", items, minimum=1)
    require_number("seconds", seconds, strictly_positive=True)
    return items / seconds


def compare_variants(
    variants: Mapping[str, Callable[[], object]],
    *,
    baseline: str | None = None,
    items_per_call: int | None = None,
    min_run_time: float = 0.5,
    rounds: int = 3,
) -> pd.DataFrame:
    """Time each variant; return a table with median, spread and speedup against the baseline.

    speedup > 1 means faster than the baseline (the first variant unless named).
    """
    if not isinstance(variants, Mapping) or not variants:
        raise ValueError("variants must be a non-empty mapping of name -> callable")
    baseline = next(iter(variants)) if baseline is None else baseline
    if baseline not in variants:
        raise ValueError(f"baseline {baseline!r} is not one of the variants: {', '.join(variants)}")
    if items_per_call is not None:
        require_int("items_per_call", items_per_call, minimum=1)
    timings = measure_interleaved(variants, rounds=rounds, min_run_time=min_run_time)
    base = timings[baseline].median_s
    rows = []
    for name, t in timings.items():
        row = {"variant": name, "median_ms": t.median_ms, "iqr_ms": t.iqr_ms, "runs": t.runs,
               "speedup": base / t.median_s}
        if items_per_call is not None:
            row["items_per_s"] = throughput(items_per_call, t.median_s)
        rows.append(row)
    return pd.DataFrame(rows).set_index("variant")


def time_layers(model: torch.nn.Sequential, x: torch.Tensor, *, min_run_time: float = 0.1) -> pd.DataFrame:
    """Median latency of each layer of a Sequential model, fed the input it really receives in a forward pass."""
    require_instance("model", model, torch.nn.Sequential)
    require_instance("x", x, torch.Tensor)
    require_number("min_run_time", min_run_time, strictly_positive=True)
    rows = []
    with torch.inference_mode():
        for index, layer in enumerate(model):
            timing = measure_latency(lambda layer=layer, x=x: layer(x), min_run_time=min_run_time)
            rows.append({"layer": index, "kind": type(layer).__name__, "median_ms": timing.median_ms})
            x = layer(x)
    table = pd.DataFrame(rows).set_index("layer")
    table["share"] = table["median_ms"] / table["median_ms"].sum()
    return table
