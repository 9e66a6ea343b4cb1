# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,jupyter,-all
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
# # Chapter 7 — Tools: the profiler, ONNX Runtime and TensorRT
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dl-perf-course/dl-performance-workbook/blob/main/notebooks/ch07_tools.ipynb) [![Launch Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/dl-perf-course/dl-performance-workbook/main?labpath=notebooks/ch07_tools.ipynb)
#
# Chapters 1 to 6 measured techniques chosen in advance. Real work starts the other way round: a
# program is slow, and nobody knows why. This chapter first uses **PyTorch's profiler** to find out:
# a training loop with the mistakes real code has is profiled, each problem is diagnosed from what
# the profile shows, fixed, re-profiled and measured. It then leaves PyTorch for deployment:
# **ONNX** as the exchange format, **ONNX Runtime** as a CPU inference engine (with its own int8
# quantization), and **TensorRT 10 and 11**, NVIDIA's GPU engine, written against their current API.
#
# **Estimated time:** ~105 min · **Hardware:** Any CPU; a CUDA GPU adds the profiler kernel view and the memory snapshot; TensorRT needs an NVIDIA GPU

# %% [markdown]
# ## Setup
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
import os

import torch

if not torch.cuda.is_available():  # no CUDA GPU: one C++ compile at a time (chapter 3); Inductor reads it on import
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

import copy
import platform
import time
from pathlib import Path
from types import SimpleNamespace

import ipywidgets as widgets
import onnx
import onnxruntime as ort
import pandas as pd
import torch.nn.functional as F
from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function, schedule
from torch.utils.data import DataLoader, Dataset

from helpers.core.claims import make_claim, report_claim, timing_ratio
from helpers.core.measure import measure_interleaved, timing_table
from helpers.core.memory import release_freed_memory
from helpers.workload.digits import digits_tensors
from helpers.workload.models import small_cnn
from helpers.support.chapter import setup_chapter
from helpers.support.ledger import ledger_table, make_entry, record_chapter
from helpers.support.logs import quiet_profiler_logs
from helpers.support.plots import plot_sweep
from helpers.support.source import show_source
from helpers.support.widgets import live_control
from helpers.ch03_hardware.compile_timing import (
    compile_for_inference, forget_compiled_code, graphs_compiled, built_kernels,
)
from helpers.ch07_tools.exercises import check_float_convolutions, check_fp16_tolerance, check_recorded_steps
from helpers.ch07_tools.onnx_quantization import convolution_table
from helpers.ch07_tools.onnx_runtime import (
    CalibrationBatches, model_files, operator_counts, ort_predict, ort_session, profile_operators,
    reduce_range_advised,
)
from helpers.ch07_tools.profiling import calls_per_step, hot_operators, largest_allocations, region_table, step_ms
from helpers.ch07_tools.resnet import ResNet18
from helpers.ch07_tools.trace_plot import plot_step_timeline

hw = setup_chapter(7)
print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}")
claims = []  # this chapter's speed claims, judged on this machine; recorded in the summary
WORK = Path("ch07_files")  # the traces, ONNX models and engines this chapter writes
WORK.mkdir(exist_ok=True)

# %% [markdown]
# ## 1. Measure, profile, diagnose, fix, measure again
# A benchmark (chapter 1) answers *how long*; a profiler answers *where*. The profiler records every
# operator PyTorch runs, with its duration, its input shapes and the memory it allocated, plus any
# region you label yourself. Its price is overhead: each recorded event costs time, so a profiled
# step is slower than a real one, and most of all where there are many small operators. Hence the
# loop of this chapter: **profile to find**, then **benchmark to measure** (with chapter 1's
# interleaved rounds and a claim), one fix at a time.
#
# Which tool answers which question (the ones marked "run here" are demonstrated in this chapter):
#
# | question | tool | how |
# |---|---|---|
# | how long, with what uncertainty | `torch.utils.benchmark` (chapter 1) | `measure_interleaved`, every section (run here) |
# | which operators and regions take the time | `torch.profiler` | `profile(...)`, `record_function`, section 2 (run here) |
# | when each operator ran, in order | the profiler's trace in Perfetto | `prof.export_chrome_trace(path)`, section 2.4 (run here) |
# | which Python lines cost the most | flame graph; a sampling profiler | `profile(with_stack=True, experimental_config=torch._C._profiler._ExperimentalConfig(verbose=True))`, `prof.export_stacks(path)`, then `flamegraph.pl` (without that config torch 2.14 writes an empty file); `py-spy record -o out.svg -- python train.py` (low overhead, sees data-loading stalls too) |
# | how many FLOPs a step does (for utilization, a roofline) | FLOP counting | `torch.utils.flop_counter.FlopCounterMode`, or `profile(with_flops=True)` |
# | why `torch.compile` recompiles or breaks the graph | `TORCH_LOGS`, `torch._dynamo.explain`, tlparse | section 3.8 (run here); `TORCH_TRACE=dir` then `tlparse dir` |
# | what the GPU did between kernels, across processes | Nsight Systems with NVTX ranges | `torch.cuda.nvtx.range("step")`, `nsys profile -t cuda,nvtx python train.py` |
# | why one GPU kernel is slow | Nsight Compute | `ncu --set full -k regex:gemm python infer.py` |
# | where GPU memory goes | CUDA memory snapshot | section 5 (on a GPU) |
# | a framework-free model file and its engine | ONNX, ONNX Runtime and its execution providers (CPU, CUDA, TensorRT, OpenVINO for Intel hardware) | section 3 (run here), its profiler in 3.4 |
# | does the exported file compute the same | the exporter's checks, Polygraphy | `torch.onnx.export(..., verify=True, report=True)`; `polygraphy run m.onnx --onnxrt --trt` |
# | NVIDIA's GPU inference compiler | TensorRT, `trtexec` | section 4; `trtexec --onnx=m.onnx --shapes=x:8x3x224x224` |
#
# ## 2. Profiling a training loop
# ### 2.1 A loop with the mistakes real code has
# The task is chapter 2's: classify the handwritten digits, upsampled to 16x16, with a small CNN.
# The loop below is written the way a lot of first versions are. It has three problems, but to
# practise diagnosis, pretend you do not know them yet:
# - the `Dataset` does its work **per sample**: it resizes each 8x8 image to 16x16 and shifts it by
#   a random offset (augmentation), one image at a time, in the training process (no workers);
# - the step **normalizes each image in a Python loop** over the batch;
# - the step calls **`.item()`** every step, to log the loss.
#
# Each part of the step runs inside a `record_function` region, a label the profiler records.

# %%
features, labels = digits_tensors()  # the 1,797 raw 8x8 digits in [0, 1]: resizing is part of the pipeline
order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
train, test = order[450:], order[:450]  # 450 test images, never trained on
digits = SimpleNamespace(x_train=features[train].view(-1, 1, 8, 8), y_train=labels[train],
                         x_test=features[test].view(-1, 1, 8, 8), y_test=labels[test])
IMAGE_SIZE, BATCH, SHIFT = 16, 64, 2
print(f"train {tuple(digits.x_train.shape)}, test {tuple(digits.x_test.shape)}")


class PerSampleDigits(Dataset):
    """Resize and randomly shift one image at a time (the slow way, for the profiler to find)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = F.interpolate(self.images[index : index + 1], size=IMAGE_SIZE, mode="bilinear", antialias=True)
        dy, dx = torch.randint(0, 2 * SHIFT + 1, (2,)).tolist()
        return F.pad(image, (SHIFT,) * 4)[0, :, dy : dy + IMAGE_SIZE, dx : dx + IMAGE_SIZE], self.labels[index]


def endless(batches: object):
    """Cycle over an iterable of batches forever (a new epoch each time it ends)."""
    while True:
        yield from batches


def per_sample_normalize(images: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit spread per image, one image at a time."""
    for i in range(len(images)):
        images[i] = (images[i] - images[i].mean()) / (images[i].std() + 1e-6)
    return images


