"""A picture of one profiled step, drawn from the Chrome trace the profiler exports (no browser, no internet).

The trace is JSON: complete events (`"ph": "X"`) with a start `ts` and a duration `dur` in microseconds,
one per operator or record_function region, per thread. Nesting is by time: an event that lies inside
another on the same thread is its child. The chart shows the first levels of that nesting and, in a
trace recorded with ProfilerActivity.CUDA, one lane per GPU stream with its kernels (`"cat": "kernel"`),
whose gaps are the time the GPU waited for work.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from helpers.core.validate import require_int
from helpers.support.plots import title_with_hardware

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
          "#7f7f7f")
OTHER_COLOR, KERNEL_COLOR = "#d9d9d9", "#222222"
Spans = dict[tuple[int, str], list[tuple[float, float]]]  # (level, name) -> [(start ms, length ms)]


def complete_events(trace_path: str | Path) -> list[dict]:
    """The trace's complete events (operators, regions, kernels), sorted by start time."""
    path = Path(trace_path)
    if not path.is_file():
        raise ValueError(f"no trace at {path}: write one with prof.export_chrome_trace(path)")
    events = json.loads(path.read_text())["traceEvents"]
    return sorted((event for event in events if event.get("ph") == "X" and "dur" in event),
                  key=lambda event: (event["ts"], -event["dur"]))


def _step_windows(events: list[dict]) -> dict[int, dict]:
    """The CPU-side ProfilerStep#N event of each recorded step, by N (the GPU's copy of the annotation left out)."""
    windows: dict[int, dict] = {}
    for event in events:
        if event["name"].startswith("ProfilerStep#") and event.get("cat") != "gpu_user_annotation":
            windows.setdefault(int(event["name"].split("#")[1]), event)
    return windows


def step_events(events: list[dict], step: int) -> tuple[dict, list[tuple[int, dict]]]:
    """The ProfilerStep#step event and every event inside it on its thread, each with its nesting depth."""
    windows = _step_windows(events)
    if step not in windows:
        found = [f"ProfilerStep#{number}" for number in sorted(windows)]
        raise ValueError(f"no ProfilerStep#{step} in the trace; it holds {found}")
    window = windows[step]
    end = window["ts"] + window["dur"]
    inside = [event for event in events if event["tid"] == window["tid"] and event.get("pid") == window.get("pid")
              and event is not window and window["ts"] <= event["ts"] and event["ts"] + event["dur"] <= end]
    nested, open_ends = [], []
    for event in inside:
        while open_ends and event["ts"] >= open_ends[-1]:
            open_ends.pop()
        nested.append((len(open_ends), event))
        open_ends.append(event["ts"] + event["dur"])
    return window, nested


def kernel_lanes(events: list[dict], window: dict) -> dict[tuple, list[tuple[float, float]]]:
    """The GPU kernels that ran during a step, clipped to it, as (start, end) in µs, one list per (GPU, stream)."""
    start, end = window["ts"], window["ts"] + window["dur"]
    lanes: dict[tuple, list[tuple[float, float]]] = {}
    for event in events:
        if event.get("cat") == "kernel" and event["ts"] < end and event["ts"] + event["dur"] > start:
            lanes.setdefault((event.get("pid"), event["tid"]), []).append(
                (max(event["ts"], start), min(event["ts"] + event["dur"], end)))
    return lanes


