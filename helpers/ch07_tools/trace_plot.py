"""A picture of one profiled step, drawn from the Chrome trace the profiler exports (no browser, no internet).

The trace is JSON: complete events (`"ph": "X"`) with a start `ts` and a duration `dur` in microseconds,
one per operator or record_function region, per thread. Nesting is by time: an event that lies inside
another on the same thread is its child. The chart shows the first levels of that nesting.
"""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib.figure import Figure

from helpers.core.validate import require_int
from helpers.support.plots import title_with_hardware

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def complete_events(trace_path: str | Path) -> list[dict]:
    """The trace's complete events (operators and regions), sorted by start time."""
    path = Path(trace_path)
    if not path.is_file():
        raise ValueError(f"no trace at {path}: write one with prof.export_chrome_trace(path)")
    events = json.loads(path.read_text())["traceEvents"]
    return sorted((event for event in events if event.get("ph") == "X" and "dur" in event),
                  key=lambda event: (event["ts"], -event["dur"]))


def step_events(events: list[dict], step: int) -> tuple[dict, list[tuple[int, dict]]]:
    """The ProfilerStep#step event and every event inside it on its thread, each with its nesting depth."""
    steps = [event for event in events if event["name"] == f"ProfilerStep#{step}"]
    if not steps:
        found = sorted(event["name"] for event in events if event["name"].startswith("ProfilerStep#"))
        raise ValueError(f"no ProfilerStep#{step} in the trace; it holds {found}")
    window = steps[0]
    end = window["ts"] + window["dur"]
    inside = [event for event in events if event["tid"] == window["tid"] and event is not window
              and window["ts"] <= event["ts"] and event["ts"] + event["dur"] <= end]
    nested, open_ends = [], []
    for event in inside:
        while open_ends and event["ts"] >= open_ends[-1]:
            open_ends.pop()
        nested.append((len(open_ends), event))
        open_ends.append(event["ts"] + event["dur"])
    return window, nested


def short_name(name: str) -> str:
    """`autograd::engine::evaluate_function: ConvolutionBackward0` -> `ConvolutionBackward0`, at most 20 characters."""
    name = name.split(": ")[-1].split("::")[-1].split("#")[-1]
    return name if len(name) <= 20 else name[:19] + "…"


def plot_step_timeline(trace_path: str | Path, *, step: int, hardware: str, depth: int = 3,
                       title: str = "") -> Figure:
    """One profiled step as a timeline: the regions on top, the operators they called below."""
    require_int("depth", depth, minimum=1)
    window, nested = step_events(complete_events(trace_path), step)
    fig = Figure(figsize=(9, 1.2 + 0.6 * depth), layout="constrained")
    ax = fig.subplots()
    spans: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for level, event in nested:
        if level < depth:
            spans.setdefault((level, event["name"]), []).append(((event["ts"] - window["ts"]) / 1e3,
                                                                 event["dur"] / 1e3))
    colors: dict[str, str] = {}
    for (level, name), bars in spans.items():  # one call per operator and level: thousands of bars stay cheap
        color = colors.setdefault(name, COLORS[len(colors) % len(COLORS)])
        ax.broken_barh(bars, (level - 0.4, 0.8), facecolors=color, edgecolor="white", linewidth=0.3)
        for start_ms, length_ms in bars:
            if length_ms > window["dur"] / 1e3 / 25:
                ax.text(start_ms + length_ms / 2, level, short_name(name), ha="center", va="center", fontsize=7,
                        clip_on=True)
    ax.set_yticks(range(depth), ["regions"] + [f"called at depth {level}" for level in range(1, depth)])
    ax.invert_yaxis()
    ax.set_xlim(0, window["dur"] / 1e3)
    ax.set_xlabel(f"time since the start of {window['name']} (ms)")
    title_with_hardware(fig, title, hardware)
    return fig


def device_busy_share(events: list[dict], step: int) -> float:
    """Share of a profiled step during which at least one GPU kernel ran (1 - the gaps between kernels)."""
    window, _ = step_events(events, step)
    start, end = window["ts"], window["ts"] + window["dur"]
    kernels = sorted((max(e["ts"], start), min(e["ts"] + e["dur"], end)) for e in events
                     if e.get("cat") == "kernel" and e["ts"] < end and e["ts"] + e["dur"] > start)
    busy, covered_until = 0.0, start
    for begin, finish in kernels:
        begin = max(begin, covered_until)
        if finish > begin:
            busy += finish - begin
            covered_until = finish
    return busy / window["dur"]
