"""Chapter 5's charts: measured all-reduce times against the alpha-beta fit, and predicted scaling."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from helpers.ch05_distributed.comm_model import AlphaBeta
import pandas as pd

from helpers.support.plots import VARIANT_COLOR, title_with_hardware


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
    right.axhline(fit.bandwidth_bytes_per_s / 1e9, linestyle=":", color="gray", label="beta (the limit)")
    for ax, label in ((left, "time per all-reduce (us)"), (right, "bus bandwidth (GB/s)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("message size (bytes)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8, loc="upper left")
    title_with_hardware(fig, f"All-reduce of fp32 tensors between {world} processes", hardware)
    return fig


def plot_scaling(tables: Mapping[str, pd.DataFrame], measured: Mapping[int, float], *, hardware: str) -> Figure:
    """Predicted step time and efficiency against workers, one line per link (solid: with overlap)."""
    fig = Figure(figsize=(9.5, 3.6), layout="constrained")
    time_ax, eff_ax = fig.subplots(1, 2)
    colors = dict(zip(sorted({link for t in tables.values() for link in t["link"]}),
                      ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]))
    for style, table in zip(("-", "--"), tables.values()):
        for link, rows in table.groupby("link", sort=False):
            time_ax.plot(rows["workers"], rows["step (ms)"], style, color=colors[link],
                         label=link if style == "-" else None)
            eff_ax.plot(rows["workers"], rows["efficiency"], style, color=colors[link])
    time_ax.scatter(list(measured), [v * 1e3 for v in measured.values()], color="black", zorder=3,
                    label="measured here (N = 1 is the compute the model starts from; N = 2 tests it)")
    for ax, label in ((time_ax, "step time per worker (ms)"), (eff_ax, "scaling efficiency")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("workers (each with the same per-worker batch)")
        ax.set_ylabel(label)
    time_ax.set_yscale("log")
    eff_ax.set_ylim(0, 1.05)
    time_ax.legend(fontsize=7)
    eff_ax.text(0.02, 0.03, " / ".join(f"{'solid' if s == '-' else 'dashed'}: {name}"
                                       for s, name in zip(("-", "--"), tables)), transform=eff_ax.transAxes, fontsize=8)
    title_with_hardware(fig, "Data-parallel step predicted by the alpha-beta model", hardware)
    return fig
