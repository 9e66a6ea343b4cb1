"""One look for every chart in the course: bars with ratios, sweeps, rooflines; always labelled with the hardware."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
from IPython import get_ipython
from IPython.core.pylabtools import select_figure_formats
from matplotlib.figure import Figure

from helpers.core.roofs import ACCESS_PROBES, Roofs
from helpers.core.validate import require_instance, require_number

STYLE = {
    "figure.figsize": (7.5, 3.6),
    "figure.dpi": 96,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "font.size": 10,
}
BASELINE_COLOR, VARIANT_COLOR = "#9e9e9e", "#1f77b4"


def apply_style() -> None:
    """Set the course's matplotlib defaults; in a notebook, show returned figures as PNG images."""
    mpl.rcParams.update(STYLE)
    shell = get_ipython()
    if shell is not None:
        select_figure_formats(shell, {"png"})


def title_with_hardware(fig: Figure, title: str, hardware: str) -> None:
    """Every chart names the hardware it was measured on, under its title."""
    fig.suptitle(f"{title}\n(measured on {hardware})" if title else f"measured on {hardware}", fontsize=10)


def plot_comparison(
    values: Mapping[str, float], *, metric: str, unit: str, hardware: str, higher_is_better: bool, title: str = ""
) -> Figure:
    """Bar per variant; each bar annotated with its ratio to the first (the baseline), > 1 meaning better."""
    if not values:
        raise ValueError("values must name at least one variant")
    numbers = {name: require_number(f"values[{name!r}]", v, strictly_positive=True) for name, v in values.items()}
    base = next(iter(numbers.values()))
    fig = Figure(figsize=STYLE["figure.figsize"], layout="constrained")
    ax = fig.subplots()
    names = list(numbers)
    colors = [BASELINE_COLOR] + [VARIANT_COLOR] * (len(names) - 1)
    bars = ax.barh(names, list(numbers.values()), color=colors)
    for bar, v in zip(bars, numbers.values()):
        ratio = v / base if higher_is_better else base / v
        ax.annotate(f" {ratio:.2f}x", (bar.get_width(), bar.get_y() + bar.get_height() / 2), va="center")
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} ({unit}) — {'higher' if higher_is_better else 'lower'} is better")
    ax.margins(x=0.15)
    title_with_hardware(fig, title or metric, hardware)
    return fig


def plot_sweep(
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    *,
    xlabel: str,
    ylabels: Mapping[str, str],
    hardware: str,
    title: str = "",
    logx: bool = True,
) -> Figure:
    """One panel per series against a shared x axis (e.g. latency and throughput against batch size)."""
    if not series:
        raise ValueError("series must hold at least one curve")
    fig = Figure(figsize=(4.2 * len(series), 3.4), layout="constrained")
    axes = fig.subplots(1, len(series), squeeze=False)[0]
    for ax, (name, ys) in zip(axes, series.items()):
        if len(ys) != len(x):
            raise ValueError(f"series {name!r} has {len(ys)} points but x has {len(x)}")
        ax.plot(x, ys, marker="o", color=VARIANT_COLOR)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabels.get(name, name))
        if logx:
            ax.set_xscale("log", base=2)
    title_with_hardware(fig, title, hardware)
    return fig


def _interval_bars(
    values: Sequence[float], low: Sequence[float], high: Sequence[float], name: str
) -> list[list[float]]:
    """matplotlib's yerr (distances below and above each value), checking that each interval holds its value."""
    if not len(low) == len(high) == len(values):
        raise ValueError(f"interval of {name!r} needs one low and one high per point ({len(values)}), "
                         f"got {len(low)} and {len(high)}")
    for value, lo, hi in zip(values, low, high):
        slack = 1e-9 * max(1.0, abs(value))  # a mean of equal values can differ from them in the last bit
        if not lo - slack <= value <= hi + slack:
            raise ValueError(f"interval of {name!r}: {lo:g} to {hi:g} does not hold its value {value:g}")
    return [[max(0.0, v - lo) for v, lo in zip(values, low)], [max(0.0, hi - v) for v, hi in zip(values, high)]]


