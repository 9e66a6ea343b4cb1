"""Chapter 8's charts: the capstone's waterfall, and every ledger result of the course on one axis."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from helpers.core.validate import require_number
from helpers.support.plots import BASELINE_COLOR, VARIANT_COLOR, title_with_hardware
from helpers.ch08_capstone.waterfall import PAYS, within_budget

OVER_BUDGET_COLOR, FLAT_COLOR, LOSS_COLOR = "#d62728", "#bdbdbd", "#ff7f0e"
WATERFALL_COLUMNS = ("step", "builds_on", "step_gain", "total_speedup", "size_reduction", "accuracy_%", "accuracy_change_points")


def _levels(table: pd.DataFrame, column: str, pays: pd.Series) -> list[tuple[float, float]]:
    """(start, end) of each waterfall bar: from the level of the stage it builds on to its own; a step that does not
    pay stays flat at its parent's level."""
    levels: dict[str, float] = {}
    spans = []
    for name, value in table[column].items():
        parent = table.loc[name, "builds_on"]
        start = levels[parent] if parent else 1.0
        levels[name] = value if pays[name] else start
        spans.append((start, levels[name]))
    return spans


def _bar_color(name: str, pays: pd.Series, allowed: pd.Series) -> str:
    """Red hatched when over the accuracy budget, grey when the step does not pay, blue otherwise."""
    if not allowed[name]:
        return OVER_BUDGET_COLOR
    return VARIANT_COLOR if pays[name] else FLAT_COLOR


def _waterfall_panel(ax, table: pd.DataFrame, column: str, pays: pd.Series, allowed: pd.Series, label: str) -> None:
    """Floating bars from each stage's level to the next, on a log axis, with accuracy written beside each; a step
    that does not pay is a short grey tick at the level it keeps."""
    spans = _levels(table, column, pays)
    for row, (name, (start, end)) in enumerate(zip(table.index, spans)):
        color = _bar_color(name, pays, allowed)
        if pays[name] and end != start:
            low, high = sorted((start, end))
            ax.barh(row, high - low, left=low, color=color, hatch=None if allowed[name] else "//", edgecolor="white")
        else:
            ax.plot([end, end], [row - 0.35, row + 0.35], color=color, lw=4, solid_capstyle="butt")
        accuracy = table.loc[name, "accuracy_%"]
        level = f"{end:.2f}x" if pays[name] else "flat"
        ax.annotate(f" {level} | {accuracy:.1f}%", (max(start, end), row), va="center", fontsize=8)
    ax.set_xscale("log")
    ax.axvline(1.0, color=BASELINE_COLOR, lw=1)
    ax.set_xlabel(label)
    ax.margins(x=0.45)


