"""A cost model of data-parallel training: the alpha-beta model of an all-reduce, and the step time it predicts.

One message of S bytes between two processes takes about alpha + S / beta: a fixed latency alpha
and a bandwidth beta. A ring all-reduce over N workers runs 2(N - 1) such steps (a reduce-scatter,
then an all-gather), each moving S / N bytes, so each worker sends 2(N - 1)/N x S bytes in all:

    t_allreduce(S, N) = 2 (N - 1) alpha + 2 (N - 1) / N x S / beta

DDP all-reduces the gradients bucket by bucket while backward is still running (with bucket_cap_mb
left at its default, the first bucket is kept to 1 MiB so that communication starts early; with a
cap given, every bucket has that cap); every bucket pays the latency term, and with overlap only what
backward cannot hide is added to the step.

This is the bandwidth-optimal ring. Collective libraries switch algorithms by message size and scale
(NCCL also uses trees, whose latency grows with log N instead of N), so read the latency term at
large N as an upper bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from helpers.core.validate import require_int, require_number

# Bandwidth per direction in bytes per second, from the link's published data rate.
PUBLISHED_LINKS_BYTES_PER_S = {
    "10 Gb/s Ethernet": 10e9 / 8,  # IEEE 802.3 10GBASE-T: 10 Gbit/s of data
    "100 Gb/s Ethernet": 100e9 / 8,  # IEEE 802.3 100GBASE: 100 Gbit/s of data
    "NVLink 4 (H100 SXM)": 450e9,  # NVIDIA H100 datasheet: 900 GB/s NVLink per GPU, both directions together
}
# NVLink 4 connects the 8 GPUs of one HGX H100 board; beyond them traffic leaves over the network.
LARGEST_WORLD = {"NVLink 4 (H100 SXM)": 8}
DDP_FIRST_BUCKET_BYTES = 2 ** 20


def ring_allreduce_bytes_per_worker(size_bytes: float, world: int) -> float:
    """Bytes each worker sends in a ring all-reduce of size_bytes over `world` workers: 2 (N - 1) / N x S."""
    require_number("size_bytes", size_bytes, minimum=0)
    require_int("world", world, minimum=1)
    return 2 * (world - 1) / world * size_bytes


@dataclass(frozen=True)
class AlphaBeta:
    """A link as the alpha-beta model sees it: latency per message step (s) and bandwidth (bytes/s)."""

    latency_s: float
    bandwidth_bytes_per_s: float

    def __post_init__(self) -> None:
        require_number("latency_s", self.latency_s, minimum=0)
        require_number("bandwidth_bytes_per_s", self.bandwidth_bytes_per_s, strictly_positive=True)

    def allreduce_s(self, size_bytes: float, world: int) -> float:
        """Predicted time of one ring all-reduce of size_bytes over `world` workers (0 for one worker)."""
        steps = 2 * (require_int("world", world, minimum=1) - 1)
        return steps * self.latency_s + ring_allreduce_bytes_per_worker(size_bytes, world) / self.bandwidth_bytes_per_s


def fit_alpha_beta(sizes_bytes: Sequence[float], seconds: Sequence[float], *, world: int) -> AlphaBeta:
    """Least-squares fit of t = 2 (N - 1) alpha + 2 (N - 1) / N x S / beta to measured all-reduce times.

    Each point is weighted by 1 / t, so that a 10% miss counts the same for a 100 us and a 100 ms message.
    """
    sizes, times = np.asarray(sizes_bytes, dtype=float), np.asarray(seconds, dtype=float)
    if sizes.shape != times.shape or sizes.ndim != 1 or len(sizes) < 3:
        raise ValueError(f"need at least 3 (size, time) pairs of equal length, got {sizes.shape} and {times.shape}")
    if (times <= 0).any() or (sizes <= 0).any():
        raise ValueError("sizes and times must be positive")
    require_int("world", world, minimum=2)
    design = np.column_stack([np.full_like(sizes, 2 * (world - 1)), 2 * (world - 1) / world * sizes]) / times[:, None]
    (alpha, inverse_beta), *_ = np.linalg.lstsq(design, np.ones_like(times), rcond=None)
    if alpha <= 0 or inverse_beta <= 0:
        raise ValueError(f"the fit gave a non-positive latency or bandwidth ({alpha:.3g} s, 1/{inverse_beta:.3g}): "
                         "the times do not grow with size as the model assumes")
    return AlphaBeta(float(alpha), float(1 / inverse_beta))


@dataclass(frozen=True)
class StepPrediction:
    """The predicted data-parallel training step of one worker."""

    world: int
    compute_s: float
    comm_s: float
    exposed_comm_s: float

    @property
    def step_s(self) -> float:
        return self.compute_s + self.exposed_comm_s

    @property
    def efficiency(self) -> float:
        """Throughput per worker against one worker alone (1.0: perfect scaling)."""
        return self.compute_s / self.step_s

    @property
    def comm_share(self) -> float:
        """Part of the step spent waiting for communication."""
        return self.exposed_comm_s / self.step_s


def bucket_sizes(gradient_bytes: float, bucket_bytes: float,
                 first_bucket_bytes: float = DDP_FIRST_BUCKET_BYTES) -> list[float]:
    """How DDP packs gradient_bytes: a first bucket of at most first_bucket_bytes, then buckets of bucket_bytes.

    Whole tensors go into buckets, so real buckets are a little uneven; this is the even split.
    """
    require_number("gradient_bytes", gradient_bytes, strictly_positive=True)
    require_number("bucket_bytes", bucket_bytes, strictly_positive=True)
    first = min(gradient_bytes, require_number("first_bucket_bytes", first_bucket_bytes, strictly_positive=True))
    rest = gradient_bytes - first
    full, remainder = divmod(rest, bucket_bytes)
    return [first] + [bucket_bytes] * int(full) + ([remainder] if remainder else [])


def predict_step(*, world: int, compute_s: float, backward_s: float, gradient_bytes: float, link: AlphaBeta,
                 bucket_bytes: float, overlap: bool, first_bucket_bytes: float = DDP_FIRST_BUCKET_BYTES
                 ) -> StepPrediction:
    """Step time of one of `world` workers, each computing compute_s per step (the per-worker batch is fixed).

    The gradients travel in DDP's buckets (bucket_sizes; first_bucket_bytes is 1 MiB with DDP's default
    cap and equals bucket_bytes when a cap is given), each all-reduce paying the latency. With
    overlap, every bucket but the last can be all-reduced while backward (backward_s of the compute)
    goes on; the last becomes ready only when backward ends, so at least its all-reduce stays exposed.
    """
    require_int("world", world, minimum=1)
    compute_s = require_number("compute_s", compute_s, strictly_positive=True)
    backward_s = require_number("backward_s", backward_s, minimum=0)
    if backward_s > compute_s:
        raise ValueError(f"backward_s ({backward_s:g}) cannot exceed compute_s ({compute_s:g})")
    buckets = bucket_sizes(gradient_bytes, bucket_bytes, first_bucket_bytes)
    if world == 1:
        return StepPrediction(1, compute_s, 0.0, 0.0)
    per_bucket = [link.allreduce_s(size, world) for size in buckets]
    comm_s = sum(per_bucket)
    exposed = max(comm_s - backward_s, per_bucket[-1]) if overlap else comm_s
    return StepPrediction(world, compute_s, comm_s, exposed)


def scaling_table(worlds: Sequence[int], links: dict[str, AlphaBeta], *, overlap: bool,
                  largest_world: dict[str, int] | None = None, **step: float) -> pd.DataFrame:
    """predict_step for every world size and link: step time (ms), efficiency and communication share.

    largest_world caps a link's world sizes (a link that joins at most 8 GPUs has no row for 16).
    """
    rows = []
    for name, link in links.items():
        cap = (largest_world or {}).get(name, max(worlds))
        for world in (w for w in worlds if w <= cap):
            p = predict_step(world=world, link=link, overlap=overlap, **step)
            rows.append({"link": name, "workers": world, "step (ms)": p.step_s * 1e3,
                         "efficiency": p.efficiency, "communication share": p.comm_share})
    return pd.DataFrame(rows)