def make_training_step(batches: object, normalize: object, *, seed: int = 0, device: str = "cpu") -> object:
    """A fresh model and optimizer, and a function that runs one training step on the next batch."""
    torch.manual_seed(seed)
    model = small_cnn((16, 32, 64)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []

    def step() -> None:
        with record_function("data"):
            images, labels = next(batches)
        with record_function("normalize"):
            images = normalize(images)
        with record_function("forward"):
            loss = F.cross_entropy(model(images), labels)
        with record_function("backward"):
            optimizer.zero_grad()
            loss.backward()
        with record_function("optimizer"):
            optimizer.step()
        with record_function("logging"):
            losses.append(loss.item())

    step.model, step.losses = model, losses
    return step


slow_loader = DataLoader(PerSampleDigits(digits.x_train, digits.y_train), batch_size=BATCH, shuffle=True,
                         drop_last=True)  # every step the same work: the epoch's last, smaller batch is dropped
REGIONS = ["data", "normalize", "forward", "backward", "optimizer", "logging"]

# %% [markdown]
# ### 2.2 Profile it
# `torch.profiler.profile` with:
# - `activities=[ProfilerActivity.CPU]` (plus `CUDA` on a GPU, section 5);
# - `record_shapes=True`, so operators can be grouped by the shapes they ran on;
# - `profile_memory=True` only in a separate profile for section 2.7: it adds an event per
#   allocation and release, so the time tables are read from profiles without it;
# - a **`schedule`**: `wait=1` step not recorded (the model's own one-time costs of a first step:
#   allocator growth, oneDNN's kernel choices), `warmup=1` step recorded and thrown away (the
#   profiler's own start-up is expensive and would inflate it), then `active=3` steps kept.
#   `prof.step()` marks the end of each step.
#
# All profiling below runs on one thread, like the timings that follow (`quiet_profiler_logs` is
# explained in the housekeeping note at the end of section 2).

# %%
WAIT, WARMUP, ACTIVE = 1, 1, 3


def profile_steps(step: object, *, memory: bool = False) -> profile:
    """Profile wait + warmup + active calls of step(), keeping the last `active` ones."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with quiet_profiler_logs(), profile(activities=activities, record_shapes=True, profile_memory=memory,
                                        schedule=schedule(wait=WAIT, warmup=WARMUP, active=ACTIVE)) as prof:
        for _ in range(WAIT + WARMUP + ACTIVE):
            step()
            prof.step()
    return prof


torch.set_num_threads(1)
slow_step = make_training_step(endless(slow_loader), per_sample_normalize)
slow_profile = profile_steps(slow_step)

# %% [markdown]
# ### 2.3 Read it: where the step goes
# First the regions: how many milliseconds of each profiled step each labelled part took, largest
# first. The diagnosis starts here, with the biggest share.

# %% tags=["nbval-ignore-output"]
slow_regions = region_table(slow_profile, REGIONS, steps=ACTIVE)
print(f"profiled step: {step_ms(slow_profile, steps=ACTIVE):.1f} ms")
slow_regions.round(2)

# %% [markdown]
# Then the operators. `key_averages(group_by_input_shape=True)` sums each operator separately for
# each combination of input shapes, and sorting by **self** time (time inside the operator itself,
# not in the operators it calls) shows where the processor actually spent its time. The helper
# turns the profiler's table into a DataFrame per step (`prof.key_averages(...).table(...)` prints
# the same as text):

# %% tags=["nbval-ignore-output"]
show_source(hot_operators)

# %% tags=["nbval-ignore-output"]
hot_operators(slow_profile, steps=ACTIVE, top=15).round(3)

# %% [markdown]
# Read the shapes column. The model's operators run on whole batches (`[64, 16, 16, 16]` and the
# like). Operators on **one image** (`[1, 1, 8, 8]` for the resize) are the per-sample work, and
# the column of calls per step says how often they run: a small cost times 64 images, every step.
# The normalization's per-image operators (`aten::mean` and `aten::std` on `[1, 16, 16]`) may rank
# below this table's rows, each one cheap; the count below finds them wherever they rank. How many
# calls the per-sample code makes per step does not depend on the machine, only on the code (a
# `std` over a whole tensor computes a `mean` inside, and each `mean` divides in place: hence
# 2 x 64 + 1 means and in-place divisions, the 1 being the model's global average pooling):

# %%
PER_SAMPLE_OPS = ["aten::_upsample_bilinear2d_aa", "aten::constant_pad_nd", "aten::mean", "aten::std", "aten::div_"]
calls_per_step(slow_profile, PER_SAMPLE_OPS, steps=ACTIVE).to_frame()

# %% [markdown]
# And here is the diagnosis as this run measured it, read from the region table: the share of each
# profiled step that the per-sample data work and the per-image normalization loop took, against
# the model's own forward, backward and optimizer.

# %% tags=["nbval-ignore-output"]
model_share = slow_regions.loc[["forward", "backward", "optimizer"], "share of step (%)"].sum()
for region in ("data", "normalize", "logging"):
    print(f"{region:>9}: {slow_regions.loc[region, 'share of step (%)']:5.1f}% of the profiled step")
print(f"    model: {model_share:5.1f}% (forward + backward + optimizer)")

# %% [markdown]
# The profiler costs time for each event it records, so a profiled step is slower than a real one,
# and code made of many small operators pays most: the shares above say where to look, and the
# benchmark after each fix says what each problem really cost. The `.item()` in `logging` is a
# different story, told in 2.6.
#
# ### 2.4 A picture of one step
# `prof.export_chrome_trace(path)` writes every recorded event as JSON in Chrome's trace format.
# Open it in the Perfetto UI (ui.perfetto.dev, the viewer PyTorch's tutorials now point to): it reads
# the file in the browser, uploads nothing, and works offline once loaded; its `trace_processor`
# queries large traces with SQL. The older `chrome://tracing` reads the same file but struggles with
# large traces. The chart below is drawn from that file with matplotlib: the regions of the last
# profiled step on top, the operators they called below.

# %% tags=["nbval-ignore-output"]
slow_trace = WORK / "slow_step_trace.json"
slow_profile.export_chrome_trace(str(slow_trace))
last_step = WAIT + WARMUP + ACTIVE - 1  # ProfilerStep#N counts every step, recorded or not
print(f"trace: {slow_trace} ({slow_trace.stat().st_size / 1e6:.1f} MB)")

# %% tags=["nbval-ignore-output"]
plot_step_timeline(slow_trace, step=last_step, hardware=hw.cpu_label, depth=3,
                   title="One step of the slow loop, from the profiler's Chrome trace")

# %% [markdown]
# The picture shows what the tables cannot: *order*. `data` is a long run of small calls, one
# resize, pad and slice per image (too thin to label), then the collation into a batch;
# `normalize` is a comb of tiny operators; the model's regions are few, wide bars.
#
# ### 2.5 Fix one problem at a time, and measure each fix
# **Fix 1: the loop over the batch.** The same normalization as one expression over the whole
# batch: statistics over the channel and pixel dimensions, kept for broadcasting.

# %%
def batch_normalize(images: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit spread per image, for the whole batch at once."""
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    std = images.std(dim=(1, 2, 3), keepdim=True)
    return (images - mean) / (std + 1e-6)


sample = torch.rand(BATCH, 1, IMAGE_SIZE, IMAGE_SIZE)
assert torch.allclose(batch_normalize(sample), per_sample_normalize(sample.clone()), atol=1e-6)
print("the vectorised normalization gives the loop's result")
loop_fixed_step = make_training_step(endless(slow_loader), batch_normalize)
loop_fixed_profile = profile_steps(loop_fixed_step)
calls_per_step(loop_fixed_profile, PER_SAMPLE_OPS, steps=ACTIVE).to_frame()

# %% [markdown]
# The normalization's per-image calls are gone (the resize and pad calls of the loader remain).
# What is left of the others: the vectorised normalization's one `std` and one `mean`, the model's
# global average pooling (a second `mean`), and the division each `mean` makes inside itself.
# **Fix 2: the loader.** The resize does not depend on the epoch: do it once, for the whole
# training set, and keep the result. The random shift must stay random per image, but it can run
# on the whole batch: pad the batch once, then gather each image's window with index arithmetic.
# The batches are the same distribution as before: the same resize, the same shifts.

# %%
def random_shift(images: torch.Tensor, shift: int) -> torch.Tensor:
    """Shift every image of a batch by its own random offset in [-shift, shift], filling with zeros."""
    n, channels, height, width = images.shape
    padded = F.pad(images, (shift,) * 4)
    dy, dx = torch.randint(0, 2 * shift + 1, (2, n, 1, 1, 1))
    rows = dy + torch.arange(height).view(1, 1, height, 1)
    cols = dx + torch.arange(width).view(1, 1, 1, width)
    batch = torch.arange(n).view(n, 1, 1, 1)
    channel = torch.arange(channels).view(1, channels, 1, 1)
    return padded[batch, channel, rows, cols]


def cached_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int):
    """Resize once, then yield shuffled, randomly shifted full batches forever (as drop_last=True)."""
    resized = F.interpolate(images, size=IMAGE_SIZE, mode="bilinear", antialias=True)
    while True:
        order = torch.randperm(len(labels))
        for start in range(0, len(labels) - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            yield random_shift(resized[index], SHIFT), labels[index]


fixed_step = make_training_step(cached_batches(digits.x_train, digits.y_train, BATCH), batch_normalize)
fixed_profile = profile_steps(fixed_step)
calls_per_step(fixed_profile, PER_SAMPLE_OPS, steps=ACTIVE).to_frame()

# %% tags=["nbval-ignore-output"]
pd.DataFrame({"slow": slow_regions["ms per step"], "loop fixed": region_table(loop_fixed_profile, REGIONS,
                                                                              steps=ACTIVE)["ms per step"],
              "both fixed": region_table(fixed_profile, REGIONS, steps=ACTIVE)["ms per step"]}).round(2)

# %% [markdown]
# The profiles say where the time went; they do not measure the gain. Three profiled steps are few,
# and the profiler's overhead changes with the number of operators: even the model's own regions,
# unchanged code, can move a lot from one profile to the next. The benchmark decides: the three
# versions of the step in alternating rounds, each a real training step (next batch, forward,
# backward, update).

# %% tags=["nbval-ignore-output"]
step_versions = {"slow": slow_step, "loop fixed": loop_fixed_step, "both fixed": fixed_step}
step_timings = measure_interleaved(step_versions, rounds=8, min_run_time=0.7)
timing_table(step_timings, baseline="slow").round(3)

# %% [markdown]
# The profiler's own price, measured: the profiled slow step against the same step benchmarked
# without it (shape recording adds to it; memory profiling, off here, would add more).

# %% tags=["nbval-ignore-output"]
profiled_ms = step_ms(slow_profile, steps=ACTIVE)
print(f"slow step: {profiled_ms:.1f} ms profiled, {step_timings['slow'].median_ms:.1f} ms benchmarked: "
      f"the profile inflates it {profiled_ms / step_timings['slow'].median_ms:.1f}x")

# %% [markdown]
# Each claim's threshold is what a fix must deliver to be worth its code: a tenth off the step for
# each fix ($1/0.9 \approx 1.11$x), a fifth off for the two together ($1/0.8 = 1.25$x).

# %% tags=["nbval-ignore-output"]
loop_claim = make_claim(7, "profiler_fix_normalize_loop", "Normalizing the batch in one expression instead of a "
                        "Python loop over its 64 images makes the training step at least 1.11x faster.",
                        threshold=1.11, ratio=timing_ratio(step_timings["slow"], step_timings["loop fixed"]),
                        hardware=hw.cpu_label)
claims.append(loop_claim)
report_claim(loop_claim,
             holds="64 images x 5 small operators per step, each with PyTorch's dispatch overhead of a few "
                   "microseconds, cost more than the one vectorized expression that replaces them.",
             does_not_hold="On this machine the loop's small operators cost too little against the model's "
                           "step to matter: the profile overstated them (its overhead grows with their number).")

# %% tags=["nbval-ignore-output"]
loader_claim = make_claim(7, "profiler_fix_cached_loader", "Resizing once and shifting whole batches makes the "
                          "training step at least 1.11x faster than per-sample loading (normalization already fixed).",
                          threshold=1.11, ratio=timing_ratio(step_timings["loop fixed"], step_timings["both fixed"]),
                          hardware=hw.cpu_label)
claims.append(loader_claim)
report_claim(loader_claim,
             holds="The per-sample resize, pad and slice, and collating 64 separate tensors into a batch, were "
                   "a large enough share of the step that removing them pays (the table above has the times).",
             does_not_hold="Here the data work was a smaller part of the step than the profile suggested.")

# %% tags=["nbval-ignore-output"]
fix_claim = make_claim(7, "profiler_fix", "The two fixes the profile pointed to make the training step at least "
                       "1.25x faster.", threshold=1.25, ratio=timing_ratio(step_timings["slow"],
                                                                         step_timings["both fixed"]),
                       hardware=hw.cpu_label)
claims.append(fix_claim)
report_claim(fix_claim, holds="Neither fix touched the model: the step was slow around it.",
             does_not_hold="The model's own work dominates the step on this machine, so fixing the code around "
                           "it pays less.")

# %% tags=["nbval-ignore-output"]
for claim in (loop_claim, loader_claim, fix_claim):
    print(f"{claim.verdict:>20}: {claim.statement}")

# %% [markdown]
# The verdicts read the intervals, not the profile: a profile shows where to look, a benchmark what
# a fix is worth. An *inconclusive* fix has an interval that straddles its threshold: more rounds,
# not the profile, would settle it. The intervals describe the noise within one set of rounds; the
# same step timed minutes later in another cell can differ by more (the machine drifts), so every
# comparison here is made within one set of interleaved rounds. Chapter 4 tells the lesson from the
# other side: workers
# would have hidden the per-sample loading behind the step instead of removing it, and on a machine
# with few cores they compete with the step itself for the processor.
#
# ### 2.6 `.item()`: fix what the profile shows, not what a rule says
# `.item()` copies one number from a tensor to Python. The advice "never call `.item()` in the
# loop" comes from GPUs: there it waits for every queued kernel to finish (a synchronisation, shown
# in section 5). On the CPU the work is already done when `.item()` runs, so it should cost no more
# than the copy. The profile agrees or not:

# %% tags=["nbval-ignore-output"]
fixed_regions = region_table(fixed_profile, REGIONS, steps=ACTIVE)
print(f"logging (.item()): {fixed_regions.loc['logging', 'ms per step'] * 1e3:.0f} µs per step, "
      f"{fixed_regions.loc['logging', 'share of step (%)']:.2f}% of the step")

# %% tags=["nbval-ignore-output"]
item_share = fixed_regions.loc["logging", "share of step (%)"]
print("Under 1% of the step: leave it. Removing it would cost the loss curve for a gain no benchmark here "
      "could resolve." if item_share < 1 else
      f"{item_share:.1f}% of the step: worth measuring a version that logs every 10 steps.")

# %% [markdown]
#
# ### 2.7 Memory: the largest allocations
# With `profile_memory=True` the profiler records every allocation and release, and charges each to
# the innermost operator, which is most often `aten::empty` inside a convolution or a copy. The
# helper sums each allocation into the operator our code called (its callees included): the
# forward pass's activations, kept for the backward pass (chapter 3), and the backward pass's
# gradients are where the memory goes:

# %% tags=["nbval-ignore-output"]
memory_profile = profile_steps(fixed_step, memory=True)
largest_allocations(memory_profile, steps=ACTIVE, top=6).round(3)

# %% [markdown]
# Two memory tools of older tutorials are not used here: the profiler's `export_memory_timeline`
# is deprecated (a FutureWarning in PyTorch 2.14), and so is the TensorBoard profiler plugin
# (`torch_tb_profiler`). On a GPU the current tool is the **memory snapshot** (section 5).
#
# ### 2.8 The fixed loop trains the model the next section deploys
# Four epochs of the fixed loop train the digits CNN; its test accuracy is measured on
# the 450 held-out images, normalized the same way.

# %% tags=["nbval-ignore-output"]
train_step = make_training_step(cached_batches(digits.x_train, digits.y_train, BATCH), batch_normalize)
steps_per_epoch = len(digits.y_train) // BATCH  # full batches only
for _ in range(4 * steps_per_epoch):
    train_step()
digits_cnn = train_step.model.eval()
test_images = batch_normalize(F.interpolate(digits.x_test, size=IMAGE_SIZE, mode="bilinear", antialias=True))
with torch.no_grad():
    eager_logits = digits_cnn(test_images)
print(f"{4 * steps_per_epoch} steps; test accuracy {(eager_logits.argmax(1) == digits.y_test).float().mean():.1%}")

# %% [markdown]
# <details><summary><b>Housekeeping in this notebook</b> (click to open; not needed for the lesson)</summary>
#
# - `quiet_profiler_logs` drops the log lines the profiler writes to stderr at start and stop (a
#   `USDT` probe line, and a failed GPU count on a CUDA build of PyTorch without a GPU) and lets
#   every other line through.
# - `release_freed_memory()` hands freed pages back to the system (glibc's `malloc_trim`). Profiles,
#   the exporter's intermediate graphs and compiled models take hundreds of MB that the process
#   would otherwise keep for reuse; the chapter calls it after them to fit Binder's 2 GB.
# - ResNet-18 comes from `helpers/ch07_tools/resnet.py`, torchvision's `resnet18` layer for layer (a
#   test loads torchvision's weights into it and gets the same outputs), because importing
#   torchvision would cost this notebook 160 MB of memory.
# - ONNX Runtime's sessions run without their memory arena (`ort_session(..., arena=False)`), so
#   that several sessions fit in a small machine's memory: like PyTorch on the CPU, they free
#   activations after each run. A deployed service usually keeps the arena on (ONNX Runtime's
#   default), which saves the allocations on every run.
# </details>

# %% tags=["nbval-ignore-output"]
del slow_profile, loop_fixed_profile, fixed_profile, memory_profile
print(f"returned to the system: {release_freed_memory() / 1e6:.0f} MB")

# %% [markdown]
# ## 3. ONNX and ONNX Runtime
# ONNX is a file format for a model's graph and weights that does not depend on the framework that
# trained it; ONNX Runtime is Microsoft's engine that executes it, on CPUs (its default provider)
# and, with other builds, on GPUs and accelerators. It matters for deployment: a service can run the
# model without PyTorch, and the engine rewrites the graph (fusions, layouts) before running it.
#
# Two models go through this section. Accuracy needs trained weights, so the **digits CNN** just
# trained shows parity and int8 accuracy. Speed needs a realistic size, so **ResNet-18** at
# 224x224 with untrained weights (no download is possible here, and the time of a convolution does
# not depend on its weights' values) shows the latencies. Everything runs on one thread, set on
# purpose in both runtimes: the same work for each.
#
# ### 3.1 Export with the current exporter
# `torch.onnx.export(..., dynamo=True)` (the default in PyTorch 2.9 and later) traces the model with
# `torch.export` and writes ONNX opset 20 by default. A **dynamic batch** is declared with
# `dynamic_shapes`, keyed by the name of the forward method's argument (`x` for our ResNet-18, as in
# torchvision; `input` for an `nn.Sequential`: print `inspect.signature(model.forward)` to check).
# The example input has a batch of 8 on purpose: `torch.export` treats a dimension of size 1 as a
# constant, so a batch-1 example either fails against the declared dynamic batch or, without one,
# yields a model that accepts only batch 1.

# %% tags=["nbval-ignore-output"]
resnet = ResNet18(num_classes=10).eval()
RESNET_BATCH = 8
resnet_example = torch.rand(RESNET_BATCH, 3, 224, 224)
batch = torch.export.Dim("batch", min=1, max=256)
resnet_onnx = WORK / "resnet18.onnx"
torch.onnx.export(resnet, (resnet_example,), resnet_onnx, dynamo=True, dynamic_shapes={"x": {0: batch}},
                  verbose=False)
model_files(resnet_onnx)

# %% [markdown]
# Two files: the graph (`resnet18.onnx`, under 100 KB; its exact size depends on the folder the
# course sits in, since the exporter records where each layer's code is) and the weights in a side file
# (`resnet18.onnx.data`), which the exporter writes by default even for small models. **Ship both**,
# in the same folder: the graph refers to the weights file by name. A single file (possible up to
# ONNX's 2 GB protobuf limit) comes either from loading the pair and saving it again, as here for the
# rest of the chapter, or from exporting with `external_data=False`, as for the two smaller models
# below.

# %% tags=["nbval-ignore-output"]
resnet_onnx_pair, resnet_onnx = resnet_onnx, WORK / "resnet18_single.onnx"
onnx.save_model(onnx.load(str(resnet_onnx_pair)), str(resnet_onnx))  # load reads the .data file too
model_files(resnet_onnx)

# %% tags=["nbval-ignore-output"]
digits_onnx, mlp_onnx = WORK / "digits_cnn.onnx", WORK / "mlp.onnx"
torch.onnx.export(digits_cnn, (test_images[:RESNET_BATCH],), digits_onnx, dynamo=True,
                  dynamic_shapes={"input": {0: batch}}, external_data=False, verbose=False)
torch.manual_seed(0)
mlp = nn.Sequential(nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)).eval()
mlp_example = torch.randn(64, 1024)
torch.onnx.export(mlp, (mlp_example,), mlp_onnx, dynamo=True, dynamic_shapes={"input": {0: batch}},
                  external_data=False, verbose=False)
