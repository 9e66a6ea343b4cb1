# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: jupyter,tags,-all
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (DL performance course)
#     language: python
#     name: dl-perf-course
# ---

# %% [markdown]
# # Chapter 1 — Why performance matters, and how to measure it
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dl-perf-course/dl-performance-workbook/blob/main/notebooks/ch01_measure.ipynb) [![Launch Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/dl-perf-course/dl-performance-workbook/main?labpath=notebooks/ch01_measure.ipynb)
#
# Every later chapter claims that some technique makes deep learning faster. This chapter gives you
# the tools to check such claims yourself: what to measure (latency, throughput, cost), how to time
# code without fooling yourself, why some operations are limited by arithmetic and others by memory,
# and how to predict, before optimising anything, how much a speed-up of one part can buy overall.
# Every number below is measured on *your* machine while the notebook runs.
#
# **Estimated time:** ~70 min · **Hardware:** Any CPU; a GPU adds the asynchronous-execution measurement

# %% [markdown]
# ## Setup
# The helpers package holds the measurement code that every chapter shares: read it in `helpers/core/`
# (`helpers/README.md` maps the whole package; each import below names the file that defines it).
# The next cell is collapsed: on Colab only, it installs the course's helpers (elsewhere `make lab`
# has installed them and it does nothing). Click its ⋯ to read it.

# %% jupyter={"source_hidden": true}
# On Colab only: install the course's helpers once (elsewhere `make lab` has installed them)
import importlib.util
import subprocess
import sys

if "google.colab" in sys.modules and importlib.util.find_spec("helpers") is None:
    packages = [
        "dl-perf-course-helpers @ git+https://github.com/dl-perf-course/dl-performance-workbook@main",
        "torch-pruning==1.6.1",
        "torchao==0.18.0",
        "onnx==1.22.0",
        "onnx-ir==1.1.0",
        "onnxscript==0.7.2",
        "onnxruntime==1.32.0",
    ]
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *packages], check=True)
    importlib.invalidate_caches()
    print("Colab: installed the course helpers")

# %% tags=["nbval-ignore-output"]
import time

import ipywidgets as widgets
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from helpers.core.claims import claims_table, make_claim, paired_ratio, report_claim
from helpers.core.cost import count_flops, model_cost
from helpers.core.hardware import (
    ASSUMED_FMA_UNITS, FP32_LANES, cpu_frequency_ghz, fp32_lanes_per_cycle, physical_core_count,
    theoretical_fp32_gflops,
)
from helpers.core.roofs import (
    IN_PLACE_PROBE, NEW_OUTPUT_PROBE, READ_PROBE, ROOF_ELEMENTS, roof_matmul, roof_operations, roofs_from_seconds,
)
from helpers.core.measure import (
    measure_interleaved, measure_latency, measure_percentiles, synchronize, synchronized_timer, throughput,
    timing_table,
)
from helpers.workload.data import PerSampleDigits, load_digits_split, upsample
from helpers.workload.models import small_cnn
from helpers.support.chapter import setup_chapter
from helpers.support.checks import check_function
from helpers.support.ledger import ledger_table, load_ledger, make_entry, record_chapter
from helpers.support.plots import plot_breakdown, plot_roofline, plot_sweep
from helpers.support.source import show_source
from helpers.support.widgets import live_control
from helpers.ch01_measure.amdahl import amdahl_verdict
from helpers.ch01_measure.exercises import check_benchmark_loop, check_ridge_exercise
from helpers.ch01_measure.phases import compare_step_phases, time_step_phases
from helpers.ch01_measure.threads import busy_cores

hw = setup_chapter(1)
claims = []  # every speed claim this chapter makes, judged on this machine; recorded in the summary

# %% [markdown]
# ## 1. Latency, throughput and cost
#
# Three numbers describe the speed of a model, and each matters to a different person:
#
# | measure | definition | who cares |
# |---|---|---|
# | **latency** | time from input to output for one request (ms); report the median and the tail (p95, p99) | a user waiting for a prediction |
# | **throughput** | items processed per second: $\text{throughput} = \dfrac{\text{batch size}}{\text{latency of the batch}}$ | training (epochs per hour), a serving fleet (requests per second per machine) |
# | **cost** | money or energy per unit of work: $\text{cost} = \dfrac{\text{price per hour}}{\text{items per hour}}$ | whoever pays the bill |
#
# Training is a throughput problem: nobody waits for one sample, and a run that goes 2x faster costs
# half as much. Serving is usually a latency problem with a throughput budget: each request must be
# answered within, say, 100 ms, using as few machines as possible. The two pull in different
# directions, as Section 3 measures.
#
# Two more budgets sit beside time. **Memory**: the peak resident memory of a process (`psutil`'s
# RSS, or the course's `track_peak_memory`, which the budgets of this course use) and, on a GPU,
# `torch.cuda.max_memory_allocated()`; a technique that saves time but no longer fits is no
# technique (chapter 3 counts the bytes autograd keeps for the backward pass, chapter 5 the peak
# memory of each training process, chapter 6 the bytes of a model). **Energy**: joules per item, read from the GPU's
# power counter (`nvidia-smi --query-gpu=power.draw`, or NVML) or a CPU's RAPL counters where the
# OS exposes them; in a VM like this course's machines it usually cannot be read at all. Language
# models add their own serving metrics: **time to first token** (TTFT, the wait until the first
# generated token, dominated by the forward pass over the whole prompt) and **time per output token**
# (TPOT, or inter-token latency, the pace of every later token, each one forward pass that reads all
# the weights again).
#
# Our running example is a small convolutional network for 32x32 grey images. Its *static* cost —
# what it costs before it runs — is exact: parameters and FLOPs are the same on every machine, and the
# size on disk is the same for a given PyTorch version (it depends on the file format):

# %%
model = small_cnn().eval()
one_image = torch.randn(1, 1, 32, 32)
pd.Series(model_cost(model, one_image), name="small_cnn, one 32x32 image")

# %% [markdown]
# FLOPs count a multiply-add as two floating-point operations. The counter we use, PyTorch's
# `FlopCounterMode`, counts only matrix products, convolutions and attention: batch norm,
# activations, pooling and additions count zero. For a CNN that is most of the arithmetic, but not
# all of the *time*, as chapter 2 measures. Layer by layer:

# %%
layer_rows, features = [], one_image
with torch.no_grad():
    for layer in model:
        layer_rows.append({"kind": type(layer).__name__, "flops": count_flops(layer, features)})
        features = layer(features)
pd.DataFrame(layer_rows).groupby("kind", sort=False)["flops"].sum()

# %% [markdown]
# FLOPs tell you how much arithmetic the model asks for; they do **not** tell you how long it takes.
# For that we must measure.

# %% [markdown]
# ## 2. Naive timing lies
#
# The obvious way to time code — read a clock before and after one call — fails in three ways:
#
# 1. **First-call overhead.** The first call allocates memory, picks kernels and fills caches. It
#    says little about the thousandth call, which is what a server or a training loop runs.
# 2. **One-shot noise.** The operating system, other processes and clock-frequency changes make any
#    single reading wander. One reading is an anecdote; the *median* of many is a measurement.
# 3. **Asynchronous devices.** A GPU call returns as soon as the work is *queued*. A clock read
#    right after it measures the queueing, not the work, unless you synchronise first.
#
# The course's timer, `measure_interleaved` (and `measure_latency`, its one-variant form), is built on
# `torch.utils.benchmark.Timer`, whose `blocked_autorange` picks how many calls to group in a *block*
# so that the timer's own overhead is negligible next to the block, and repeats blocks until the time
# budget is spent. First the timer itself: its clock waits for the GPU (CUDA, Apple's MPS, ...)
# before every reading.

