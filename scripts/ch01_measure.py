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
# **Estimated time:** ~45 min · **Hardware:** Any CPU; a GPU adds the asynchronous-execution measurement

# %% [markdown]
# ## Setup
# The helpers package holds the measurement code that every chapter shares; read it in `helpers/`.

# %%
# On Colab only: install the course's helpers once (elsewhere `make lab` has installed them)
import importlib.util
import subprocess
import sys

if "google.colab" in sys.modules and importlib.util.find_spec("helpers") is None:
    packages = [
        "dl-perf-course-helpers @ git+https://github.com/dl-perf-course/dl-performance-workbook@main",
        "torch-pruning==1.6.1",
    ]
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *packages], check=True)
    importlib.invalidate_caches()
    print("Colab: installed the course helpers")

# %%
# NBVAL_IGNORE_OUTPUT
import time

import ipywidgets as widgets
import pandas as pd
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from helpers import (
    PerSampleDigits, check_function, check_number, compare_step_phases,
    ledger_table, load_digits_split, live_control, load_ledger, make_entry, measure_interleaved, measure_latency,
    model_cost, plot_breakdown, plot_roofline, plot_sweep, record_chapter, setup_chapter,
    small_cnn, throughput, upsample,
)

hw = setup_chapter(1)

# %% [markdown]
# ## 1. Latency, throughput and cost
#
# Three numbers describe the speed of a model, and each matters to a different person:
#
# | measure | definition | who cares |
# |---|---|---|
# | **latency** | time from input to output for one request (ms); report the median and the tail | a user waiting for a prediction |
# | **throughput** | items processed per second: $\text{throughput} = \dfrac{\text{batch size}}{\text{latency of the batch}}$ | training (epochs per hour), a serving fleet (requests per second per machine) |
# | **cost** | money or energy per unit of work: $\text{cost} = \dfrac{\text{price per hour}}{\text{items per hour}}$ | whoever pays the bill |
#
# Training is a throughput problem: nobody waits for one sample, and a run that goes 2x faster costs
# half as much. Serving is usually a latency problem with a throughput budget: each request must be
# answered within, say, 100 ms, using as few machines as possible. The two pull in different
# directions, as Section 3 measures.
#
# Our running example is a small convolutional network for 32x32 grey images. Its *static* cost —
# what it costs before it runs — is exact and the same on every machine:

# %%
model = small_cnn().eval()
one_image = torch.randn(1, 1, 32, 32)
pd.Series(model_cost(model, one_image), name="small_cnn, one 32x32 image")

# %% [markdown]
# FLOPs count a multiply-add as two floating-point operations. They tell you how much arithmetic the
# model asks for; they do **not** tell you how long it takes. For that we must measure.

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
# Below, the naive way (one `time.perf_counter()` pair per call) against `measure_latency` from
# `helpers.measure`, which wraps `torch.utils.benchmark.Timer`: warm-up calls, many runs, device
# synchronisation, median and interquartile range (IQR, the spread of the middle half of the runs).

# %%
# NBVAL_IGNORE_OUTPUT
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
    "measure_latency median (ms)": careful.median_ms,
    "measure_latency IQR (ms)": careful.iqr_ms,
    "first call / median": one_shot_ms[0] / careful.median_ms,
}).round(3)

# %% [markdown]
# The first call is typically several times slower than the median, and single later calls scatter
# around it. Any claim such as "technique X is 1.2x faster" built from single readings is noise.
#
# A fourth trap hides in the benchmark tool itself: `torch.utils.benchmark.Timer` runs on **one
# thread** unless you pass `num_threads`. That is good for reproducible micro-benchmarks but
# understates what your program sees on a multi-core CPU. `measure_latency` passes torch's current
# thread count; here is the difference on this machine:

# %%
# NBVAL_IGNORE_OUTPUT
with torch.inference_mode():
    single = measure_latency(lambda: fresh_model(batch), num_threads=1)
print(f"torch threads: {torch.get_num_threads()} -> median {careful.median_ms:.2f} ms; "
      f"1 thread -> median {single.median_ms:.2f} ms ({single.median_ms / careful.median_ms:.2f}x)")