release_freed_memory()  # the exporter's intermediate graphs, as after profiling
{path.name: model_files(path) for path in (digits_onnx, mlp_onnx)}

# %% [markdown]
# (An `nn.Sequential`'s forward argument is called `input`, the ResNet's is `x`: hence the two
# keys.) The MLP (three Linear layers, chapter 6's Linear-heavy model) is here for the
# quantization rule of section 3.6.
#
# ### 3.2 Check the file, then check the numbers
# `onnx.checker.check_model(..., full_check=True)` validates the graph against the ONNX
# specification, including shape inference. It says the file is well formed, not that it computes
# what the PyTorch model computes: parity is a separate test.

# %%
for path in (resnet_onnx, digits_onnx, mlp_onnx):
    onnx.checker.check_model(str(path), full_check=True)
resnet_graph = onnx.load(str(resnet_onnx), load_external_data=False)
print(f"opset {resnet_graph.opset_import[0].version}; checker: all three models are valid")
pd.Series(operator_counts(resnet_onnx), name="nodes in resnet18.onnx").to_frame().T

# %% [markdown]
# **Parity.** Both runtimes compute in float32 but add in different orders, so the logits differ by
# rounding. How much is expected? float32 keeps about 7 significant digits (a unit roundoff of
# $2^{-24} \approx 6 \times 10^{-8}$); a dot product of $K$ terms summed in another order differs by roughly
# $\sqrt{K}$ steps, and errors compound over the network's layers. With $K$ up to 4,608 (a 3x3
# convolution over 512 channels) and about 20 layers, $6 \times 10^{-8} \times \sqrt{4608} \times 20
# \approx 10^{-4}$ of the logits' scale: the tolerance. A mistake in the export (a wrong layer, an
# eval/train mismatch) shows as differences of the order of the logits themselves.

# %% tags=["nbval-ignore-output"]
def parity(reference: torch.Tensor, candidate: torch.Tensor, *, relative: float = 1e-4) -> dict[str, float]:
    """Largest absolute difference, the tolerance it is judged against, and changed predictions."""
    tolerance = relative * reference.abs().max().item()
    return {"largest difference": (candidate - reference).abs().max().item(), "tolerance": tolerance,
            "predictions changed": float((candidate.argmax(1) != reference.argmax(1)).sum())}


resnet_session = ort_session(resnet_onnx, threads=1)
digits_session = ort_session(digits_onnx, threads=1)
with torch.no_grad():
    parity_table = pd.DataFrame({
        "ResNet-18, 8 images": parity(resnet(resnet_example), ort_predict(resnet_session, resnet_example)),
        "digits CNN, 450 test images": parity(eager_logits, ort_predict(digits_session, test_images))}).T
parity_table

# %%
assert (parity_table["largest difference"] <= parity_table["tolerance"]).all(), "the ONNX model disagrees with PyTorch"
print("ONNX Runtime agrees with PyTorch within the float32 tolerance on both models; "
      f"predictions changed: {int(parity_table['predictions changed'].sum())}")

# %% [markdown]
# ### 3.3 What ONNX Runtime does to the graph
# Before running a model, ONNX Runtime rewrites it at the **graph optimization level** of its
# session options: `ORT_DISABLE_ALL` runs the exported nodes as they are; `ORT_ENABLE_BASIC` folds
# constants, removes redundant nodes and folds batch norms into convolutions; `ORT_ENABLE_EXTENDED`
# adds fusions such as a convolution with its activation; `ORT_ENABLE_LAYOUT` adds the layout
# changes that depend on the CPU (the NCHWc blocked layout on x86, in which a residual addition and
# its ReLU also join the convolution); `ORT_ENABLE_ALL` (the default) enables every level. The
# exported file has no BatchNormalization node
# at all (the table above): `torch.onnx.export` optimizes the graph by default (`optimize=True`) and
# already folded them. Counting the nodes at the extended level shows ONNX Runtime's own fusions
# (the blocked layout is left out: a file saved with it would be tied to this CPU):

# %%
fused_path = WORK / "resnet18_extended.onnx"
ort_session(resnet_onnx, threads=1, level="extended", save_optimized_to=fused_path)
pd.DataFrame({"exported": pd.Series(operator_counts(resnet_onnx)),
              "after ORT_ENABLE_EXTENDED": pd.Series(operator_counts(fused_path))}).fillna(0).astype(int)

# %% [markdown]
# ### 3.4 Which runtime is fastest here?
# Six ways to run ResNet-18 on a batch of 8, on one thread, in alternating rounds:
# - **eager**: PyTorch as written (chapter 1's baseline);
# - **eager, channels_last**: the same in NHWC memory layout (chapter 3);
# - **compiled + freezing**: `torch.compile` with weights frozen into the graph, so that Inductor
#   can fold batch norms into convolutions and pick oneDNN's blocked layouts ahead of time; it goes
#   through chapter 3's `compile_for_inference`, which switches freezing on only while the graph is
#   traced and checks that its passes ran (passed as `torch.compile(options={"freezing": True})` it
#   arrives too late and the graph compiles unfrozen, without a word: chapter 3);
# - **ONNX Runtime** at three levels of the same file: optimizations off, extended (fusions, no
#   layout change), and all (the default, adding the blocked layout): the rows separate the gain of
#   the fusions from that of the layout.
#
# Eager runs under `torch.no_grad()`, as the compiled model was compiled (a serving loop would use
# `torch.inference_mode()`, which also skips autograd's version counters). The compilation and the
# sessions' creation are timed once, outside the rounds (section 3.5 reads them). Whether the
# compilation was cold or warm shows in Inductor's cache directory: a cold start builds kernels
# into it, a warm one finds them all there (with freezing, Inductor's cache of whole graphs is
# bypassed, so the built kernels are what a warm start reuses). The two claims after the table use
# section 2.5's rule: a fifth off (1.25x) for a runtime against eager PyTorch, a tenth off (1.11x)
# to prefer one optimized runtime over another.

# %% tags=["nbval-ignore-output"]
kernels_before = built_kernels()
resnet_compiled, compile_s = compile_for_inference(resnet, resnet_example, freezing=True)
new_kernels = len(built_kernels() - kernels_before)
compile_start = f"cold: built {new_kernels} kernels" if new_kernels else "warm: every kernel from Inductor's cache"
print(f"first call of the compiled model: {compile_s:.1f} s ({compile_start})")
resnet_channels_last = copy.deepcopy(resnet).to(memory_format=torch.channels_last)
example_channels_last = resnet_example.contiguous(memory_format=torch.channels_last)
example_array = resnet_example.numpy()
session_seconds, level_sessions = {}, {}
for level in ("off", "extended", "all"):
    start = time.perf_counter()
    level_sessions[level] = ort_session(resnet_onnx, threads=1, level=level)
    session_seconds[level] = time.perf_counter() - start
with torch.no_grad():
    runtime_timings = measure_interleaved({
        "eager": lambda: resnet(resnet_example),
        "eager, channels_last": lambda: resnet_channels_last(example_channels_last),
        "compiled + freezing": lambda: resnet_compiled(resnet_example),
        **{f"ONNX Runtime, {level}": (lambda s=session: s.run(None, {"x": example_array}))
           for level, session in level_sessions.items()},
    }, rounds=8, min_run_time=0.4, warmup=1)
runtime_table = timing_table(runtime_timings, baseline="eager")
del level_sessions, resnet_channels_last, resnet_compiled  # measured: free their memory
forget_compiled_code()  # and the compiled code
release_freed_memory()  # and hand back what this cell freed (housekeeping note)
runtime_table.round(2)

