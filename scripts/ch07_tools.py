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
# quantization), and **TensorRT 11**, NVIDIA's GPU engine, written against its current API.
#
# **Estimated time:** ~60 min · **Hardware:** Any CPU; a CUDA GPU adds the profiler kernel view and the memory snapshot; TensorRT needs an NVIDIA GPU

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
import copy
import time
from pathlib import Path
from types import SimpleNamespace

import ipywidgets as widgets
import onnx
import onnxruntime as ort
import pandas as pd
import torch
import torch.nn.functional as F
from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn
from torch.autograd import DeviceType
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
from helpers.support.source import show_source
from helpers.support.widgets import live_control
from helpers.ch07_tools.exercises import check_fp16_tolerance, check_recorded_steps
from helpers.ch07_tools.onnx_runtime import (
    CalibrationBatches, model_files, operator_counts, ort_predict, ort_session, reduce_range_advised,
)
from helpers.ch07_tools.profiling import calls_per_step, hot_operators, largest_allocations, region_table, step_ms
from helpers.ch07_tools.resnet import ResNet18
from helpers.ch07_tools.tensorrt_engine import EngineRunner, build_plan, tensorrt_missing
from helpers.ch07_tools.tensorrt_names import bindings_library, check_names, read_names, removed_names_table
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
# | tool | answers | used in |
# |---|---|---|
# | `torch.utils.benchmark` (chapter 1) | how long, with what uncertainty | every section |
# | `torch.profiler` | which operators and regions take the time and memory | section 2 |
# | Chrome trace (`chrome://tracing`, Perfetto) | when each operator ran, on which thread | section 2.4 |
# | ONNX + ONNX Runtime | a framework-free model file and a CPU/GPU inference engine | section 3 |
# | TensorRT | NVIDIA's inference compiler for its GPUs | section 4 |
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


slow_loader = DataLoader(PerSampleDigits(digits.x_train, digits.y_train), batch_size=BATCH, shuffle=True)
REGIONS = ["data", "normalize", "forward", "backward", "optimizer", "logging"]

# %% [markdown]
# ### 2.2 Profile it
# `torch.profiler.profile` with:
# - `activities=[ProfilerActivity.CPU]` (plus `CUDA` on a GPU, section 6);
# - `record_shapes=True`, so operators can be grouped by the shapes they ran on;
# - `profile_memory=True` only in a separate profile for section 2.7: it adds an event per
#   allocation and release, so the time tables are read from profiles without it;
# - a **`schedule`**: `wait=1` step ignored, `warmup=1` step recorded and thrown away (the first
#   steps pay one-time costs: allocator growth, oneDNN's kernel choices), then `active=3` steps
#   kept. `prof.step()` marks the end of each step.
#
# The profiler writes log lines of its own to stderr (a `USDT` probe line at start and stop, and a
# failed GPU count on a CUDA build of PyTorch without a GPU); `quiet_profiler_logs` drops those and
# lets any other line through. All profiling below runs on one thread, like the timings that follow.

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
hot_operators(slow_profile, steps=ACTIVE, top=10).round(3)

# %% [markdown]
# Read the shapes column. The model's operators run on whole batches (`[64, 16, 16, 16]` and the
# like). Operators on **one image** (shapes such as `[1, 1, 8, 8]` for the resize, or an image of
# `[1, 16, 16]` in the normalization, further down the table) are the per-sample work, and the column
# of calls per step says how often they run: a small cost times 64 images, every step. How many
# calls the per-sample code makes per step does not depend on the machine, only on the code:

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
# Open it offline in Chromium or Chrome at `chrome://tracing` (Load, then choose the file); the
# Perfetto UI (ui.perfetto.dev) shows the same file but needs the internet. The chart below is drawn
# from that file with matplotlib: the regions of the last profiled step on top, the operators they
# called below.

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
# The normalization's per-image calls are gone (the resize and pad calls of the loader remain;
# one mean, one std and two divisions per step are the vectorised normalization itself, and Adam's).
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
    """Resize once, then yield shuffled, randomly shifted batches forever."""
    resized = F.interpolate(images, size=IMAGE_SIZE, mode="bilinear", antialias=True)
    while True:
        order = torch.randperm(len(labels))
        for start in range(0, len(labels), batch_size):
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
# The profiles say where the time went; they do not measure the gain (the profiler's overhead fell
# with the number of operators). The benchmark does: the three versions of the step in alternating
# rounds, each step a real training step (next batch, forward, backward, update).

# %% tags=["nbval-ignore-output"]
step_versions = {"slow": slow_step, "loop fixed": loop_fixed_step, "both fixed": fixed_step}
step_timings = measure_interleaved(step_versions, rounds=5, min_run_time=1.4)
timing_table(step_timings, baseline="slow").round(3)

