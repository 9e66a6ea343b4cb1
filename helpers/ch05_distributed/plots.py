"""Chapter 5's charts: measured all-reduce times against the alpha-beta fit, and predicted scaling."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from helpers.ch05_distributed.comm_model import AlphaBeta
from helpers.support.plots import VARIANT_COLOR, title_with_hardware

OVERLAP_STYLES = ("-", "--")  # the first table of a set: solid; the second: dashed


def _plain_log_axis(axis: Axis, subs: Sequence[float] = (1.0,)) -> None:
    """Log-scale ticks at `subs` of each decade, labelled as plain numbers (40, not 4 x 10^1)."""
    axis.set_major_locator(ticker.LogLocator(subs=subs))
    axis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


def plot_allreduce_fit(sizes_bytes: Sequence[int], seconds: Sequence[Sequence[float]], fit: AlphaBeta, *, world: int,
                       hardware: str) -> Figure:
    """All-reduce time and bus bandwidth against message size: each round's measurement, and the fitted model."""
    sizes = np.asarray(sizes_bytes, dtype=float)
    times = np.asarray(seconds, dtype=float)
    smooth = np.geomspace(sizes[0], sizes[-1], 200)
    model = np.array([fit.allreduce_s(s, world) for s in smooth])
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    for column in times.T:
        left.scatter(sizes, column * 1e6, s=12, color=VARIANT_COLOR, alpha=0.6)
        right.scatter(sizes, 2 * (world - 1) / world * sizes / column / 1e9, s=12, color=VARIANT_COLOR, alpha=0.6)
    left.plot(smooth, model * 1e6, color="black", label=f"fit: alpha {fit.latency_s * 1e6:.0f} us, "
              f"beta {fit.bandwidth_bytes_per_s / 1e9:.2f} GB/s")
    right.plot(smooth, 2 * (world - 1) / world * smooth / model / 1e9, color="black")
    right.axhline(fit.bandwidth_bytes_per_s / 1e9, linestyle=":", color="gray", label="beta (fitted asymptote)")
    # each legend in the corner its curves leave empty: small messages cost little, large ones reach beta
    for ax, label, corner in ((left, "time per all-reduce (us)", "upper left"),
                              (right, "bus bandwidth (GB/s)", "lower right")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        _plain_log_axis(ax.yaxis)
        ax.set_xlabel("message size (bytes)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8, loc=corner)
    title_with_hardware(fig, f"All-reduce of fp32 tensors between {world} processes", hardware)
    return fig


def _draw_links(time_ax: Axes, efficiency_ax: Axes, tables: Mapping[str, pd.DataFrame],
                colors: Mapping[str, str]) -> None:
    """One line per link in both panels: the first table solid, the second dashed."""
    for style, table in zip(OVERLAP_STYLES, tables.values()):
        for link, rows in table.groupby("link", sort=False):
            time_ax.plot(rows["workers"], rows["step (ms)"], style, color=colors[link])
            efficiency_ax.plot(rows["workers"], rows["efficiency"], style, color=colors[link])


def _label_axes(time_ax: Axes, efficiency_ax: Axes) -> None:
    """Workers on a log-2 axis, step time in plain ms on a log axis, efficiency in percent."""
    for ax, label in ((time_ax, "step time per worker (ms)"), (efficiency_ax, "scaling efficiency")):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        ax.set_xlabel("workers (each with the same per-worker batch)")
        ax.set_ylabel(label)
    time_ax.set_yscale("log")
    _plain_log_axis(time_ax.yaxis, subs=(1.0, 2.0, 5.0))
    efficiency_ax.set_ylim(0, 1.05)
    efficiency_ax.yaxis.set_major_formatter(ticker.PercentFormatter(xmax=1))


def plot_scaling(tables: Mapping[str, pd.DataFrame], measured: Mapping[int, float], *, hardware: str,
                 title: str = "", gpu_tables: Mapping[str, pd.DataFrame] | None = None,
                 gpu_title: str = "") -> Figure:
    """Predicted step time and efficiency against workers, one line per link (solid: first table, e.g. with overlap).

    The top row draws `tables` and the `measured` step times (seconds by worker count); gpu_tables, when
    given, draw a second row, titled gpu_title. The legend sits under the panels, clear of every line.
    """
    rows = [(tables, title)] + ([(gpu_tables, gpu_title)] if gpu_tables else [])
    links = dict.fromkeys(link for group, _ in rows for table in group.values() for link in table["link"])
    colors = dict(zip(links, mpl.colormaps["tab10"].colors))
    fig = Figure(figsize=(9.5, 1.2 + 3.0 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), 2, squeeze=False)
    for (group, row_title), (time_ax, efficiency_ax) in zip(rows, axes):
        _draw_links(time_ax, efficiency_ax, group, colors)
        _label_axes(time_ax, efficiency_ax)
        time_ax.set_title(row_title, loc="left", fontsize=9)
    axes[0][0].scatter(list(measured), [v * 1e3 for v in measured.values()], color="black", zorder=3)
    handles = [Line2D([], [], color=color, label=link) for link, color in colors.items()]
    handles += [Line2D([], [], color="gray", linestyle=style, label=name)
                for style, name in zip(OVERLAP_STYLES, tables)]
    handles.append(Line2D([], [], color="black", marker="o", linestyle="",
                          label="measured here (N = 1: the compute the model starts from; N = 2 tests it)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    title_with_hardware(fig, "Data-parallel step predicted by the alpha-beta model", hardware)
    return fig
