"""Chapter 8's charts: the capstone's waterfall, and the time ratios of the course's ledger on one axis."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullFormatter

from helpers.core.validate import require_instance, require_number
from helpers.support.plots import BASELINE_COLOR, VARIANT_COLOR, title_with_hardware
from helpers.ch08_capstone.decision_guide import is_combination, kind_of, reading
from helpers.ch08_capstone.waterfall import within_budget

OVER_BUDGET_COLOR, FLAT_COLOR, LOSS_COLOR = "#d62728", "#bdbdbd", "#ff7f0e"
WATERFALL_COLUMNS = ("step", "builds_on", "step_gain", "total_speedup", "size_reduction", "size_step", "accuracy_%",
                     "accuracy_change_points")


def _levels(table: pd.DataFrame, column: str, moves: pd.Series) -> list[tuple[float, float]]:
    """(start, end) of each waterfall bar: from the level of the stage it builds on to its own; a step that neither
    gained nor lost measurably (moves 'flat') stays at its parent's level."""
    levels: dict[str, float] = {}
    spans = []
    for name, value in table[column].items():
        parent = table.loc[name, "builds_on"]
        start = levels[parent] if parent else 1.0
        levels[name] = start if moves[name] == "flat" else value
        spans.append((start, levels[name]))
    return spans


MOVE_COLORS = {"up": VARIANT_COLOR, "flat": FLAT_COLOR, "down": LOSS_COLOR}


def _waterfall_panel(ax, table: pd.DataFrame, column: str, moves: pd.Series, allowed: pd.Series, label: str) -> None:
    """Floating bars from each stage's level to its own on a log axis, with accuracy written beside each: blue up,
    orange down, a grey tick at the parent's level when flat; red (hatched) when out of the accuracy budget."""
    for row, (name, (start, end)) in enumerate(zip(table.index, _levels(table, column, moves))):
        color = MOVE_COLORS[moves[name]] if allowed[name] else OVER_BUDGET_COLOR
        if end != start:
            low, high = sorted((start, end))
            ax.barh(row, high - low, left=low, color=color, hatch=None if allowed[name] else "//", edgecolor="white")
        else:
            ax.plot([end, end], [row - 0.35, row + 0.35], color=color, lw=4, solid_capstyle="butt")
        level = "flat" if moves[name] == "flat" else f"{end:.2f}x"
        ax.annotate(f" {level} | {table.loc[name, 'accuracy_%']:.1f}%", (max(start, end), row), va="center",
                    fontsize=8)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}x"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.axvline(1.0, color=BASELINE_COLOR, lw=1)
    ax.set_xlabel(label)
    ax.margins(x=0.45)


def _moves(table: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """('up', 'flat' or 'down') per stage for latency (its step's interval against 1) and for size (against the
    stage it builds on); the baseline is 'up', drawn as a tick at 1."""
    latency = table["step_gain"].map({"gain": "up", "baseline": "up", "loss": "down"}).fillna("flat")
    size = pd.Series(["up" if step > 1 else "down" if step < 1 else "flat" for step in table["size_step"]],
                     index=table.index)
    size.iloc[0] = "up"
    return latency, size


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
    latency_moves, size_moves = _moves(table)
    panels = 3 if training else 2
    fig = Figure(figsize=(11, 1.2 + 0.45 * len(table)), layout="constrained")
    axes = fig.subplots(1, panels, sharey=False, width_ratios=[1.2, 1.0, 0.9][:panels])
    labels = [f"{index}. {name}" for index, name in enumerate(table.index)]
    _waterfall_panel(axes[0], table, "total_speedup", latency_moves, allowed, "latency speed-up vs stage 0 (x, log)")
    _waterfall_panel(axes[1], table, "size_reduction", size_moves, allowed, "size reduction vs stage 0 (x, log)")
    for ax in axes[:2]:
        ax.set_yticks(range(len(table)), labels if ax is axes[0] else [""] * len(table))
        ax.invert_yaxis()
    if training:
        _training_panel(axes[2], training)
    handles = [Patch(color=VARIANT_COLOR, label="step gains"), Patch(color=FLAT_COLOR, label="no measurable change: flat"),
               Patch(color=LOSS_COLOR, label="step loses"),
               Patch(facecolor=OVER_BUDGET_COLOR, hatch="//", label=f"not shown within the {budget_points:g}-point "
                     "budget: left out")]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False)
    points = "point" if budget_points == 1 else "points"
    title_with_hardware(fig, title or "One model through the course (bar labels: cumulative x | validation accuracy); "
                        f"budget: at most {budget_points:g} {points} of accuracy lost", hardware)
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