# %%
show_source(synchronized_timer)

# %% [markdown]
# Then the measurement: warm-up calls first, then the variants in alternating rounds (every other
# round in reverse order, so that no variant always follows the same one).

# %%
show_source(measure_interleaved)

# %% [markdown]
# What it reports: the median time per call (over the blocks), the spread of the block means, how
# many **blocks** and how many **calls** were timed, and the median of each round (claims use
# those, Section 3). A block mean averages several calls, so the block spread is narrower than the
# spread of single calls: for the tail of single calls we need another tool, below.
#
# The naive way (one `time.perf_counter()` pair per call) against `measure_latency`:

# %% tags=["nbval-ignore-output"]
fresh_model = small_cnn().eval()
batch = torch.randn(8, 1, 32, 32)
one_shot_ms = []
with torch.inference_mode():
    for _ in range(20):
        start = time.perf_counter()  # the naive way, shown here to be criticised
        fresh_model(batch)
        one_shot_ms.append((time.perf_counter() - start) * 1e3)
    careful = measure_latency(lambda: fresh_model(batch))
pd.Series({
    "first call (ms)": one_shot_ms[0],
    "fastest later call (ms)": min(one_shot_ms[1:]),
    "slowest later call (ms)": max(one_shot_ms[1:]),
    "measure_latency median per call (ms)": careful.median_ms,
    "spread of block means, IQR (ms)": careful.block_iqr_ms,
    "blocks timed": careful.blocks,
    "calls timed": careful.calls,
    "first call / median": one_shot_ms[0] / careful.median_ms,
}).round(3)

# %% [markdown]
# The first call is typically several times slower than the median, and single later calls scatter
# around it. Any claim such as "technique X is 1.2x faster" built from single readings is noise.
#
# ### The tail: p95 and p99
# One request in a hundred is slower than the 99th percentile (p99), so a page that makes 100
# requests meets at least one such request in about 63% of loads ($1 - 0.99^{100}$). Tail latency
# needs each call timed on its own: `measure_percentiles` runs warm-up calls, then reads a
# synchronised clock before and after every single call. A p99 needs many calls: of 1000 calls, only
# 10 lie above it.

# %%
show_source(measure_percentiles)

# %% tags=["nbval-ignore-output"]
with torch.inference_mode():
    tail = measure_percentiles(lambda: fresh_model(batch), calls=1000)
pd.Series({"p50 (ms)": tail.p50_ms, "p95 (ms)": tail.p95_ms, "p99 (ms)": tail.p99_ms,
           "p99 / p50": tail.p99_ms / tail.p50_ms, "calls": tail.calls}).round(3)

# %% [markdown]
# Read the `p99 / p50` row: it is this run's tail. Even an idle machine has one (timer interrupts,
# the memory allocator, another tenant of the VM), and on a busy one (another program, a laptop that
# throttles) p99 can be several times p50 while the median hardly moves. That is why a serving
# budget is stated as a percentile, and why a median alone hides what users feel.
#
# **A deeper point: this is a closed-loop p99.** Each call starts when the previous one ends, so a
# slow call delays the calls behind it instead of being measured by them. A server receives requests
# on their own schedule (an *open loop*): during one slow call, requests queue, and each of them is
# late too. A closed-loop benchmark misses that queueing ("coordinated omission") and understates
# the serving tail; load generators that send requests at a fixed rate (and record the time from
# each request's *intended* start) measure it.
#
# A fourth trap hides in the benchmark tool itself: `torch.utils.benchmark.Timer` runs on **one
# thread** unless you pass `num_threads`. That is good for reproducible micro-benchmarks but
# understates what your program sees on a multi-core CPU. `measure_latency` passes torch's current
# thread count; Section 5 measures what threads buy, and what too many cost.

# %% [markdown]
# ### Asynchronous execution on a GPU
# On a GPU (CUDA, or Apple's MPS), `a @ a` returns to Python after launching the kernel, long before
# the product is computed. Timing without synchronising (`torch.accelerator.synchronize()`, which
# the course's `synchronize` calls) reports microseconds for work that takes milliseconds. On a CPU
# the call only returns when the work is done, so there is nothing to show; the cell below measures
# the effect where a GPU exists and says so where it does not.

# %% tags=["nbval-ignore-output"]
if hw.device in ("cuda", "mps"):
    gpu_square = torch.randn(4096, 4096, device=hw.device)
    synced = measure_latency(lambda: gpu_square @ gpu_square)
    synchronize()
    start = time.perf_counter()
    gpu_square @ gpu_square  # launched, not finished
    launch_ms = (time.perf_counter() - start) * 1e3
    synchronize()
    print(f"without synchronising: {launch_ms:.3f} ms; with: {synced.median_ms:.3f} ms")
else:
    print(f"No CUDA GPU on this machine (device={hw.device}): the asynchronous-execution "
          "measurement is skipped. On a GPU, the unsynchronised reading would show only the launch time.")

# %% [markdown]
# **Deeper: the GPU benchmarking recipe.** On a GPU, serious micro-benchmarks go further than a
# synchronised wall clock: they time with CUDA events recorded on the stream
# (`torch.cuda.Event(enable_timing=True)`), flush the L2 cache between calls so that every call
# starts cold (a large buffer zeroed before each one), and lock the clocks (`nvidia-smi
# --lock-gpu-clocks`) so that boost and heat do not move the numbers. Triton's
# `triton.testing.do_bench` does the first two; the course's helpers use `torch.utils.benchmark`,
# which synchronises and warms up, and state what they leave out.

# %% [markdown]
# ## 3. Latency and throughput against batch size
#
# Processing several inputs at once shares fixed costs (Python overhead, kernel launches, reading the
# weights from memory) over more items, and gives each operation a bigger tensor to spread over the
# cores and vector lanes; both can raise throughput, and which one does here is measured below.
# Latency rises too: every item in the batch waits for the whole batch to be computed, and, in a
# server, first for the batch to fill up with requests (a cost this table does not include). The
# `per_item_ms` column is the batch latency divided by the batch size: a cost per image, not a
# latency anyone waits. A shared machine has slow spells; to keep one from landing on a single batch
# size, `measure_interleaved` times all of them in alternating rounds.

# %% tags=["nbval-ignore-output"]
batch_sizes = [1, 2, 4, 8, 16, 32, 64, 128]


def serving_row(batch_size: int, timing) -> dict:
    """Latency, per-item latency and throughput of one batch size."""
    return {"batch_size": batch_size, "latency_ms": timing.median_ms, "per_item_ms": timing.median_ms / batch_size,
            "images_per_s": throughput(batch_size, timing.median_s)}


inputs = {b: torch.randn(b, 1, 32, 32) for b in batch_sizes}
with torch.inference_mode():
    timings = measure_interleaved({b: (lambda x=inputs[b]: model(x)) for b in batch_sizes}, rounds=5, min_run_time=0.5)
sweep = pd.DataFrame([serving_row(b, timings[b]) for b in batch_sizes]).set_index("batch_size")
sweep.round(3)

# %%
plot_sweep(batch_sizes, {"latency_ms": sweep["latency_ms"], "images_per_s": sweep["images_per_s"]},
           xlabel="batch size", ylabels={"latency_ms": "latency (ms)", "images_per_s": "throughput (images/s)"},
           hardware=hw.cpu_label, title="Bigger batches: more throughput, more latency")

