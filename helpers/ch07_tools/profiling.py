"""Chapter 7's profiler tables: where a training step goes, its hottest operators, its largest allocations.

torch.profiler's key_averages() sums over every recorded step; these helpers divide by the number of
active steps, so the tables read "per step", and they return DataFrames instead of a fixed-width text
table, so a notebook can sort, filter and compare them.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from torch.autograd import DeviceType
from torch.profiler import profile

from helpers.core.validate import require_instance, require_int


def _averages(prof: profile, *, by_shape: bool) -> list:
    """key_averages() of a finished profile, checked."""
    require_instance("prof", prof, profile)
    events = prof.key_averages(group_by_input_shape=by_shape)
    if not events:
        raise ValueError("the profile recorded nothing: was prof.step() called past the schedule's wait and warmup?")
    return list(events)


def _cpu_ms(prof: profile, matches: object) -> float:
    """Total CPU-side time (ms) of the recorded events whose name matches (GPU-side copies of regions excluded)."""
    require_instance("prof", prof, profile)
    return sum(event.cpu_time_total for event in prof.events()
               if event.device_type == DeviceType.CPU and matches(event.name)) / 1e3


def step_ms(prof: profile, *, steps: int) -> float:
    """Mean wall time of one profiled step (ms), from the ProfilerStep annotations the schedule adds."""
    require_int("steps", steps, minimum=1)
    total = _cpu_ms(prof, lambda name: name.startswith("ProfilerStep"))
    if total == 0:
        raise ValueError("no ProfilerStep event: profile with a schedule and call prof.step() once per step")
    return total / steps


def region_table(prof: profile, regions: Sequence[str], *, steps: int) -> pd.DataFrame:
    """Time per step (ms) and share of the step of each record_function region, largest first.

    Read from the CPU side (the profiler also records each region on the GPU's timeline). On a GPU a
    region's time is therefore the time the CPU spent in it: launching its kernels, plus any wait for
    the GPU (a synchronisation such as `.item()`), not the time its kernels ran.
    """
    total = step_ms(prof, steps=steps)
    recorded = {event.name for event in prof.events()}
    missing = [name for name in regions if name not in recorded]
    if missing:
        raise ValueError(f"regions not in the profile: {missing}; recorded regions come from record_function")
    table = pd.DataFrame({"ms per step": [_cpu_ms(prof, lambda name, r=region: name == r) / steps
                                          for region in regions]}, index=pd.Index(regions, name="region"))
    table["share of step (%)"] = 100 * table["ms per step"] / total
    return table.sort_values("ms per step", ascending=False)


def hot_operators(prof: profile, *, steps: int, top: int = 8) -> pd.DataFrame:
    """The operators with the most self CPU time, one row per (operator, input shapes), per step."""
    require_int("top", top, minimum=1)
    events = [event for event in _averages(prof, by_shape=True) if event.key.startswith("aten::")]
    total_self = sum(event.self_cpu_time_total for event in events)
    rows = [{"operator": event.key, "input shapes": str(event.input_shapes)[:48],
             "calls per step": event.count / steps, "self ms per step": event.self_cpu_time_total / 1e3 / steps,
             "share of operator time (%)": 100 * event.self_cpu_time_total / total_self}
            for event in sorted(events, key=lambda event: event.self_cpu_time_total, reverse=True)[:top]]
    return pd.DataFrame(rows)


def hot_kernels(prof: profile, *, steps: int, top: int = 8) -> pd.DataFrame:
    """The GPU kernels with the most GPU time, per step (the profile must record ProfilerActivity.CUDA)."""
    require_int("steps", steps, minimum=1)
    require_int("top", top, minimum=1)
    kernels = [event for event in _averages(prof, by_shape=False)
               if event.device_type == DeviceType.CUDA and not event.is_user_annotation]
    if not kernels:
        raise ValueError("no GPU kernel in the profile: profile on a GPU, with ProfilerActivity.CUDA among the "
                         "activities")
    largest = sorted(kernels, key=lambda event: event.self_device_time_total, reverse=True)[:top]
    return pd.DataFrame([{"GPU kernel": event.key[:70], "calls per step": event.count / steps,
                          "GPU µs per step": event.self_device_time_total / steps} for event in largest])


def calls_per_step(prof: profile, operators: Sequence[str], *, steps: int) -> pd.Series:
    """How many times each operator ran per step: a count, the same on every machine."""
    counts = {event.key: event.count for event in _averages(prof, by_shape=False)}
    return pd.Series({name: counts.get(name, 0) // steps for name in operators}, name="calls per step")


def largest_allocations(prof: profile, *, steps: int, top: int = 5) -> pd.DataFrame:
    """Operators called from our code that allocated the most CPU memory, their callees included, in MB per step.

    The profiler charges each allocation to the innermost operator, which is most often `aten::empty`
    called inside a convolution or a copy; summing over the callees (profile_memory=True) charges it to
    the operator our code called instead.
    """
    require_int("top", top, minimum=1)
    totals: dict[tuple[str, str], float] = {}
    for event in prof.events():
        parent = event.cpu_parent
        if event.name.startswith("aten::") and (parent is None or not parent.name.startswith("aten::")):
            key = (event.name, str(event.input_shapes)[:48])
            totals[key] = totals.get(key, 0) + max(event.cpu_memory_usage, 0)
    largest = sorted(((key, size) for key, size in totals.items() if size > 0), key=lambda item: -item[1])[:top]
    if not largest:
        raise ValueError("no allocations recorded: profile with profile_memory=True")
    return pd.DataFrame([{"operator": name, "input shapes": shapes, "MB allocated per step": size / 1e6 / steps}
                         for (name, shapes), size in largest])