# %% tags=["nbval-ignore-output"]
loop_claim = make_claim(7, "profiler_fix_normalize_loop", "Normalizing the batch in one expression instead of a "
                        "Python loop over its 64 images makes the training step at least 1.1x faster.",
                        threshold=1.1, ratio=timing_ratio(step_timings["slow"], step_timings["loop fixed"]),
                        hardware=hw.cpu_label)
claims.append(loop_claim)
report_claim(loop_claim,
             holds="64 images x 5 small operators per step, each with PyTorch's dispatch overhead of a few "
                   "microseconds, cost more than the one vectorized expression that replaces them.",
             does_not_hold="On this machine the loop's small operators cost too little against the model's "
                           "step to matter: the profile overstated them (its overhead grows with their number).")

# %% tags=["nbval-ignore-output"]
loader_claim = make_claim(7, "profiler_fix_cached_loader", "Resizing once and shifting whole batches makes the "
                          "training step at least 1.2x faster than per-sample loading (normalization already fixed).",
                          threshold=1.2, ratio=timing_ratio(step_timings["loop fixed"], step_timings["both fixed"]),
                          hardware=hw.cpu_label)
claims.append(loader_claim)
report_claim(loader_claim,
             holds="The per-sample resize, pad and slice, and collating 64 separate tensors into a batch, were "
                   "a large enough share of the step that removing them pays (the table above has the times).",
             does_not_hold="Here the data work was a smaller part of the step than the profile suggested.")

# %% tags=["nbval-ignore-output"]
fix_claim = make_claim(7, "profiler_fix", "The two fixes the profile pointed to make the training step at least "
                       "1.3x faster.", threshold=1.3, ratio=timing_ratio(step_timings["slow"],
                                                                         step_timings["both fixed"]),
                       hardware=hw.cpu_label)
claims.append(fix_claim)
report_claim(fix_claim, holds="Neither fix touched the model: the step was slow around it.",
             does_not_hold="The model's own work dominates the step on this machine, so fixing the code around "
                           "it pays less.")

# %% [markdown]
# The claims read the intervals, not the profile: a profile shows where to look, and only a
# benchmark shows what a fix is worth. The same lesson from the other side is chapter 4's: workers
# would have hidden the per-sample loading behind the step instead of removing it, and on a machine
# with few cores they compete with the step itself for the processor.
#
# ### 2.6 `.item()`: fix what the profile shows, not what a rule says
# `.item()` copies one number from a tensor to Python. The advice "never call `.item()` in the
# loop" comes from GPUs: there it waits for every queued kernel to finish (a synchronisation, shown
# in section 6). On the CPU the work is already done when `.item()` runs, so it should cost no more
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
# Two memory tools you will find in older tutorials are not used here: the profiler's
# `export_memory_timeline` is deprecated (it raises a FutureWarning in PyTorch 2.14), and so is the
# TensorBoard profiler plugin (`torch_tb_profiler`), which its maintainers no longer support; the
# Chrome trace and the tables above replace them. On a GPU, the current tool is the **memory
# snapshot**: `torch.cuda.memory._record_memory_history()`, then `_dump_snapshot(path)`; PyTorch's
# `memory_viz` web page reads the file (it needs the internet to load), and
# `python -m torch.cuda._memory_viz trace_plot snapshot.pickle -o plot.html` draws it offline.
# Section 6 runs it where a GPU answers.
#
# ### 2.8 The fixed loop trains the model the next section deploys
# Four epochs of the fixed loop train the digits CNN; its test accuracy is measured on
# the 450 held-out images, normalized the same way.