READING_COLORS = {"paid": VARIANT_COLOR, "gained, no claim": "#6baed6", "gained, claim open": "#9ecae1",
                  "gained, short of its claim": "#c6dbef", "no measurable effect": "#969696", "inconclusive": FLAT_COLOR,
                  "did not pay": LOSS_COLOR}
LEDGER_TABLE_COLUMNS = ("speedup", "speedup_low", "speedup_high", "gain", "kind")


def _ledger_rows(table: pd.DataFrame) -> list[dict]:
    """A ledger_table's rows as entries again (chapter, technique and the interval as speedup_interval)."""
    rows = []
    for (chapter, technique), row in table.iterrows():
        low, high = row["speedup_low"], row["speedup_high"]
        interval = None if pd.isna(low) or pd.isna(high) else (float(low), float(high))
        rows.append({**row.to_dict(), "chapter": chapter, "technique": technique, "speedup_interval": interval})
    return rows


def _left_out_note(rows: list[dict]) -> str:
    """How many results are not time ratios measured in rounds (or were stored without their interval), and so
    not on the chart."""
    counts = {kind: sum(kind_of(row) == kind for row in rows) for kind in ("exact ratio", "accuracy difference")}
    counts["time ratio without an interval (an earlier format)"] = sum(
        kind_of(row) == "time ratio" and row.get("speedup_interval") is None for row in rows)
    parts = [f"{n} {kind.replace('ratio', 'ratios', 1) if n != 1 else kind}" if "without" in kind
             else f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in counts.items() if n]
    return f"left out of the chart: {', '.join(parts)}" if parts else "every result here is a time ratio"


def plot_ledger(table: pd.DataFrame, *, hardware: str, title: str = "") -> Figure:
    """The ledger's time ratios measured in rounds on a log axis, each with its interval as a whisker and coloured
    by its reading; exact ratios and accuracy differences are left out and counted above the axis."""
    require_instance("table", table, pd.DataFrame)
    if table.empty or any(column not in table.columns for column in LEDGER_TABLE_COLUMNS) \
            or list(table.index.names) != ["chapter", "technique"]:
        raise ValueError(f"table must be a non-empty ledger_table (columns {list(LEDGER_TABLE_COLUMNS)})")
    rows = _ledger_rows(table.sort_index(level="chapter", sort_remaining=False))
    timed = [row for row in rows if kind_of(row) == "time ratio" and row["speedup_interval"]]
    fig = Figure(figsize=(7.5, 1.8 + 0.22 * max(len(timed), 1)), layout="constrained")
    ax = fig.subplots()
    ax.set_title(_left_out_note(rows), fontsize=8, loc="left")
    title_with_hardware(fig, title or "Every time ratio the course measured on this machine", hardware)
    if not timed:
        ax.text(0.5, 0.5, "no time ratios measured in rounds yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    _ledger_bars(ax, timed)
    return fig


def _leading_digit(value: float) -> int:
    """The first significant digit of a positive number (2 for 0.25 and for 200)."""
    return int(round(value / 10 ** np.floor(np.log10(value)), 6))


def _ledger_bars(ax, timed: list[dict]) -> None:
    """One bar per time ratio from 1, its interval as a whisker, coloured by its reading; a legend of readings."""
    rows = np.arange(len(timed))
    speedups = np.array([row["speedup"] for row in timed], dtype=float)
    lows, highs = (np.array([row["speedup_interval"][i] for row in timed]) for i in (0, 1))
    readings = [reading(row) for row in timed]
    ax.barh(rows, speedups - 1.0, left=1.0, color=[READING_COLORS[r] for r in readings])
    ax.errorbar(speedups, rows, xerr=[speedups - lows, highs - speedups], fmt="none", ecolor="black", lw=0.8,
                capsize=2)
    labels = [f"ch{row['chapter']} {row['technique']}{' (combination)' if is_combination(row) else ''}"
              for row in timed]
    ax.set_yticks(rows, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}x"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:g}x" if _leading_digit(value) in (2, 5)
                                               else ""))
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xlabel("speed-up against each result's own baseline (log axis)\nwhisker: its interval (below 8 rounds, "
                  "the range of the rounds)", fontsize=8)
    shown = [r for r in READING_COLORS if r in readings]
    ax.figure.legend(handles=[Patch(color=READING_COLORS[r], label=r) for r in shown], loc="outside lower center",
                     ncols=len(shown), fontsize=8, frameon=False)
