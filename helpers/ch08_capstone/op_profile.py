"""Where a compiled inference call spends its time, by kind of operator: the profiler's evidence behind a reading
such as "int8 gains little after pruning" (chapter 7 reads a training step the same way)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile

from helpers.core.validate import require_int
from helpers.support.logs import quiet_profiler_logs

# How an operator's name reads in a profile of a graph compiled with freezing (oneDNN, MKL and Inductor's own code).
KINDS = (
    ("convolutions and linear layers", ("convolution", "conv2d", "qconv", "linear", "addmm", "matmul")),
    ("pooling", ("pool",)),
    ("Inductor's generated code (elementwise, quantize, requantize, reorders)", ("CompiledFxGraph",)),
)
FRAMEWORK = "framework (guards, wrappers, allocation)"


def operator_kind(name: str) -> str:
    """The kind of an operator, from its name (KINDS; everything else is framework)."""
    for kind, words in KINDS:
        if any(word in name for word in words):
            return kind
    return FRAMEWORK


def _profile_once(call: Callable[[], object], repeats: int) -> dict[str, float]:
    """Self CPU time per call (ms) of each kind of operator, from one profile of `repeats` calls."""
    with torch.no_grad(), quiet_profiler_logs(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            call()
    per_kind = {kind: 0.0 for kind, _ in KINDS} | {FRAMEWORK: 0.0}
    for event in prof.key_averages():
        per_kind[operator_kind(event.key)] += event.self_cpu_time_total / 1e3 / repeats
    return per_kind


def time_by_operator_kind(calls: Mapping[str, Callable[[], object]], *, repeats: int = 20, rounds: int = 3,
                          warmup: int = 3) -> pd.DataFrame:
    """Self CPU time per call (ms) of each kind of operator, one column per call: the median of `rounds`
    interleaved profiles of `repeats` calls each, after warm-up. Profiler time includes the profiler's own
    overhead: compare columns, not timed latencies. 'total' is the sum of the kinds' medians."""
    require_int("repeats", repeats, minimum=1)
    require_int("rounds", rounds, minimum=1)
    require_int("warmup", warmup, minimum=0)
    with torch.no_grad():
        for call in calls.values():
            for _ in range(warmup):
                call()
    profiles = {label: [] for label in calls}
    for _ in range(rounds):
        for label, call in calls.items():
            profiles[label].append(_profile_once(call, repeats))
    table = pd.DataFrame({label: pd.DataFrame(found).median() for label, found in profiles.items()})
    table.loc["total"] = table.sum()
    return table