# %% [markdown]
# ### A claim, judged with its uncertainty
# "Batching raises throughput" is a claim about speed, so the course states it with a threshold and
# judges it from the alternating rounds: each round gives one ratio (here, time per image at batch 1
# over time per image at batch 64), so a slow spell of the machine hits both sides of the ratio alike.
# Resampling the rounds thousands of times gives a 95% interval for the median ratio (a *bootstrap*).
# With few rounds a bootstrap is unreliable, so below 8 rounds the course prints the range of the
# round ratios instead and says so ("range of 5 rounds"): the *true* median ratio, the one endless
# rounds would give, lies inside the range of 5 rounds with about 94% probability
# ($1 - 2 \cdot 0.5^5$).
# The claim **holds** when the whole interval clears the threshold, **does not hold here** when the
# whole interval misses it, and is **inconclusive** when the threshold lies inside the interval.

# %%
show_source(paired_ratio)

# %% tags=["nbval-ignore-output"]
per_image_s = {b: [t / b for t in timings[b].round_medians_s] for b in (1, 64)}
batching = make_claim(1, "batching_throughput", "At batch 64 the small CNN processes at least 1.5x more images per "
                      "second than at batch 1.", threshold=1.5, ratio=paired_ratio(per_image_s[1], per_image_s[64]),
                      hardware=hw.cpu_label)
claims.append(batching)

# %% [markdown]
# Where does the gain come from? If every call cost a fixed $F$ (Python, dispatch, thread start-up)
# plus $v$ per image, a batch of $b$ would take $T(b) = F + b\,v$. Batches 1 and 2 give both:
# $F = 2T(1) - T(2)$ and $v = T(2) - T(1)$. If $F$ were the story, the cost per image would fall
# towards $v$ and stay there.

# %% tags=["nbval-ignore-output"]
t1, t2 = sweep.loc[1, "latency_ms"], sweep.loc[2, "latency_ms"]
fixed_ms, item_ms = max(2 * t1 - t2, 0.0), t2 - t1
best_batch = sweep["images_per_s"].idxmax()
largest = batch_sizes[-1]
print(f"batch 2 costs {t2 / t1:.2f}x batch 1: fixed cost per call F = {fixed_ms:.3f} ms, "
      f"{fixed_ms / t1:.0%} of one image's {t1:.3f} ms; v = {item_ms:.3f} ms per image.")
print(f"per image at the best batch ({best_batch}): {sweep.loc[best_batch, 'per_item_ms']:.3f} ms; at batch "
      f"{largest}: {sweep.loc[largest, 'per_item_ms']:.3f} ms, throughput {sweep.loc[largest, 'images_per_s']:.0f} "
      f"images/s ({sweep.loc[largest, 'images_per_s'] / sweep['images_per_s'].max():.0%} of the best).")
batching_reading = (
    f"Fixed costs per call are {fixed_ms / t1:.0%} of one image's time here, so sharing them explains "
    f"{'most' if fixed_ms / t1 > 0.5 else 'part' if fixed_ms / t1 > 0.2 else 'little'} of the gain. "
    + ("" if fixed_ms / t1 > 0.5 else "The rest is per-image work that gets cheaper on bigger tensors (the "
       f"cost per image falls from {t1:.3f} ms to {sweep['per_item_ms'].min():.3f} ms, below v). A likely "
       "cause, not measured here: a bigger tensor splits better across the cores and fills the vector units. "))
report_claim(batching, holds=batching_reading,
             does_not_hold=batching_reading + "On this machine a single image already keeps the cores busy enough "
                           "that batching gains less than the claim expects.")

# %% [markdown]
# ### Explore: the batch-size knob
# Move the slider: the cell re-measures the model at that batch size on your machine. Where does
# throughput stop growing? Past that point a larger batch adds latency, and throughput can even fall
# (the second printed line above says whether it did at batch 128 in this run). Its cause is not
# measured here: timing each layer at both batch sizes (chapter 7's profiler does it) would show
# which layers slow down per image.

# %% tags=["nbval-ignore-output"]
def show_batch(batch_size: int) -> pd.DataFrame:
    """Re-measure one batch size and show it as a one-row table."""
    images = torch.randn(batch_size, 1, 32, 32)
    with torch.inference_mode():
        timing = measure_latency(lambda: model(images), min_run_time=0.25)
    return pd.DataFrame([serving_row(batch_size, timing)]).set_index("batch_size").round(3)


live_control(show_batch, batch_size=widgets.SelectionSlider(
    options=[1, 2, 4, 8, 16, 32, 64, 128, 256], value=8, description="batch size", continuous_update=False))

# %% [markdown]
# ## 4. Compute-bound or memory-bound?
#
# An operation needs arithmetic (FLOPs) and data movement (bytes between memory and the cores).
# Its **arithmetic intensity** $I = \text{FLOPs} / \text{bytes moved}$ decides which one limits it.
# The **roofline model** says the best achievable rate is
#
# $$\text{attainable FLOP/s} = \min\left(P_\text{peak},\; I \times B_\text{peak}\right)$$
#
# with $P_\text{peak}$ the peak compute rate and $B_\text{peak}$ the peak memory bandwidth.
#
# **Counting bytes** (the write-allocate part is *deeper*: skip it on a first reading). The `bytes`
# column below is the *minimum* traffic each operation needs: every input read once, every output
# written once. Real traffic can only be larger. One common extra: when a CPU stores to a cache line
# that is not in its cache, it first *reads* that line (write-allocate), so a copy `out = x` may
# move three streams (read `x`, read `out`'s lines, write `out`) instead of two. Some kernels avoid
# that read with non-temporal stores, so we cannot know which count applies; the
# `bytes_with_write_allocate` column shows the other case. So we do not guess: we measure one
# bandwidth roof per way of touching memory, each from a probe that touches it that way and nothing
# else, and count every probe's bytes at the minimum. A sum that only reads a vector gives the
# **read roof**; a scale in place, which reads and writes the same lines, the **in-place roof**; a
# copy from one vector into another, the **new-output roof**, which contains whatever writing to
# lines not yet read costs here, write-allocate included. An operation is compared with the roof of
# its own pattern: a sum with the read roof, an `add` or a matrix product (which write a fresh
# output) with the new-output roof. Chapter 2 times the same probes with the same helper
# (`helpers/core/roofs.py`), so both chapters draw one roofline per machine.
#
# **One footprint for every probe.** A CPU's caches hold tens or hundreds of MiB, so part of a
# 64 MiB vector may come from a cache. A probe that touched more memory would measure a slower mix
# of cache and memory, and we would blame its access pattern for what its size did. So every
# bandwidth probe touches the same 64 MiB (the copy goes from one 32 MiB half to another), and so
# does the `add` (three vectors of a third each). One extra row, the same copy over two whole 64 MiB
# vectors, shows what twice the footprint does.
#
# An $n \times n$ float32 matrix product does $2n^3$ FLOPs and must move at least its three matrices
# ($3 \cdot 4n^2$ bytes), so its intensity grows with $n$. The element-wise operations do at most one
# FLOP per element, whatever their size. The intensities follow from the shapes alone:

# %%
ELEMENTS = ROOF_ELEMENTS  # the probes' footprint: 64 MiB of float32
HALF, THIRD = ELEMENTS // 2, ELEMENTS // 3  # the copy's two vectors, the add's three: the same footprint
matmul_sizes = [64, 128, 256, 512, 1024]