# %% [markdown]
# ### Asynchronous execution on a GPU
# On a CUDA GPU, `a @ a` returns to Python after launching the kernel, long before the product is
# computed. Timing without `torch.cuda.synchronize()` reports microseconds for work that takes
# milliseconds. On a CPU the call only returns when the work is done, so there is nothing to show;
# the cell below measures the effect where a GPU exists and says so where it does not.

# %%
if hw.device == "cuda":
    square = torch.randn(4096, 4096, device="cuda")
    synced = measure_latency(lambda: square @ square)
    start = time.perf_counter()
    square @ square  # launched, not finished
    launch_ms = (time.perf_counter() - start) * 1e3
    torch.cuda.synchronize()
    print(f"without synchronising: {launch_ms:.3f} ms; with: {synced.median_ms:.3f} ms")
else:
    print(f"No CUDA GPU on this machine (device={hw.device}): the asynchronous-execution "
          "measurement is skipped. On a GPU, the unsynchronised reading would show only the launch time.")

# %% [markdown]
# ## 3. Latency and throughput against batch size
#
# Processing several inputs at once amortises fixed costs (Python overhead, kernel launches, reading
# the weights from memory) over more items, so throughput rises with the batch size. Latency rises
# too: every item in the batch waits for the whole batch. Measure it:

# %% [markdown]
# A shared machine has slow spells. To keep one from landing on a single batch size,
# `measure_interleaved` times all of them in alternating rounds and pools the runs.

# %%
# NBVAL_IGNORE_OUTPUT
batch_sizes = [1, 2, 4, 8, 16, 32, 64, 128]


def serving_row(batch_size: int, timing) -> dict:
    """Latency, per-item latency and throughput of one batch size."""
    return {"batch_size": batch_size, "latency_ms": timing.median_ms, "per_item_ms": timing.median_ms / batch_size,
            "images_per_s": throughput(batch_size, timing.median_s)}


inputs = {b: torch.randn(b, 1, 32, 32) for b in batch_sizes}
with torch.inference_mode():
    timings = measure_interleaved({b: (lambda x=inputs[b]: model(x)) for b in batch_sizes}, rounds=5, min_run_time=0.8)
sweep = pd.DataFrame([serving_row(b, timings[b]) for b in batch_sizes]).set_index("batch_size")
sweep.round(3)

# %%
plot_sweep(batch_sizes, {"latency_ms": sweep["latency_ms"], "images_per_s": sweep["images_per_s"]},
           xlabel="batch size", ylabels={"latency_ms": "latency (ms)", "images_per_s": "throughput (images/s)"},
           hardware=hw.label, title="Bigger batches: more throughput, more latency")

# %%
print("Batching raised throughput by at least 1.2x:",
      sweep["images_per_s"].max() >= 1.2 * sweep.loc[1, "images_per_s"])

# %% [markdown]
# ### Explore: the batch-size knob
# Move the slider: the cell re-measures the model at that batch size on your machine. Where does
# throughput stop growing? That is where the hardware is saturated, and larger batches only add latency.

# %%
# NBVAL_IGNORE_OUTPUT
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
# with $P_\text{peak}$ the peak compute rate and $B_\text{peak}$ the peak memory bandwidth. An
# $n \times n$ float32 matrix product does $2n^3$ FLOPs on $3 \cdot 4n^2$ bytes, so its intensity grows
# with $n$; adding two vectors of $N$ floats does $N$ FLOPs on $12N$ bytes: $I = 1/12$, whatever $N$.
# The intensities follow from the shapes alone:

# %%
ELEMENTS = 2**24  # 64 MiB per float32 vector: far larger than the CPU's caches
matmul_sizes = [64, 128, 256, 512, 1024]


def matmul_work(n: int) -> tuple[int, int]:
    """(FLOPs, bytes) of an n x n float32 matrix product, each matrix moved once."""
    return 2 * n**3, 3 * 4 * n**2