# %% tags=["nbval-ignore-output"]
train_step = make_training_step(cached_batches(digits.x_train, digits.y_train, BATCH), batch_normalize)
steps_per_epoch = -(-len(digits.y_train) // BATCH)
for _ in range(4 * steps_per_epoch):
    train_step()
digits_cnn = train_step.model.eval()
test_images = batch_normalize(F.interpolate(digits.x_test, size=IMAGE_SIZE, mode="bilinear", antialias=True))
with torch.no_grad():
    eager_logits = digits_cnn(test_images)
print(f"{4 * steps_per_epoch} steps; test accuracy {(eager_logits.argmax(1) == digits.y_test).float().mean():.1%}")

# %% [markdown]
# The profiles have served their purpose. Their event records take a few hundred MB, which the
# process keeps for reuse after they are deleted unless it hands the pages back: on a 2 GB machine
# (Binder) that is worth doing before the next section.

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
# not depend on its weights' values) shows the latencies. It comes from
# `helpers/ch07_tools/resnet.py`, torchvision's `resnet18` layer for layer (a test loads
# torchvision's weights into it and gets the same outputs): importing torchvision itself would cost
# this chapter 160 MB of its memory budget. Everything runs
# on one thread, set on purpose in both runtimes: the same work for each. ONNX Runtime's sessions
# run without its memory arena, so that, like PyTorch on the CPU, they free activations after each
# run (`ort_session` below; with the arena, each session would keep its largest activations).
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
# quantization rule of section 3.5.
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
# adds fusions such as a convolution with its activation; `ORT_ENABLE_ALL` (the default) adds the
# layout changes that depend on the CPU (the NCHWc blocked layout on x86, in which a residual
# addition and its ReLU also join the convolution). The exported file has no BatchNormalization node
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
# Five ways to run ResNet-18 on a batch of 8, on one thread, in alternating rounds:
# - **eager**: PyTorch as written (chapter 1's baseline);
# - **eager, channels_last**: the same in NHWC memory layout (chapter 3);
# - **compiled + freezing**: `torch.compile` with weights frozen into the graph, so that Inductor
#   can fold batch norms into convolutions and pick oneDNN's blocked layouts ahead of time;
# - **ONNX Runtime, optimizations off** and **all optimizations**: the same file at the two ends of
#   the levels above (both with the batch norms the exporter folded).
#
# Compilation takes seconds the first time (printed), and is not part of the timing.

# %% tags=["nbval-ignore-output"]
torch._inductor.config.freezing = True
resnet_compiled = torch.compile(resnet, dynamic=False)
resnet_channels_last = copy.deepcopy(resnet).to(memory_format=torch.channels_last)
example_channels_last = resnet_example.contiguous(memory_format=torch.channels_last)
example_array = resnet_example.numpy()
resnet_session_off = ort_session(resnet_onnx, threads=1, level="off")
with torch.no_grad():
    start = time.perf_counter()
    resnet_compiled(resnet_example)
    print(f"first call of the compiled model: {time.perf_counter() - start:.1f} s (compilation)")
    runtime_timings = measure_interleaved({
        "eager": lambda: resnet(resnet_example),
        "eager, channels_last": lambda: resnet_channels_last(example_channels_last),
        "compiled + freezing": lambda: resnet_compiled(resnet_example),
        "ONNX Runtime, optimizations off": lambda: resnet_session_off.run(None, {"x": example_array}),
        "ONNX Runtime, all optimizations": lambda: resnet_session.run(None, {"x": example_array}),
    }, rounds=4, min_run_time=1.6, warmup=1)
runtime_table = timing_table(runtime_timings, baseline="eager")
del resnet_session_off, resnet_channels_last, resnet_compiled  # measured: free their memory
torch._dynamo.reset()  # and the compiled code (the widget compiles again if asked)
release_freed_memory()  # and hand back what this cell freed (section 2.8)
runtime_table.round(2)

# %% tags=["nbval-ignore-output"]
ort_claim = make_claim(7, "onnxruntime", "ONNX Runtime (all graph optimizations) runs ResNet-18 at batch 8, one "
                       "thread, at least 1.2x faster than eager PyTorch.", threshold=1.2,
                       ratio=timing_ratio(runtime_timings["eager"], runtime_timings["ONNX Runtime, all optimizations"]),
                       hardware=hw.cpu_label)
claims.append(ort_claim)
report_claim(ort_claim,
             holds="Eager PyTorch runs each batch norm and ReLU as its own pass over memory; in the ONNX "
                   "graph the exporter folded the batch norms, ONNX Runtime fuses the ReLUs and residual "
                   "additions into the convolutions and keeps the activations in its blocked layout from layer "
                   "to layer. The optimizations-off row shows how much of that is ONNX Runtime's own rewriting.",
             does_not_hold="Here PyTorch's eager oneDNN convolutions keep up with ONNX Runtime's: compare the "
                           "optimizations-off row, which has only the exporter's batch-norm folding.")

# %% tags=["nbval-ignore-output"]
# Which runtime was fastest is a speed result: information here, judged by the claim above, never compared by tests.
fastest = runtime_table["median_ms"].idxmin()
print(f"fastest on this machine: {fastest}")

# %% [markdown]
# Read the table against the levels: optimizations off is ONNX Runtime's plain kernels on the
# exporter's graph (batch norms already folded), all optimizations adds ONNX Runtime's fusions and
# the layout; `torch.compile` with freezing does the same kind of
# rewriting inside PyTorch, so the two usually end close together, and which one wins is a property
# of this CPU and these library versions (the line above names it). Eager channels_last on its own
# changes the layout without the fusions. The deployment question is then not only speed: ONNX
# Runtime needs no PyTorch at all (a smaller install, and no compilation at start-up), while a
# compiled model needs PyTorch, a compiler, and seconds of compilation in each new process.
#
# ### 3.5 int8 with ONNX Runtime: static for convolutions, dynamic for Linear layers
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
# are measured below. And `reduce_range`: on CPUs without VNNI, 7-bit weights avoid the saturation
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
                                   rounds=4, min_run_time=1.4, warmup=1)
int8_table = timing_table(int8_timings, baseline="fp32")
int8_table["file size (MB)"] = pd.Series({"fp32": sum(model_files(resnet_onnx).values()) / 1e6} |
                                         {name: sum(model_files(path).values()) / 1e6
                                          for name, path in resnet_int8.items()})