def matmul_work(n: int) -> tuple[int, int, int, str]:
    """(FLOPs, minimum bytes, bytes with write-allocate, access) of an n x n float32 matrix product."""
    return 2 * n**3, 3 * 4 * n**2, 4 * 4 * n**2, "new output"


work = {f"matmul {n}": matmul_work(n) for n in matmul_sizes}
work[READ_PROBE] = (ELEMENTS, 4 * ELEMENTS, 4 * ELEMENTS, "read")
work[IN_PLACE_PROBE] = (ELEMENTS, 2 * 4 * ELEMENTS, 2 * 4 * ELEMENTS, "in place")
work[NEW_OUTPUT_PROBE] = (0, 2 * 4 * HALF, 3 * 4 * HALF, "new output")
work["add"] = (THIRD, 3 * 4 * THIRD, 4 * 4 * THIRD, "new output")
work["copy, twice the footprint"] = (0, 2 * 4 * ELEMENTS, 3 * 4 * ELEMENTS, "new output")
intensity = pd.DataFrame(work, index=["flops", "bytes", "bytes_with_write_allocate", "access"]).T
intensity["flop_per_byte"] = intensity["flops"] / intensity["bytes"]
intensity.round(4)

# %% [markdown]
# Now the measured rates, the operations timed in alternating rounds. The probes give the roofs:
# the better of the two largest matrix products is our *measured* compute peak, the sum, the scale
# in place and the copy our three bandwidths. All are lower bounds of what the hardware can do
# (a better-tuned kernel could beat them), and each probe reaches 100% of its own roof by
# construction.

# %% tags=["nbval-ignore-output"]
operations = roof_operations(ELEMENTS)  # the roof probes: matmul 512 and 1024, the sum, the scale, the copy
for n in matmul_sizes[:3]:
    operations[f"matmul {n}"] = roof_matmul(n)
left, right, total = torch.randn(THIRD), torch.randn(THIRD), torch.empty(THIRD)
whole, whole_copy = torch.randn(ELEMENTS), torch.empty(ELEMENTS)
operations["add"] = lambda: torch.add(left, right, out=total)
operations["copy, twice the footprint"] = lambda: whole_copy.copy_(whole)
seconds = pd.Series({name: t.median_s for name, t in measure_interleaved(operations, min_run_time=0.5).items()})
del operations, left, right, total, whole, whole_copy  # free the vectors
roofs = roofs_from_seconds(seconds, ELEMENTS)
rates = intensity.assign(median_ms=seconds * 1e3, gflop_per_s=intensity["flops"] / seconds / 1e9,
                         gbyte_per_s=intensity["bytes"] / seconds / 1e9)
rates["side of its ridge"] = [roofs.side(intensity, access)
                              for intensity, access in zip(rates["flop_per_byte"], rates["access"])]
print("measured roofs:", roofs.summary())
rates.round(3)

# %% [markdown]
# How close each operation came to its roof: the roof is $\min(P, I \times B)$, so the share of it is
# the larger of the two shares, of the compute roof and of the bandwidth roof (the second also
# works for a copy's zero FLOPs):

# %% tags=["nbval-ignore-output"]
bandwidth = rates["access"].map(roofs.bandwidth_gbps)
rates["share of roof"] = np.maximum(rates["gflop_per_s"] / roofs.gflops, rates["gbyte_per_s"] / bandwidth)
print(f"per byte counted, against the sum: the scale in place ran at "
      f"{roofs.in_place_gbps / roofs.read_gbps:.2f}x the sum's rate, the copy at "
      f"{roofs.new_output_gbps / roofs.read_gbps:.2f}x; the copy over twice the footprint reached "
      f"{rates.loc['copy, twice the footprint', 'share of roof']:.0%} of the copy's roof.")
for name, row in rates[rates["share of roof"] > 1.05].iterrows():
    print(f"{name} is above its roof ({row['share of roof']:.2f}x): the roofs are the probes' rates, not the "
          "hardware's limits, and this operation beat its probe (a better kernel, or more of its data in a cache).")
rates[["access", "side of its ridge", "share of roof"]].round(3)

# %% [markdown]
# "Side of its ridge" is only where an operation's intensity falls against its own roof; the "share
# of roof" column says how close the measurement came. A small matrix product that reaches a
# fraction of its roof is limited by neither: fixed overheads (calls, thread start-up, cache misses
# on tiny tiles) dominate it.
#
# **Read the printed line.** Per byte counted, a scale in place running at about twice the sum's
# rate means that writing each line back cost almost nothing extra: the write-back overlapped with
# the reads (or stayed in a cache). At about the sum's rate, writing cost as much as reading. The
# copy writes lines it has not read; if it runs at about the scale's rate, write-allocate cost
# nothing visible here; well below, writing to fresh lines is what costs. And the copy over twice
# the footprint shows the caveat every roofline carries: the bandwidth roof depends on how much
# data is in play. Where that row falls well short of the copy's roof, the likely cause is that the
# smaller footprint was served partly from a cache (page-table misses on the larger one are another
# candidate; only hardware counters could tell them apart). A full treatment draws one roof per
# level of the memory hierarchy (a *hierarchical roofline*), measured by sweeping the footprint. That is why one roof is
# not enough: with only the read roof, the scale would sit above its roof; with only the in-place
# roof, the sum would look slow when it is streaming as fast as reads go.
#
# **Deeper: is the measured compute peak the hardware's?** A core does at most (float32 lanes per
# vector instruction) x 2 (a fused multiply-add) x (FMA units) operations per cycle, and two
# hyper-threads share one core's units, so the count is of *physical* cores. Where the clock and
# vector width can be read, set that theoretical peak beside ours:

# %% tags=["nbval-ignore-output"]
clock = cpu_frequency_ghz()
physical_cores = physical_core_count()
if clock is not None and hw.cpu_isa in FP32_LANES:
    ghz, clock_kind = clock
    lanes, lanes_why = fp32_lanes_per_cycle(hw.cpu_isa)
    theoretical = theoretical_fp32_gflops(physical_cores, ghz, lanes, fma_units=ASSUMED_FMA_UNITS)
    print(f"{physical_cores} physical cores x {ghz:.2f} GHz ({clock_kind}) x {lanes} lanes ({lanes_why}) x 2 (FMA) "
          f"x {ASSUMED_FMA_UNITS} FMA units per core (assumed: typical of server cores, one on some others) "
          f"= {theoretical:.0f} GFLOP/s theoretical; measured {roofs.gflops:.0f} ({roofs.gflops / theoretical:.0%}).")
    if roofs.gflops > theoretical:
        print("Measured above the estimate: under load the cores run faster than the clock read here "
              "(turbo). The estimate is a guide, not a datasheet figure.")
else:
    theoretical = None
    print(f"The clock or vector width of this CPU cannot be read here (ISA {hw.cpu_isa}): no theoretical peak.")
print("Bandwidth probes:", roofs.cache_note())

# %%
points = {name: (row.flop_per_byte, row.gflop_per_s) for name, row in rates.iterrows() if row.flops > 0}
plot_roofline(roofs, points, hardware=hw.cpu_label, theoretical_gflops=theoretical)