work = {f"matmul {n}": matmul_work(n) for n in matmul_sizes}
work["add (elementwise)"] = (ELEMENTS, 3 * 4 * ELEMENTS)
work["copy"] = (0, 2 * 4 * ELEMENTS)
intensity = pd.DataFrame(work, index=["flops", "bytes"]).T
intensity["flop_per_byte"] = intensity["flops"] / intensity["bytes"]
intensity.round(4)

# %% [markdown]
# Now the measured rates. The best matrix product gives our *measured* compute peak and the copy
# gives our *measured* bandwidth peak: both are lower bounds of the hardware's true peaks.
# As above, the operations are timed in alternating rounds.

# %%
# NBVAL_IGNORE_OUTPUT
operations = {}
for n in matmul_sizes:
    a, b = torch.randn(n, n), torch.randn(n, n)
    operations[f"matmul {n}"] = (lambda a=a, b=b: torch.mm(a, b))
x, y, out = torch.randn(ELEMENTS), torch.randn(ELEMENTS), torch.empty(ELEMENTS)
operations["add (elementwise)"] = lambda: torch.add(x, y, out=out)
operations["copy"] = lambda: out.copy_(x)
seconds = pd.Series({name: t.median_s for name, t in measure_interleaved(operations, min_run_time=0.45).items()})
del x, y, out  # free the 192 MiB of vectors
rates = intensity.assign(median_ms=seconds * 1e3, gflop_per_s=intensity["flops"] / seconds / 1e9,
                         gbyte_per_s=intensity["bytes"] / seconds / 1e9)
peak_gflops, peak_gbps = rates["gflop_per_s"].max(), rates.loc["copy", "gbyte_per_s"]
rates["bound by"] = ["memory" if i < peak_gflops / peak_gbps else "compute" for i in rates["flop_per_byte"]]
print(f"measured peaks: {peak_gflops:.1f} GFLOP/s, {peak_gbps:.1f} GB/s; "
      f"ridge point at {peak_gflops / peak_gbps:.1f} FLOP/byte")
rates.round(3)

# %%
points = {name: (row.flop_per_byte, row.gflop_per_s) for name, row in rates.drop(index="copy").iterrows()}
plot_roofline(peak_gflops, peak_gbps, points, hardware=hw.label)

# %%
print("The elementwise add reaches under a tenth of the measured compute peak:",
      rates.loc["add (elementwise)", "gflop_per_s"] < 0.1 * peak_gflops)

# %% [markdown]
# The add sits on the slanted part of the roof: its speed is set by memory bandwidth, and no amount
# of extra arithmetic units would help. Large matrix products sit near the flat part: they are
# limited by arithmetic. Small ones fall below both lines: fixed overheads dominate. This picture
# explains later chapters: depthwise convolutions (chapter 2) have low intensity, so their FLOP savings
# do not all turn into time savings; lower precision (chapter 3) helps memory-bound work by moving
# fewer bytes; fusing operations (`torch.compile`) avoids writing intermediates to memory.

# %% [markdown]
# ## 5. One training step, broken down — and Amdahl's law
#
# A training step has four phases: fetch a **data** batch, run the **forward** pass, the **backward**
# pass, and the **optimizer** update. Before optimising one of them, find out how much of the step it
# is. We train the network on the real handwritten digits that ship with scikit-learn (8x8 images,
# upsampled to 32x32). The first pipeline prepares each image on its own, as many real pipelines do.

# %%
digits = load_digits_split()
per_sample_data = PerSampleDigits(digits.x_train, digits.y_train, image_size=32)
per_sample_loader = DataLoader(per_sample_data, batch_size=64, shuffle=True)
print(f"{len(per_sample_data)} training images, {len(digits.y_test)} test images; "
      f"one prepared image: {tuple(per_sample_data[0][0].shape)}")

# %% [markdown]
# **Amdahl's law.** If a fraction $p$ of the time is made $s$ times faster, the whole becomes
#
# $$S = \frac{1}{(1 - p) + p / s}, \qquad S \le \frac{1}{1 - p}.$$
#
# So before speeding the data phase up, its share $p$ of the step tells us the best we can hope for.
# The second pipeline prepares every image once, up front, and fetches each batch with a single
# indexing operation (a `BatchSampler` passed as the sampler, with `batch_size=None`), instead of
# 64 separate `__getitem__` calls followed by a `torch.stack`.