# %% tags=["nbval-ignore-output"]
ort_claim = make_claim(7, "onnxruntime_vs_eager", "ONNX Runtime (all graph optimizations) runs ResNet-18 at batch 8, "
                       "one thread, at least 1.25x faster than eager PyTorch.", threshold=1.25,
                       ratio=timing_ratio(runtime_timings["eager"], runtime_timings["ONNX Runtime, all"]),
                       hardware=hw.cpu_label)
claims.append(ort_claim)
report_claim(ort_claim,
             holds="The ONNX graph has its batch norms folded (by the exporter), and ONNX Runtime rewrites it "
                   "further (fusions, then its blocked layout): the next lines split its own gain between the two.",
             does_not_hold="Here PyTorch's eager oneDNN convolutions keep up with ONNX Runtime's: compare the "
                           "optimizations-off row, which has only the exporter's batch-norm folding.")

# %% tags=["nbval-ignore-output"]
compiled_claim = make_claim(7, "onnxruntime", "ONNX Runtime (all graph optimizations) runs ResNet-18 "
                            "at batch 8, one thread, at least 1.11x faster than PyTorch compiled with freezing.",
                            threshold=1.11, ratio=timing_ratio(runtime_timings["compiled + freezing"],
                                                               runtime_timings["ONNX Runtime, all"]),
                            hardware=hw.cpu_label)
claims.append(compiled_claim)
report_claim(compiled_claim,
             holds="ONNX Runtime's kernels or layout beat Inductor's oneDNN code for this network on this CPU.",
             does_not_hold="PyTorch's own compiler does the same kind of rewriting: against the fair baseline, "
                           "ONNX Runtime's advantage is deployment (no PyTorch, no compile), not speed.")

# %% tags=["nbval-ignore-output"]
fusion_gain = timing_ratio(runtime_timings["ONNX Runtime, off"], runtime_timings["ONNX Runtime, extended"])
layout_gain = timing_ratio(runtime_timings["ONNX Runtime, extended"], runtime_timings["ONNX Runtime, all"])
print(f"ONNX Runtime's own fusions (extended against off): {fusion_gain}")
print(f"its blocked layout (all against extended):        {layout_gain}")
print("Here the blocked layout is the gain: the fusions alone changed nothing measurable." if fusion_gain.high < 1.02
      and layout_gain.low > 1.02 else "Here the fusions pay on their own too: compare the two intervals.")

# %% [markdown]
# Read the table against the levels: optimizations off is ONNX Runtime's plain kernels on the
# exporter's graph (batch norms already folded), extended adds its fusions, all adds the blocked
# layout; the two lines above split ONNX Runtime's gain between them, with intervals. The fair
# baseline for a runtime is PyTorch at its best, compiled with freezing, which does the same kind
# of rewriting; the second claim reads that comparison. Eager channels_last alone changes the
# layout without any fusion.
#
# **ONNX Runtime's own profiler** answers the question of section 2 inside the engine: which of its
# operators take the time. `SessionOptions.enable_profiling = True` makes the session write a JSON
# trace (the same Chrome format as PyTorch's, readable in Perfetto) of every node it ran:

# %% tags=["nbval-ignore-output"]
ort_profile, ort_trace = profile_operators(resnet_onnx, {"x": example_array}, runs=3, folder=WORK)
print(f"{ort_trace.name}: {ort_trace.stat().st_size / 1e3:.0f} KB of Chrome-trace JSON (open it in Perfetto)")
ort_profile.round(2)

# %% [markdown]
# Each node the session ran is an event of category `Node` whose `args` name its operator type,
# shapes and execution provider; `profile_operators` drops the warm-up run and sums the rest by
# type (the NCHWc convolutions still report `Conv`). What the shares leave below 100% is the
# session's own work between kernels.
#
# On a GPU, ONNX Runtime runs the same file through an **execution provider**: install the separate
# `onnxruntime-gpu` package (not beside `onnxruntime`), then
# `ort.InferenceSession(path, providers=["TensorrtExecutionProvider", "CUDAExecutionProvider",
# "CPUExecutionProvider"])` tries them in order, node by node (`ort.get_available_providers()`
# lists what the build has; OpenVINO's provider plays the same part on Intel hardware). With
# `session.io_binding()` inputs and outputs stay on the GPU instead of being copied from and to
# NumPy arrays on every call.

# %% [markdown]
# ### 3.5 Deployment: what each route costs at start-up
# Speed per call is half of the deployment question; the other half is what a new process needs
# before its first answer. Three routes:
# - **ONNX Runtime** needs no PyTorch at all (a smaller install); creating a session runs its graph
#   optimizations on every start. A model optimized once and saved at the extended level
#   (`optimized_model_filepath`, as section 3.3 did; a saved layout would tie the file to one CPU)
#   can be loaded with the layout level still on: the earlier passes then find nothing left to do,
#   and only the CPU-specific layout changes the graph at load.
# - **`torch.compile`** needs PyTorch and a C++ compiler (Triton on a GPU) in the serving process,
#   and compiles at the first call of every new process: cold on a new machine, warm where
#   Inductor's cache directory survived (chapter 3 measures both, and the remedies).
# - **AOTInductor** compiles ahead of time: `torch.export`, then
#   `torch._inductor.aoti_compile_and_package` writes a `.pt2` package (a shared library and the
#   weights) that `torch._inductor.aoti_load_package` loads from Python, or AOTInductor's C++
#   runtime from a program without Python: no compiler and no compilation at start-up.
#
# This run's start-up costs (measured in section 3.4, outside the timing rounds):

# %% tags=["nbval-ignore-output"]
pd.Series({f"ONNX Runtime session, level {level}": f"{seconds:.2f} s" for level, seconds in session_seconds.items()}
          | {"torch.compile + freezing, first call": f"{compile_s:.1f} s ({compile_start})"},
          name="start-up on this machine").to_frame()

# %% [markdown]
# AOTInductor's own compile builds a shared library with the C++ compiler, which takes longer than
# this chapter's time budget allows on a small CPU, so it is opt-in: set the flag to `True` to
# compile the package, load it, check it against eager and time the load. The two functions it
# calls (a unit test runs them on a small model and checks that loading takes a fraction of the
# compile):

# %% tags=["nbval-ignore-output"]
from helpers.ch07_tools.deployment import compile_package, load_package

display(show_source(compile_package))
show_source(load_package)

# %% tags=["nbval-ignore-output"]
RUN_AOT_INDUCTOR = False  # True: compile ResNet-18 ahead of time (longer than the chapter's budget, a few hundred MB)
if not RUN_AOT_INDUCTOR:
    print("AOTInductor skipped (RUN_AOT_INDUCTOR = False): set it to True to compile, load and check the package.")
else:
    aot_path = WORK / "resnet18.pt2"
    aot_compile_s = compile_package(resnet, resnet_example, aot_path, dynamic_shapes={"x": {0: batch}})
    aot_resnet, aot_load_s = load_package(aot_path)
    with torch.no_grad():
        aot_parity = parity(resnet(resnet_example), aot_resnet(resnet_example))
    assert aot_parity["largest difference"] <= aot_parity["tolerance"], "the AOTInductor package disagrees with eager"
    print(f"AOTInductor: compiled ahead of time in {aot_compile_s:.1f} s (once, before deployment); loaded in "
          f"{aot_load_s:.2f} s; largest difference from eager {aot_parity['largest difference']:.1e}")
    del aot_resnet
    release_freed_memory()

# %% [markdown]
# ### 3.6 int8 with ONNX Runtime: static for convolutions, dynamic for Linear layers
# ONNX Runtime quantizes the ONNX file itself. Two modes, as in chapter 6:
# - **`quantize_static`**: activation ranges are measured once on calibration batches (real ones:
#   here training images), and the file gets QuantizeLinear/DequantizeLinear (**QDQ**) pairs
#   around each convolution, which the session fuses into int8 convolutions. `per_channel=True`
#   gives each output channel of a weight its own scale.
# - **`quantize_dynamic`**: weights are int8 in the file, activation ranges are measured at run
#   time, on every call.
#
# Two details decide the speed on x86. The activation type: ONNX Runtime's x86 int8 kernels
# multiply **unsigned** 8-bit activations by signed 8-bit weights (U8S8, the `vpmaddubsw` and VNNI
# instructions); ONNX Runtime's default for `quantize_static` is signed activations (S8S8), both
# are measured below (the claim asks U8S8 for 2.5x: int8 moves a quarter of fp32's bytes and VNNI
# does four multiply-adds per lane, less what the quantize steps and float layers keep). And
# `reduce_range`: on CPUs without VNNI, 7-bit weights avoid the saturation
# of `vpmaddubsw` (chapter 6), decided from this CPU's flags:

# %% tags=["nbval-ignore-output"]
reduce_range = reduce_range_advised()
print(f"this CPU needs reduce_range: {reduce_range}")
resnet_prepared = WORK / "resnet18_prepared.onnx"
quant_pre_process(str(resnet_onnx), str(resnet_prepared), skip_symbolic_shape=True)  # see below
release_freed_memory()
calibration = [torch.rand(2, 3, 224, 224)]  # untrained weights: one small batch sets the ranges

# %% [markdown]
# `quant_pre_process` runs ONNX's shape inference and ONNX Runtime's basic graph clean-up, which
# quantization expects (it warns without them). Its symbolic shape inference is skipped: it serves
# models whose shapes ONNX's own inference cannot follow (some transformer operators), and costs
# hundreds of MB. For ResNet-18 (untrained) the calibration batch is two random images: its speed
# does not depend on them. The digits CNN below is calibrated on real training images, and its accuracy measured.

# %% tags=["nbval-ignore-output"]
resnet_int8 = {"int8 static, U8S8": WORK / "resnet18_int8_u8s8.onnx",
               "int8 static, S8S8 (default types)": WORK / "resnet18_int8_s8s8.onnx"}
for (name, path), activation_type in zip(resnet_int8.items(), (QuantType.QUInt8, QuantType.QInt8)):
    quantize_static(str(resnet_prepared), str(path), CalibrationBatches("x", calibration),
                    quant_format=QuantFormat.QDQ, per_channel=True, activation_type=activation_type,
                    weight_type=QuantType.QInt8, reduce_range=reduce_range)
int8_sessions = {name: ort_session(path, threads=1) for name, path in resnet_int8.items()}
int8_timings = measure_interleaved({"fp32": lambda: resnet_session.run(None, {"x": example_array}),
                                    **{name: (lambda s=session: s.run(None, {"x": example_array}))
                                       for name, session in int8_sessions.items()}},
                                   rounds=8, min_run_time=0.6, warmup=1)
int8_table = timing_table(int8_timings, baseline="fp32")
int8_table["file size (MB)"] = pd.Series({"fp32": sum(model_files(resnet_onnx).values()) / 1e6} |
                                         {name: sum(model_files(path).values()) / 1e6
                                          for name, path in resnet_int8.items()})
del int8_sessions  # measured: free their memory
release_freed_memory()
int8_table.round(2)

# %% tags=["nbval-ignore-output"]
int8_claim = make_claim(7, "onnxruntime_int8_static", "ONNX Runtime static int8 (QDQ, per-channel, U8S8) runs "
                        "ResNet-18 at batch 8 at least 2.5x faster than ONNX Runtime fp32.", threshold=2.5,
                        ratio=timing_ratio(int8_timings["fp32"], int8_timings["int8 static, U8S8"]),
                        hardware=hw.cpu_label)
claims.append(int8_claim)
report_claim(int8_claim,
             holds="With VNNI one instruction does four int8 multiply-adds per 32-bit lane where a float32 FMA "
                   "does one (AMX tiles do more still), and the int8 activations and weights are a quarter of "
                   "the bytes.",
             does_not_hold="Without int8 dot-product instructions (VNNI), the int8 convolutions need extra "
                           "instructions per multiply-add and give back most of the gain.")

# %% [markdown]
# Why the two activation types can differ: the session fuses the dequantize, convolution and quantize
# steps around a convolution into one int8 convolution (`QLinearConv`) only under conditions of its
# own; a convolution it does not fuse runs in float between those steps. Counting the nodes each
# session kept (at the extended level, where these fusions happen) shows how many it fused here:

# %% tags=["nbval-ignore-output"]
fused_counts = {}
for name, path in resnet_int8.items():
    fused_path = path.with_name(path.stem + "_extended.onnx")
    ort_session(path, threads=1, level="extended", save_optimized_to=fused_path)
    counts = operator_counts(fused_path)
    fused_counts[name] = {op: counts.get(op, 0) for op in ("QLinearConv", "Conv", "QuantizeLinear", "DequantizeLinear")}
fused_table = pd.DataFrame(fused_counts).T
unfused = {name: int(row["Conv"]) for name, row in fused_table.iterrows() if row["Conv"] > 0}
print("Every convolution became an int8 QLinearConv in both files." if not unfused else
      f"Convolutions left in float between quantize and dequantize steps: {unfused}.")
fused_table

# %% [markdown]
# **Which convolutions stayed float, and why.** ONNX Runtime's x86 builds do not fuse convolutions
# with signed activations, and a fused convolution's input and output must share a type. So for
# an S8S8 file the session first rewrites each signed QuantizeLinear/DequantizeLinear pair as
# unsigned (same values, zero point moved up by 128), but **only where a single node reads the
# quantized tensor**. A tensor read by two nodes (the session gives each reader its own
# DequantizeLinear) stays signed, and every convolution that reads or writes it runs in float
# between a dequantize and a quantize step: the conversions come on top, and around those float
# convolutions the blocked layout is lost (the Transpose and Reorder rows of the profile below). In
# ResNet-18 those tensors are the residual blocks' inputs, read by the block's first convolution
# and by its skip connection (the addition, or the 1x1 downsample convolution). The table gives
# each convolution of the S8S8 file with this evidence, and how the same layer runs in the U8S8 file.
#
# The rule belongs to ONNX Runtime's x86 builds: on ARM CPUs (Apple Silicon, Graviton) signed
# activations fuse everywhere, and S8S8 can come out ahead. Measure both on the CPU you deploy to.

# %% tags=["nbval-ignore-output"]
conv_tables = {name: convolution_table(path.with_name(path.stem + "_extended.onnx"))
               for name, path in resnet_int8.items()}
signed_table = conv_tables["int8 static, S8S8 (default types)"].drop(columns="ONNX node")
left_float = signed_table["runs as"] == "float Conv"
shared = (signed_table["readers of the quantized input"] > 1) | (signed_table["readers of the quantized output"] > 1)
print(f"S8S8: {left_float.sum()} of {len(signed_table)} convolutions left in float: "
      f"{', '.join(signed_table.index[left_float])}")
print("On this CPU, a convolution stayed float exactly where it reads or writes a quantized tensor with two readers."
      if (left_float == shared).all() else
      "On this CPU the fusions do not follow the x86 rule (an ARM CPU allows int8 activations: see above).")
signed_table.assign(**{"in the U8S8 file": conv_tables["int8 static, U8S8"]["runs as"]})

# %% [markdown]
# ONNX Runtime's profiler (section 3.4) on the S8S8 file shows what the float convolutions cost:

# %% tags=["nbval-ignore-output"]
signed_profile, _ = profile_operators(resnet_int8["int8 static, S8S8 (default types)"], {"x": example_array},
                                      runs=2, folder=WORK)
signed_profile.round(2)

# %% [markdown]
#
# **Dynamic int8** is measured on both kinds of model: ResNet-18 (convolutions; at batch 2, since
# it is slow) and the MLP (Linear layers), each against an fp32 session of the same file.

# %% tags=["nbval-ignore-output"]
mlp_prepared = WORK / "mlp_prepared.onnx"
quant_pre_process(str(mlp_onnx), str(mlp_prepared), skip_symbolic_shape=True)
dynamic_files = {"ResNet-18 (convolutions), batch 2": (resnet_prepared, resnet_session, "x", example_array[:2]),
                 "MLP (Linear layers), batch 64": (mlp_prepared, ort_session(mlp_prepared, threads=1), "input",
                                                   mlp_example.numpy())}
dynamic_rows, dynamic_timings = {}, {}
for name, (prepared, fp32_session, input_name, array) in dynamic_files.items():
    dynamic_path = prepared.with_name(prepared.stem.replace("prepared", "int8_dynamic") + ".onnx")
    quantize_dynamic(str(prepared), str(dynamic_path), weight_type=QuantType.QInt8, reduce_range=reduce_range)
    dynamic_session = ort_session(dynamic_path, threads=1)
    timings = measure_interleaved({"fp32": lambda: fp32_session.run(None, {input_name: array}),
                                   "int8 dynamic": lambda: dynamic_session.run(None, {input_name: array})},
                                  rounds=8, min_run_time=0.35, warmup=1)
    dynamic_rows[name], dynamic_timings[name] = timing_ratio(timings["fp32"], timings["int8 dynamic"]), timings
    del dynamic_session
    release_freed_memory()  # hand back what this measurement freed (housekeeping note)
pd.Series({name: str(ratio) for name, ratio in dynamic_rows.items()}, name="int8 dynamic against fp32").to_frame()

# %% [markdown]
# Read the ResNet-18 row: dynamic quantization turns each convolution into a `DynamicQuantizeLinear`
# of its input (a pass over the activation to find its range, then one to quantize it) and a
# `ConvInteger` followed by float rescaling, bias and ReLU, none of them fused and none in ONNX
# Runtime's blocked layout. It is the right tool for models made of **Linear layers**
# (transformers, MLPs), where the weights dominate the bytes and the matrix products run in int8;
# the claim asks it for 1.5x on the MLP, less than static int8's 2.5x since each call measures and
# quantizes its activations first.

# %% tags=["nbval-ignore-output"]
dynamic_claim = make_claim(7, "onnxruntime_int8_dynamic_mlp", "ONNX Runtime dynamic int8 runs the Linear-heavy "
                           "MLP at batch 64 at least 1.5x faster than fp32.", threshold=1.5,
                           ratio=dynamic_rows["MLP (Linear layers), batch 64"],
                           hardware=hw.cpu_label)
claims.append(dynamic_claim)
report_claim(dynamic_claim,
             holds="Dynamic int8 pays on Linear layers; the ResNet-18 row above shows what it does to convolutions.",
             does_not_hold="Not on this CPU: without fast int8 dot products the per-call range measurement "
                           "and quantization of the activations eat the gain.")

# %% [markdown]
# **Accuracy.** Speed means nothing if the predictions change. The digits CNN, trained above, is
# quantized the same ways, calibrated on 256 real training images (normalized like the test
# images), and scored on the 450 test images:

# %% tags=["nbval-ignore-output"]
digits_prepared, digits_static, digits_dynamic = (WORK / f"digits_cnn_{kind}.onnx"
                                                  for kind in ("prepared", "int8_static", "int8_dynamic"))
quant_pre_process(str(digits_onnx), str(digits_prepared), skip_symbolic_shape=True)
train_images = batch_normalize(F.interpolate(digits.x_train[:256], size=IMAGE_SIZE, mode="bilinear",
                                             antialias=True))
quantize_static(str(digits_prepared), str(digits_static), CalibrationBatches("input", train_images.split(64)),
                quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, reduce_range=reduce_range)
quantize_dynamic(str(digits_prepared), str(digits_dynamic), weight_type=QuantType.QInt8, reduce_range=reduce_range)
accuracy_rows = {}
for name, path in {"fp32": digits_onnx, "int8 static": digits_static, "int8 dynamic": digits_dynamic}.items():
    logits = ort_predict(ort_session(path, threads=1), test_images)
    accuracy_rows[name] = {"test accuracy (%)": 100 * (logits.argmax(1) == digits.y_test).float().mean().item(),
                           "predictions changed": int((logits.argmax(1) != eager_logits.argmax(1)).sum()),
                           "file size (KB)": sum(model_files(path).values()) / 1e3}
pd.DataFrame(accuracy_rows).T.round(2)

# %% [markdown]
# A handful of changed predictions out of 450 is within what a different calibration set or seed
# would move (chapter 6 measured that spread); a large drop would point at the calibration batches
# (too few, or not like the real inputs) or at saturation (`reduce_range` on CPUs without VNNI). The
# file shrinks less than ResNet-18's nearly 4x (the size ratio is printed below): in a model this
# small, the graph itself, the biases and each channel's scale and zero point are a large share
# of the file.

# %% tags=["nbval-ignore-output"]
for name in ("int8 static", "int8 dynamic"):
    print(f"digits CNN, {name}: {accuracy_rows['fp32']['file size (KB)'] / accuracy_rows[name]['file size (KB)']:.1f}x "
          "smaller than fp32")
print("ResNet-18, int8 static: "
      f"{int8_table.loc['fp32', 'file size (MB)'] / int8_table.loc['int8 static, U8S8', 'file size (MB)']:.1f}x smaller")

# %% [markdown]
# ### 3.7 The runtime widget: latency against throughput
# The tables above measured one batch size on one thread. A service chooses both: a larger batch
# spreads each call's fixed costs over more images, which raises throughput only where those costs
# were large, and makes every request in it wait for the whole batch (latency); a second thread
# may help some runtimes more than others (the threads knob tries it). Pick a runtime and a thread
# count; the widget measures it at every batch size in alternating rounds. (The compiled model is
# not offered: compiled with `dynamic=False`, as in section 3.4, it compiles once per batch size,
# seconds and a few hundred MB each; section 3.8 shows the recompiles.) First the default setting,
# measured and drawn:

# %%
RUNTIMES = ["eager", "eager, channels_last", "ONNX Runtime", "ONNX Runtime int8 (static, U8S8)"]
WIDGET_BATCHES = (1, 2, 4, 8, 16)
RUNTIME_FILES = {"ONNX Runtime": resnet_onnx, "ONNX Runtime int8 (static, U8S8)": resnet_int8["int8 static, U8S8"]}
widget_sessions = {("ONNX Runtime", 1): resnet_session}  # (runtime, threads) -> a session, made on first use
widget_models = {"eager": resnet, "eager, channels_last": copy.deepcopy(resnet).to(memory_format=torch.channels_last)}


def runtime_call(runtime: str, threads: int, images: torch.Tensor) -> object:
    """A call that runs ResNet-18 on images with the chosen runtime and thread count."""
    if runtime in RUNTIME_FILES:
        if (runtime, threads) not in widget_sessions:
            widget_sessions[runtime, threads] = ort_session(RUNTIME_FILES[runtime], threads=threads)
        session, array = widget_sessions[runtime, threads], images.numpy()
        return lambda: session.run(None, {"x": array})
    if runtime == "eager, channels_last":
        images = images.contiguous(memory_format=torch.channels_last)
    model = widget_models[runtime]
    return lambda: model(images)


def throughput_curve(runtime: str, threads: int) -> pd.DataFrame:
    """Latency and throughput of one runtime at every batch size, measured in alternating rounds."""
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            calls = {batch: runtime_call(runtime, threads, torch.rand(batch, 3, 224, 224)) for batch in WIDGET_BATCHES}
            timings = measure_interleaved(calls, rounds=3, min_run_time=0.15, warmup=1)
    finally:
        torch.set_num_threads(1)
    table = pd.DataFrame({"latency (ms)": {batch: timing.median_ms for batch, timing in timings.items()}})
    table["images per second"] = table.index / (table["latency (ms)"] / 1e3)
    table.index.name = f"batch ({runtime}, {threads} thread{'s' * (threads > 1)})"
    return table.round(1)


# %% tags=["nbval-ignore-output"]
default_curve = throughput_curve("ONNX Runtime", 1)
curve_figure = plot_sweep(list(WIDGET_BATCHES), {"latency": default_curve["latency (ms)"],
                                                 "throughput": default_curve["images per second"]},
                          xlabel="batch size", ylabels={"latency": "ms per batch", "throughput": "images per second"},
                          hardware=hw.cpu_label, title="ResNet-18 in ONNX Runtime, one thread")
for axis in curve_figure.axes:
    axis.set_ylim(bottom=0)  # from zero: a flat curve looks flat
throughput_change = default_curve["images per second"].iloc[-1] / default_curve["images per second"].iloc[0] - 1
print(f"throughput from batch 1 to batch 16: {throughput_change:+.0%}; latency grows "
      f"{default_curve['latency (ms)'].iloc[-1] / default_curve['latency (ms)'].iloc[0]:.0f}x")
curve_figure