# %% [markdown]
# The element-wise operations lie far left of every ridge: more arithmetic units would not help
# them, only fewer bytes. The `add` is compared with the new-output roof, the copy's pattern with
# one more input stream, so the table's last column says whether a third stream costs it more than
# its share of bytes. The roofs do not say *why* a rate is what it is: counting the real traffic
# needs a hardware counter of memory traffic (chapter 7's tools point to them). Large matrix
# products sit near the flat part: they are limited by arithmetic. Small ones fall below every
# line: fixed overheads dominate. This picture explains later chapters: depthwise convolutions
# (chapter 2) have low intensity, so their FLOP savings do not all turn into time savings; lower
# precision (chapter 3) helps memory-bound work because it moves fewer bytes, and compute-bound work
# only where the hardware has faster units for it; fusing operations (`torch.compile`) avoids writing
# intermediates to memory.

# %% [markdown]
# ## 5. Threads, and what happens when processes share cores
#
# PyTorch runs one operation on several threads (`torch.set_num_threads`). By default it starts one
# per *physical* core as it detects them: two hyper-threads of one core share its arithmetic units,
# so a second thread there adds little. It does not see a container's CPU quota (Docker `--cpus`,
# Binder), while the course's core counts do. More threads than cores cannot help: they take turns,
# and the threads of one operation wait for each other at its end. Measured on a 512 x 512 matrix
# product, each thread count in alternating rounds, against one thread per physical core:

# %% tags=["nbval-ignore-output"]
cores = physical_core_count()
print(f"torch's default: {torch.get_num_threads()} threads; physical cores this process may use: {cores} "
      f"(logical CPUs: {hw.cpu_cores})")
thread_counts = sorted({1, cores, hw.cpu_cores, 2 * hw.cpu_cores, 4 * cores})
square = torch.randn(512, 512)
thread_timings = measure_interleaved({f"{n} threads": (lambda: torch.mm(square, square)) for n in thread_counts},
                                     rounds=4, min_run_time=0.8,
                                     num_threads={f"{n} threads": n for n in thread_counts})
timing_table(thread_timings, baseline=f"{cores} threads").round(3)

# %% [markdown]
# **Deeper (chapters 4 and 5 rely on it).** The worse case comes when *processes* share cores:
# DataLoader workers (chapter 4) and one training process per core (chapter 5) each start their own
# thread pool, sized for the whole machine. Below, other processes keep half of the logical CPUs
# busy (each a bare Python loop), and our matrix product runs either on the CPUs that are left (the
# fair share) or on one thread per CPU, as if it were alone. The table's `speedup` column divides the
# medians of all blocks (below 1: that row is slower than the first); the claim pairs the variants
# round by round and takes the median of those ratios. When the slowdown comes and goes from round
# to round, the two can differ: the claim's is the one judged.

# %% tags=["nbval-ignore-output"]
cpus = hw.cpu_cores
busy = cpus // 2
fair_share = {f"{cpus - busy} threads (the free CPUs)": cpus - busy, f"{cpus} threads (one per CPU)": cpus}
if busy >= 1:
    with busy_cores(busy):
        shared = measure_interleaved({name: (lambda: torch.mm(square, square)) for name in fair_share},
                                     rounds=6, min_run_time=2.0, num_threads=fair_share)
    fair, greedy = shared.values()
    oversubscription = make_claim(
        1, "threads_fair_share", "While other processes keep half of the logical CPUs busy, a 512x512 matrix "
        "product on as many threads as there are free CPUs is at least 1.2x faster than on one thread per CPU.",
        threshold=1.2, ratio=paired_ratio(greedy.round_medians_s, fair.round_medians_s), hardware=hw.cpu_label,
        condition="a CPU with at least 2 logical CPUs")
    claims.append(oversubscription)
    display(timing_table(shared).round(3))
    display(report_claim(
        oversubscription,
        holds="The threads of one operation wait for each other at its end; when the scheduler has pushed "
              "one of them off its core to run another process, all the others wait too. The loss is far "
              "larger than the share of cores taken.",
        does_not_hold="This machine's scheduler and thread library kept the extra threads out of each "
                      f"other's way: measured, the fair share shows {oversubscription.ratio.gain} here.",
        inconclusive="The slowdown comes and goes with where the scheduler places the threads, so its size "
                     "varies from round to round; more rounds would narrow the interval."))
else:
    print(f"This machine has {cpus} logical CPU: the shared-CPU measurement needs at least 2, so it is skipped.")

# %% [markdown]
# The rule that chapters 4 and 5 follow: **processes x threads per process = cores**. `torchrun` sets
# `OMP_NUM_THREADS=1` when it starts several processes on one machine for exactly this reason.

# %% [markdown]
# ## 6. One training step, broken down — and Amdahl's law as a prediction
#
# A training step has four phases: fetch a **data** batch, run the **forward** pass, the **backward**
# pass, and the **optimizer** update. Before optimising one of them, find out how much of the step it
# is. We train on the real handwritten digits that ship with scikit-learn (8x8 images, upsampled to
# 32x32), with a narrow version of the network (8, 16 and 32 channels): on a CPU the full one spends
# nearly all of each step computing, which leaves the data phase little to win (the end of this
# section measures how little; on a GPU the arithmetic shrinks in just this way). The first
# pipeline prepares each image on its own, as many real pipelines do. Both loaders drop the last,
# smaller batch of each epoch, so that every step does the same work.

# %%
digits = load_digits_split()
per_sample_data = PerSampleDigits(digits.x_train, digits.y_train, image_size=32)
per_sample_loader = DataLoader(per_sample_data, batch_size=64, shuffle=True, drop_last=True)
print(f"{len(per_sample_data)} training images, {len(digits.y_test)} test images; "
      f"{len(per_sample_loader)} batches of 64 per epoch; one prepared image: {tuple(per_sample_data[0][0].shape)}")

# %% [markdown]
# **Amdahl's law.** If a fraction $p$ of the time is made $s$ times faster, the whole becomes
#
# $$S = \frac{1}{(1 - p) + p / s}, \qquad S \le \frac{1}{1 - p}.$$
#
# Used as a *prediction*, it needs two numbers measured before the change is built into the whole
# step: the share $p$ of the part we want to speed up, and that part's speed-up $s$ measured on its
# own. Then we build the whole thing and check the prediction. Both must cover *total* time: $p$ is
# a share of it, so it comes from means (a median of steps would drop, say, the shuffle at the start
# of each epoch), and $s$ compares whole epochs, shuffles included. Step one,
# the breakdown of the current pipeline; every epoch is loaded afresh, as in real training:

# %% tags=["nbval-ignore-output"]
def training_setup(loader: DataLoader) -> tuple:
    """A fresh network with its optimizer, fed by `loader`."""
    torch.manual_seed(0)
    net = small_cnn((8, 16, 32))
    return net, loader, torch.optim.Adam(net.parameters(), lr=1e-3)


before_alone = time_step_phases(*training_setup(per_sample_loader), steps=105)
data_share = before_alone.mean_ms["data"] / before_alone.mean_ms["step"]
pd.Series({**before_alone.mean_ms, "data share p": data_share}, name="mean ms").round(3)

# %% [markdown]
# Step two, the candidate: prepare every image once, up front, and fetch each batch with a single
# indexing operation (a `BatchSampler` passed as the sampler, with `batch_size=None`), instead of
# 64 separate `__getitem__` calls followed by a `torch.stack`. Its data phase alone, against the
# old one, one whole epoch per call (a total, like $p$), in alternating rounds:

# %%
prepared = (upsample(digits.x_train, 32) - 0.5) / 0.5
prepared_data = TensorDataset(prepared, digits.y_train)
batched_loader = DataLoader(prepared_data, batch_size=None,
                            sampler=BatchSampler(RandomSampler(prepared_data), batch_size=64, drop_last=True))