# %%
prepared = (upsample(digits.x_train, 32) - 0.5) / 0.5
prepared_data = TensorDataset(prepared, digits.y_train)
batched_loader = DataLoader(prepared_data, batch_size=None,
                            sampler=BatchSampler(RandomSampler(prepared_data), batch_size=64, drop_last=False))
print("same images either way:", torch.equal(prepared[5], per_sample_data[5][0]))

# %% [markdown]
# Both pipelines train a fresh copy of the network. `compare_step_phases` runs them in alternating
# rounds, reading a synchronised clock at each phase boundary, so that slow spells of a shared
# machine hit both pipelines alike; it reports the median of each phase.

# %%
# NBVAL_IGNORE_OUTPUT
def training_setup(loader: DataLoader) -> tuple:
    """A fresh network with its optimizer, fed by `loader`."""
    torch.manual_seed(0)
    net = small_cnn()
    return net, loader, torch.optim.Adam(net.parameters(), lr=1e-3)


steps = compare_step_phases({"per-sample prep": training_setup(per_sample_loader),
                             "prepared once, batched fetch": training_setup(batched_loader)})
breakdown = pd.DataFrame({name: {**t.phases_ms, "whole step": t.step_ms} for name, t in steps.items()}).T
breakdown.round(2)

# %%
plot_breakdown({name: t.phases_ms for name, t in steps.items()}, hardware=hw.label,
               title="Where a training step spends its time")

# %% [markdown]
# Now apply Amdahl's law to the measured breakdown of the first pipeline, and compare its
# prediction with what the second pipeline actually gained:

# %%
# NBVAL_IGNORE_OUTPUT
before, after = steps["per-sample prep"], steps["prepared once, batched fetch"]
data_share = before.phases_ms["data"] / before.step_ms
data_speedup = before.phases_ms["data"] / after.phases_ms["data"]
predicted = 1 / ((1 - data_share) + data_share / data_speedup)
measured = before.step_ms / after.step_ms
amdahl = pd.Series({"data share p of the step": data_share, "data phase speed-up s": data_speedup,
                    "ceiling 1/(1-p)": 1 / (1 - data_share), "Amdahl prediction S": predicted,
                    "measured step speed-up": measured})
amdahl.round(3)

# %%
print("The batched fetch made the data phase at least 3x faster:", data_speedup >= 3)
print("The whole step gained no more than Amdahl's ceiling allows (10% noise margin):",
      measured <= 1.1 / (1 - data_share))

# %% [markdown]
# On a CPU the forward and backward passes dominate this step, so even a data phase several times
# faster barely moves the total: Amdahl's law said so before we wrote any code. On a GPU the
# arithmetic shrinks and the same data phase becomes a large share of the step: chapter 4 measures
# that case. The habit to keep: **measure the breakdown, compute the ceiling, then decide what to optimise.**

# %% [markdown]
# ## 6. What the source article leaves out
# The article this course follows opens by saying that optimisation makes models faster and cheaper,
# and then presents techniques without ever measuring one. Its snippets contain no timing code at
# all. Without the discipline of this chapter — warm-up, synchronisation, medians, the same
# conditions for every variant, and an Amdahl estimate of what is at stake — a "speed-up" is a
# hope, not a result. Every later chapter measures its claims with the helpers used here.

# %% [markdown]
# ## 7. Exercises
# Replace each `...`, run the cell, and read the check's verdict. The reference solutions are in the
# collapsed cells after each exercise.
#
# **Exercise 1.** From the batch-size sweep above, compute the throughput in images per second at
# batch size 32. (`sweep.loc[32, "latency_ms"]` is the median latency of that batch in milliseconds.)

# %%
throughput_at_32 = ...

check_number("Exercise 1", throughput_at_32, sweep.loc[32, "images_per_s"],
             hint="Throughput is batch size divided by the batch latency in seconds.")

# %% jupyter={"source_hidden": true} tags=["solution"]
throughput_at_32 = 32 / (sweep.loc[32, "latency_ms"] / 1e3)
check_number("Exercise 1", throughput_at_32, sweep.loc[32, "images_per_s"])