del int8_sessions["int8 static, S8S8 (default types)"]  # measured: free its memory (the widget keeps U8S8)
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
# Why the two activation types can differ: the session fuses each QuantizeLinear/DequantizeLinear
# pair around a convolution into one int8 convolution (`QLinearConv`) only where its CPU kernels
# support the pair of types; elsewhere it keeps a float convolution between quantize and dequantize
# steps, which costs more than fp32. Counting the nodes each session kept (at the extended level,
# where these fusions happen) shows what happened on this CPU:

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
#
# **Dynamic int8** is measured on both kinds of model: ResNet-18 (convolutions; at batch 2, since
# it is slow) and the MLP (Linear layers), each against an fp32 session of the same file.

# %% tags=["nbval-ignore-output"]
mlp_prepared = WORK / "mlp_prepared.onnx"
quant_pre_process(str(mlp_onnx), str(mlp_prepared), skip_symbolic_shape=True)
dynamic_files = {"ResNet-18 (convolutions), batch 2": (resnet_prepared, resnet_session, "x", example_array[:2]),
                 "MLP (Linear layers), batch 64": (mlp_prepared, ort_session(mlp_prepared, threads=1), "input",
                                                   mlp_example.numpy())}
dynamic_rows = {}
for name, (prepared, fp32_session, input_name, array) in dynamic_files.items():
    dynamic_path = prepared.with_name(prepared.stem.replace("prepared", "int8_dynamic") + ".onnx")
    quantize_dynamic(str(prepared), str(dynamic_path), weight_type=QuantType.QInt8, reduce_range=reduce_range)
    dynamic_session = ort_session(dynamic_path, threads=1)
    timings = measure_interleaved({"fp32": lambda: fp32_session.run(None, {input_name: array}),
                                   "int8 dynamic": lambda: dynamic_session.run(None, {input_name: array})},
                                  rounds=3, min_run_time=0.9, warmup=1)
    dynamic_rows[name] = timing_ratio(timings["fp32"], timings["int8 dynamic"])
    del dynamic_session
    release_freed_memory()  # hand back what this measurement freed (section 2.8)
pd.Series({name: str(ratio) for name, ratio in dynamic_rows.items()}, name="int8 dynamic against fp32").to_frame()

# %% [markdown]
# Read the ResNet-18 row: dynamic quantization turns each convolution into a `DynamicQuantizeLinear`
# of its input (a pass over the activation to find its range, then one to quantize it) and a
# `ConvInteger` followed by float rescaling, bias and ReLU, none of them fused and none in ONNX
# Runtime's blocked layout. It is the
# right tool for models made of **Linear layers** (transformers, MLPs), where the weights dominate
# the bytes and the matrix products run in int8.

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
    print(f"{name}: {accuracy_rows['fp32']['file size (KB)'] / accuracy_rows[name]['file size (KB)']:.1f}x smaller "
          f"than fp32; ResNet-18's static int8 file: "
          f"{int8_table.loc['fp32', 'file size (MB)'] / int8_table.loc['int8 static, U8S8', 'file size (MB)']:.1f}x")

# %% [markdown]
#
#
# ### 3.6 The runtime widget
# Pick a runtime and a batch size; the widget measures it against eager PyTorch in alternating
# rounds at that batch: latency, throughput in images per second, and the speed-up. The compiled
# model compiles once per batch size, on first use (several seconds, and a few hundred MB: the
# section above freed its compiled model to stay within a small machine's memory); ONNX Runtime
# handles every batch size with the same session, thanks to the dynamic batch dimension of section 3.1.

# %%
RUNTIMES = ["eager", "compiled + freezing", "ONNX Runtime", "ONNX Runtime int8 (static, U8S8)"]


widget_compiled = {}  # batch size -> ResNet-18 compiled with freezing for it, made on first use


def runtime_call(runtime: str, images: torch.Tensor) -> object:
    """A call that runs ResNet-18 on images with the chosen runtime."""
    array = images.numpy()
    if runtime == "compiled + freezing" and len(images) not in widget_compiled:
        widget_compiled[len(images)] = torch.compile(resnet, dynamic=False)
    calls = {"eager": lambda: resnet(images), "compiled + freezing": lambda: widget_compiled[len(images)](images),
             "ONNX Runtime": lambda: resnet_session.run(None, {"x": array}),
             "ONNX Runtime int8 (static, U8S8)": lambda: int8_sessions["int8 static, U8S8"].run(None, {"x": array})}
    return calls[runtime]


def runtime_report(runtime: str, batch_size: int) -> pd.DataFrame:
    """Latency, throughput and speed-up against eager of one runtime at one batch size."""
    images = torch.rand(batch_size, 3, 224, 224)
    with torch.no_grad():
        timings = measure_interleaved({"eager": runtime_call("eager", images),
                                       runtime: runtime_call(runtime, images)}, rounds=3, min_run_time=1.2, warmup=1)
    table = timing_table({name: timings[name] for name in dict.fromkeys(["eager", runtime])}, baseline="eager")
    table["images per second"] = batch_size / (table["median_ms"] / 1e3)
    table["against eager"] = [str(timing_ratio(timings["eager"], timings[name])) for name in table.index]
    return table[["median_ms", "images per second", "against eager"]].round(1)


