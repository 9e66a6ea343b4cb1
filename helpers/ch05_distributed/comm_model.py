"""A cost model of data-parallel training: the alpha-beta model of an all-reduce, and the step time it predicts.

One message of S bytes between two processes takes about alpha + S / beta: a fixed latency alpha
and a bandwidth beta. A ring all-reduce over N workers runs 2(N - 1) such steps (a reduce-scatter,
then an all-gather), each moving S / N bytes, so each worker sends 2(N - 1)/N x S bytes in all:

    t_allreduce(S, N) = 2 (N - 1) alpha + 2 (N - 1) / N x S / beta

DDP all-reduces the gradients bucket by bucket while backward is still running (with bucket_cap_mb
left at its default, the first bucket is kept to 1 MiB so that communication starts early; with a
cap given, every bucket has that cap); every bucket pays the latency term, and with overlap only what
backward cannot hide is added to the step.

The compute side: a dense model does about 6 FLOPs per parameter per sample (or token) in forward and
backward, so a step's compute time is 6 x parameters x batch over a FLOP rate: the rate measured in
the chapter for this CPU, or an accelerator's published peak times the model FLOPs utilisation (MFU)
a real training job reaches. Only compute and link taken from the same machine make a prediction:
pairs that cannot exist (a CPU on NVLink) are refused.

Published links come with a typical latency (TYPICAL_LATENCY_S), not with none: a zero latency hides
the one term that grows with N and makes small buckets look free. The values are typical, not
measured here; the widget lets you set the latency you measured on your own cluster.

This is the bandwidth-optimal ring. Collective libraries switch algorithms by message size and scale
(NCCL also uses trees, whose latency grows with log N instead of N), so read the latency term at
large N as an upper bound.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from helpers.core.validate import require_choice, require_instance, require_int, require_number

# Bandwidth per direction in bytes per second, from the link's published data rate.
PUBLISHED_LINKS_BYTES_PER_S = {
    "10 Gb/s Ethernet": 10e9 / 8,  # IEEE 802.3 10GBASE-T: 10 Gbit/s of data
    "100 Gb/s Ethernet": 100e9 / 8,  # IEEE 802.3 100GBASE: 100 Gbit/s of data
    # NVIDIA ConnectX-7 and Quantum-2 datasheets: 400 Gbit/s per NDR port; an HGX H100 node has one such NIC per
    # GPU, so each GPU has 50 GB/s of its own. This is a flat ring of one GPU per node. On 8-GPU nodes NCCL's rings
    # cross the network once per node and spread over the node's 8 NICs, so their bus bandwidth can reach several
    # times this: read this line as a floor.
    "400 Gb/s InfiniBand NDR / RoCE (one NIC per GPU)": 400e9 / 8,
    "NVLink 3 (A100 SXM)": 300e9,  # NVIDIA A100 datasheet: 600 GB/s NVLink per GPU, both directions together
    "NVLink 4 (H100 SXM)": 450e9,  # NVIDIA H100 datasheet: 900 GB/s NVLink per GPU, both directions together
}
# Latency per ring step in seconds: typical values, not measured here (the widget lets you change them).
# NCCL's own cost model (src/graph/tuning.cc in NCCL 2.30, table hwLatencies, ring algorithm) charges a step
# 0.6 us (LL protocol, small messages) to 3.4 us (Simple protocol, the one it uses for megabyte buckets) on NVLink,
# and 2.7 to 14 us over the network (InfiniBand or RoCE with GPUDirect RDMA, whose wire latency is a few us):
# we take the Simple values. Over TCP (gloo, or NCCL's socket transport) the kernel's network stack adds tens of
# us per message; 50 us is also the figure of this chapter's Exercise 2.
TYPICAL_LATENCY_S = {
    "10 Gb/s Ethernet": 50e-6,
    "100 Gb/s Ethernet": 50e-6,
    "400 Gb/s InfiniBand NDR / RoCE (one NIC per GPU)": 14e-6,
    "NVLink 3 (A100 SXM)": 3.4e-6,
    "NVLink 4 (H100 SXM)": 3.4e-6,
}
# NVLink joins the 8 GPUs of one HGX board; beyond them traffic leaves over the network. (A GB200 NVL72 rack puts
# 72 GPUs in one NVLink 5 domain, at 900 GB/s per direction: the cap is a property of the system, not of NVLink.)
LARGEST_WORLD = {"NVLink 3 (A100 SXM)": 8, "NVLink 4 (H100 SXM)": 8}
LOOPBACK = "loopback (measured)"  # this machine's gloo over TCP loopback, its alpha and beta fitted in the chapter

THIS_CPU = "this CPU (measured)"
# Peak dense tensor-core FLOP/s from the vendors' datasheets: dense, not the "with sparsity" figures (twice these).
ACCELERATOR_PEAK_FLOPS = {
    "NVIDIA T4 (fp16)": 65e12,  # T4 datasheet: 65 TFLOPS mixed precision (FP16/FP32); the T4 has no bf16
    "NVIDIA A100 SXM (bf16)": 312e12,  # A100 datasheet: BF16 tensor core 312 TFLOPS (624 with sparsity)
    "NVIDIA H100 SXM (bf16)": 989e12,  # H100 datasheet: BF16 tensor core 1,979 TFLOPS with sparsity, 989 dense
}
COMPUTE_CHOICES = (THIS_CPU, *ACCELERATOR_PEAK_FLOPS)
DEFAULT_MFU = 0.4  # reported for large dense training: PaLM 540B 46% (Chowdhery et al. 2022), Llama 3 38-43% on H100
FLOPS_PER_PARAMETER_PER_SAMPLE = 6  # forward 2 (a multiply and an add per weight), backward 4 (Kaplan et al. 2020)
GRADIENT_BYTES_PER_PARAMETER = 4  # DDP all-reduces fp32 gradients, also under bf16 autocast

# The compute choices a link can carry, where not all of them: NVLink joins only its own GPUs, the loopback only
# this machine's processes. Every other link carries any choice.
LINK_CARRIES = {
    "NVLink 3 (A100 SXM)": ("NVIDIA A100 SXM (bf16)",),
    "NVLink 4 (H100 SXM)": ("NVIDIA H100 SXM (bf16)",),
    LOOPBACK: (THIS_CPU,),
}
DDP_DEFAULT_BUCKET_BYTES = 25 * 2 ** 20
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


def published_link(name: str) -> AlphaBeta:
    """A published link with its typical latency: the bandwidth of its datasheet, the latency of TYPICAL_LATENCY_S."""
    require_choice("link", name, PUBLISHED_LINKS_BYTES_PER_S)
    return AlphaBeta(TYPICAL_LATENCY_S[name], PUBLISHED_LINKS_BYTES_PER_S[name])


def link_menu(loopback: AlphaBeta) -> dict[str, AlphaBeta]:
    """Every link the chapter offers: this machine's loopback as fitted, then the published ones."""
    require_instance("loopback", loopback, AlphaBeta)
    return {LOOPBACK: loopback, **{name: published_link(name) for name in PUBLISHED_LINKS_BYTES_PER_S}}