# %% [markdown]
# **Exercise 2.** Write Amdahl's law: the whole-program speed-up when a fraction `p` of the time is
# made `s` times faster (`s` may be `float("inf")`).

# %%
AMDAHL_CASES = [((0.5, 2.0), 4 / 3), ((0.25, float("inf")), 4 / 3), ((0.9, 10.0), 1 / 0.19), ((0.0, 5.0), 1.0)]


def amdahl_speedup(p: float, s: float) -> float:
    """Whole-program speed-up when a fraction p of the run time is made s times faster."""
    ...


check_function("Exercise 2", amdahl_speedup, AMDAHL_CASES,
               hint="The part that is not sped up still takes (1 - p) of the old time.")


# %% jupyter={"source_hidden": true} tags=["solution"]
def amdahl_speedup(p: float, s: float) -> float:
    """Whole-program speed-up when a fraction p of the run time is made s times faster."""
    return 1 / ((1 - p) + p / s)


check_function("Exercise 2", amdahl_speedup, AMDAHL_CASES)

# %% [markdown]
# **Exercise 3.** Write the arithmetic intensity (FLOPs per byte) of an $n \times n$ by $n \times n$
# matrix product whose elements take `bytes_per_element` bytes (4 for float32, 2 for bfloat16), each
# of the three matrices moved once. Does halving the precision move a matrix product towards or away
# from the memory-bound side of the roofline?

# %%
INTENSITY_CASES = [((1024, 4), 2 * 1024 / 12), ((64, 2), 2 * 64 / 6), ((1, 4), 2 / 12)]


def matmul_intensity(n: int, bytes_per_element: int) -> float:
    """FLOPs per byte moved for an n x n matrix product."""
    ...


check_function("Exercise 3", matmul_intensity, INTENSITY_CASES,
               hint="Count 2n^3 FLOPs and three matrices of n^2 elements each.")


# %% jupyter={"source_hidden": true} tags=["solution"]
def matmul_intensity(n: int, bytes_per_element: int) -> float:
    """FLOPs per byte moved for an n x n matrix product."""
    return 2 * n**3 / (3 * n**2 * bytes_per_element)


check_function("Exercise 3", matmul_intensity, INTENSITY_CASES)

# %% [markdown]
# (Halving the bytes per element doubles the intensity: lower precision moves work *away* from the
# memory-bound side, which is one reason it pays on GPUs.)

# %% [markdown]
# ## 8. Summary
# This chapter's measured results on this machine, recorded in the course's results ledger
# (`results/ledger.json`, or the file named by `$COURSE_LEDGER`); chapter 8 gathers every chapter's entries.

# %%
# NBVAL_IGNORE_OUTPUT
entries = [
    make_entry(1, "batching", metric="inference throughput", unit="images/s",
               baseline=sweep.loc[1, "images_per_s"], optimized=sweep["images_per_s"].max(),
               higher_is_better=True, hardware=hw.label, extras={"best_batch_size": int(sweep["images_per_s"].idxmax())}),
    make_entry(1, "batched_data_fetch", metric="training step time", unit="ms",
               baseline=before.step_ms, optimized=after.step_ms, higher_is_better=False, hardware=hw.label,
               extras={"data_share_before": data_share, "amdahl_prediction": predicted}),
]
record_chapter(1, entries)
ledger_table(entries).round(3)

# %%
print("chapter 1 techniques in the ledger:", sorted(e["technique"] for e in load_ledger() if e["chapter"] == 1))

# %% [markdown]
# **Take-aways**
# 1. Say what you optimise: latency for a user waiting, throughput and cost for training and fleets.
#    Batching trades one for the other, and the sweep shows where the trade stops paying.
# 2. Time with warm-up, synchronisation and medians over many runs, on all the threads you will
#    really use, alternating the variants you compare. One clock reading proves nothing.
# 3. Know what limits the work (arithmetic or memory: the roofline) and how big its share is (the
#    breakdown), then let Amdahl's law tell you what an optimisation can buy before you write it.