# %% tags=["nbval-ignore-output"]
live_control(throughput_curve, initial=default_curve,
             runtime=widgets.ToggleButtons(options=RUNTIMES, value="ONNX Runtime", description="runtime"),
             threads=widgets.ToggleButtons(options=sorted({1, min(2, os.cpu_count() or 1)}), value=1,
                                           description="threads"))

# %% [markdown]
# Things to try: does throughput grow with the batch on this CPU, or is one thread already busy at
# batch 1 (where a GPU, with far more parallel units, would keep gaining)? Then switch to two
# threads and compare the gain at batch 1 with that at batch 16.
#
# ### 3.8 When `torch.compile` misbehaves: recompiles and graph breaks
# A compiled model that runs slower than expected is often one that compiles again and again, or
# one whose graph breaks into pieces around code Dynamo cannot trace. PyTorch reports both:
# `TORCH_LOGS="recompiles,graph_breaks"` in the environment (or `torch._logging.set_logs(...)` in a
# notebook) logs each one with its reason, `torch._dynamo.explain(fn)(inputs)` counts the graphs and
# the breaks, and for a whole program `TORCH_TRACE=/tmp/trace python train.py` then `tlparse
# /tmp/trace` writes an HTML report of every compile. The demonstrations below use the eager
# backend (Dynamo traces and guards, Inductor does not compile), so they take a second, and the
# digits CNN: first the same model at three batch sizes.

# %% tags=["nbval-ignore-output"]
graphs_before = graphs_compiled()
torch._logging.set_logs(recompiles=True)
traced_cnn = torch.compile(digits_cnn, backend="eager")
with torch.no_grad():
    for batch_size in (8, 16, 32):
        traced_cnn(test_images[:batch_size])
torch._logging.set_logs()  # back to the defaults
print(f"graphs compiled for batch sizes 8, 16 and 32: {graphs_compiled() - graphs_before}")

# %% [markdown]
# The log (in red above; Dynamo names the wrapper it traced, `inner`) names the guard that failed:
# the batch size was 8, now 16. After that
# second size Dynamo marks the dimension dynamic ("automatic dynamic shapes"), so batch 32 reuses
# the second graph without a new compile. With `dynamic=False` (section 3.4) every size compiles
# its own graph. Then a graph break: the training step of section 2 logs the loss with `.item()`,
# which Dynamo cannot put into a graph:

# %% tags=["nbval-ignore-output"]
logged_losses = []


def logged_loss(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A forward pass that logs its loss with .item(), as section 2's loop does, then scores the batch."""
    logits = digits_cnn(images)
    loss = F.cross_entropy(logits, labels)
    logged_losses.append(loss.item())
    return loss, (logits.argmax(1) == labels).float().mean()


explanation = torch._dynamo.explain(logged_loss)(test_images[:BATCH], digits.y_test[:BATCH])
print(f"graphs: {explanation.graph_count}, graph breaks: {explanation.graph_break_count}")
print("reason:", str(explanation.break_reasons[0].reason).splitlines()[0])
torch._dynamo.reset()

# %% [markdown]
# ## 4. TensorRT, the current API
# **Read this first: this section's code was checked against the real TensorRT 11.4 and 10.16
# Python bindings (every name it uses, section 4.2) but has never been executed by the course**,
# whose test machines cannot install TensorRT's libraries. With an NVIDIA GPU and TensorRT, section
# 4.3 builds an engine, asserts its logits against fp32 and times it against PyTorch's fp16
# baselines; elsewhere it prints why it skipped and how to install TensorRT.
#
# TensorRT compiles a network for one NVIDIA GPU: it fuses layers, picks kernels by timing them on
# that GPU, and serializes the result as an **engine** (a *plan* file), which by default runs only
# with the same TensorRT version and GPU model (`BuilderFlag.VERSION_COMPATIBLE` and
# `HardwareCompatibilityLevel.AMPERE_PLUS` relax that, for some speed). Its API changed a great
# deal in versions 10 and 11; most tutorials still show the old one:
#
# | TensorRT 8 tutorials | TensorRT 10 (weak typing by default) | TensorRT 11 (strong typing only) |
# |---|---|---|
# | `create_network(1 << int(NetworkDefinitionCreationFlag.EXPLICIT_BATCH))` | `create_network(1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED))` for strong typing; explicit batch always | the same call (the flag is accepted) |
# | `config.max_workspace_size = ...` | `config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, ...)` | the same |
# | `config.set_flag(trt.BuilderFlag.FP16)` / `INT8` | the same, deprecated from 10.12; or a strongly typed fp16 model | removed: precision from the model (an fp16 export, or ModelOpt's AutoCast) |
# | an `IInt8EntropyCalibrator2` for int8 | deprecated from 10.1: explicit Q/DQ nodes in the model | removed: explicit Q/DQ nodes |
# | `builder.platform_has_fast_fp16` | deprecated | removed |
# | `builder.build_engine(network, config)` (the article's call, quoted: was wrong) | removed: `build_serialized_network`, then `Runtime.deserialize_cuda_engine` | the same |
# | bindings by index, `context.execute_async_v2(bindings, stream)` | removed: tensors by name, `set_input_shape`, `set_tensor_address`, `execute_async_v3(stream)` | the same |
#
# Strongly typed networks let the same code serve TensorRT 10 and 11: only the network's creation
# flag differs (10 needs `STRONGLY_TYPED`, 11 ignores it).
#
# ### 4.1 The code
# Build a plan from an ONNX file (parse it and check the result, declare the batch range of the
# dynamic dimension), then run it on torch CUDA tensors, on a CUDA stream of its own: on the legacy
# default stream TensorRT adds synchronisations of its own and warns about it.

# %%
from helpers.ch07_tools.tensorrt_engine import (
    EngineRunner, build_plan, plan_path_for, tensorrt_missing, tensorrt_version,
)

show_source(build_plan)

# %%
show_source(EngineRunner)

# %% [markdown]
# ### 4.2 What can be verified without a GPU
# TensorRT's Python bindings are a wheel of their own, and their compiled module, even where it
# cannot be loaded, is a file whose strings name every class, method and enum member it registers.
# The collapsed cells below read the real bindings of TensorRT 11.4 (installed with the course) and
# 10.16 (downloaded once into `.cache/`) and look up every TensorRT name the code above uses, and
# the old names of the table. The evidence column says how each name was found; "name only (weak)"
# means only that the string exists somewhere in the module. This proves that the names exist in
# both releases and that the removed ones are gone from the release that removed them; not that the
# arguments are right, nor that an engine builds: only section 4.3 on a GPU shows that.

# %% jupyter={"source_hidden": true} tags=["nbval-ignore-output"]
import helpers.ch07_tools.tensorrt_engine as tensorrt_engine_module
from helpers.ch07_tools.tensorrt_names import (
    bindings_library, bindings_wheel, check_names_across, read_names, removed_names_table,
)

releases = []
for label, find in (("11.4 (installed)", bindings_library),
                    ("10.16 (wheel in .cache/, fetched by make setup)", lambda: bindings_wheel(download=False))):
    try:
        source = find()
        if source is None:
            raise FileNotFoundError("the bindings wheel is not installed (pip install tensorrt-cu13-bindings)")
        releases.append(read_names(source))
    except (OSError, RuntimeError) as error:
        print(f"TensorRT {label}: not checked ({error})")
if releases:
    display(check_names_across(Path(tensorrt_engine_module.__file__).read_text(), releases))

# %% jupyter={"source_hidden": true} tags=["nbval-ignore-output"]
if releases:
    display(removed_names_table(*releases))

# %% [markdown]
# ### 4.3 On an NVIDIA GPU: build, check, time
# A strongly typed network takes its precision from the model, so the engine comes from an **fp16
# ONNX file** (`.half()`, then export; NVIDIA's production route, ModelOpt's AutoCast, converts
# the fp32 file and keeps sensitive layers in fp32). The plan is cached under a key of the ONNX
# file's content, the batch range, the TensorRT version and the GPU: a retrained model never
# reuses a stale plan.
#
# **Which tolerance?** Section 3.2's rule was derived for fp32; what it gives in fp16 is Exercise
# 2's question. Here the tolerance is set by what the test must catch, a wrong engine, against a
# true fp32 reference (the CPU's logits, no TF32), with PyTorch's own fp16 printed beside it.
# Polygraphy (`polygraphy run model.onnx --trt --onnxrt`) makes such comparisons from the
# command line. The baselines are PyTorch at its best in fp16: channels_last, and `torch.compile`
# with and without CUDA graphs, since eager at small batches is bound by launching kernels.

# %% tags=["nbval-ignore-output"]
tensorrt_problem = tensorrt_missing()
tensorrt_timings = tensorrt_claim = None
if tensorrt_problem:
    print(f"TensorRT skipped: {tensorrt_problem}.\nOn an NVIDIA GPU with TensorRT 10 or 11 the cells of this section "
          "export ResNet-18 in fp16, build and cache a plan, assert that the engine's logits stay within a tenth of "
          "the logits' scale of fp32 (PyTorch's own fp16 printed beside), and time the engine against eager fp16 "
          "(NCHW and channels_last) and torch.compile with freezing.")
else:  # 1. An fp16 model, exported, and its plan, built once and cached under a key of the model and the profile
    gpu_resnet = copy.deepcopy(resnet).cuda().half()
    fp16_onnx = WORK / "resnet18_fp16.onnx"
    torch.onnx.export(gpu_resnet, (resnet_example.cuda().half(),), fp16_onnx, dynamo=True,
                      dynamic_shapes={"x": {0: batch}}, verbose=False)
    profile_shapes = ((1, 3, 224, 224), (RESNET_BATCH, 3, 224, 224), (32, 3, 224, 224))  # min, opt, max
    plan_path = plan_path_for(fp16_onnx, WORK, shapes=profile_shapes, gpu_name=torch.cuda.get_device_name(),
                              tensorrt_version=tensorrt_version())
    if plan_path.exists():
        print(f"reusing {plan_path.name}")
    else:
        start = time.perf_counter()
        build_plan(fp16_onnx, plan_path, input_name="x", min_shape=profile_shapes[0],
                   opt_shape=profile_shapes[1], max_shape=profile_shapes[2])
        print(f"built {plan_path.name} in {time.perf_counter() - start:.0f} s")
    engine = EngineRunner(plan_path)
    gpu_resnet_cl = copy.deepcopy(gpu_resnet).to(memory_format=torch.channels_last)

# %% tags=["nbval-ignore-output"]
# 2. Parity at the profile's three shapes, against true fp32 (the CPU's logits: CUDA's defaults allow TF32). What
#    the test must catch is a wrong engine, whose logits move by about their own size; what it must let through is
#    fp16 rounding, which TensorRT's kernels may accumulate in fp16 where cuDNN's use fp32. So the tolerance is a
#    tenth of the logits' scale, and PyTorch's own fp16 (two kernel families) is printed beside the engine to show
#    the rounding actually seen. (Untrained weights: small logit margins, so changed predictions say little.)
if tensorrt_problem is None:
    parity_rows = {}
    with torch.inference_mode():
        for size in (1, RESNET_BATCH, 32):
            images = resnet_example.repeat(4, 1, 1, 1)[:size]
            reference, half_images = resnet(images), images.cuda().half()
            errors = {name: (model(x).float().cpu() - reference).abs().max().item() for name, model, x in (
                ("eager fp16", gpu_resnet, half_images),
                ("eager fp16, channels_last", gpu_resnet_cl, half_images.contiguous(memory_format=torch.channels_last)),
                ("TensorRT fp16", engine, half_images))}
            scale = reference.abs().max().item()
            parity_rows[size] = errors | {"tolerance": 0.1 * scale}
    parity_gpu = pd.DataFrame.from_dict(parity_rows, orient="index").rename_axis("batch")
    display(parity_gpu)
    assert (parity_gpu["TensorRT fp16"] <= parity_gpu["tolerance"]).all(), (
        "TensorRT's logits differ from fp32 by more than the tolerance: the engine does not compute what the model does")

# %% tags=["nbval-ignore-output"]
# 3. Speed at batch 8 against PyTorch at its best in fp16: channels_last, and torch.compile with freezing, with and
#    without CUDA graphs ("reduce-overhead": the whole network replayed as one launch).
if tensorrt_problem is None:
    torch.backends.cudnn.benchmark = True  # eager convolutions pick kernels by timing, as TensorRT's build does
    example_nchw = resnet_example.cuda().half()
    example_cl = example_nchw.contiguous(memory_format=torch.channels_last)
    compiled_gpu = torch.compile(copy.deepcopy(gpu_resnet_cl))
    graphed_gpu = torch.compile(copy.deepcopy(gpu_resnet_cl), mode="reduce-overhead")
    with torch.inference_mode(), torch._inductor.config.patch(freezing=True):  # frozen while the warm-up compiles
        tensorrt_timings = measure_interleaved({
            "eager fp16": lambda: gpu_resnet(example_nchw),
            "eager fp16, channels_last": lambda: gpu_resnet_cl(example_cl),
            "torch.compile": lambda: compiled_gpu(example_cl),
            "torch.compile, CUDA graphs": lambda: graphed_gpu(example_cl),
            "TensorRT fp16": lambda: engine(example_nchw),
        }, rounds=8, min_run_time=1.0, warmup=5)  # the warm-up calls compile, and record the CUDA graphs
    display(timing_table(tensorrt_timings, baseline="eager fp16").round(3))
    tensorrt_claim = make_claim(7, "tensorrt_fp16", "A TensorRT fp16 engine runs ResNet-18 at batch 8 at least "
                                "1.11x faster than torch.compile with freezing and CUDA graphs in fp16.",
                                threshold=1.11,
                                ratio=timing_ratio(tensorrt_timings["torch.compile, CUDA graphs"],
                                                   tensorrt_timings["TensorRT fp16"]), hardware=hw.label)
    claims.append(tensorrt_claim)
    display(report_claim(tensorrt_claim,
                         holds="TensorRT's fused, timed kernels beat Inductor's, with launches out of the way on "
                               "both sides.",
                         does_not_hold="With CUDA graphs removing the launch overhead, Inductor's kernels keep up "
                                       "with TensorRT's on this GPU for this network."))

# %% tags=["nbval-ignore-output"]
# 4. Across the profile, against eager channels_last: at batch 1 the ratio is mostly eager's launch overhead (the
#    CUDA-graph row above shows how much of it PyTorch itself can remove); at 32 the kernels dominate.
if tensorrt_problem is None:
    sweep = {}
    for size in (1, RESNET_BATCH, 32):
        images = resnet_example.repeat(4, 1, 1, 1)[:size].cuda().half()
        images_cl = images.contiguous(memory_format=torch.channels_last)
        sweep[f"eager channels_last, batch {size}"] = lambda x=images_cl: gpu_resnet_cl(x)
        sweep[f"TensorRT, batch {size}"] = lambda x=images: engine(x)
    with torch.inference_mode():
        sweep_timings = measure_interleaved(sweep, rounds=8, min_run_time=0.5, warmup=3)
    display(pd.DataFrame({size: {"eager channels_last (ms)": sweep_timings[f"eager channels_last, batch {size}"]
                                 .round_median_ms,
                                 "TensorRT (ms)": sweep_timings[f"TensorRT, batch {size}"].round_median_ms,
                                 "TensorRT against eager": str(timing_ratio(
                                     sweep_timings[f"eager channels_last, batch {size}"],
                                     sweep_timings[f"TensorRT, batch {size}"]))}
                          for size in (1, RESNET_BATCH, 32)}).T.rename_axis("batch"))
    torch.backends.cudnn.benchmark = False
    del engine, gpu_resnet, gpu_resnet_cl, compiled_gpu, graphed_gpu, sweep  # CUDA graphs hold a memory pool
    torch._dynamo.reset()
    torch.cuda.empty_cache()

# %% [markdown]
# **Torch-TensorRT** is the other door: `torch_tensorrt.compile(model, ir="dynamo", inputs=[...])`
# compiles inside PyTorch, without an ONNX file, and falls back to PyTorch for what TensorRT cannot
# run. Its `enabled_precisions` option is deprecated: pass a half-precision model with
# `use_explicit_typing=True`, or `enable_autocast=True` with `low_precision_type=torch.float16`.
#
# ## 5. On a GPU
# **This section's code is new in this edition and has not yet run on a GPU**: it was written against
# PyTorch 2.14 and its helpers are tested on synthetic traces and memory snapshots; it relies on
# PyTorch's private memory APIs (`torch.cuda.memory._record_memory_history`, `_snapshot`,
# `torch._C._cuda_clearCublasWorkspaces`), which can change between releases.
#
# On a CUDA GPU the profiler adds the **kernel view**: `ProfilerActivity.CUDA` records each kernel
# on the GPU's own timeline, and the trace shows the **gaps** between kernels, the time the GPU
# waits for the CPU to launch work. Two cautions carry over from section 2: the profiler slows the
# CPU side, which on a GPU widens exactly those gaps, so the gaps are read from a light profile
# (no shapes, no memory) and the step is also timed without the profiler; and a region's time in
# a GPU profile is the CPU's time launching its kernels (or waiting, in a synchronisation), not
# the kernels' time. The `.item()` of section 2.6 becomes a synchronisation: the CPU stops until
# the GPU has finished everything queued before it.
#
# For memory, the **CUDA memory snapshot** (`torch.cuda.memory._record_memory_history()`, then
# `torch.cuda.memory._snapshot()`) records every allocation and free with its Python stack; read
# over one step, it gives the step's peak and what was alive at that moment, which is what sizes a
# batch. Not all of it is the model's: cuBLAS keeps a workspace per thread and stream (32 MiB on
# Hopper by default), measured separately below.
#
# Beyond one process, **Nsight Systems** (`nsys profile -t cuda,nvtx python train.py`) records the
# CPU, the GPU, the CUDA API and the communication libraries on one timeline, with regions you name
# with `torch.cuda.nvtx.range("step")`; for traces of many GPUs, Meta's Holistic Trace Analysis
# (HTA) computes idle time, communication overlap and kernel statistics per rank.

# %% tags=["nbval-ignore-output"]
GPU = torch.cuda.is_available()
if not GPU:
    print("No CUDA GPU here: section 5 skipped. On a GPU its cells profile the fixed training step on CUDA with a "
          "light profile, compare the GPU's busy time with the step timed without the profiler, draw the GPU's "
          "kernels under the CPU's timeline, and read one step's peak from a CUDA memory snapshot.")
else:  # 1. A light profile for the time: CPU and CUDA activities only, no shapes, no memory, no allocation stacks
    from torch.cuda._memory_viz import trace_plot

    from helpers.ch07_tools.gpu_memory import (
        alive_at_peak, allocation_timeline, blas_workspace_bytes, peak_above_start, plot_allocation_timeline,
    )
    from helpers.ch07_tools.profiling import hot_kernels
    from helpers.ch07_tools.trace_plot import complete_events, device_time_table

    def gpu_batches() -> object:
        """The fixed pipeline's batches, moved to the GPU."""
        for images, labels in cached_batches(digits.x_train, digits.y_train, BATCH):
            yield images.cuda(), labels.cuda()

    gpu_step = make_training_step(gpu_batches(), batch_normalize, device="cuda")
    with quiet_profiler_logs(), profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA],
                                        schedule=schedule(wait=WAIT, warmup=WARMUP, active=ACTIVE)) as gpu_profile:
        for _ in range(WAIT + WARMUP + ACTIVE):
            gpu_step()
            gpu_profile.step()
    display(hot_kernels(gpu_profile, steps=ACTIVE, top=8).round(1))
    gpu_trace = WORK / "gpu_step_trace.json"
    gpu_profile.export_chrome_trace(str(gpu_trace))
    per_step = device_time_table(complete_events(gpu_trace))  # kernel time = the union of the kernels' intervals
    display(per_step.round(3))