def computes_on_link(link: str) -> tuple[str, ...]:
    """The compute choices that can sit on `link` (NVLink: only its GPUs; the loopback: only this CPU)."""
    return LINK_CARRIES.get(link, COMPUTE_CHOICES)


def require_pairing(compute: str, link: str) -> None:
    """Raise a ValueError unless `compute` can sit on `link`: no CPU on NVLink, no GPU on this machine's loopback."""
    require_choice("compute", compute, COMPUTE_CHOICES)
    allowed = computes_on_link(link)
    if compute not in allowed:
        raise ValueError(f"{compute} cannot use {link}: that link carries only {' or '.join(allowed)}. "
                         "Choose another link, or a compute that sits on it")


def require_world_fits(link: str, workers: int) -> None:
    """Raise a ValueError if `link` cannot join `workers` workers (NVLink: the 8 GPUs of one HGX board)."""
    cap = LARGEST_WORLD.get(link)
    if cap is not None and workers > cap:
        raise ValueError(f"{link} joins at most {cap} GPUs (one HGX board; a GB200 NVL72 rack joins 72 on NVLink 5): "
                         "choose fewer workers, or a network link")


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


def training_flops(parameters: float, per_worker_batch: int) -> float:
    """FLOPs of one worker's forward and backward: 6 per parameter per sample, as for dense layers."""
    require_number("parameters", parameters, strictly_positive=True)
    return FLOPS_PER_PARAMETER_PER_SAMPLE * parameters * require_int("per_worker_batch", per_worker_batch, minimum=1)


def achieved_flops_per_s(compute: str, *, cpu_flops_per_s: float | None = None, mfu: float = DEFAULT_MFU) -> float:
    """The FLOP rate a compute choice reaches: measured for this CPU, published peak x MFU for an accelerator."""
    require_choice("compute", compute, COMPUTE_CHOICES)
    if not 0 < require_number("mfu", mfu) <= 1:
        raise ValueError(f"mfu is the fraction of the peak a training job reaches, in (0, 1]; got {mfu}")
    if compute != THIS_CPU:
        return ACCELERATOR_PEAK_FLOPS[compute] * mfu
    if cpu_flops_per_s is None:
        raise ValueError(f"{THIS_CPU} needs cpu_flops_per_s, the FLOP rate measured in the chapter "
                         "(6 x parameters x batch / the measured step time)")
    return require_number("cpu_flops_per_s", cpu_flops_per_s, strictly_positive=True)