print("same images either way:", torch.equal(prepared[5], per_sample_data[5][0]))


# %% tags=["nbval-ignore-output"]
def one_epoch(loader: DataLoader) -> int:
    """Fetch every batch of one epoch; the number of batches."""
    return sum(1 for _ in loader)


fetch = measure_interleaved({"per-sample prep": lambda: one_epoch(per_sample_loader),
                             "prepared once, batched fetch": lambda: one_epoch(batched_loader)},
                            rounds=5, min_run_time=2.0)
data_speedup = paired_ratio(fetch["per-sample prep"].round_medians_s,
                            fetch["prepared once, batched fetch"].round_medians_s)
fetch_claim = make_claim(1, "batched_fetch_data_phase", "Preparing the images once and fetching each batch with one "
                         "indexing operation makes the data phase at least 3x faster.", threshold=3.0,
                         ratio=data_speedup, hardware=hw.cpu_label)
claims.append(fetch_claim)
report_claim(fetch_claim, holds="64 Python-level `__getitem__` calls, 64 small upsamplings and a `torch.stack` "
                                "became one indexing operation on a prepared tensor.",
             does_not_hold="Python overhead per item is unusually small on this machine compared with the copy "
                           "of the batch itself.")

# %% [markdown]
# Step three, the prediction, from $p$ and $s$ alone: the step after the change should take
# $(1-p)\,T + p\,T/s$, and no data pipeline can bring it below the floor $(1-p)\,T$, the time of
# everything else. The milliseconds below belong to the run that measured $p$; the check compares
# only the ratio $S$, since a step time from another run carries that run's drift.

# %% tags=["nbval-ignore-output"]
step_before_ms = before_alone.mean_ms["step"]
predicted = 1 / ((1 - data_share) + data_share / data_speedup.median)
ceiling = 1 / (1 - data_share)
pd.Series({"step before (ms)": step_before_ms, "data share p": data_share,
           "data phase speed-up s (measured alone)": data_speedup.median,
           "predicted step after (ms)": step_before_ms / predicted, "floor: the rest of the step (ms)":
           step_before_ms / ceiling, "Amdahl prediction S": predicted, "ceiling 1/(1-p)": ceiling}).round(3)

# %% [markdown]
# Step four, the check: both complete pipelines train a fresh copy of the network, in alternating
# rounds, reading a synchronised clock at each phase boundary. Amdahl's law rests on two premises,
# and the same rounds test each of them: the data phase *inside* the step gets the speed-up $s$ it
# got alone, and **the rest of the step is unchanged**. The last two rows below measure them. Two
# estimators appear, each labelled: the first table gives *means* per step (shares of time, as
# Amdahl's law needs); the second gives *medians of the round ratios* with their intervals (the
# paired comparison that judges a speed-up). A ratio of two means need not lie inside the interval
# of the round ratios: the rounds differ, and the median ignores the slowest of them.

# %% tags=["nbval-ignore-output"]
steps = compare_step_phases({"per-sample prep": training_setup(per_sample_loader),
                             "prepared once, batched fetch": training_setup(batched_loader)},
                            rounds=12, steps_per_round=20)
before, after = steps["per-sample prep"], steps["prepared once, batched fetch"]
step_speedup = paired_ratio(before.round_step_ms, after.round_step_ms)
data_inside = paired_ratio(before.round_mean_ms["data"], after.round_mean_ms["data"])
rest_speedup = paired_ratio(before.round_step_without_ms("data"), after.round_step_without_ms("data"))
display(pd.DataFrame({name: t.mean_ms for name, t in steps.items()}).T.round(2).rename_axis("mean ms per step"))
pd.DataFrame({"measured (median of round ratios)": [str(step_speedup), str(data_inside), str(rest_speedup)],
              "Amdahl assumed": [f"{predicted:.2f}x (at most {ceiling:.2f}x)", f"{data_speedup.median:.1f}x "
                                 "(s, measured alone)", "1.00x (unchanged)"]},
             index=["whole step", "data phase inside the step", "rest of the step"])

# %%
plot_breakdown({name: t.phases_ms for name, t in steps.items()}, hardware=hw.cpu_label,
               title="Where a training step spends its time")

# %% [markdown]
# The verdict has three parts: where the measured step speed-up lies against the prediction and the
# ceiling, and whether each premise held. Only when both premises held is the prediction a test of
# Amdahl's law; when one broke, the gap between prediction and measurement is that premise's doing.

# %% tags=["nbval-ignore-output"]
print(amdahl_verdict(share=data_share, step=step_speedup, data_inside=data_inside, data_alone=data_speedup,
                     rest=rest_speedup))

# %% [markdown]
# The whole step's gain is also a claim, judged like every other one. Its threshold, 1.05x, was fixed
# before any run, well under the ceilings this chapter has measured so far; where your ceiling
# (printed above) is below 1.05x, the claim can hold only if the rest of the step got faster too,
# and the verdict above says whether it did:

# %% tags=["nbval-ignore-output"]
step_claim = make_claim(1, "batched_fetch_training_step", "Preparing the images once and fetching each batch with "
                        "one indexing operation makes the narrow CNN's training step at least 1.05x faster.",
                        threshold=1.05, ratio=step_speedup, hardware=hw.cpu_label)
claims.append(step_claim)
report_claim(step_claim, holds="The data phase's gain shows in the whole step, within the ceiling's reach.",
             does_not_hold="Here the rest of the step dominates so much that the data phase's gain hardly shows.")

# %% [markdown]
# **Why premise 1 usually breaks here.** Alone, each data phase was timed over whole epochs; inside
# the step, each fetch is timed between two synchronised clock reads, right after a backward pass
# and an optimizer update have filled the caches with other data. Suppose both pipelines pay the
# same fixed extra cost $c$ per fetch inside the step. A phase that took $a$ ms alone and another
# that took $b$ ms then measure $(a + c) / (b + c)$ instead of $a / b$: a fixed cost barely changes
# a long phase and swamps a short one, so the ratio shrinks. Per batch, alone and inside the step,
# both covering every batch (alone: the mean over the rounds of each round's median epoch time,
# divided by its batches; inside: the mean over steps); every ratio printed below is a ratio of this
# table's numbers:

# %% tags=["nbval-ignore-output"]
loaders = {"per-sample prep": per_sample_loader, "prepared once, batched fetch": batched_loader}
per_batch = pd.DataFrame({name: {"alone (ms)": np.mean(fetch[name].round_medians_s) * 1e3 / len(loader),
                                 "inside the step (ms)": steps[name].mean_ms["data"]}
                          for name, loader in loaders.items()}).T
per_batch["extra inside (ms)"] = per_batch["inside the step (ms)"] - per_batch["alone (ms)"]
display(per_batch.round(4))
a_ms, b_ms = per_batch["alone (ms)"]
inside_before, inside_after = per_batch["inside the step (ms)"]
c_ms = per_batch.loc["prepared once, batched fetch", "extra inside (ms)"]
print(f"from this table: alone {a_ms / b_ms:.1f}x, inside the step {inside_before / inside_after:.1f}x; with the "
      f"batched pipeline's extra {c_ms:.4f} ms added to both alone times, {(a_ms + c_ms) / (b_ms + c_ms):.1f}x. "
      "The closer the last figure is to the inside one, the more of the gap one fixed cost per fetch explains; the "
      "two pipelines' extras (last column) say directly whether the cost is the same for both.")