# %% tags=["nbval-ignore-output"]
# 2. The same step without the profiler, against the kernels' own time (the GPU timestamps them itself).
if GPU:
    gpu_timing = measure_interleaved({"GPU step": gpu_step}, rounds=8, min_run_time=0.5)["GPU step"]
    profiled_gpu_ms, unprofiled_gpu_ms = step_ms(gpu_profile, steps=ACTIVE), gpu_timing.round_median_ms
    kernel_ms = per_step["GPU kernel ms"].mean()
    print(f"step: {profiled_gpu_ms:.3f} ms profiled, {unprofiled_gpu_ms:.3f} ms unprofiled (the profiler makes it "
          f"{profiled_gpu_ms / unprofiled_gpu_ms:.2f}x slower); kernels ran {kernel_ms:.3f} ms per step: "
          f"{kernel_ms / profiled_gpu_ms:.0%} of the profiled step, about {kernel_ms / unprofiled_gpu_ms:.0%} of the "
          "unprofiled one")

# %% tags=["nbval-ignore-output"]
# 3. The picture: the CPU's main thread above (autograd runs the backward pass on a thread of its own, not drawn),
#    the GPU's kernels below; the gaps in the GPU lane are the GPU waiting for work.
if GPU:
    display(plot_step_timeline(gpu_trace, step=last_step, hardware=hw.label, depth=3,
                               title="One step of the fixed loop on the GPU: the CPU's main thread, then kernels"))

# %% tags=["nbval-ignore-output"]
# 4. Regions on a GPU are CPU-side times: launching each region's kernels, or waiting in a synchronisation.
if GPU:
    gpu_regions = region_table(gpu_profile, REGIONS, steps=ACTIVE)
    display(gpu_regions.round(3))
    item_ms, busy = gpu_regions.loc["logging", "ms per step"], kernel_ms / unprofiled_gpu_ms
    print(f".item() (the logging region) took {item_ms:.3f} ms per profiled step; the GPU is busy about {busy:.0%} "
          "of the unprofiled step. "
          + ("The GPU waits for the CPU most of the step, so .item() finds little queued work: the CPU's launches "
             "bound this step, and fewer launches (torch.compile) or CUDA graphs (chapter 3) would pay, not fewer "
             ".item() calls." if busy < 0.5 else
             "The GPU is busy most of the step, so .item() makes the CPU wait for queued kernels instead of "
             "launching the next step: logging every few steps is worth measuring."))

# %% tags=["nbval-ignore-output"]
# 5. Memory, in a separate run: the cuBLAS workspaces measured alone, three warm-up steps, then one step recorded.
if GPU:
    workspaces = blas_workspace_bytes()
    display((workspaces / 2**20).rename("MiB").to_frame())
    for _ in range(3):  # the workspaces come back, Adam's state exists, the allocator's cache holds the step's blocks
        gpu_step()
    torch.cuda.synchronize()
    start_bytes = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.memory._record_memory_history(stacks="python", max_entries=100_000, clear_history=True)
    gpu_step()
    torch.cuda.synchronize()
    snapshot = torch.cuda.memory._snapshot()
    torch.cuda.memory._record_memory_history(enabled=None)
    device = torch.cuda.current_device()
    print(f"allocated before the step: {start_bytes / 1e6:.2f} MB, of which {workspaces.sum() / 1e6:.2f} MB are "
          "the cuBLAS workspaces measured above: the library's memory, not the model's")
    print(f"the step's peak: {peak_above_start(snapshot, device=device) / 1e6:.3f} MB above that "
          f"(max_memory_allocated says {(torch.cuda.max_memory_allocated() - start_bytes) / 1e6:.3f} MB); the "
          f"caching allocator reserves {torch.cuda.memory_reserved() / 1e6:.1f} MB from CUDA")
    display(plot_allocation_timeline(allocation_timeline(snapshot, device=device), hardware=hw.label,
                                     title="GPU memory during one training step"))
    display(alive_at_peak(snapshot, device=device, top=6).round(4))
    memory_html = WORK / "gpu_memory_trace.html"
    memory_html.write_text(trace_plot(snapshot))
    print(f"{memory_html}: PyTorch's memory viewer with this snapshot inside (it loads its script from a CDN)")

# %% [markdown]
# *Allocated* memory is what live tensors and library workspaces hold; *reserved* memory is what
# the caching allocator has taken from CUDA and keeps for reuse (at least the allocated memory;
# `nvidia-smi` shows it plus the CUDA context). *Fragmentation* is reserved memory that is free but
# cut into pieces too small for a new request, so the allocator must reserve more, or fail with
# out-of-memory, though the free total would fit.

# %% [markdown]
# ## 6. What the source article got wrong
# The article's section on tools has two snippets. Their problems, run where they can be run here:
# - The profiler snippet starts with `from torch.utils.tensorboard import SummaryWriter` and never
#   uses it (the profiler's TensorBoard handler, which it may have meant, is deprecated with the
#   TensorBoard plugin, section 2.7). The import also needs the `tensorboard` package, which PyTorch
#   does not install (Colab preinstalls it: there the import succeeds, and is still unused):