def compute_time_s(parameters: float, per_worker_batch: int, compute: str, *, cpu_flops_per_s: float | None = None,
                   mfu: float = DEFAULT_MFU) -> float:
    """Forward and backward time of one worker's batch on a compute choice (the MFU applies to accelerators only)."""
    rate = achieved_flops_per_s(compute, cpu_flops_per_s=cpu_flops_per_s, mfu=mfu)
    return training_flops(parameters, per_worker_batch) / rate


def ddp_first_bucket_bytes(bucket_bytes: float) -> float:
    """DDP's first bucket: 1 MiB under the default 25 MiB cap; with a cap given explicitly, the cap itself."""
    return DDP_FIRST_BUCKET_BYTES if bucket_bytes == DDP_DEFAULT_BUCKET_BYTES else bucket_bytes


def model_step_inputs(parameters: float, per_worker_batch: int, compute: str, *, backward_share: float,
                      bucket_bytes: float = DDP_DEFAULT_BUCKET_BYTES, cpu_flops_per_s: float | None = None,
                      mfu: float = DEFAULT_MFU) -> dict[str, float]:
    """predict_step's inputs (but world, link, overlap) for a dense model of `parameters` on a compute choice.

    backward_share is the part of the compute that communication can hide behind (backward and update).
    """
    compute_s = compute_time_s(parameters, per_worker_batch, compute, cpu_flops_per_s=cpu_flops_per_s, mfu=mfu)
    backward_share = require_number("backward_share", backward_share, minimum=0, maximum=1)
    require_number("bucket_bytes", bucket_bytes, strictly_positive=True)
    return {"compute_s": compute_s, "backward_s": backward_share * compute_s,
            "gradient_bytes": GRADIENT_BYTES_PER_PARAMETER * parameters, "bucket_bytes": bucket_bytes,
            "first_bucket_bytes": ddp_first_bucket_bytes(bucket_bytes)}


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


def _significant(value: float, digits: int = 3) -> float:
    """value rounded to `digits` significant figures, for a table meant to be read."""
    return 0.0 if value == 0 else round(value, digits - 1 - math.floor(math.log10(abs(value))))


def predicted_step_table(parameters_m: float, compute: str, mfu: float, link: str, latency_us: float, workers: int,
                         bucket_mb: float, overlap: bool, per_worker_batch: int = 32, *,
                         links: Mapping[str, AlphaBeta], cpu_flops_per_s: float, backward_share: float
                         ) -> pd.DataFrame:
    """The widget's reading: one row of predicted step, compute, all-reduce and efficiency for these settings.

    links is the menu (link_menu); latency_us replaces the chosen link's latency. bucket_mb = 25 is DDP's
    default cap, with its 1 MiB first bucket. The last column is the per-worker batch at which compute
    would take as long as the all-reduce: compute per byte of gradient grows with the batch, not the model.
    """
    require_choice("link", link, links)
    require_pairing(compute, link)
    require_world_fits(link, require_int("workers", workers, minimum=1))
    require_instance("overlap", overlap, bool)
    inputs = model_step_inputs(require_number("parameters_m", parameters_m, strictly_positive=True) * 1e6,
                               per_worker_batch, compute, backward_share=backward_share, mfu=mfu,
                               bucket_bytes=require_number("bucket_mb", bucket_mb, strictly_positive=True) * 2 ** 20,
                               cpu_flops_per_s=cpu_flops_per_s)
    chosen = AlphaBeta(require_number("latency_us", latency_us, minimum=0) * 1e-6, links[link].bandwidth_bytes_per_s)
    p = predict_step(world=workers, link=chosen, overlap=overlap, **inputs)
    return pd.DataFrame(index=["predicted"], data={
        "step (ms)": [_significant(p.step_s * 1e3)], "compute (ms)": [_significant(p.compute_s * 1e3)],
        "all-reduce (ms)": [_significant(p.comm_s * 1e3)],
        "exposed communication (ms)": [_significant(p.exposed_comm_s * 1e3)],
        "efficiency (%)": [_significant(100 * p.efficiency)],
        "communication share (%)": [_significant(100 * p.comm_share)],
        "per-worker batch where compute = all-reduce": [math.ceil(per_worker_batch * p.comm_s / p.compute_s)]})