def plot_waterfall(table: pd.DataFrame, budget_points: float, *, hardware: str,
                   training: Mapping[str, tuple[float, str, float]] | None = None, title: str = "") -> Figure:
    """Cumulative latency speed-up and size reduction, stage by stage, with accuracy beside each bar; stages out of
    the accuracy budget in red; optionally a panel of training images/s per pipeline: name -> (median rate, gain,
    paired ratio against the first)."""
    missing = [column for column in WATERFALL_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"table must come from waterfall_table (missing columns: {missing})")
    require_number("budget_points", budget_points, minimum=0.0)
    allowed = within_budget(table, budget_points)
    latency_pays = table["step_gain"].isin(PAYS)
    parent_size = [table.loc[parent, "size_reduction"] if parent else 1.0 for parent in table["builds_on"]]
    size_pays = (table["size_reduction"] > parent_size) | (table.index == table.index[0])
    panels = 3 if training else 2
    fig = Figure(figsize=(11, 1.2 + 0.45 * len(table)), layout="constrained")
    axes = fig.subplots(1, panels, sharey=False, width_ratios=[1.2, 1.0, 0.9][:panels])
    labels = [f"{index}. {name}" for index, name in enumerate(table.index)]
    _waterfall_panel(axes[0], table, "total_speedup", latency_pays, allowed, "latency speed-up vs stage 0 (x, log)")
    _waterfall_panel(axes[1], table, "size_reduction", size_pays, allowed, "size reduction vs stage 0 (x, log)")
    for ax in axes[:2]:
        ax.set_yticks(range(len(table)), labels if ax is axes[0] else [""] * len(table))
        ax.invert_yaxis()
    if training:
        _training_panel(axes[2], training)
    handles = [Patch(color=VARIANT_COLOR, label="step pays here"), Patch(color=FLAT_COLOR, label="no gain here: flat"),
               Patch(facecolor=OVER_BUDGET_COLOR, hatch="//", label=f"over the {budget_points:g}-point budget: left out")]
    if training:
        handles.append(Patch(color=LOSS_COLOR, label="pipeline slower than the first"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False)
    title_with_hardware(fig, title or "One model through the course (bar labels: cumulative x | test accuracy); "
                        f"budget: at most {budget_points:g} points of accuracy lost", hardware)
    return fig


def _training_panel(ax, training: Mapping[str, tuple[float, str, float]]) -> None:
    """Training images/s of each data pipeline, coloured by its gain against the first (grey: the baseline) and
    labelled with its paired ratio."""
    names = list(training)
    if any(not isinstance(value, tuple) or len(value) != 3 for value in training.values()):
        raise ValueError("training must map each pipeline to (rate, gain, ratio against the first)")
    rates = [require_number(f"training[{name!r}]", training[name][0], strictly_positive=True) for name in names]
    colors = [BASELINE_COLOR] + [_gain_color(training[name][1]) for name in names[1:]]
    bars = ax.barh(names, rates, color=colors)
    for bar, name in zip(bars, names):
        ax.annotate(f" {training[name][2]:.2f}x", (bar.get_width(), bar.get_y() + bar.get_height() / 2), va="center",
                    fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("training images/s (data pipeline)")
    ax.margins(x=0.3)


def _gain_color(gain: str) -> str:
    """Blue for a gain, orange for a loss, grey when the interval includes 1."""
    return {"gain": VARIANT_COLOR, "loss": LOSS_COLOR}.get(gain, FLAT_COLOR)


def plot_ledger(table: pd.DataFrame, *, hardware: str, title: str = "") -> Figure:
    """Every ledger entry's speed-up on a log axis, its 95% interval as a whisker where it was measured in rounds."""
    needed = ["speedup", "speedup_low", "speedup_high", "gain"]
    if table.empty or any(column not in table.columns for column in needed):
        raise ValueError(f"table must be a non-empty ledger_table (columns {needed})")
    table = table.sort_index(level="chapter", sort_remaining=False)
    labels = [f"ch{chapter} {technique}" for chapter, technique in table.index]
    fig = Figure(figsize=(7.5, 1.0 + 0.22 * len(table)), layout="constrained")
    ax = fig.subplots()
    rows = np.arange(len(table))
    ax.barh(rows, table["speedup"] - 1.0, left=1.0, color=[_gain_color(g) for g in table["gain"]])
    low, high = table["speedup_low"].astype(float), table["speedup_high"].astype(float)
    has_interval = low.notna().to_numpy()
    ax.errorbar(table["speedup"][has_interval], rows[has_interval],
                xerr=[(table["speedup"] - low)[has_interval], (high - table["speedup"])[has_interval]],
                fmt="none", ecolor="black", lw=0.8, capsize=2)
    ax.set_yticks(rows, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xlabel("speed-up (or gain) against each result's own baseline, x, log; whisker: 95% interval")
    handles = [Patch(color=_gain_color(g), label=g) for g in ("gain", "inconclusive", "loss")]
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    title_with_hardware(fig, title or "Every result the course recorded on this machine", hardware)
    return fig
