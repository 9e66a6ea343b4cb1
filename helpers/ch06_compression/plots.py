"""Chapter 6's charts: accuracy over seeds, softened distributions, and a model through compression stages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from helpers.support.plots import BASELINE_COLOR, STYLE, VARIANT_COLOR, title_with_hardware


def plot_spread(accuracies: Mapping[str, Sequence[float]], *, hardware: str, title: str = "",
                reference: tuple[str, float] | None = None) -> Figure:
    """One row per method: every seed's accuracy (%) as a dot and the mean as a bar; an optional reference line."""
    if not accuracies or any(len(values) == 0 for values in accuracies.values()):
        raise ValueError("accuracies must map at least one method to a non-empty list of accuracies")
    fig = Figure(figsize=(7.5, 1.4 + 0.55 * len(accuracies)), layout="constrained")
    ax = fig.subplots()
    for row, (name, values) in enumerate(accuracies.items()):
        percent = 100 * np.asarray(values, dtype=float)
        ax.barh(row, percent.mean(), color=VARIANT_COLOR, alpha=0.35)
        ax.scatter(percent, [row] * len(percent), color=VARIANT_COLOR, zorder=3, s=14)
        ax.annotate(f" {percent.mean():.1f} ± {percent.std(ddof=1) if len(percent) > 1 else 0:.1f}",
                    (percent.max(), row), va="center", fontsize=8)
    if reference is not None:
        ax.axvline(100 * reference[1], color=BASELINE_COLOR, linestyle="--", label=reference[0])
        ax.legend(loc="lower left")
    ax.set_yticks(range(len(accuracies)), list(accuracies))
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy (%): dots are seeds, bars their mean")
    ax.margins(x=0.12)
    title_with_hardware(fig, title, hardware)
    return fig


def plot_distributions(probabilities: Mapping[str, Sequence[float]], *, title: str = "") -> Figure:
    """Side-by-side bars of class probabilities, one series per label (e.g. per temperature)."""
    lengths = {len(values) for values in probabilities.values()}
    if not probabilities or 0 in lengths or len(lengths) > 1:
        raise ValueError("probabilities must hold at least one distribution, all non-empty and of equal length")
    fig = Figure(figsize=STYLE["figure.figsize"], layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(probabilities)
    for index, (label, values) in enumerate(probabilities.items()):
        positions = np.arange(len(values)) + (index - (len(probabilities) - 1) / 2) * width
        ax.bar(positions, values, width=width, label=label)
    ax.set_xticks(range(len(next(iter(probabilities.values())))))
    ax.set_xlabel("class")
    ax.set_ylabel("probability")
    ax.set_yscale("log")
    ax.set_ylim(1e-4, 1.5)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def plot_stages(table: pd.DataFrame, columns: Sequence[str], *, hardware: str, title: str = "",
                baseline: str | None = None) -> Figure:
    """One panel per column of table (rows are stages, in order): how each metric moves from stage to stage.
    The baseline row (the first unless named) is drawn in the baseline colour."""
    missing = [column for column in columns if column not in table.columns]
    if missing or not len(columns) or table.empty:
        raise ValueError(f"table must have rows and columns must name its columns (missing: {missing})")
    baseline = table.index[0] if baseline is None else baseline
    if baseline not in table.index:
        raise ValueError(f"baseline must name a row of table {list(table.index)}, got {baseline!r}")
    fig = Figure(figsize=(7.5, 0.9 + 0.45 * len(table) * len(columns) / 2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(columns), sharey=True))
    for ax, column in zip(axes, columns):
        colors = [BASELINE_COLOR if row == baseline else VARIANT_COLOR for row in table.index]
        bars = ax.barh(list(table.index), table[column], color=colors)
        for bar, value in zip(bars, table[column]):
            ax.annotate(f" {value:.3g}", (bar.get_width(), bar.get_y() + bar.get_height() / 2), va="center",
                        fontsize=8)
        ax.set_xlabel(column)
        ax.margins(x=0.3)
    axes[0].invert_yaxis()
    title_with_hardware(fig, title, hardware)
    return fig
