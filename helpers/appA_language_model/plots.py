"""The appendix's charts: time per token against position, decode against the weights' bytes, attention against
sequence length, and the batching trade-off."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from helpers.support.plots import BASELINE_COLOR, VARIANT_COLOR, title_with_hardware


def plot_token_times(times_ms: Mapping[str, Sequence[float]], *, prompt: int, hardware: str) -> Figure:
    """Milliseconds per generated token against its position, one line per way of generating."""
    if not times_ms:
        raise ValueError("times_ms must map at least one generator to its token times")
    fig = Figure(figsize=(7.5, 3.6), layout="constrained")
    ax = fig.subplots()
    for (name, times), color in zip(times_ms.items(), (BASELINE_COLOR, VARIANT_COLOR, "tab:green")):
        positions = prompt + np.arange(len(times))
        ax.plot(positions[1:], np.asarray(times)[1:], color=color, label=f"{name}: decode steps")
        ax.scatter([positions[0]], [times[0]], color=color, marker="s", zorder=3, label=f"{name}: first token")
    ax.set_xlabel("position of the token in the sequence")
    ax.set_ylabel("ms for this token")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    title_with_hardware(fig, "Time per generated token", hardware)
    return fig


def plot_decode_against_bytes(weight_mb: Sequence[float], step_ms: Sequence[float], *, read_gbps: float,
                              cache_mb: float | None, hardware: str) -> Figure:
    """Decode step time against the weights' megabytes, with the time the read roof allows for those bytes."""
    if len(weight_mb) != len(step_ms) or not weight_mb:
        raise ValueError("weight_mb and step_ms must be non-empty and of equal length")
    fig = Figure(figsize=(7.5, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.plot(weight_mb, step_ms, "o-", color=VARIANT_COLOR, label="measured decode step")
    grid = np.linspace(0, max(weight_mb) * 1.05, 50)
    ax.plot(grid, grid * 1e6 / (read_gbps * 1e9) * 1e3, "--", color=BASELINE_COLOR,
            label=f"bytes / read roof ({read_gbps:.0f} GB/s)")
    if cache_mb is not None:
        ax.axvline(cache_mb, color="grey", linestyle=":", label=f"last-level cache ({cache_mb:.0f} MB)")
    ax.set_xlabel("weights read per decode step (MB)")
    ax.set_ylabel("ms per decode step (batch 1)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    title_with_hardware(fig, "Decode reads every weight once per token", hardware)
    return fig


def plot_attention(lengths: Sequence[int], time_ms: Mapping[str, Sequence[float]],
                   allocated_mb: Mapping[str, Sequence[float]], *, hardware: str) -> Figure:
    """Time and the peak memory held between operators of one call of each attention implementation against sequence length."""
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    axes = fig.subplots(1, 2)
    for name, color in zip(time_ms, (BASELINE_COLOR, VARIANT_COLOR)):
        axes[0].plot(lengths, time_ms[name], "o-", color=color, label=name)
        axes[1].plot(lengths, allocated_mb[name], "o-", color=color, label=name)
    for ax, label in zip(axes, ("ms per call", "peak MB held between operators")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length (positions)")
        ax.set_ylabel(label)
        ax.set_xticks(list(lengths), [str(n) for n in lengths])
        ax.legend(fontsize=8)
    title_with_hardware(fig, "Causal attention: written by hand against SDPA", hardware)
    return fig


def plot_batching(batches: Sequence[int], step_ms: Sequence[float], *, hardware: str) -> Figure:
    """Tokens per second (all sequences) against the time each sequence waits per token, one point per batch."""
    if len(batches) != len(step_ms) or not batches:
        raise ValueError("batches and step_ms must be non-empty and of equal length")
    throughput = [1e3 * b / ms for b, ms in zip(batches, step_ms)]
    fig = Figure(figsize=(7.5, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.plot(step_ms, throughput, "o-", color=VARIANT_COLOR)
    for b, ms, tps in zip(batches, step_ms, throughput):
        ax.annotate(f" batch {b}", (ms, tps), fontsize=8)
    ax.set_xlabel("ms per decode step: each request's time per output token")
    ax.set_ylabel("tokens per second, all requests")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    title_with_hardware(fig, "Batching: throughput bought with each request's latency", hardware)
    return fig
