"""DDP's bucket timeline: when each bucket's all-reduce ran, against forward, backward and the optimizer step.

A timeline is what the DDP job records (result["bucket_timeline"][setting]): "ranks" holds, per rank, a list
of steps; each step gives its phases as [start, end] seconds since the step began ("forward", "backward",
"optimizer_step"), "last_gradient" (when autograd accumulated the last gradient) and "allreduces" (one per
bucket: "bucket", "bytes", "start", "end"). loss.backward() returns only after DDP has waited for every
bucket, so backward computes gradients until "last_gradient" and waits for the all-reduces after it.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from helpers.support.plots import BASELINE_COLOR, VARIANT_COLOR, title_with_hardware
from helpers.ch05_distributed.jobs.traces import Interval, covered, union

COMPUTING, WAITING = "backward: computing gradients", "backward: waiting for all-reduces"
ALLREDUCE = "bucket all-reduce"
PHASE_COLORS = {"forward": BASELINE_COLOR, COMPUTING: VARIANT_COLOR, WAITING: "#aec7e8", ALLREDUCE: "#ff7f0e",
                "optimizer step": "#2ca02c"}

Lane = tuple[str, list[tuple[float, float, str]]]  # its label, and its bars: (start_s, end_s, phase)


def seconds_inside(intervals: Sequence[Interval], window: Interval) -> float:
    """How long the union of the intervals lies inside the window."""
    return sum(max(0.0, min(end, window[1]) - max(start, window[0])) for start, end in union(intervals))


def step_overlap_s(step: dict) -> tuple[float, float]:
    """One step's all-reduce time (at least one bucket in flight) and the part of it while backward still computed."""
    intervals = [(a["start"], a["end"]) for a in step["allreduces"]]
    total = covered(intervals)
    return seconds_inside(intervals, (step["backward"][0], step["last_gradient"])), total


def overlapped_share(timeline: dict) -> float:
    """The share of all-reduce time, over every rank and step, that ran while backward was computing gradients."""
    pairs = [step_overlap_s(step) for steps in timeline["ranks"] for step in steps]
    total = sum(t for _, t in pairs)
    if total <= 0:
        raise ValueError("the timeline records no all-reduce time: there is no share to compute")
    return sum(o for o, _ in pairs) / total


def step_lanes(step: dict) -> list[Lane]:
    """One step's lanes, top to bottom: forward, backward, one per bucket's all-reduce, the optimizer step."""
    (backward_start, backward_end), last = step["backward"], step["last_gradient"]
    lanes = [("forward", [(*step["forward"], "forward")]),
             ("backward", [(backward_start, last, COMPUTING), (last, backward_end, WAITING)])]
    lanes += [(f"bucket {a['bucket']} all-reduce ({a['bytes'] / 1e6:.2f} MB)", [(a["start"], a["end"], ALLREDUCE)])
              for a in sorted(step["allreduces"], key=lambda a: a["bucket"])]
    return lanes + [("optimizer step", [(*step["optimizer_step"], "optimizer step")])]


def draw_lanes(ax: Axes, lanes: list[Lane], top: int) -> None:
    """Draw the lanes' segments as bars in ms, from row `top` down."""
    for row, (_, segments) in enumerate(lanes, start=top):
        for start, end, phase in segments:
            ax.broken_barh([(start * 1e3, (end - start) * 1e3)], (row - 0.4, 0.8), color=PHASE_COLORS[phase])


def plot_bucket_timeline(timeline: dict, *, hardware: str, step: int = 0, title: str = "") -> Figure:
    """Lanes per rank for one recorded step: forward, backward, each bucket's all-reduce, the optimizer step;
    a dotted line at each rank's last gradient."""
    recorded = min(len(steps) for steps in timeline["ranks"])
    if not 0 <= step < recorded:
        raise ValueError(f"step must be between 0 and {recorded - 1} (the steps recorded), got {step}")
    steps = [rank_steps[step] for rank_steps in timeline["ranks"]]
    rank_lanes = [step_lanes(s) for s in steps]
    fig = Figure(figsize=(8, 1.6 + 0.28 * sum(map(len, rank_lanes))), layout="constrained")
    ax = fig.subplots()
    labels: list[str] = []
    for rank, (lanes, rank_step) in enumerate(zip(rank_lanes, steps)):
        draw_lanes(ax, lanes, top=len(labels))
        ax.vlines(rank_step["last_gradient"] * 1e3, len(labels) - 0.5, len(labels) + len(lanes) - 0.5,
                  colors="black", linestyles=":")
        labels += [f"rank {rank}: {label}" for label, _ in lanes]
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("ms since the step began")
    handles = [Patch(color=color, label=phase) for phase, color in PHASE_COLORS.items()]
    handles.append(ax.plot([], [], ":", color="black", label="last gradient computed")[0])
    fig.legend(handles=handles, ncol=3, loc="outside lower center", frameon=False, fontsize=8)
    buckets = len(steps[0]["allreduces"])
    title_with_hardware(fig, title or f"One DDP training step with {buckets} buckets, on every rank", hardware)
    return fig