def plot_together(
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    *,
    xlabel: str,
    ylabel: str,
    hardware: str,
    title: str = "",
    logx: bool = True,
    intervals: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    reference: tuple[str, float] | None = None,
) -> Figure:
    """Several series on one axis (one y scale, so their gaps show); optional (low, high) bars and a reference line."""
    if not series:
        raise ValueError("series must hold at least one curve")
    intervals = dict(intervals or {})
    unknown = set(intervals) - set(series)
    if unknown:
        raise ValueError(f"intervals name series that do not exist: {sorted(unknown)}")
    fig = Figure(figsize=STYLE["figure.figsize"], layout="constrained")
    ax = fig.subplots()
    for name, ys in series.items():
        if len(ys) != len(x):
            raise ValueError(f"series {name!r} has {len(ys)} points but x has {len(x)}")
        yerr = _interval_bars(ys, *intervals[name], name) if name in intervals else None
        ax.errorbar(x, ys, yerr=yerr, marker="o", capsize=3, label=name)
    if reference is not None:
        label, level = reference
        ax.axhline(require_number("reference level", level), color="black", linestyle="--", linewidth=1, label=label)
    if logx:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    title_with_hardware(fig, title, hardware)
    return fig


def plot_roofline(
    roofs: Roofs, points: Mapping[str, tuple[float, float]], *, hardware: str,
    theoretical_gflops: float | None = None,
) -> Figure:
    """Roofline with the three bandwidth roofs (read, in place, new output) under the compute roof.

    points are (FLOP/byte, GFLOP/s).

    theoretical_gflops, when known, is drawn as a dashed line above (or below) the measured compute roof.
    """
    require_instance("roofs", roofs, Roofs)
    ridges = [roofs.ridge(access) for access in ACCESS_PROBES]
    intensities = [p[0] for p in points.values()] + ridges
    lo, hi = min(intensities) / 4, max(intensities) * 4
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.subplots()
    for access, style in zip(ACCESS_PROBES, ("-", ":", "-.")):
        ax.plot(grid, [roofs.attainable_gflops(g, access) for g in grid], style, color="black", label=f"roof, {access}")
    if theoretical_gflops is not None:
        require_number("theoretical_gflops", theoretical_gflops, strictly_positive=True)
        ax.axhline(theoretical_gflops, color="black", linestyle="--", linewidth=1, label="theoretical compute peak")
    for name, (intensity, gflops) in points.items():
        ax.scatter([intensity], [gflops], zorder=3, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte moved)")
    ax.set_ylabel("achieved GFLOP/s")
    ax.legend(loc="lower right", fontsize=8)
    title_with_hardware(fig, "Compute-bound or memory-bound?", hardware)
    return fig


def plot_breakdown(phases_ms: Mapping[str, Mapping[str, float]], *, hardware: str, title: str = "") -> Figure:
    """Stacked horizontal bars: for each pipeline, the time of each phase of one step."""
    if not phases_ms:
        raise ValueError("phases_ms must hold at least one pipeline")
    fig = Figure(figsize=(7.5, 1.2 + 0.7 * len(phases_ms)), layout="constrained")
    ax = fig.subplots()
    colors = mpl.colormaps["tab10"].colors
    for row, (pipeline, phases) in enumerate(phases_ms.items()):
        left = 0.0
        for i, (phase, ms) in enumerate(phases.items()):
            ax.barh(row, ms, left=left, color=colors[i % 10], label=phase if row == 0 else None)
            left += ms
    ax.set_yticks(range(len(phases_ms)), list(phases_ms))
    ax.invert_yaxis()
    ax.set_xlabel("median time per training step (ms)")
    ax.legend(ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.35), frameon=False)
    title_with_hardware(fig, title, hardware)
    return fig


def pareto_front(points: Mapping[str, tuple[float, float]]) -> list[str]:
    """Names of the points not beaten on both axes: lower x (cost) and higher y (quality)."""
    front = []
    for name, (x, y) in points.items():
        dominated = any(ox <= x and oy >= y and (ox, oy) != (x, y) for ox, oy in points.values())
        if not dominated:
            front.append(name)
    return sorted(front, key=lambda n: points[n][0])


def plot_tradeoff(
    points: Mapping[str, tuple[float, float]], *, xlabel: str, ylabel: str, hardware: str, title: str = "",
    logx: bool = True, pareto: bool = True,
) -> Figure:
    """Scatter of named points; with pareto=True, x a cost and y a quality, the front of the best trade-offs.

    Pass pareto=False when y is not a quality (two costs, such as FLOPs against latency): a front
    drawn there would join the worst points, not the best.
    """
    if not points:
        raise ValueError("points must hold at least one (x, y) pair")
    require_instance("pareto", pareto, bool)
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.subplots()
    for name, (x, y) in points.items():
        ax.scatter([x], [y], color=VARIANT_COLOR, zorder=3)
        ax.annotate(f" {name}", (x, y), fontsize=8)
    if pareto:
        front = pareto_front(points)
        ax.plot([points[n][0] for n in front], [points[n][1] for n in front], "--", color=BASELINE_COLOR,
                label="Pareto front (lower x, higher y)")
        ax.legend(loc="lower right")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    title_with_hardware(fig, title, hardware)
    return fig