# %% tags=["nbval-ignore-output"]
live_control(runtime_report,
             runtime=widgets.ToggleButtons(options=RUNTIMES, value="ONNX Runtime", description="runtime"),
             batch_size=widgets.SelectionSlider(options=[1, 2, 4, 8, 16], value=8, description="batch"))

# %% [markdown]
# Things to try: batch 1 against 16 for each runtime (throughput grows with the batch until the
# processor is busy; latency grows too); int8 at batch 1, where the quantize and dequantize steps
# around the model weigh more.
#
# ## 4. TensorRT, the current API
# TensorRT compiles a network for one NVIDIA GPU: it fuses layers, chooses among many kernel
# implementations by timing them on that GPU, and serializes the result as an **engine** (a
# *plan* file) that runs only with the same TensorRT version on the same GPU model. The API changed
# a great deal in TensorRT 10 and 11, and most tutorials still show the old one:
#
# | old (TensorRT 8 and earlier tutorials) | current (TensorRT 10 / 11) |
# |---|---|
# | `builder.create_network(1 << int(NetworkDefinitionCreationFlag.EXPLICIT_BATCH))` | `builder.create_network()`: every network is explicit-batch, and in 11 strongly typed |
# | `config.max_workspace_size = ...` | `config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, ...)` |
# | `config.set_flag(trt.BuilderFlag.FP16)` / `INT8` with a calibrator | precision from the model: export it in fp16 (or convert the ONNX file with ModelOpt's AutoCast), explicit Q/DQ nodes for int8 |
# | `builder.platform_has_fast_fp16` | gone: the model's types decide |
# | `builder.build_engine(network, config)` (deprecated, then removed in 10) | `builder.build_serialized_network(network, config)`, then `Runtime.deserialize_cuda_engine` |
# | bindings by index, `context.execute_async_v2(bindings, stream)` | tensors by name: `set_input_shape`, `set_tensor_address`, `execute_async_v3(stream)` |
#
# ### 4.1 The code
# The chapter's TensorRT path: build a plan from an ONNX file (parse it and check the result, set the
# workspace, declare the batch range of the dynamic dimension), then run it on torch CUDA tensors
# on torch's current CUDA stream.

# %%
show_source(build_plan)

# %%
show_source(EngineRunner)

# %% [markdown]
# ### 4.2 What can be verified without a GPU
# TensorRT's libraries cannot be installed on the machines this course is tested on: the package
# index holds only a stub for them, which downloads them from NVIDIA's servers at install time (not
# reachable there), and without an NVIDIA GPU and its driver they could not build or run an engine. Its **Python bindings** are a separate wheel, `tensorrt-cu13-bindings`, pinned in
# the course's requirements at the same release (11.4). They cannot be imported without the
# libraries either, but the compiled module is an ordinary file whose string table holds every
# name it registers, and whose docstring symbols pair each documented method with its class. The
# next cell reads that table and checks every TensorRT name the code above uses:

# %%
library = bindings_library()
if library is None:
    print("TensorRT's bindings wheel is not installed here (pip install tensorrt-cu13-bindings==11.4.0.106 "
          "adds it): the names cannot be checked.")
else:
    tensorrt_names = read_names(library)
    import helpers.ch07_tools.tensorrt_engine as tensorrt_engine_module

    name_check = check_names(Path(tensorrt_engine_module.__file__).read_text(), tensorrt_names)
    print(f"{library.parent.name}/{library.name}: {len(tensorrt_names.identifiers):,} names, "
          f"{sum(map(len, tensorrt_names.documented.values()))} documented methods")
    print(f"names our TensorRT code uses: {len(name_check)}; missing from TensorRT 11.4: "
          f"{int((name_check['found as'] == 'MISSING').sum())}")
    display(name_check)

# %% [markdown]
# And the old names of the table above, looked up in the same module:

# %%
if library is not None:
    display(removed_names_table(tensorrt_names))

# %% [markdown]
# What this proves: every name the chapter's code uses is registered by TensorRT 11.4's module (for
# documented methods, on the right class; for other names, somewhere in the module), and the
# removed ones are gone (`tests/unit/test_ch07_tools.py` checks both, and that none of the removed names
# appears anywhere in the course's code). What it cannot prove: that the
# arguments are right, that the parser accepts this ONNX file, that the engine builds, and how fast
# it runs. Only a run on an NVIDIA GPU shows those: the next cell does it where TensorRT is
# installed, and says why it skips elsewhere.
#
# ### 4.3 On an NVIDIA GPU: build, check, time
# TensorRT 11 networks are strongly typed, so the fp16 engine comes from an **fp16 ONNX file**: the
# model is converted with `.half()` and exported again. The plan is cached on disk under a name
# that includes the TensorRT version and the GPU, since it runs only there.