# %%
try:
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (the article's unused import)
except ImportError as error:
    print(f"{type(error).__name__}: {error}")

# %% [markdown]
# - It profiles a single call, with no schedule: that call pays the profiler's own start-up, and
#   the first call of a new process or shape pays one-time costs too (oneDNN creates its kernel
#   primitives for each new shape, the allocator grows; in a training loop like ours Adam creates
#   its state), so the profile may show a call that never recurs. The measurement, on our loop (with
#   Adam, which the article's snippet lacks): the first
#   step of three fresh models, their data already prepared, against the median of steps 6 to 8.

# %% tags=["nbval-ignore-output"]
first_ratios = []
for seed in (1, 2, 3):  # three fresh models and optimizers
    first_batches = cached_batches(digits.x_train, digits.y_train, BATCH)
    next(first_batches)  # the resize of the whole set happens here, not in the first step
    first_step = make_training_step(first_batches, batch_normalize, seed=seed)
    step_times = []
    for _ in range(8):
        start = time.perf_counter()
        first_step()
        step_times.append(1e3 * (time.perf_counter() - start))
    steady = sorted(step_times[5:])[1]  # the median of steps 6 to 8
    first_ratios.append(step_times[0] / steady)
    print(f"model {seed}: first step {step_times[0]:.1f} ms, steps 6 to 8 (median) {steady:.1f} ms")
print(f"the first step costs {min(first_ratios):.1f}x to {max(first_ratios):.1f}x a steady one: "
      + ("a first step that never recurs, which a profile of it alone would show." if min(first_ratios) > 1.3 else
         "little here, since this process created the kernels for these shapes in section 2; the schedule's "
         "warm-up still keeps out the profiler's own start-up, and would keep out a new process's kernel set-up."))

# %% [markdown]
# - It records shapes and memory and exports only the Chrome trace, which holds them one event at a
#   time; the tables that sum them (sections 2.3 and 2.7) are what make a diagnosis.
# - The TensorRT snippet puts the shell command `pip install tensorrt` in one block with Python
#   code; and that package downloads TensorRT's libraries at install time, from NVIDIA's servers.
# - `builder.create_network()` without flags is valid in TensorRT 10 (a weakly typed network) and
#   11; it was wrong for TensorRT 8, which the rest of the snippet targets (EXPLICIT_BATCH).
# - `parser.parse(f.read())` gets the graph's bytes but not its folder, so it cannot find the
#   `.onnx.data` weights file the exporter writes beside it (section 3.1): use
#   `parser.parse_from_file(path)`. And its result, False on failure, is ignored: check it and print
#   `parser.get_error(i)` for each error (section 4.1).
# - The article's `builder.build_engine(network, config)` (quoted; was wrong) uses a `config` never created (a NameError) and a
#   method removed in TensorRT 10 (section 4.2). Setting no workspace is not a mistake: the default
#   is the GPU's memory, and a smaller limit only restricts the tactics TensorRT may try.
# - Nothing runs the engine or compares it with the PyTorch model; section 4.3 does both.

# %% [markdown]
# ## 7. Exercises
# **Exercise 1 (the profiler's schedule).** A profiler runs with
# `schedule(wait=2, warmup=1, active=3, repeat=2)` around a loop of 20 steps, calling `prof.step()`
# after each. How many steps in total end up recorded, summed over all the cycles (collected with
# `acc_events=True`, or by an `on_trace_ready` handler that keeps each cycle's events)? The check
# runs the real profiler with that schedule to find out.

# %%
my_recorded_steps = ...  # your answer: a whole number of steps
check_recorded_steps("Exercise 1", my_recorded_steps)

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution"]
my_recorded_steps = 2 * 3  # repeat x active: waiting and warm-up steps are not kept, and after 2 cycles it stops
check_recorded_steps("Exercise 1", my_recorded_steps)

# %% [markdown]
# **Exercise 2 (a tolerance for float16, and what it is worth).** Section 3.2 derived a parity
# tolerance for float32. A network runs in float16 (unit roundoff $2^{-11}$); its largest dot
# product has $K = 2304$ terms (a 3x3 convolution over 256 channels), it has 50 layers, and its
# logits reach 10 in absolute value.
# 1. With the same rule, what largest absolute difference between two float16 runtimes would you
#    still accept as rounding? Within 5% passes.
# 2. A wrong export (a missing layer, batch norm left in training mode) changes the logits by about
#    their own size. Could a parity test with your tolerance catch it? Answer `True` or `False`; it
#    is judged once your tolerance is right. Either way, say what you would compare against.

# %%
my_fp16_tolerance = ...  # your answer to 1, in the logits' units
my_rule_can_catch_a_wrong_export = ...  # your answer to 2: True or False
check_fp16_tolerance("Exercise 2", my_fp16_tolerance, my_rule_can_catch_a_wrong_export)

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution"]
my_fp16_tolerance = 2 ** -11 * 2304 ** 0.5 * 50 * 10  # 11.7: larger than the logits themselves
my_rule_can_catch_a_wrong_export = False  # a wrong export moves the logits by ~10, within an 11.7 tolerance
# The worst-case rule is vacuous for a deep float16 network. Set the tolerance by what the test must catch instead:
# a fraction of the logits' scale, far below what a wrong model changes, above the fp16 rounding actually seen (with
# PyTorch's own fp16 against the float32 reference printed as a sanity check), as section 4.3 does.
check_fp16_tolerance("Exercise 2", my_fp16_tolerance, my_rule_can_catch_a_wrong_export)

# %% [markdown]
# **Exercise 3 (which convolutions stay float?).** A small network has four convolutions: a
# **stem** (then ReLU); one residual block, `y = relu(block_b(relu(block_a(y))) + y)`, whose skip is
# the identity; and a **last** convolution (then ReLU, global average pooling and a Linear layer).
# Quantized like section 3.6's S8S8 file (static, QDQ, per-channel int8 weights, signed int8
# activations), how many of the four will the session leave in float on an x86 CPU (on ARM, see
# section 3.6)? Predict it
# from the rule of section 3.6 before you look at any graph; the check exports the network,
# quantizes it, reads the session's optimized graph and counts. (The source is
# `helpers/ch07_tools/exercises.py: ResidualExercise`.)

# %%
my_float_convolutions = ...  # your prediction: a whole number from 0 to 4
check_float_convolutions("Exercise 3", my_float_convolutions)

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution"]
# On x86: the stem's output is read by block_a and by the addition (two readers), so the stem (which writes it) and
# block_a (which reads it) stay float; block_b and the last convolution read and write tensors with one reader each:
# both fuse. On ARM (Apple Silicon, Graviton) signed activations fuse everywhere: 0.
my_float_convolutions = 2 if platform.machine().lower() in ("x86_64", "amd64") else 0
check_float_convolutions("Exercise 3", my_float_convolutions)

# %% [markdown]
# **Project (optional, no check).** Take a training loop of yours, wrap its parts in
# `record_function` regions, profile five steps with the schedule of section 2.2, and read the
# region table and the operators grouped by shape. Fix the largest problem, then measure the fix
# with `measure_interleaved` and a claim, as in section 2.5.
#
# ## 8. Summary
# The results this run measured, recorded into the course's ledger for chapter 8:

# %% tags=["nbval-ignore-output"]
MLP_ROW = "MLP (Linear layers), batch 64"
entries = [
    make_entry(7, "profiler_fix_normalize_loop", metric="training step time", unit="ms",
               baseline=step_timings["slow"].round_median_ms, optimized=step_timings["loop fixed"].round_median_ms,
               higher_is_better=False, hardware=hw.cpu_label, claim=loop_claim,
               compared_with="the slow step (per-image normalization loop, per-sample loading)"),
    make_entry(7, "profiler_fix_cached_loader", metric="training step time", unit="ms",
               baseline=step_timings["loop fixed"].round_median_ms,
               optimized=step_timings["both fixed"].round_median_ms, higher_is_better=False, hardware=hw.cpu_label,
               claim=loader_claim, compared_with="the step with the loop fixed (per-sample loading)"),
    make_entry(7, "profiler_fix", metric="training step time", unit="ms",
               baseline=step_timings["slow"].round_median_ms, optimized=step_timings["both fixed"].round_median_ms,
               higher_is_better=False, hardware=hw.cpu_label, claim=fix_claim, combination=True,
               compared_with="the slow step (both problems)"),
    make_entry(7, "onnxruntime", metric="ResNet-18 latency, batch 8, one thread", unit="ms",
               baseline=runtime_timings["compiled + freezing"].round_median_ms,
               optimized=runtime_timings["ONNX Runtime, all"].round_median_ms, higher_is_better=False,
               hardware=hw.cpu_label, claim=compiled_claim,
               compared_with="PyTorch fp32, compiled with freezing (ONNX Runtime's memory arena off)",
               extras={"against_eager": str(ort_claim.ratio), "fusions_extended_against_off": str(fusion_gain),
                       "layout_all_against_extended": str(layout_gain)}),
    make_entry(7, "onnxruntime_int8_static", metric="ResNet-18 latency, batch 8, one thread", unit="ms",
               baseline=int8_timings["fp32"].round_median_ms,
               optimized=int8_timings["int8 static, U8S8"].round_median_ms, higher_is_better=False,
               hardware=hw.cpu_label, claim=int8_claim, compared_with="ONNX Runtime fp32, all optimizations",
               extras={"size_ratio": int8_table.loc["fp32", "file size (MB)"]
                       / int8_table.loc["int8 static, U8S8", "file size (MB)"],
                       "s8s8_against_fp32": str(timing_ratio(int8_timings["fp32"],
                                                             int8_timings["int8 static, S8S8 (default types)"])),
                       "digits_accuracy_change_points": accuracy_rows["int8 static"]["test accuracy (%)"]
                       - accuracy_rows["fp32"]["test accuracy (%)"]}),
    make_entry(7, "onnxruntime_int8_dynamic_mlp", metric="MLP latency, batch 64, one thread", unit="ms",
               baseline=dynamic_timings[MLP_ROW]["fp32"].round_median_ms,
               optimized=dynamic_timings[MLP_ROW]["int8 dynamic"].round_median_ms, higher_is_better=False,
               hardware=hw.cpu_label, claim=dynamic_claim, compared_with="ONNX Runtime fp32, all optimizations",
               extras={"on_resnet18_convolutions": str(dynamic_rows["ResNet-18 (convolutions), batch 2"])}),
]
if tensorrt_timings is not None:
    entries.append(make_entry(
        7, "tensorrt_fp16", metric="ResNet-18 latency, batch 8, fp16", unit="ms",
        baseline=tensorrt_timings["torch.compile, CUDA graphs"].round_median_ms,
        optimized=tensorrt_timings["TensorRT fp16"].round_median_ms, higher_is_better=False, hardware=hw.label,
        claim=tensorrt_claim, compared_with="PyTorch fp16, channels_last, torch.compile with freezing and CUDA graphs",
        extras={"against_eager_fp16": str(timing_ratio(tensorrt_timings["eager fp16"],
                                                       tensorrt_timings["TensorRT fp16"]))}))
record_chapter(7, entries, claims)
ledger_table(entries).round(3)

# %% [markdown]
# **Take-aways**
# 1. Profile to find, benchmark to measure: a schedule keeps one-time costs out, regions and
#    operators grouped by shape make the diagnosis, and since the profiler inflates code made of
#    small operators (2.5 measured by how much), every fix is measured with interleaved rounds;
#    `TORCH_LOGS` and `torch._dynamo.explain` say why a compiled model recompiles or breaks.
# 2. Deploy with evidence: export with `dynamic_shapes`, check parity with a tolerance you can
#    justify (derived in fp32; in fp16, set by what it must catch), compare ONNX Runtime
#    with PyTorch at its best (compiled with freezing) and count start-up too; for int8 on x86,
#    measure both activation types, since signed ones stay float wherever a tensor has two readers.
# 3. TensorRT 10 and 11 share one path: strongly typed networks, tensors by name,
#    `execute_async_v3` on a stream of its own, plans cached under a key of the model; a check of
#    the code against the bindings' names is not a run, and the chapter says which cells ran.