# %% [markdown]
# What to take from it, whichever way your run went: Amdahl's law bounds what speeding up *one* phase
# can give, and it said before the new pipeline existed that most of the step would remain. It is a
# model with premises, and the measurement checks them. A step that beats the ceiling did not refute
# the law: something outside the data phase changed too (a different memory layout of the batches,
# which caches hold what, how the allocator reuses blocks), and that is worth knowing, because it is
# a second, unplanned optimisation. The habit to keep: **measure the breakdown, compute the ceiling,
# predict, then measure the whole and the premises.**
#
# How small was the prize? With this narrow network the data phase is a share worth predicting; with
# the full-width network the same data pipeline is a sliver of the step, measured here:

# %% tags=["nbval-ignore-output"]
torch.manual_seed(0)
wide_net = small_cnn()
wide = time_step_phases(wide_net, per_sample_loader, torch.optim.Adam(wide_net.parameters(), lr=1e-3), steps=20)
wide_share = wide.mean_ms["data"] / wide.mean_ms["step"]
print(f"full-width network: step {wide.mean_ms['step']:.1f} ms, data share p = {wide_share:.1%}, ceiling "
      f"{1 / (1 - wide_share):.3f}x (narrow network: p = {data_share:.1%}). Chapter 4 measures a case where the "
      "loader is the bottleneck.")

# %% [markdown]
# **How busy were the cores? Model FLOPs utilisation.** Large training runs report *MFU*: the
# arithmetic the model needs per step (forward and backward, counted by `FlopCounterMode`), divided
# by the step time, as a share of the hardware's peak. It says at once how much any optimisation
# could still win: a step at 5% MFU is waiting on something other than arithmetic. MFU proper is
# against the theoretical peak (section 4's estimate, where it could be made); the share of the
# compute roof we *measured* is printed beside it, since that is what this machine's best product
# reached:

# %% tags=["nbval-ignore-output"]
def training_step_flops(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> int:
    """FLOPs of one forward and backward pass (matrix products and convolutions, as count_flops counts)."""
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(net(images), labels).backward()
    net.zero_grad()
    return counter.get_total_flops()


images, labels = next(iter(batched_loader))
for name, net, step_ms in (("narrow, batched fetch", training_setup(batched_loader)[0], after.mean_ms["step"]),
                           ("full width, per-sample prep", wide_net, wide.mean_ms["step"])):
    achieved = training_step_flops(net, images, labels) / (step_ms / 1e3) / 1e9
    mfu = f"MFU {achieved / theoretical:.1%} (of the theoretical peak), " if theoretical else "no MFU (no peak), "
    print(f"{name}: {achieved:.1f} GFLOP/s in its training step: {mfu}{achieved / roofs.gflops:.1%} of the measured "
          "compute roof")

# %% [markdown]
# **What the intervals do not cover.** Each interval describes the noise *within this run*: the
# variants shared the machine's slow spells. Another day the clock speed (turbo, heat), the other
# programs and the cache contents differ, and so will the numbers. With fewer than 8 rounds an
# interval is only the range of the round ratios (it says so: "range of 5 rounds"). Serious
# benchmarks fix the clock, run on an idle machine, and repeat whole runs.

# %% [markdown]
# ## 7. What the source article leaves out
# The article this course follows opens by saying that optimisation makes models faster and cheaper,
# and then presents techniques without ever measuring one. Its only measuring code is a profiler
# snippet in its tools section, which records one pass: no warm-up (the first call pays for
# allocation and kernel selection), no `schedule` to skip it, a single step, no second variant to
# compare with, and a `SummaryWriter` imported but never used (chapter 7 uses the profiler
# properly). Without the discipline of this chapter (warm-up, synchronisation, many calls,
# alternating rounds, an interval around every ratio, and an Amdahl estimate of what is at stake), a
# "speed-up" is a hope, not a result. Every later chapter measures its claims with the helpers used here.

# %% [markdown]
# ## 8. Exercises
# Replace each `...`, run the cell, and read the check's verdict. The reference solutions are in the
# collapsed cells after each exercise.
#
# **Exercise 1.** Cost. Write the cost in dollars of classifying one million images on a machine
# rented at `price_per_hour` dollars that processes `images_per_s` images per second. Then use it
# on this machine's sweep: what does a million images cost at batch 1, and at the best batch size?

# %%
COST_CASES = [((3.6, 1000.0), 1.0), ((0.5, 250.0), 0.5555556), ((2.0, 20000.0), 0.0277778)]


def cost_per_million_images(price_per_hour: float, images_per_s: float) -> float:
    """Dollars to classify 1,000,000 images at this price and throughput."""
    ...


check_function("Exercise 1", cost_per_million_images, COST_CASES, rtol=1e-5,
               hint="Images per hour is images per second times 3600.")


# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution"]
def cost_per_million_images(price_per_hour: float, images_per_s: float) -> float:
    """Dollars to classify 1,000,000 images at this price and throughput."""
    return price_per_hour / (images_per_s * 3600) * 1e6


check_function("Exercise 1", cost_per_million_images, COST_CASES, rtol=1e-5)

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution", "nbval-ignore-output"]
price = 0.10  # dollars per hour: an illustrative price for a small cloud VM
print(f"at batch 1: ${cost_per_million_images(price, sweep.loc[1, 'images_per_s']):.4f}; at the best batch "
      f"({sweep['images_per_s'].idxmax()}): ${cost_per_million_images(price, sweep['images_per_s'].max()):.4f}")

# %% [markdown]
# **Exercise 2.** Write Amdahl's law: the whole-program speed-up when a fraction `p` of the time is
# made `s` times faster (`s` may be `float("inf")`).

# %%
AMDAHL_CASES = [((0.5, 2.0), 1.3333333), ((0.25, float("inf")), 1.3333333), ((0.9, 10.0), 5.2631579),
                ((0.0, 5.0), 1.0)]


def amdahl_speedup(p: float, s: float) -> float:
    """Whole-program speed-up when a fraction p of the run time is made s times faster."""
    ...


check_function("Exercise 2", amdahl_speedup, AMDAHL_CASES, rtol=1e-6,
               hint="The part that is not sped up still takes (1 - p) of the old time.")


# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution"]
def amdahl_speedup(p: float, s: float) -> float:
    """Whole-program speed-up when a fraction p of the run time is made s times faster."""
    return 1 / ((1 - p) + p / s)


check_function("Exercise 2", amdahl_speedup, AMDAHL_CASES, rtol=1e-6)

# %% [markdown]
# **Exercise 3.** Lower precision and the roofline. A GPU's datasheet gives its peaks per precision;
# NVIDIA's H100 SXM datasheet lists 67 TFLOP/s for float32 (no tensor cores), 989 TFLOP/s for
# bfloat16 on tensor cores (dense), and 3.35 TB/s of memory bandwidth. (a) Write the arithmetic
# intensity of an $n \times n$ matrix product with `bytes_per_element` bytes per element, each of the
# three matrices moved once (the minimum traffic, as in the table above). (b) Compute the ridge
# point of each precision. (c) Decide on which side of the ridge a 512 x 512 product falls in each.

# %%
INTENSITY_CASES = [((1024, 4), 170.6666667), ((64, 2), 21.3333333), ((1, 4), 0.1666667)]


def matmul_intensity(n: int, bytes_per_element: int) -> float:
    """FLOPs per byte moved for an n x n matrix product."""
    ...


check_function("Exercise 3a", matmul_intensity, INTENSITY_CASES, rtol=1e-6,
               hint="Count 2n^3 FLOPs and three matrices of n^2 elements each.")


# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution"]
def matmul_intensity(n: int, bytes_per_element: int) -> float:
    """FLOPs per byte moved for an n x n matrix product."""
    return 2 * n**3 / (3 * n**2 * bytes_per_element)


check_function("Exercise 3a", matmul_intensity, INTENSITY_CASES, rtol=1e-6)

# %%
ridge_fp32 = ...  # FLOP per byte where the float32 roof bends
ridge_bf16 = ...  # the same for bfloat16 on tensor cores
side_fp32 = ...  # "memory" or "compute": where a 512 x 512 float32 product falls
side_bf16 = ...  # the same in bfloat16

check_ridge_exercise(ridge_fp32, ridge_bf16, side_fp32, side_bf16)

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution"]
ridge_fp32, ridge_bf16 = 67e12 / 3.35e12, 989e12 / 3.35e12
side_fp32 = "compute" if matmul_intensity(512, 4) > ridge_fp32 else "memory"
side_bf16 = "compute" if matmul_intensity(512, 2) > ridge_bf16 else "memory"
check_ridge_exercise(ridge_fp32, ridge_bf16, side_fp32, side_bf16)
print(f"512 x 512 in float32: intensity {matmul_intensity(512, 4):.0f} vs ridge {ridge_fp32:.0f}; "
      f"in bf16: {matmul_intensity(512, 2):.0f} vs ridge {ridge_bf16:.0f}")
# Halving the bytes per element doubles the intensity, but the tensor cores raise the compute peak about
# 15-fold, so the ridge moves right much faster: the 512 x 512 product, compute-bound in float32, becomes
# memory-bound in bfloat16. Lower precision does not move work away from the memory-bound side. It pays on
# memory-bound work because it moves half the bytes, and on compute-bound work only where the hardware has
# faster units for it (tensor cores; AVX-512-BF16 or AMX on a CPU, chapter 3).
# Caveat 1: float32 products on such a GPU can also use tensor cores in TF32 (about 495 TFLOP/s dense on the
# H100), which moves the float32 ridge far right too.
# Caveat 2: a product this small is bound by neither roof. Its 1.5 MiB of operands fit in the 50 MB L2 cache,
# and with the 128 x 128 tiles a fast kernel uses it has 16 thread blocks for the H100's 132 streaming
# multiprocessors: most of the chip idles (low occupancy), the kernel lasts a few microseconds, about as long
# as launching it, as the small products on this CPU were bound by fixed overheads.

# What the answer means, and two caveats, are in the comments of the folded solution above: open it
# once you have checked your answers.
#
# **Exercise 4.** Write a correct benchmark loop: `warmup` untimed calls, then `calls` timed calls,
# each between two clock readings taken after `sync()` (which waits for the device), and return the
# median, 95th and 99th percentiles in milliseconds (`np.percentile` computes them). The check runs
# your function on a simulated asynchronous device whose calls return before their work is done,
# whose first calls are slow and whose 95th and 99th percentiles differ, so each classic mistake shows.

# %%
def my_benchmark(fn, *, clock, sync, warmup: int, calls: int) -> dict:
    """{'p50_ms', 'p95_ms', 'p99_ms'} of `calls` timed calls of fn() after `warmup` untimed ones."""
    ...


check_benchmark_loop("Exercise 4", my_benchmark)


# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution"]
def my_benchmark(fn, *, clock, sync, warmup: int, calls: int) -> dict:
    """{'p50_ms', 'p95_ms', 'p99_ms'} of `calls` timed calls of fn() after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    call_ms = []
    for _ in range(calls):
        sync()
        start = clock()
        fn()
        sync()
        call_ms.append((clock() - start) * 1e3)
    p50, p95, p99 = np.percentile(call_ms, [50, 95, 99])
    return {"p50_ms": p50, "p95_ms": p95, "p99_ms": p99}


check_benchmark_loop("Exercise 4", my_benchmark)

# %% [markdown]
# Once it passes, run your loop on the real model beside the course's helper, one after the other.
# They should agree closely at the median; yours has no `torch.utils.benchmark` behind it, which shows
# that the essentials are warm-up, synchronisation and many calls. Their p99s may differ more: of
# 1000 calls, the p99 rests on the 10 slowest, and the two loops did not run at the same moment.

# %% tags=["nbval-ignore-output"]
with torch.inference_mode():
    mine = my_benchmark(lambda: fresh_model(batch), clock=time.perf_counter, sync=synchronize, warmup=5, calls=1000)
    helper = measure_percentiles(lambda: fresh_model(batch), calls=1000)
pd.DataFrame({"my_benchmark": mine, "measure_percentiles": {"p50_ms": helper.p50_ms, "p95_ms": helper.p95_ms,
                                                             "p99_ms": helper.p99_ms}}).round(3)

# %% [markdown]
# ## 9. Summary
# This chapter's measured results on this machine, each speed-up with its interval and its baseline
# named, recorded in the course's results ledger (`results/ledger.json`, or the file named by
# `$COURSE_LEDGER`) together with the chapter's claims; chapter 8 gathers every chapter's entries,
# and `make claims` every claim. An entry's `speedup` is the median of the round ratios, the number
# its claim judged; `baseline` and `optimized` are each the median of their own rounds, so their
# quotient can differ a little from it (a median of ratios is not a ratio of medians). An entry
# marked `combination` measured several changes together, and chapter 8 never ranks it against
# single techniques.

# %% tags=["nbval-ignore-output"]
entries = [
    make_entry(1, "batching", metric="inference throughput, batch 64 vs 1", unit="images/s",
               baseline=1 / np.median(per_image_s[1]), optimized=1 / np.median(per_image_s[64]),
               higher_is_better=True, hardware=hw.cpu_label, claim=batching,
               compared_with="the same model at batch 1",
               extras={"best_batch_size": int(sweep["images_per_s"].idxmax()),
                       "fixed_share_of_batch_1": fixed_ms / t1}),
    make_entry(1, "batched_data_fetch", metric="training step time, narrow CNN, batch 64", unit="ms",
               baseline=np.median(before.round_step_ms), optimized=np.median(after.round_step_ms),
               higher_is_better=False, hardware=hw.cpu_label,
               claim=step_claim, combination=True,
               compared_with="the per-sample pipeline, same network and optimizer (two changes together: images "
                             "prepared once, batches fetched with one indexing operation)",
               extras={"data_share_before": data_share, "data_phase_speedup_alone": data_speedup.median,
                       "data_phase_speedup_inside": data_inside.median, "rest_of_step_speedup": rest_speedup.median,
                       "amdahl_prediction": predicted, "amdahl_ceiling": ceiling}),
]
record_chapter(1, entries, claims)
ledger_table(entries).round(3)

# %% tags=["nbval-ignore-output"]
claims_table(claims).drop(columns="hardware").round(2)

# %%
print("chapter 1 techniques in the ledger:", sorted(e["technique"] for e in load_ledger() if e["chapter"] == 1))

# %% [markdown]
# **Take-aways**
# 1. Say what you optimise: latency (median *and* tail) for a user waiting, throughput and cost for
#    training and fleets. Batching trades one for the other, and the sweep shows where the trade stops paying.
# 2. Time with warm-up, synchronisation and many calls, alternating the variants you compare, and
#    state every speed-up with its interval: a claim holds, does not hold here, or is inconclusive.
# 3. Know what limits the work (arithmetic or memory: the roofline), how big its share is (the
#    breakdown), and how many threads share the cores; then let Amdahl's law predict what an
#    optimisation can buy before you build it, and measure the whole and the law's premises to check.