# %% tags=["nbval-ignore-output"]
tensorrt_problem = tensorrt_missing()
tensorrt_timings = None
if tensorrt_problem:
    print(f"TensorRT skipped: {tensorrt_problem}. On an NVIDIA GPU with TensorRT this cell exports ResNet-18 in "
          "fp16, builds and caches a plan, checks the engine's logits against fp32 PyTorch with an fp16 "
          "tolerance, and times the engine against eager fp16 PyTorch on the same batch.")
else:
    import tensorrt as trt

    gpu_resnet = copy.deepcopy(resnet).cuda().half()
    gpu_example = resnet_example.cuda().half()
    fp16_onnx = WORK / "resnet18_fp16.onnx"
    torch.onnx.export(gpu_resnet, (gpu_example,), fp16_onnx, dynamo=True, dynamic_shapes={"x": {0: batch}},
                      verbose=False)
    gpu_name = torch.cuda.get_device_name().replace(" ", "_")
    plan_path = WORK / f"resnet18_fp16_trt{trt.__version__}_{gpu_name}.plan"
    if not plan_path.exists():
        build_plan(fp16_onnx, plan_path, input_name="x", min_shape=(1, 3, 224, 224),
                   opt_shape=(RESNET_BATCH, 3, 224, 224), max_shape=(32, 3, 224, 224))
    engine = EngineRunner(plan_path)
    with torch.no_grad():
        fp32_logits = resnet.cuda()(resnet_example.cuda())
        print("parity against fp32:", parity(fp32_logits, engine(gpu_example).float(), relative=1e-2))
        resnet.cpu()
        tensorrt_timings = measure_interleaved({"eager fp16": lambda: gpu_resnet(gpu_example),
                                                "TensorRT fp16": lambda: engine(gpu_example)}, rounds=5)
    display(timing_table(tensorrt_timings, baseline="eager fp16").round(3))

# %% [markdown]
# The tolerance above follows section 3.2's rule with float16's unit roundoff ($2^{-11} \approx
# 4.9 \times 10^{-4}$ instead of float32's $6 \times 10^{-8}$): about $10^{-2}$ of the logits' scale.
#
# **Torch-TensorRT** is the other door: `torch_tensorrt.compile(model, ir="dynamo", inputs=[...])`
# compiles inside PyTorch, without an ONNX file, and falls back to PyTorch for what TensorRT cannot
# run. Its dynamo path follows TensorRT's strong typing: the precision comes from the model, so give
# it a half-precision model (or its autocast options) rather than `enabled_precisions`, which recent
# releases no longer honour there; check the options of the version you install.
#
# ## 5. What the source article got wrong
# The article's section on tools has two snippets. Their problems, run where they can be run here:
# - The profiler snippet starts with `from torch.utils.tensorboard import SummaryWriter` and never
#   uses it (the profiler's TensorBoard handler, which it may have meant, is deprecated with the
#   TensorBoard plugin, section 2.7). The import also needs the `tensorboard` package, which PyTorch
#   does not install:

# %%
try:
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (the article's unused import)
except ImportError as error:
    print(f"{type(error).__name__}: {error}")

# %% [markdown]
# - It profiles a single step, with no schedule: the first step of a fresh model and optimizer pays
#   one-time costs (Adam creates its state on its first step; new tensors first touch their memory),
#   so the profile shows a step that never recurs. The measurement: the first step of a fresh model
#   and optimizer, its data already prepared, against the steady steps of the same loop.

# %% tags=["nbval-ignore-output"]
first_batches = cached_batches(digits.x_train, digits.y_train, BATCH)
next(first_batches)  # the resize of the whole set happens here, not in the first step
first_step = make_training_step(first_batches, batch_normalize, seed=1)
step_times = []
for _ in range(6):
    start = time.perf_counter()
    first_step()
    step_times.append(1e3 * (time.perf_counter() - start))
print(f"first step {step_times[0]:.1f} ms; steps 2 to 6: {', '.join(f'{t:.1f}' for t in step_times[1:])} ms; "
      f"the first is {step_times[0] / min(step_times[1:]):.1f}x the fastest later one")

# %% [markdown]
# - It records `profile_memory=True` and `record_shapes=True` and then prints nothing: the memory
#   and shape columns are read with `key_averages(group_by_input_shape=True)` and a sort by
#   `self_cpu_memory_usage` (section 2.7); the trace alone does not show shapes grouped.
# - The TensorRT snippet puts `pip install tensorrt` and Python code in one block labelled bash: the
#   install is a shell command, the rest is Python. And `pip install tensorrt` pulls the libraries
#   from NVIDIA's servers at install time, which works only where they can run (section 4.2).
# - `builder.create_network()` is right for TensorRT 10 and 11 (it was wrong for TensorRT 8, the
#   version the rest of the snippet targets, which needed the EXPLICIT_BATCH flag for ONNX).
# - `parser.parse(f.read())` gets the graph's bytes but not its folder, so it cannot find the
#   `model.onnx.data` weights file that today's exporter writes beside it (section 3.1): use
#   `parser.parse_from_file(path)` (or `parse(data, path=...)`).
# - `parser.parse(...)` returns False on failure, and the snippet ignores it: a model that does
#   not parse becomes an empty network and a confusing error later. Check it and print
#   `parser.get_error(i)` for each of `parser.num_errors` (section 4.1).
# - `builder.build_engine(network, config)` was wrong three ways: it uses a `config` that was never created (a NameError),
#   sets no workspace and no precision, and calls a method removed in TensorRT 10 (the table of 4.2
#   shows it absent from TensorRT 11.4).
# - Nothing runs the engine, nothing compares it with the PyTorch model. Section 4.3 does both:
#   `execute_async_v3` on torch tensors, with parity and timing against eager fp16.
#
# ## 6. On a GPU
# On a CUDA GPU the profiler adds the **kernel view**: `ProfilerActivity.CUDA` records each kernel
# on the GPU's timeline, `key_averages()` sorts by `self_device_time_total`, and the trace shows
# the **gaps** between kernels, the time the GPU waits for the CPU to launch work. The `.item()` of
# section 2.6 becomes a synchronisation: the CPU stops until the GPU has finished everything queued
# before it (`cudaStreamSynchronize` or a blocking copy in the `logging` region). The memory
# snapshot records every CUDA allocation with its stack. For traces of many GPUs, Meta's Holistic
# Trace Analysis (HTA) computes idle time, communication overlap and kernel statistics per rank; it
# reads GPU traces (most of its analyses fail on a CPU-only trace).

# %% tags=["nbval-ignore-output"]
if not torch.cuda.is_available():
    print("No CUDA GPU here: skipped. On a GPU this cell profiles the fixed training step on CUDA and shows the "
          "kernel table, the idle gaps between kernels, the time .item() waits, and the largest allocations of "
          "a CUDA memory snapshot.")
else:
    from helpers.ch07_tools.trace_plot import complete_events, device_busy_share

    def gpu_batches() -> object:
        """The fixed pipeline's batches, moved to the GPU."""
        for images, labels in cached_batches(digits.x_train, digits.y_train, BATCH):
            yield images.cuda(), labels.cuda()

    torch.cuda.memory._record_memory_history(stacks="python", max_entries=100_000)
    gpu_step = make_training_step(gpu_batches(), batch_normalize, device="cuda")
    gpu_profile = profile_steps(gpu_step, memory=True)
    snapshot = torch.cuda.memory._snapshot()
    torch.cuda.memory._dump_snapshot(str(WORK / "gpu_memory_snapshot.pickle"))
    torch.cuda.memory._record_memory_history(enabled=None)
    kernels = sorted((e for e in gpu_profile.key_averages()
                      if e.device_type == DeviceType.CUDA and not e.is_user_annotation),
                     key=lambda e: e.self_device_time_total, reverse=True)[:8]
    display(pd.DataFrame([{"GPU kernel": e.key[:70], "calls per step": e.count / ACTIVE,
                           "GPU µs per step": e.self_device_time_total / ACTIVE} for e in kernels]).round(1))
    gpu_trace = WORK / "gpu_step_trace.json"
    gpu_profile.export_chrome_trace(str(gpu_trace))
    busy = device_busy_share(complete_events(gpu_trace), last_step)
    gpu_regions = region_table(gpu_profile, REGIONS, steps=ACTIVE)
    display(gpu_regions.round(3))
    waited = gpu_regions.loc["logging", "ms per step"]
    print(f"GPU busy during the last step: {busy:.0%}; .item() (the logging region) took {waited:.3f} ms per step. "
          + ("The GPU idles most of the step: the CPU cannot launch this small model's kernels fast enough, so "
             ".item() finds little queued work to wait for; batches this small want CUDA graphs (chapter 3) or "
             "torch.compile, not fewer .item() calls." if busy < 0.5 else
             "The GPU is busy most of the step: each .item() waits for the queued kernels, and removing it "
             "from the loop lets the CPU run ahead."))

    def python_frames(block: dict) -> list[dict]:
        """The frames of an allocation's stack that are our Python code, innermost first."""
        return [frame for frame in block.get("frames", [])
                if frame["filename"].endswith(".py") and "/torch/" not in frame["filename"]]

    blocks = sorted((block for segment in snapshot["segments"] for block in segment["blocks"]
                     if block["state"] == "active_allocated"), key=lambda block: block["size"], reverse=True)[:5]
    display(pd.DataFrame([{"MB": block["size"] / 1e6, "allocated in": next(
        (f"{frame['name']} ({Path(frame['filename']).name}:{frame['line']})" for frame in python_frames(block)),
        "(no Python frame recorded)")} for block in blocks]).round(3))

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
# **Exercise 2 (a tolerance for float16).** Section 3.2 derived a parity tolerance for float32. A
# network runs in float16 (unit roundoff $2^{-11}$); its largest dot product has $K = 2304$ terms (a
# 3x3 convolution over 256 channels), it has 50 layers, and its logits reach 10 in absolute value.
# With the same rule, what largest absolute difference between two float16 runtimes would you still
# accept as rounding? Within 5% passes.

# %%
my_fp16_tolerance = ...  # your answer, in the logits' units
check_fp16_tolerance("Exercise 2", my_fp16_tolerance)

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution"]
my_fp16_tolerance = 2 ** -11 * 2304 ** 0.5 * 50 * 10
check_fp16_tolerance("Exercise 2", my_fp16_tolerance)

# %% [markdown]
# **Exercise 3 (open: profile your own loop).** Take a training loop of yours, wrap its parts in
# `record_function` regions, profile five steps with the schedule of section 2.2, and read the
# region table and the operators grouped by shape. Fix the largest problem, then measure the fix
# with `measure_interleaved` and a claim, as in section 2.5.
#
# ## 8. Summary
# The results this run measured, recorded into the course's ledger for chapter 8:

# %% tags=["nbval-ignore-output"]
entries = [
    make_entry(7, "profiler_fix", metric="training step time, before and after the profile's two fixes", unit="ms",
               baseline=step_timings["slow"].median_ms, optimized=step_timings["both fixed"].median_ms,
               higher_is_better=False, hardware=hw.cpu_label, ratio=fix_claim.ratio,
               extras={"normalize_loop_fix": loop_claim.as_dict()["ratio"] | {"verdict": loop_claim.verdict},
                       "cached_loader_fix": loader_claim.as_dict()["ratio"] | {"verdict": loader_claim.verdict}}),
    make_entry(7, "onnxruntime", metric="ResNet-18 latency, batch 8, one thread, against eager", unit="ms",
               baseline=runtime_table.loc["eager", "median_ms"],
               optimized=runtime_table.loc["ONNX Runtime, all optimizations", "median_ms"], higher_is_better=False,
               hardware=hw.cpu_label, ratio=ort_claim.ratio,
               extras={"compiled_freezing_ms": runtime_table.loc["compiled + freezing", "median_ms"],
                       "optimizations_off_ms": runtime_table.loc["ONNX Runtime, optimizations off", "median_ms"],
                       "fastest": fastest}),
    make_entry(7, "onnxruntime_int8_static", metric="ResNet-18 latency, batch 8, one thread, against ORT fp32",
               unit="ms", baseline=int8_table.loc["fp32", "median_ms"],
               optimized=int8_table.loc["int8 static, U8S8", "median_ms"], higher_is_better=False,
               hardware=hw.cpu_label, ratio=int8_claim.ratio,
               extras={"size_ratio": int8_table.loc["fp32", "file size (MB)"]
                       / int8_table.loc["int8 static, U8S8", "file size (MB)"],
                       "digits_accuracy_change_points": accuracy_rows["int8 static"]["test accuracy (%)"]
                       - accuracy_rows["fp32"]["test accuracy (%)"]}),
]
if tensorrt_timings is not None:
    entries.append(make_entry(7, "tensorrt_fp16", metric="ResNet-18 latency, batch 8, against eager fp16", unit="ms",
                              baseline=tensorrt_timings["eager fp16"].median_ms,
                              optimized=tensorrt_timings["TensorRT fp16"].median_ms, higher_is_better=False,
                              hardware=hw.label, ratio=timing_ratio(tensorrt_timings["eager fp16"],
                                                                    tensorrt_timings["TensorRT fp16"])))
record_chapter(7, entries, claims)
ledger_table(entries).round(3)

# %% [markdown]
# **Take-aways**
# 1. Profile to find, benchmark to measure. A schedule (wait, warm-up, active) keeps one-time costs
#    out; `record_function` regions and operators grouped by input shape turn the table into a
#    diagnosis; the profiler's own overhead inflates code with many small operators, so every fix
#    is measured afterwards with interleaved rounds.
# 2. Fix what the profile shows and measure each fix: here per-sample work and a Python loop over a
#    batch, and the `.item()` that rules of thumb warn about only if its share says so (on a GPU it
#    is a synchronisation, section 6).
# 3. Export with `torch.onnx.export(..., dynamo=True, dynamic_shapes=...)` from a batch larger than
#    1, ship the `.onnx.data` file with the graph (or pass `external_data=False`), check the file
#    with `onnx.checker` and the numbers against PyTorch with a tolerance you can justify.
# 4. Set threads and graph level on purpose in ONNX Runtime; compare it with `torch.compile` and
#    freezing on your own CPU. For int8: `quantize_static` with QDQ and per-channel weights for
#    convolutions (measure both activation types, U8S8 and S8S8, on your CPU), `quantize_dynamic`
#    for Linear layers, accuracy measured every time.
# 5. TensorRT 10 and 11: `build_serialized_network`, tensors by name, `execute_async_v3`; in 11,
#    precision comes from the model's types. Code that cannot run here can still be checked against
#    the names its real bindings register.