def busy_us(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of (start, end) intervals: time during which at least one of them ran."""
    busy, covered_until = 0.0, float("-inf")
    for begin, finish in sorted(intervals):
        begin = max(begin, covered_until)
        if finish > begin:
            busy += finish - begin
            covered_until = finish
    return busy


def _kernel_us(events: list[dict], window: dict) -> float:
    """Time during a step when at least one kernel ran, on any GPU stream (µs)."""
    return busy_us([span for spans in kernel_lanes(events, window).values() for span in spans])


def device_time_table(events: list[dict]) -> pd.DataFrame:
    """Per recorded step: its wall time, the time at least one GPU kernel ran, and the share the GPU idled.

    Read it from a light profile (CPU and CUDA activities only): the step's wall time is the CPU's, so
    it grows with everything the profiler records, while kernel times are taken on the GPU.
    """
    if not any(event.get("cat") == "kernel" for event in events):
        raise ValueError("no GPU kernel in the trace: profile on a GPU with ProfilerActivity.CUDA among the activities")
    rows = {}
    for step, window in sorted(_step_windows(events).items()):
        kernel_us = _kernel_us(events, window)
        rows[step] = {"step ms": window["dur"] / 1e3, "GPU kernel ms": kernel_us / 1e3,
                      "GPU idle (%)": 100 * (1 - kernel_us / window["dur"])}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("step")


def short_name(name: str) -> str:
    """`autograd::engine::evaluate_function: ConvolutionBackward0` -> `ConvolutionBackward0`, at most 20 characters."""
    name = name.split(": ")[-1].split("::")[-1].split("#")[-1]
    return name if len(name) <= 20 else name[:19] + "…"


def cpu_spans(window: dict, nested: list[tuple[int, dict]], depth: int) -> Spans:
    """The bars of the first `depth` levels, in ms since the step started, grouped by level and operator."""
    spans: Spans = {}
    for level, event in nested:
        if level < depth:
            spans.setdefault((level, event["name"]), []).append(((event["ts"] - window["ts"]) / 1e3,
                                                                 event["dur"] / 1e3))
    return spans


def top_names(spans: Spans, top: int) -> list[str]:
    """The `top` short names (operators and regions) with the most time in the drawn levels, largest first."""
    totals: dict[str, float] = {}
    for (_, name), bars in spans.items():
        totals[short_name(name)] = totals.get(short_name(name), 0.0) + sum(length for _, length in bars)
    return sorted(totals, key=totals.get, reverse=True)[:top]


def _draw_cpu(ax: Axes, spans: Spans, colors: dict[str, str], step_ms: float) -> None:
    """One row per nesting level, coloured by short name; bars wider than 1/25 of the step carry their name."""
    for (level, name), bars in spans.items():  # one call per operator and level: thousands of bars stay cheap
        color = colors.get(short_name(name), OTHER_COLOR)
        ax.broken_barh(bars, (level - 0.4, 0.8), facecolors=color, edgecolor="white", linewidth=0.3)
        for start_ms, length_ms in bars:
            if length_ms > step_ms / 25:
                ax.text(start_ms + length_ms / 2, level, short_name(name), ha="center", va="center", fontsize=7,
                        clip_on=True)


def _draw_gpu(ax: Axes, lanes: dict[tuple, list[tuple[float, float]]], window: dict, first_row: int) -> list[str]:
    """One row per GPU stream, each kernel a dark bar (an outline keeps microsecond kernels visible); the row labels."""
    labels = []
    ordered = sorted(lanes.items(), key=lambda lane: str(lane[0]))
    for row, ((device, stream), spans) in enumerate(ordered, start=first_row):
        ax.broken_barh([((begin - window["ts"]) / 1e3, (end - begin) / 1e3) for begin, end in spans],
                       (row - 0.4, 0.8), facecolors=KERNEL_COLOR, edgecolor=KERNEL_COLOR, linewidth=0.4)
        labels.append(f"GPU {device} stream {stream}: busy {busy_us(spans) / window['dur']:.0%}")
    return labels


def plot_step_timeline(trace_path: str | Path, *, step: int, hardware: str, depth: int = 3, top: int = 8,
                       title: str = "") -> Figure:
    """One profiled step as a timeline: the regions on top, the operators they called below, then the GPU's kernels.

    The `top` operators with the most time in the drawn levels get a colour and a legend entry; the
    others are grey. The GPU lanes appear only if the trace holds kernels (ProfilerActivity.CUDA).
    """
    require_int("depth", depth, minimum=1)
    require_int("top", top, minimum=1)
    if top > len(COLORS):
        raise ValueError(f"top must be at most {len(COLORS)} (one distinct colour each), got {top}")
    events = complete_events(trace_path)
    window, nested = step_events(events, step)
    spans, lanes = cpu_spans(window, nested, depth), kernel_lanes(events, window)
    colors = dict(zip(top_names(spans, top), COLORS))
    fig = Figure(figsize=(10, 1.4 + 0.6 * (depth + len(lanes))), layout="constrained")
    ax = fig.subplots()
    step_ms = window["dur"] / 1e3
    _draw_cpu(ax, spans, colors, step_ms)
    gpu_labels = _draw_gpu(ax, lanes, window, first_row=depth)
    ax.set_yticks(range(depth + len(lanes)),
                  ["regions"] + [f"called at depth {level}" for level in range(1, depth)] + gpu_labels)
    ax.invert_yaxis()
    ax.set_xlim(0, step_ms)
    ax.set_xlabel(f"time since the start of {window['name']} (ms)")
    handles = [Patch(facecolor=color, label=name) for name, color in colors.items()]
    handles.append(Patch(facecolor=OTHER_COLOR, label="other operators"))
    handles += [Patch(facecolor=KERNEL_COLOR, label="GPU kernel")] if lanes else []
    ax.legend(handles=handles, title="most time in the step", loc="upper left", bbox_to_anchor=(1.01, 1),
              fontsize=7, title_fontsize=7, frameon=False)
    title_with_hardware(fig, title, hardware)
    return fig
