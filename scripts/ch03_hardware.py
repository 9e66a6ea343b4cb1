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
# # Chapter 3 — Hardware acceleration: devices, data movement, mixed precision, torch.compile
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dl-perf-course/dl-performance-workbook/blob/main/notebooks/ch03_hardware.ipynb) [![Launch Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/dl-perf-course/dl-performance-workbook/main?labpath=notebooks/ch03_hardware.ipynb)
#
# The same model can run several times faster, or many times slower, depending on where its data
# lives and which number format its arithmetic uses. This chapter moves work between devices,
# measures what the copies cost, trains with mixed precision the current way (and fixes the
# article's version), and compiles a network with `torch.compile`. Which of these pays is decided
# by the hardware in front of you, so every verdict below is measured on it.
#
# **Estimated time:** ~75 min · **Hardware:** Any CPU; a CUDA GPU adds pinned-memory, fp16, TF32 and CUDA-graph measurements

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

if not torch.cuda.is_available():  # no CUDA GPU: one C++ compile at a time (section 3); Inductor reads it on import
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

import copy
import logging
import math
import shutil
import tempfile
import warnings
from functools import partial

import ipywidgets as widgets
import pandas as pd
from torch import nn
from torch.torch_version import TorchVersion
from torch.utils.checkpoint import checkpoint
from torchvision.models import mobilenet_v3_small, resnet18

from helpers.core.amp import PRECISIONS, amp_train_step, make_grad_scaler
from helpers.core.claims import make_claim, report_claim, timing_ratio
from helpers.core.hardware import pick_device
from helpers.core.measure import measure_interleaved, synchronized_clock, timing_table
from helpers.workload.data import load_digits_split, tensor_loader
from helpers.workload.models import small_cnn
from helpers.workload.training import evaluate_accuracy, train_epochs
from helpers.support.chapter import setup_chapter
from helpers.support.ledger import ledger_table, make_entry, record_chapter
from helpers.support.plots import plot_comparison
from helpers.support.source import show_source
from helpers.support.widgets import live_control
from helpers.ch03_hardware.compile_timing import forget_compiled_code
from helpers.ch03_hardware.exercises import (
    check_activation_bytes_prediction, check_break_even, check_loss_scale, exercise_mlp,
)
from helpers.ch03_hardware.gpu import (
    compare_copy_compute_overlap, compare_host_to_device, compare_tf32_matmul, copy_beside_compute, cuda_graph_replay,
    launch_versus_completion_ms, pin_memory_cost,
)
from helpers.ch03_hardware.precision import (
    explain_precision, precision_point, precision_sweep, precision_workload, relative_error, saved_activation_bytes,
)

if TorchVersion(torch.__version__) < "2.9":  # the Colab installer above skips the helpers' dependency checks
    raise RuntimeError(f"This chapter needs torch>=2.9 (torch.backends' fp32_precision switches); this kernel has "
                       f"{torch.__version__}. Upgrade with: pip install -U 'torch>=2.9' torchvision")
hw = setup_chapter(3)
device = pick_device()
claims = []  # this chapter's speed claims, judged on this machine; recorded in the summary

# %% [markdown]
# ## 1. Why: bytes and number formats
# A layer costs either arithmetic (a big matrix product) or memory traffic (an elementwise
# operation reads and writes each value once). Smaller number formats help both, *if* the hardware
# has instructions for them: half the bytes to move, and on tensor cores or CPUs with bf16/fp16
# instructions, several times the multiply throughput. What each format can represent is fixed;
# `torch.finfo` reports it:

# %%
formats = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
pd.DataFrame([{"format": name, "bits": torch.finfo(dtype).bits,
               "mantissa bits": -int(math.log2(torch.finfo(dtype).eps)),
               "largest": torch.finfo(dtype).max, "smallest normal": torch.finfo(dtype).tiny}
              for name, dtype in formats.items()]).set_index("format")

# %% [markdown]
# bf16 keeps fp32's exponent range (largest ~3e38) with fewer mantissa bits; fp16 has more mantissa
# but overflows above 65504, and below its smallest normal number (~6.1e-5) it has only subnormal
# numbers, which lose precision step by step down to 2^-24 ~ 5.96e-8, the smallest; anything below half
# of it (about 2.98e-8) rounds to zero. Gradients are often that small (exercise 1 tries 1e-8). That is why fp16 training needs loss
# scaling and bf16 does not. TF32 is not a storage format:
# it is a mode of NVIDIA tensor cores (Ampere or newer) that multiplies fp32 tensors with a 10-bit mantissa.

# %% [markdown]
# ## 2. Devices and data movement
# Pick the fastest available device (CUDA, then Apple's MPS, then the CPU) and move the model and
# each batch there. `module.to(device)` moves the parameters in place; `tensor.to(device)` returns a
# *new* tensor, so the result must be kept:

# %%
model = small_cnn().to(device)
batch = torch.randn(64, 1, 32, 32).to(device)
print(f"device: {device}; parameters on {next(model.parameters()).device}; batch on {batch.device}; "
      f"output shape {tuple(model(batch).shape)}")

# %% [markdown]
# ### The cost of a host-to-device copy, and hiding it behind compute
# A copy from ordinary (pageable) host memory goes through a pinned staging buffer the driver
# allocates, and the CPU waits until it is done. A copy from memory that is already *pinned*
# (page-locked) is read directly by the GPU's copy engine, and with `non_blocking=True` the call
# returns at once. That is what lets a copy *overlap* with compute: while the GPU works on this
# batch, the next one travels on a second CUDA stream. `DataLoader(pin_memory=True)` puts each batch
# in pinned memory for you (chapter 4). Three measurements on a GPU: the copy's bandwidth, then
# what pinning itself costs, then whether the copy hides behind compute.

# %% tags=["nbval-ignore-output"]
if device.type == "cuda":
    copies = compare_host_to_device(megabytes=64)
    display(copies.round(2))
else:
    print(f"No CUDA GPU here (device={device.type}): the pageable-versus-pinned copy measurement is skipped. "
          "On a GPU this cell times a 64 MB copy three ways.")

# %% [markdown]
# Pinning is not free: `pin_memory()` allocates page-locked memory (the operating system must lock
# every page) and copies the data into it. PyTorch keeps freed pinned blocks in a cache, so pinning
# another tensor of a size it has seen before costs about one memory copy, but the first time costs
# much more. Pin what you copy many times (a loader's batches, through its reused buffers), not a
# tensor you copy once. Without a GPU there is nothing to pin for: `pin_memory()` needs an accelerator.

# %% tags=["nbval-ignore-output"]
if device.type == "cuda":
    display(pin_memory_cost(megabytes=256).round(2))
else:
    print(f"No CUDA GPU here (device={device.type}): pin_memory() needs an accelerator, so its cost is not "
          "measured. On a GPU this cell times a first pin_memory() of 256 MB, a repeated one, and a plain "
          "clone() of the same buffer.")

# %% [markdown]
# Overlap cannot be seen by timing a copy alone: a timer that waits for the GPU measures the copy,
# non-blocking or not. It shows when a copy and a computation are issued *together*: the copy of a
# 256 MB buffer on a side stream, then matrix products sized to last about as long on the default
# stream. If the two overlap, together takes about the longer of the two (`max_ms`); if not, their
# sum (`sum_ms`). `hidden_share` is the part of the shorter one that disappeared (1: fully hidden).

# %%
show_source(copy_beside_compute)

# %% [markdown]
# Each call is timed alone, the GPU idle before it and finished after it: timed back to back, the next
# call's copy could hide behind this call's queued matrix products, even from pageable memory. The
# function returns the copied tensor: whoever uses it on another stream must keep a reference until
# that stream is done with it, or call `copied.record_stream(stream)` as here, so that the caching
# allocator does not hand its memory out again too early.

# %% tags=["nbval-ignore-output"]
if device.type == "cuda":
    overlap, overlap_ratios = compare_copy_compute_overlap(megabytes=256)
    display(overlap.round(3))
    overlap_claim = make_claim(3, "pinned_copy_hides_1.3x", "A 256 MB copy from pinned memory on a side stream, "
                               "issued beside matrix products of about its length, makes the pair at least 1.3x "
                               "faster than the copy and the compute in sequence.", threshold=1.3,
                               ratio=overlap_ratios["pinned"], hardware=hw.label, condition="a CUDA GPU")
    claims.append(overlap_claim)
    print(f"pageable memory, the same ratio: {overlap_ratios['pageable']} ({overlap_ratios['pageable'].gain})")
    display(report_claim(overlap_claim,
                         holds="The copy engine moved the pinned buffer while the GPU computed: the table's "
                               "hidden share says how much of the shorter part disappeared.",
                         does_not_hold="The copy did not hide here: compare the pageable row, and check that "
                                       "the copy engine is not shared with other work on this GPU."))
else:
    print(f"No CUDA GPU here (device={device.type}): there is no copy engine to overlap with compute, so "
          "this measurement is skipped. On a GPU this cell times the copy, the compute and both together, "
          "from pageable and from pinned memory, and judges how much of the copy hid.")

# %% [markdown]
# ### Asynchronous execution
# A CUDA call returns as soon as the kernel is *queued*. A clock read right after it measures the
# queueing, not the work (chapter 1 measured this); the course's timing helpers synchronise the
# device before reading the clock.

# %% tags=["nbval-ignore-output"]
if device.type == "cuda":
    square = torch.randn(4096, 4096, device=device)
    returned_ms, finished_ms = launch_versus_completion_ms(lambda: square @ square, repeats=20)
    print(f"20 matrix products: back in Python after {returned_ms:.2f} ms, "
          f"finished after {finished_ms:.2f} ms")
else:
    print(f"No CUDA GPU here (device={device.type}): CPU operations finish before they return, so there is "
          "nothing asynchronous to expose. On a GPU, the first reading would be a small fraction of the "
          "second.")

# %% [markdown]
# ## 3. Free speed on the same hardware: memory layout and compilation
# Before changing the arithmetic, two changes that keep PyTorch's default fp32 settings (on an Ampere or
# newer GPU those already run convolutions in TF32, on both sides of each comparison: section 6).
#
# ### `torch.compile`
# `torch.compile` traces the model into a graph and has Inductor generate fused kernels (C++ with
# OpenMP on a CPU, Triton on a GPU). The price is paid once, at the first call; the reward on every
# later call. How large the price is depends on Inductor's on-disk cache (`TORCHINDUCTOR_CACHE_DIR`):
# - **cold**: the cache is empty, so every kernel is generated and built: the first run on a new
#   machine, or in every fresh Colab or Binder session;
# - **warm**: an earlier run filled the cache, so the built kernels are loaded: re-running the
#   notebook on the same machine.
#
# On a CPU, Inductor runs the C++ compiler, which needs memory of its own. Two settings keep it in
# check so that the chapter fits a 2 GB Binder session: without a CUDA GPU the setup cell asked for one
# compile at a time (`TORCHINDUCTOR_COMPILE_THREADS=1`, read when Inductor is first imported, before
# `torchvision`: parallel compiles each run a compiler process of their own; with a GPU the setting is
# left alone, since it would slow the Triton compiles down), and `cpp_cache_precompile_headers=False` skips building a
# precompiled-header cache. The model: ResNet-18 inference at batch 8, 224x224.
#
# Every first call below is timed the same way:

# %%
def compile_and_time_first_call(model: nn.Module, inputs: torch.Tensor,
                                **options: bool) -> tuple[nn.Module, float]:
    """torch.compile a copy of model with Inductor options; return it and its first call's seconds."""
    compiled_model = torch.compile(copy.deepcopy(model), options=options)
    start = synchronized_clock()
    with torch.inference_mode(), warnings.catch_warnings():
        # On an NVIDIA GPU Inductor suggests TF32 for matmuls; this section keeps the defaults (section 6).
        warnings.filterwarnings("ignore", message="TensorFloat32 tensor cores")
        compiled_model(inputs)
    return compiled_model, synchronized_clock() - start


# %% [markdown]
# A cold start needs an empty cache and a process that has compiled nothing yet. This kernel has
# compiled nothing so far, so the next cell points it at a new, empty directory (Inductor reads the
# variable when it first needs its cache) and times the first call: what a learner in a fresh
# session pays.

# %% tags=["nbval-ignore-output"]
compile_cache = tempfile.mkdtemp(prefix="inductor-cache-")
os.environ["TORCHINDUCTOR_CACHE_DIR"] = compile_cache
forget_compiled_code()  # so that running this cell again in the same kernel starts cold as well
resnet = resnet18().eval().to(device)
images = torch.randn(8, 3, 224, 224, device=device)
compiled, cold_compile_s = compile_and_time_first_call(resnet, images, cpp_cache_precompile_headers=False)
print(f"cold start (empty cache, nothing compiled in this process): first call {cold_compile_s:.1f} s")

# %% [markdown]
# A re-run of the notebook is a new process that finds the directory filled. This process gets the
# same start by forgetting what it compiled in memory, keeping the disk cache (a new process would
# also import Inductor's Python modules once more):

# %%
show_source(forget_compiled_code)

# %% tags=["nbval-ignore-output"]
forget_compiled_code()
compiled, warm_compile_s = compile_and_time_first_call(resnet, images, cpp_cache_precompile_headers=False)
print(f"warm start (the cache filled above): first call {warm_compile_s:.1f} s; "
      f"cold start: {cold_compile_s:.1f} s")

# %% [markdown]
# Eager against compiled, in alternating rounds:

# %% tags=["nbval-ignore-output"]
with torch.inference_mode():
    compile_timings = measure_interleaved({"eager": partial(resnet, images),
                                           "torch.compile": partial(compiled, images)},
                                          rounds=5, min_run_time=1.0)
compile_table = timing_table(compile_timings)
compile_ratio = timing_ratio(compile_timings["eager"], compile_timings["torch.compile"])
print(f"torch.compile against eager (median of the rounds' ratios): {compile_ratio}")
compile_table.round(2)

# %% tags=["nbval-ignore-output"]
compile_claim = make_claim(3, "torch_compile_1.2x", "torch.compile makes ResNet-18 inference at batch 8 "
                           "at least 1.2x faster than eager, once compiled.", threshold=1.2,
                           ratio=compile_ratio, hardware=hw.label)
claims.append(compile_claim)
report_claim(compile_claim,
             holds="Inductor fused the element-wise work around the convolutions (batch norm, ReLU, "
                   "additions) into fewer kernels and dropped Python and dispatch overhead between "
                   "operators.",
             does_not_hold="On this device eager's convolution kernels already do most of the work at full "
                           "speed; fusing the cheap operations around them saves little.")

# %% [markdown]
# Compiled code is not bit-identical to eager: fused kernels add in a different order. The largest
# difference, relative to the largest output (on a GPU, both sides use the default fp32 settings,
# TF32 convolutions on Ampere or newer):

# %% tags=["nbval-ignore-output"]
with torch.inference_mode():
    reference = resnet(images)
    print(f"compiled against eager: largest relative error {relative_error(compiled(images), reference):.1e}")

# %% [markdown]
# For inference on a CPU, PyTorch's tuning guide adds `freezing=True`: Inductor treats the weights as
# constants, so it can fold each batch norm into the convolution before it, precompute what depends
# only on the weights, and repack the weights into the layout oneDNN's kernels read fastest. A frozen
# model's first call builds kernels of its own, so to keep this chapter's compile time down the
# comparison uses the chapter's small CNN (convolution, batch norm and ReLU stages: what freezing
# folds), batch 64 at 32x32, compiled with and without freezing:

# %% tags=["nbval-ignore-output"]
torch.manual_seed(0)
small_net = small_cnn().eval().to(device)
small_images = torch.randn(64, 1, 32, 32, device=device)
small_compiled, small_compile_s = compile_and_time_first_call(small_net, small_images,
                                                              cpp_cache_precompile_headers=False)
frozen, freezing_compile_s = compile_and_time_first_call(small_net, small_images,
                                                         cpp_cache_precompile_headers=False, freezing=True)
print(f"small CNN, first call: {small_compile_s:.1f} s compiled, {freezing_compile_s:.1f} s with freezing")

# %% tags=["nbval-ignore-output"]
with torch.inference_mode():
    freezing_timings = measure_interleaved({"torch.compile": partial(small_compiled, small_images),
                                            "compile + freezing": partial(frozen, small_images)},
                                           rounds=5, min_run_time=1.0)
    print(f"frozen against eager: largest relative error "
          f"{relative_error(frozen(small_images), small_net(small_images)):.1e}")
freezing_table = timing_table(freezing_timings)
freezing_ratio = timing_ratio(freezing_timings["torch.compile"], freezing_timings["compile + freezing"])
freezing_table.round(3)

# %% tags=["nbval-ignore-output"]
if device.type == "cpu":
    freezing_claim = make_claim(3, "compile_freezing_1.1x", "For CPU inference, torch.compile with "
                                "freezing=True makes the small CNN at batch 64 at least 1.1x faster than "
                                "torch.compile without it.", threshold=1.1, ratio=freezing_ratio,
                                hardware=hw.label, condition="a CPU")
    claims.append(freezing_claim)
    display(report_claim(freezing_claim,
                         holds="With the weights constant, batch norm disappeared into the convolutions and "
                               "oneDNN read prepacked weights: less work per call.",
                         does_not_hold="The convolutions dominate here, and their kernels were about as fast "
                                       "without prepacked weights; the folded batch norms were a small part "
                                       "of the time."))
else:
    print(f"freezing=True is the CPU inference recipe; on {device.type} the ratio measured here was "
          f"{freezing_ratio} ({freezing_ratio.gain}).")

# %% [markdown]
# A learner who opens this notebook in a fresh cloud session pays the cold price; one who re-runs it
# on the same machine pays the warm one. A service pays the cold price at every deployment unless it
# keeps its cache directory. Compilation pays for long-running services and training jobs, not for a
# one-off script or a model whose input shapes change on every call (each new shape can trigger a
# recompilation). Section 6 shows what splits a model into several compiled graphs.
#
# The compiled code is loaded in this process now, so the cache directory can go (a new process
# would find it gone and start cold):

# %%
del compiled, frozen, small_compiled
shutil.rmtree(compile_cache, ignore_errors=True)
del os.environ["TORCHINDUCTOR_CACHE_DIR"]

# %% [markdown]
# ### Memory format: `channels_last`
# Convolutions read, for each output pixel, all input channels of a small window. In the default
# NCHW layout those channels are a whole plane apart; in `channels_last` (NHWC) they sit side by
# side, which suits vector units and tensor cores. The same ResNet-18 inference, eager, in both layouts:

# %% tags=["nbval-ignore-output"]
resnet_cl = copy.deepcopy(resnet).to(memory_format=torch.channels_last)
images_cl = images.contiguous(memory_format=torch.channels_last)
with torch.inference_mode():
    layout_timings = measure_interleaved({"NCHW": partial(resnet, images),
                                          "channels_last": partial(resnet_cl, images_cl)},
                                         rounds=5, min_run_time=1.0)
layout_table = timing_table(layout_timings)
layout_table.round(2)

# %% tags=["nbval-ignore-output"]
layout_claim = make_claim(3, "channels_last_1.1x", "channels_last makes eager ResNet-18 inference at batch 8 "
                          "at least 1.1x faster than NCHW.", threshold=1.1,
                          ratio=timing_ratio(layout_timings["NCHW"], layout_timings["channels_last"]),
                          hardware=hw.label)
claims.append(layout_claim)
report_claim(layout_claim, holds="channels_last was faster for this network here; chapter 2's per-layer table "
                                 "shows which layers gain.",
             does_not_hold="On this device the NCHW kernels are as good, or the layout conversions cost "
                           "what the layout saves.")

# %% [markdown]
# ## 4. Mixed precision, the current way
# `torch.autocast(device_type, dtype=...)` runs matrix products and convolutions in the low-precision
# format and keeps precision-sensitive operations (reductions, softmax, the loss) in fp32. Three
# rules: only the forward pass and the loss go inside the `autocast` block; the backward pass runs
# outside it (it reuses the precisions the forward chose); and with fp16, a `GradScaler` multiplies
# the loss so that small gradients do not underflow, then unscales them before the optimizer step.
# One step written out, in fp16 so that every part appears (in bf16, drop the scaler: its exponent
# range is fp32's):

# %%
net = small_cnn().to(device)
optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
scaler = torch.amp.GradScaler(device.type)
inputs, targets = torch.randn(8, 1, 32, 32, device=device), torch.randint(0, 10, (8,), device=device)

with torch.autocast(device.type, dtype=torch.float16):  # the forward pass and the loss, nothing else
    logits = net(inputs)
    loss = torch.nn.functional.cross_entropy(logits, targets)
optimizer.zero_grad(set_to_none=True)
scaler.scale(loss).backward()  # backward outside autocast, on the scaled loss
scaler.unscale_(optimizer)  # true gradients again: clip them here if you clip
torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm=1.0)
scaler.step(optimizer)  # skips the step if a gradient is inf or NaN
scaler.update()  # halves the scale after a skipped step, grows it after a run of good ones
print(f"logits in {logits.dtype}, loss in {loss.dtype}, weights in {next(net.parameters()).dtype}, "
      f"gradients in {next(net.parameters()).grad.dtype}")

# %% [markdown]
# Autocast casts *copies* of the weights for each operation: the parameters, their gradients and the
# optimizer's state stay fp32, so they take no less memory; what shrinks is the activations kept for
# the backward pass (measured below). The scaler starts at 65536 and adapts: a step whose gradients
# overflowed is skipped and the scale halved. The course's training step, used from here on, is the
# same recipe:

# %%
show_source(amp_train_step)

# %%
show_source(make_grad_scaler)

# %% [markdown]
# Train the chapter's small CNN on the digits (upsampled to 32x32) in fp32, in bf16, and on a CUDA GPU
# also in fp16 with loss scaling (on a CPU, fp16 training is slow: section 5's widget measures one step).
# bf16 runs everywhere but is fast only with native support: a CPU with AVX512-BF16 or AMX, an NVIDIA
# GPU of compute capability 8.0 or newer (not Colab's default T4, 7.5: there cuDNN has no bf16
# convolutions, so on such a GPU this chapter skips bf16 and uses fp16); on a CPU without it, bf16 is
# emulated, slowly. The learning rate follows a cosine to zero so that the final accuracy is steady; accuracy is
# evaluated in fp32.

# %% tags=["nbval-ignore-output"]
digits = load_digits_split(image_size=32)
train_loader = tensor_loader(digits.x_train, digits.y_train, batch_size=64, shuffle=True)
gpu_without_bf16 = device.type == "cuda" and not hw.gpu_bf16
trained_precisions = ["fp32"] + ([] if gpu_without_bf16 else ["bf16"]) + (["fp16"] if device.type == "cuda" else [])
low_precision = "fp16" if gpu_without_bf16 else "bf16"  # the low-precision format this section's claim compares
trained = {}
for precision in trained_precisions:
    torch.manual_seed(0)
    trained[precision] = small_cnn()
    train_epochs(trained[precision], train_loader, epochs=6, lr=3e-3, device=device, precision=precision,
                 anneal=True, progress=False)
accuracy = {p: evaluate_accuracy(net, digits.x_test, digits.y_test, device=device)
            for p, net in trained.items()}
print({p: f"{a:.1%}" for p, a in accuracy.items()})

# %% [markdown]
# Step time and memory, measured on one fixed batch of 64, the precisions in alternating rounds.
# "Saved for backward" counts the bytes of the tensors autograd keeps between the forward and the
# backward pass, which is where low precision saves memory:

# %% tags=["nbval-ignore-output"]
x_step, y_step = digits.x_train[:64].to(device), digits.y_train[:64].to(device)
steppers = {p: copy.deepcopy(trained["fp32"]) for p in trained_precisions}
optimizers = {p: torch.optim.SGD(net.parameters(), lr=1e-3) for p, net in steppers.items()}
scalers = {p: make_grad_scaler(p, device) for p in trained_precisions}
step_timings = measure_interleaved(
    {p: partial(amp_train_step, steppers[p], x_step, y_step, optimizers[p], scalers[p], p)
     for p in trained_precisions},
    rounds=4, min_run_time=1.2)
step_table = timing_table(step_timings)
step_table["saved_for_backward_MB"] = [saved_activation_bytes(steppers[p], x_step, p) / 2**20
                                       for p in step_table.index]
step_table["test_accuracy"] = [accuracy[p] for p in step_table.index]
step_table.round(3)

# %%
plot_comparison(step_table["median_ms"].to_dict(), metric="training step, small CNN, batch 64", unit="ms",
                hardware=hw.label, higher_is_better=False, title="Mixed-precision training step")

# %% tags=["nbval-ignore-output"]
low_ratio = timing_ratio(step_timings["fp32"], step_timings[low_precision])
if device.type == "cuda":
    net, optimizer, scaler = steppers["fp32"], optimizers["fp32"], scalers["fp32"]
    x_big, y_big = digits.x_train[:256].to(device), digits.y_train[:256].to(device)
    batch_timings = measure_interleaved({
        "batch 64": partial(amp_train_step, net, x_step, y_step, optimizer, scaler, "fp32"),
        "batch 256": partial(amp_train_step, net, x_big, y_big, optimizer, scaler, "fp32")},
        rounds=4, min_run_time=1.0)
    step_claim = make_claim(3, "small_step_launch_bound", "On a GPU, the small CNN's training step is "
                            "bound by kernel launches, not arithmetic: 4x the batch (256 images instead "
                            "of 64) takes at most 2x the time.", threshold=2.0,
                            ratio=timing_ratio(batch_timings["batch 256"], batch_timings["batch 64"]),
                            hardware=hw.label, direction="at most", condition="a CUDA GPU")
    low_reading = (f"{low_precision} still measured {low_ratio} against fp32: some of the step is arithmetic "
                   f"after all, and that part it shortened." if low_ratio.gain == "gain" else
                   f"{low_precision} shortens the computing only, so it did not pay here: against fp32 it "
                   f"measured {low_ratio} ({low_ratio.gain}).")
    readings = {"holds": f"Four times the arithmetic barely moves the step: its time goes to launching some "
                         f"hundred small kernels, not to computing. {low_reading} Section 5 gives the GPU a "
                         f"workload big enough for its tensor cores.",
                "does_not_hold": f"On this GPU the arithmetic of this small step already takes most of its "
                                 f"time, so lower precision can pay even here: compare the {low_precision} row "
                                 f"above."}
elif device.type == "mps":
    step_claim = None  # the CPU claims below are about CPU instructions; Apple's GPU has its own
elif hw.cpu_native_bf16:
    step_claim = make_claim(3, "bf16_training_step", "With native bf16 instructions, a bf16 autocast "
                            "training step of the small CNN is at least 1.2x faster than fp32.",
                            threshold=1.2, ratio=low_ratio, hardware=hw.label,
                            condition="a CPU with native bf16 (AVX512-BF16 or AMX)")
else:
    step_claim = make_claim(3, "bf16_training_step", "Without native bf16 instructions, a bf16 autocast "
                            "training step of the small CNN is slower than fp32 (at most 1x).", threshold=1.0,
                            ratio=low_ratio, hardware=hw.label, direction="at most",
                            condition="a CPU without native bf16 instructions")
if device.type == "cpu":
    readings = {"holds": "The hardware report at the top says which case this CPU is, and the measurement "
                         "agrees: lower precision pays only where the hardware has instructions for it.",
                "does_not_hold": "The measurement disagrees with what the hardware report leads us to "
                                 "expect: the convolutions may have fallen back to a path that converts to "
                                 "fp32, or the step is dominated by work that autocast leaves in fp32."}
if step_claim is None:
    print(f"On {device.type} no bf16 claim is made: bf16 against fp32 measured {low_ratio} ({low_ratio.gain}).")
else:
    claims.append(step_claim)
    display(report_claim(step_claim, **readings))

# %% [markdown]
# The accuracies in the table come from one seed and one small test split, so a point or two between
# the precisions is within noise (and bf16's rounding differs between CPU instruction sets). The bytes
# kept for backward are exact:

# %%
print(f"{low_precision} keeps about half the bytes for backward:",
      0.4 < step_table.loc[low_precision, "saved_for_backward_MB"]
      / step_table.loc["fp32", "saved_for_backward_MB"] < 0.75)

# %% tags=["nbval-ignore-output"]
print(explain_precision(low_precision, hw))

# %% [markdown]
# ## 5. Explore: the precision widget
# Each choice re-runs inference and one training step of ResNet-18, sized for this device
# (batch 64 at 224x224 on a GPU, batch 8 at 48x48 elsewhere, so that one choice takes a few seconds),
# and compares the output with fp32's. `tf32` exists only on NVIDIA GPUs; elsewhere the widget says so.

# %%
workload = precision_workload(device)


def precision_report(precision: str) -> pd.DataFrame:
    """One measured precision point of the workload, after the reason it is fast or slow here."""
    point = precision_point(*workload, precision)
    print(explain_precision(precision, hw))
    return pd.DataFrame([point]).set_index("precision").round(4)


# %% tags=["nbval-ignore-output"]
live_control(precision_report, precision=widgets.ToggleButtons(options=list(PRECISIONS), value="fp32",
                                                                description="precision"))

# %% [markdown]
# The same measurement for every precision this device runs well (the cell says which it leaves out,
# and why), the precisions in alternating rounds, as a static figure for the book. *Saved for backward* counts the memory autograd keeps for the backward
# pass: the activations and, under autocast, the low-precision copies of the weights that the forward
# made. With a large batch the activations dominate and low precision halves them; with a small batch
# the weight copies can outweigh what the activations save.

# %% tags=["nbval-ignore-output"]
skipped = {"tf32": "it needs an NVIDIA GPU of compute capability 8.0 or newer"} if not hw.gpu_tf32 else {}
if gpu_without_bf16:
    skipped["bf16"] = f"{hw.gpu_name} has no native bf16 (cuDNN's bf16 convolutions need compute capability 8.0)"
if device.type == "cpu" and not hw.cpu_native_fp16:
    skipped["fp16"] = ("this CPU has no fp16 instructions, so fp16 is emulated and expected to take many times "
                       "fp32's time; choose fp16 in the widget above to measure it")
elif device.type == "cpu":
    skipped["fp16"] = ("this CPU has fp16 instructions, but PyTorch's CPU fp16 kernels (the backward ones above "
                       "all) do not use them throughout, and bf16 is the CPU's mixed-precision format; to keep "
                       "the chapter short, choose fp16 in the widget above to measure it")
runnable = [p for p in PRECISIONS if p not in skipped]
for precision, reason in skipped.items():
    print(f"{precision} is left out of the sweep: {reason}.")
precision_table, sweep_steps = precision_sweep(*workload, runnable, rounds=3, min_run_time=0.9)
precision_table.round(4)

# %%
plot_comparison(precision_table["train_step_ms"].to_dict(), metric="ResNet-18 training step", unit="ms",
                hardware=hw.label, higher_is_better=False, title="One training step in each precision")

# %% tags=["nbval-ignore-output"]
if device.type == "cuda" and hw.gpu_bf16 and hw.gpu_tf32:
    resnet_bf16_claim = make_claim(3, "bf16_resnet18_training_gpu", "On a GPU with bf16 tensor cores, a bf16 "
                                   "autocast training step of ResNet-18 (batch 64, 224x224) is at least 1.2x "
                                   "faster than true fp32 (TF32 switched off).", threshold=1.2,
                                   ratio=timing_ratio(sweep_steps["fp32"], sweep_steps["bf16"]),
                                   hardware=hw.label,
                                   condition="a CUDA GPU with native bf16 (compute capability 8.0+)")
    claims.append(resnet_bf16_claim)
    display(report_claim(resnet_bf16_claim,
                         holds="Convolutions of this size keep the tensor cores busy, and bf16 halves the "
                               "bytes every layer reads and writes.",
                         does_not_hold="Even at this size the step is bound by something bf16 does not "
                                       "shorten: kernel launches, the optimizer, or the element-wise layers "
                                       "autocast keeps in fp32."))
    against_tf32 = timing_ratio(sweep_steps["tf32"], sweep_steps["bf16"])
    print(f"Against TF32 (what PyTorch's default already gives cuDNN convolutions), bf16 measured "
          f"{against_tf32}: {against_tf32.gain}. TF32 already puts the convolutions on the tensor cores; bf16 "
          "adds half the bytes and, on A100 and H100, about twice TF32's dense tensor-core throughput.")
    if against_tf32.gain == "gain":
        print("Here that showed: the step has enough large convolutions to use the faster arithmetic.")
    else:
        print("Here that did not show: the layers autocast keeps in fp32, the launches and the optimizer "
              "take what bf16 could save.")
elif device.type == "cuda":
    print(f"{hw.gpu_name} has no native bf16 (it needs compute capability 8.0, Ampere or newer): the sweep "
          "skipped it; fp16 with a GradScaler is this GPU's fast format.")
elif device.type == "cpu":
    print("On a CPU, section 4's claim about the small CNN is the chapter's bf16 claim; this sweep shows "
          "the same effect on a larger network.")
else:
    print(f"On {device.type} no bf16 claim is made: how much bf16 gains depends on the chip; the table above "
          "shows what it did here.")

# %% tags=["nbval-ignore-output"]
if device.type == "cuda" and "fp16" in runnable:
    fp16_claim = make_claim(3, "fp16_resnet18_training_gpu", "On a GPU with tensor cores, an fp16 autocast "
                            "training step of ResNet-18 (batch 64, 224x224, with GradScaler) is at least 1.2x "
                            "faster than true fp32.", threshold=1.2, hardware=hw.label,
                            ratio=timing_ratio(sweep_steps["fp32"], sweep_steps["fp16"]),
                            condition="a CUDA GPU with tensor cores")
    claims.append(fp16_claim)
    display(report_claim(fp16_claim, holds="The convolutions ran on the fp16 tensor cores.",
                         does_not_hold="Something fp16 does not shorten bounds the step here: launches, the "
                                       "optimizer, or the layers autocast keeps in fp32."))
else:
    print(f"No CUDA GPU here (device={device.type}): the fp16 speed claim is made on a GPU only.")

# %% tags=["nbval-ignore-output"]
for precision in runnable:
    print(f"{precision}: {explain_precision(precision, hw)}")

# %% [markdown]
# ## 6. Beyond the article
# ### `torch.inference_mode`, CUDA graphs and TF32
# - `torch.inference_mode()` is `no_grad` plus no version counters on tensors: use it for serving.
# - A **CUDA graph** records a sequence of kernel launches once and replays it with one launch,
#   removing the per-kernel CPU overhead that dominates small batches on a fast GPU.
# - **TF32** lets tensor cores multiply fp32 matrices with a 10-bit mantissa: several times faster, with a
#   relative error around 1e-3 instead of 1e-6. PyTorch's defaults differ by library: matmuls run in full
#   fp32 (`torch.backends.cuda.matmul.fp32_precision` is `"none"`, which follows
#   `torch.set_float32_matmul_precision("highest")`), while cuDNN convolutions already use TF32
#   (`torch.backends.cudnn.conv.fp32_precision` is `"tf32"`). So an "fp32" convolutional network on an
#   Ampere or newer GPU is, by default, partly TF32: the course's `precision_mode("fp32")` sets both
#   switches to `"ieee"` so that fp32 means fp32, and `"tf32"` sets both to `"tf32"`, for the whole
#   training step (backward and optimizer step too). Use one API: once `fp32_precision` has been set,
#   reading the legacy `torch.backends.cudnn.allow_tf32` raises a RuntimeError.

# %% tags=["nbval-ignore-output"]
if device.type == "cuda":
    print(f"PyTorch's settings here: matmul fp32_precision={torch.backends.cuda.matmul.fp32_precision!r}, "
          f"cuDNN convolution fp32_precision={torch.backends.cudnn.conv.fp32_precision!r}")
    if hw.gpu_tf32:
        display(compare_tf32_matmul(4096).round(6))
    else:
        print(f"{hw.gpu_name} has no TF32 (it needs compute capability 8.0): the TF32 matmul is skipped.")
    small = small_cnn().eval().to(device)
    one = torch.randn(1, 1, 32, 32, device=device)
    replay = cuda_graph_replay(small, one)
    with torch.inference_mode():
        graph_timings = measure_interleaved({"eager launches": lambda: small(one),
                                             "CUDA graph replay (input copied in)": lambda: replay(one)},
                                            rounds=4, min_run_time=0.8)
    display(timing_table(graph_timings).round(4))
    graph_claim = make_claim(3, "cuda_graph_batch1_1.5x", "Replaying a CUDA graph makes batch-1 inference of "
                             "the small CNN at least 1.5x faster than eager launches.", threshold=1.5,
                             hardware=hw.label, condition="a CUDA GPU",
                             ratio=timing_ratio(graph_timings["eager launches"],
                                                graph_timings["CUDA graph replay (input copied in)"]))
    claims.append(graph_claim)
    display(report_claim(graph_claim, holds="At batch 1 the GPU waits for the CPU's launches; one replay "
                                            "replaces a launch per kernel.",
                         does_not_hold="The launches were not the bottleneck here: the CPU queued them faster "
                                       "than the GPU ran them."))
else:
    print(f"No CUDA GPU here (device={device.type}): the TF32 and CUDA-graph measurements are skipped. "
          "On a GPU, this cell times a 4096x4096 matmul with and without TF32, and batch-1 inference with "
          "and without a CUDA graph.")

# %% [markdown]
# ### More from PyTorch's performance tuning guide
# The guide's first items, the ones this chapter has not met yet, each with the measurement that
# shows it (on a GPU where it is about the GPU).
#
# **`torch.backends.cudnn.benchmark = True`.** For each new convolution shape, cuDNN tries its
# algorithms once and keeps the fastest, instead of picking one by heuristics. It pays when the
# shapes stay fixed (a fixed image size and batch), and costs a search at every new shape, so it
# hurts when shapes vary from call to call.

# %% tags=["nbval-ignore-output"]
def resnet_with_cudnn_benchmark(enabled: bool) -> torch.Tensor:
    """ResNet-18 inference with cuDNN's algorithm search on or off (it is a global switch)."""
    torch.backends.cudnn.benchmark = enabled
    return resnet(images)


if device.type == "cuda":
    with torch.inference_mode():
        search_timings = measure_interleaved({
            "benchmark=False (heuristics)": partial(resnet_with_cudnn_benchmark, False),
            "benchmark=True (searched)": partial(resnet_with_cudnn_benchmark, True)}, rounds=4, min_run_time=0.8)
    torch.backends.cudnn.benchmark = False  # PyTorch's default again
    display(timing_table(search_timings).round(3))
    search_claim = make_claim(3, "cudnn_benchmark_1.05x", "With fixed shapes, cudnn.benchmark=True makes ResNet-18 "
                              "inference at batch 8 at least 1.05x faster.", threshold=1.05, hardware=hw.label,
                              condition="a CUDA GPU",
                              ratio=timing_ratio(search_timings["benchmark=False (heuristics)"],
                                                 search_timings["benchmark=True (searched)"]))
    claims.append(search_claim)
    display(report_claim(search_claim, holds="The search found faster algorithms than the heuristics chose.",
                         does_not_hold="cuDNN's heuristics already picked algorithms as fast as the searched "
                                       "ones for these shapes."))
else:
    print(f"No CUDA GPU here (device={device.type}): cuDNN is NVIDIA's library, so there is nothing "
          "to search. On a GPU this cell times ResNet-18 inference with the search off and on.")

# %% [markdown]
# **Avoid needless waits for the GPU.** `loss.item()`, `print(tensor)`, `tensor.cpu()` or an `if` on a
# tensor's value make the CPU wait until the GPU has finished everything queued before; then the GPU
# idles while the CPU prepares the next step. The course's `amp_train_step` therefore returns the loss
# as a tensor on the device (shown in section 4), and `train_epochs` sums the losses there and reads
# the sum once per epoch. How much a per-step wait costs depends on the step: when the step is bound by
# kernel launches (section 4's small CNN), the GPU has finished its work by the time Python asks, so the
# wait is short; it hurts when the GPU still has a long queue that the CPU could have kept filling. fp16
# training has a wait of its own: `GradScaler.step` reads whether any gradient was inf or NaN, one
# synchronisation per step, unless the optimizer is fused (`fused=True`, next section's fused
# optimizers), which takes the scale and the inf flag on the device. The cost of reading the loss at
# every step, on a GPU:

# %% tags=["nbval-ignore-output"]
def train_steps(net: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int, *,
                read_loss_every_step: bool) -> float:
    """Run fp32 training steps on section 4's batch; return the mean loss, read each step or once."""
    scaler = make_grad_scaler("fp32", device)
    total = torch.zeros((), device=device)
    for _ in range(steps):
        loss = amp_train_step(net, x_step, y_step, optimizer, scaler, "fp32")
        total += loss.item() if read_loss_every_step else loss
    return total.item() / steps


if device.type == "cuda":
    sync_net = small_cnn().to(device)
    sync_optimizer = torch.optim.SGD(sync_net.parameters(), lr=1e-3)
    sync_timings = measure_interleaved({
        "20 steps, .item() every step": partial(train_steps, sync_net, sync_optimizer, 20,
                                                read_loss_every_step=True),
        "20 steps, one .item() at the end": partial(train_steps, sync_net, sync_optimizer, 20,
                                                    read_loss_every_step=False),
    }, rounds=4, min_run_time=0.8)
    display(timing_table(sync_timings).round(3))
    sync_claim = make_claim(3, "one_item_per_epoch_1.05x", "Reading the loss once after 20 training steps of the "
                            "small CNN instead of at every step makes them at least 1.05x faster.",
                            threshold=1.05, hardware=hw.label, condition="a CUDA GPU",
                            ratio=timing_ratio(sync_timings["20 steps, .item() every step"],
                                               sync_timings["20 steps, one .item() at the end"]))
    claims.append(sync_claim)
    display(report_claim(sync_claim, holds="The waits left the GPU idle while the CPU prepared the next step.",
                         does_not_hold="These steps are launch-bound: the GPU had finished when Python "
                                       "asked, so the waits cost little."))
else:
    print(f"No CUDA GPU here (device={device.type}): on a CPU every operation has finished when it "
          "returns, so .item() waits for nothing. On a GPU this cell times 20 training steps of the small "
          "CNN with and without a .item() per step.")

# %% [markdown]
# **Create tensors where they are used.** `torch.randn(n, device=device)` writes the numbers straight
# into GPU memory; `torch.randn(n).to(device)` makes them on the CPU, then copies them over. On the
# CPU both are the same thing (API note: `.to()` to the device a tensor is already on returns that
# very tensor, no copy).

# %% tags=["nbval-ignore-output"]
if device.type == "cuda":
    create_timings = measure_interleaved({
        "torch.randn(...).to(device)": lambda: torch.randn(1024, 1024).to(device),
        "torch.randn(..., device=device)": lambda: torch.randn(1024, 1024, device=device)},
        rounds=4, min_run_time=0.8)
    display(timing_table(create_timings).round(3))
    create_claim = make_claim(3, "create_on_device_2x", "Making a 1024x1024 random tensor on the GPU is at least "
                              "2x faster than making it on the CPU and copying it.", threshold=2.0,
                              hardware=hw.label, condition="a CUDA GPU",
                              ratio=timing_ratio(create_timings["torch.randn(...).to(device)"],
                                                 create_timings["torch.randn(..., device=device)"]))
    claims.append(create_claim)
    display(report_claim(create_claim, holds="The GPU generates the numbers in place; the CPU route generates "
                                             "them slowly and then copies 4 MB.",
                         does_not_hold="At this size the copy and the CPU's generator were cheap here."))
else:
    print(f"No CUDA GPU here (device={device.type}): nothing to copy. On a GPU this cell times making a "
          "1024x1024 random tensor on the CPU and copying it, against making it on the GPU.")

# %% [markdown]
# **CPU threads and memory allocators.** On a CPU, PyTorch runs each operation on
# `torch.get_num_threads()` threads (one per physical core by default); chapter 1, section 5,
# measures what happens when processes share cores and how `torch.set_num_threads` and
# `OMP_NUM_THREADS` fix it. The tuning guide also suggests a different `malloc` for CPU work:
# jemalloc or tcmalloc, loaded with `LD_PRELOAD`, reuse freed memory with less overhead than glibc's
# allocator when tensors are created and freed at a high rate; how much that gains depends on the
# workload, and this course does not measure it. On a GPU, PyTorch's own caching allocator keeps
# freed blocks for reuse; `PYTORCH_CUDA_ALLOC_CONF` (for example `expandable_segments:True`, which
# reduces fragmentation when shapes vary) tunes it and must be set before the first CUDA allocation.

# %% tags=["nbval-ignore-output"]
preload = os.environ.get("LD_PRELOAD", "")
print(f"torch threads here: {torch.get_num_threads()}; "
      f"allocator preloaded: {preload or 'none (glibc malloc)'}")

# %% [markdown]
# **`torch.compile` modes and graph breaks.** `mode="default"` balances compile time and speed;
# `"reduce-overhead"` also records CUDA graphs (this section's CUDA-graph idea, automated: it pays for
# small batches on a GPU, and keeps extra memory for the graph's buffers); `"max-autotune"` times
# several kernel variants for each matrix product and convolution and keeps the fastest: the longest
# compile, for a model that will run long. On a GPU `"max-autotune"` records CUDA graphs as well;
# `"max-autotune-no-cudagraphs"` tunes without them. Whatever the mode, Dynamo can only compile what it can
# trace. Python code it cannot put in a graph (a `print`, `.item()` turning a tensor into a Python
# number, a data-dependent `if`) splits the function: the part before runs as one graph, Python
# runs the offending line, and a new graph starts after it. Each break costs a return to Python and
# loses fusion across it. `torch._dynamo.explain` lists the graphs and why each break happened:

# %%
def normalised_scores(x: torch.Tensor) -> torch.Tensor:
    """A function with two graph breaks: a print, and a tensor turned into a Python number."""
    scores = torch.relu(x @ x.T)
    print("a print inside the model")
    scale = scores.mean().item()
    return scores / scale


dynamo_log = logging.getLogger("torch._dynamo")
level = dynamo_log.level
dynamo_log.setLevel(logging.ERROR)  # the reasons are printed below; Dynamo would also log a hint
explanation = torch._dynamo.explain(normalised_scores)(torch.randn(4, 4))
dynamo_log.setLevel(level)
print(f"graphs: {explanation.graph_count}, graph breaks: {explanation.graph_break_count}")
for number, reason in enumerate(explanation.break_reasons, start=1):
    print(f"break {number}: {reason.reason.splitlines()[0]}")

# %% [markdown]
# Remove the `print` and keep `scale` a tensor (`scores / scores.mean()`), and the function is one
# graph. `torch.compile(fn, fullgraph=True)` turns any break into an error, which is how to make sure.
#
# **Fused and foreach optimizers.** The textbook optimizer updates one parameter tensor at a time: a
# handful of small operations per tensor, each reading and writing the parameter and its state.
# `foreach=True` (PyTorch's default for parameters on a GPU; on a CPU the default is the loop) runs
# each operation on all tensors in one call; `fused=True` does the whole update in one kernel that
# reads each value once. The same AdamW step for the parameter tensors of MobileNetV3-Small, measured
# on the CPU on every machine (the parameters stay in CPU memory; the claim is labelled with the CPU):

# %% tags=["nbval-ignore-output"]
optimized_params = list(mobilenet_v3_small().parameters())
for parameter in optimized_params:
    parameter.grad = torch.randn_like(parameter)
adamw = {"for-loop (foreach=False)": torch.optim.AdamW(optimized_params, lr=1e-3, foreach=False),
         "foreach=True": torch.optim.AdamW(optimized_params, lr=1e-3, foreach=True),
         "fused=True": torch.optim.AdamW(optimized_params, lr=1e-3, fused=True)}
optimizer_timings = measure_interleaved({name: opt.step for name, opt in adamw.items()},
                                        rounds=4, min_run_time=1.0)
print(f"{len(optimized_params)} parameter tensors, {sum(p.numel() for p in optimized_params):,} values")
timing_table(optimizer_timings).round(3)

# %% tags=["nbval-ignore-output"]
fused_claim = make_claim(3, "fused_adamw_2x", "A fused AdamW step (fused=True) is at least 2x faster "
                         "than the per-tensor loop (foreach=False) for MobileNetV3-Small's parameters.",
                         threshold=2.0, hardware=hw.cpu_label, condition="a CPU",
                         ratio=timing_ratio(optimizer_timings["for-loop (foreach=False)"],
                                            optimizer_timings["fused=True"]))
claims.append(fused_claim)
foreach_ratio = timing_ratio(optimizer_timings["for-loop (foreach=False)"], optimizer_timings["foreach=True"])
print(f"foreach=True against the loop: {foreach_ratio} ({foreach_ratio.gain})")
report_claim(fused_claim,
             holds="One kernel that reads each parameter, gradient and state value once beats a dozen "
                   "passes over each of them: the update is bound by memory traffic.",
             does_not_hold="On this device the per-operation kernels are already fast enough, or the "
                           "parameters are too few for the fused kernel's single pass to matter.")

# %% [markdown]
# **Activation checkpointing: memory for time.** Autograd keeps each layer's activations until the
# backward pass. `torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)` keeps only the
# block's input, and runs the block's forward again during the backward pass to get the rest back.
# Memory falls to about the inputs of the blocks; the step costs about one more forward pass.
# (A block with batch norm updates its running statistics again when it is recomputed; these blocks
# have none.)

# %%
def expand_project(channels: int) -> nn.Sequential:
    """A block that widens to 4x the channels (1x1), applies ReLU, and projects back (3x3)."""
    return nn.Sequential(nn.Conv2d(channels, 4 * channels, 1), nn.ReLU(),
                         nn.Conv2d(4 * channels, channels, 3, padding=1))


class BlockStack(nn.Module):
    """depth expand-project blocks in a row; with checkpointed=True each block is checkpointed."""

    def __init__(self, channels: int = 32, depth: int = 8, *, checkpointed: bool = False) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(expand_project(channels) for _ in range(depth))
        self.checkpointed = checkpointed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if self.checkpointed else block(x)
        return x


torch.manual_seed(0)
stack = BlockStack().to(device)
stack_checkpointed = copy.deepcopy(stack)
stack_checkpointed.checkpointed = True
stack_input = torch.randn(8, 32, 16, 16, device=device)
saved_mb = {name: saved_activation_bytes(net, stack_input, "fp32") / 2**20
            for name, net in (("plain", stack), ("checkpointed", stack_checkpointed))}
print(f"saved for backward: plain {saved_mb['plain']:.1f} MB, checkpointed {saved_mb['checkpointed']:.1f} MB "
      f"(one block's input: {stack_input.numel() * 4 / 2**20:.1f} MB)")

# %% tags=["nbval-ignore-output"]
def stack_step(net: nn.Module) -> None:
    """Forward, a scalar loss, and backward: the part of a training step checkpointing changes."""
    net(stack_input).square().mean().backward()


checkpoint_timings = measure_interleaved({"plain": partial(stack_step, stack),
                                          "checkpointed": partial(stack_step, stack_checkpointed)},
                                         rounds=4, min_run_time=1.0)
checkpoint_cost = timing_ratio(checkpoint_timings["checkpointed"], checkpoint_timings["plain"])
print(f"checkpointed step time over plain: {checkpoint_cost}")
timing_table(checkpoint_timings, baseline="plain").round(2)

# %% [markdown]
# Memory for time: the bytes kept for backward fell to the blocks' inputs (the exact counts above), and
# the step grew by about the recomputed forward pass (the ratio above). Checkpointing pays where
# memory, not speed, is the limit: the memory it frees can hold a larger batch or a larger model.

# %% [markdown]
# ## 7. What the source article got wrong
# The article's mixed-precision snippet, quoted as written (outdated: do not copy it):
# ```python
# from torch.cuda.amp import autocast  # the article's deprecated import
# with autocast():
#     outputs = model(inputs)
#     loss = loss_fn(outputs, targets)
#     loss.backward()
# ```
# 1. `torch.cuda.amp.autocast` is deprecated: it emits a `FutureWarning` (measured below) and only
#    covers CUDA. The current API is `torch.autocast(device_type, dtype=...)` (or `torch.amp.autocast`).
# 2. `loss.backward()` belongs outside the `autocast` block.
# 3. With fp16 there is no `GradScaler`, so small gradients underflow to zero and training silently
#    stalls; the current class is `torch.amp.GradScaler(device_type)`.
# 4. No optimizer step and no `zero_grad`: the snippet never updates the model.
#
# Its device line, `"cuda" if torch.cuda.is_available() else "cpu"`, also ignores Apple GPUs; the
# course's `pick_device` checks CUDA, then MPS, then falls back to the CPU.
#
# The section around the snippet errs as well:
#
# 5. Its heading promises low-precision (fp16) *computation*, but the code is *mixed* precision:
#    autocast runs matrix products and convolutions in fp16 and keeps the weights, reductions and the
#    loss in fp32. Pure fp16 training (`model.half()`) is a different, riskier technique.
# 6. It promises less memory and more speed without conditions. Speed needs hardware with fp16 or bf16
#    units; memory shrinks only for the activations, since autocast keeps fp32 weights, gradients
#    and optimizer state, and adds low-precision copies of the weights. What this machine measured
#    in section 5 (next cell).
# 7. Its heading names TPUs and the text never returns to them. A TPU (Tensor Processing Unit) is
#    Google's accelerator for neural networks, built around large matrix-multiply units with bf16 as
#    their native format, rented on Google Cloud (and offered on Colab). PyTorch reaches it through
#    PyTorch/XLA (`torch_xla`), which hands the model's graph to the XLA compiler; this course does
#    not cover it.

# %% tags=["nbval-ignore-output"]
for precision in ("bf16", "fp16"):
    if precision not in precision_table.index:
        continue
    against_fp32 = precision_table.loc[precision] / precision_table.loc["fp32"]
    print(f"{precision} against fp32 in section 5's sweep on {hw.label}: "
          f"{against_fp32['train_step_ms']:.2f}x the training-step time, "
          f"{against_fp32['saved_for_backward_MB']:.2f}x the memory saved for backward")

# %%
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    torch.cuda.amp.autocast(enabled=False)  # the article's deprecated call, on purpose, to show its warning
print("warnings raised by the article's autocast:", sorted({w.category.__name__ for w in caught}))

# %% [markdown]
# ## 8. Exercises
# **Exercise 1.** A gradient of 1e-8 becomes zero in fp16 (section 1's table says why). Loss scaling
# multiplies the loss, and so every gradient, by a power of two before the backward pass. What is
# the smallest power of two that makes 1e-8 a *normal* fp16 number, not a subnormal one? Work it out
# from `torch.finfo`, then check it by converting.

# %%
loss_scale = ...  # your answer: a power of two
check_loss_scale("Exercise 1", loss_scale, gradient=1e-8)

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution"]
fp16_tiny = torch.finfo(torch.float16).tiny  # the smallest normal fp16 number
loss_scale = 2.0 ** math.ceil(math.log2(fp16_tiny / 1e-8))
print(f"1e-8 x {loss_scale:g} in fp16: {torch.tensor(1e-8 * loss_scale, dtype=torch.float16).item():.4g} "
      f"(smallest normal {fp16_tiny:.4g})")
check_loss_scale("Exercise 1", loss_scale, gradient=1e-8)

# %% [markdown]
# **Exercise 2. Predict, then measure.** The network `Linear(512, 1024) -> ReLU -> Linear(1024, 10)`
# (`exercise_mlp()`) gets a batch of 64. (a) Predict how many bytes of *activations* autograd keeps
# for the backward pass, in fp32 and under bf16 autocast: which tensors does each operation need for
# its gradients, and how many bytes does each value take? The model's parameters do not count (they
# exist anyway), and a tensor kept by two operations counts once.

# %%
predicted_fp32_bytes = ...  # your prediction
predicted_bf16_bytes = ...  # your prediction
check_activation_bytes_prediction("Exercise 2 (a)", predicted_fp32_bytes, predicted_bf16_bytes, batch=64)

# %% [markdown]
# (b) Measure with `saved_activation_bytes`, which counts every tensor autograd keeps. One of the two
# formats keeps more than its activations: which tensor is the difference, and why is it kept?

# %%
mlp_input = torch.randn(64, 512)
measured_bytes = {p: saved_activation_bytes(exercise_mlp(), mlp_input, p) for p in ("fp32", "bf16")}
print(measured_bytes)

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution"]
batch = 64
# (a) The first Linear keeps its input, ReLU its output (also the second Linear's input: kept once).
predicted_fp32_bytes = batch * 512 * 4 + batch * 1024 * 4
predicted_bf16_bytes = batch * 512 * 2 + batch * 1024 * 2  # the same activations, 2 bytes a value
check_activation_bytes_prediction("Exercise 2 (a)", predicted_fp32_bytes, predicted_bf16_bytes, batch=batch)
# (b) bf16 keeps one more tensor: the bf16 copy of the second Linear's weight (10 x 1024 x 2 bytes). Autocast
# made that copy for the forward pass; it is a new tensor, not a parameter, and the backward pass needs it to
# compute the gradient of the second Linear's input. The first Linear's input needs no gradient, so its
# weight copy is not kept.
print("bf16 difference:", measured_bytes["bf16"] - predicted_bf16_bytes, "bytes =", 10 * 1024 * 2)

# %% [markdown]
# **Exercise 3. The price of compiling, cold and warm.** From this run's measurements in section 3
# (`cold_compile_s`, `warm_compile_s` and `compile_table`), after how many calls does `torch.compile`
# pay for its first call, from a cold start and from a warm one? Predict the order of magnitude
# first, then compute both.

# %%
cold_break_even_calls = ...  # your answer
warm_break_even_calls = ...  # your answer
check_break_even("Exercise 3", cold_break_even_calls, warm_break_even_calls, cold_s=cold_compile_s,
                 warm_s=warm_compile_s, table=compile_table)

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution"]
saved_per_call_ms = compile_table.loc["eager", "median_ms"] - compile_table.loc["torch.compile", "median_ms"]
cold_break_even_calls = cold_compile_s * 1e3 / saved_per_call_ms if saved_per_call_ms > 0 else float("inf")
warm_break_even_calls = warm_compile_s * 1e3 / saved_per_call_ms if saved_per_call_ms > 0 else float("inf")
check_break_even("Exercise 3", cold_break_even_calls, warm_break_even_calls, cold_s=cold_compile_s,
                 warm_s=warm_compile_s, table=compile_table)

# %% [markdown]
# ## 9. Summary

# %% tags=["nbval-ignore-output"]
entries = [
    make_entry(3, f"mixed_precision_{low_precision}", metric="training step, small CNN, batch 64", unit="ms",
               baseline=step_table.loc["fp32", "median_ms"], optimized=step_table.loc[low_precision, "median_ms"],
               higher_is_better=False, hardware=hw.label, ratio=low_ratio,
               extras={"accuracy_fp32": accuracy["fp32"], f"accuracy_{low_precision}": accuracy[low_precision]}),
    make_entry(3, f"mixed_precision_{low_precision}_resnet18",
               metric=f"training step, ResNet-18, batch {len(workload[1])}", unit="ms",
               baseline=precision_table.loc["fp32", "train_step_ms"],
               optimized=precision_table.loc[low_precision, "train_step_ms"], higher_is_better=False,
               hardware=hw.label,
               ratio=timing_ratio(sweep_steps["fp32"], sweep_steps[low_precision])),
    make_entry(3, "torch_compile", metric="ResNet-18 inference, batch 8", unit="ms",
               baseline=compile_table.loc["eager", "median_ms"],
               optimized=compile_table.loc["torch.compile", "median_ms"],
               higher_is_better=False, hardware=hw.label, ratio=compile_claim.ratio,
               extras={"cold_compile_s": cold_compile_s, "warm_compile_s": warm_compile_s}),
    make_entry(3, "torch_compile_freezing", metric="small CNN inference, batch 64, against torch.compile",
               unit="ms",
               baseline=freezing_table.loc["torch.compile", "median_ms"],
               optimized=freezing_table.loc["compile + freezing", "median_ms"], higher_is_better=False,
               hardware=hw.label, ratio=freezing_ratio, extras={"first_call_s": freezing_compile_s}),
    make_entry(3, "fused_adamw", metric="AdamW step, MobileNetV3-Small parameters, against foreach=False",
               unit="ms",
               baseline=optimizer_timings["for-loop (foreach=False)"].median_ms,
               optimized=optimizer_timings["fused=True"].median_ms, higher_is_better=False,
               hardware=hw.cpu_label, ratio=fused_claim.ratio),
    make_entry(3, "channels_last", metric="ResNet-18 inference, batch 8", unit="ms",
               baseline=layout_table.loc["NCHW", "median_ms"],
               optimized=layout_table.loc["channels_last", "median_ms"],
               higher_is_better=False, hardware=hw.label, ratio=layout_claim.ratio),
]
record_chapter(3, entries, claims)
ledger_table(entries).round(3)

# %% [markdown]
# **Take-aways**
# 1. Lower precision pays only where the hardware has instructions for it: bf16 on CPUs with
#    AVX512-BF16 or AMX and on recent GPUs, fp16 on GPUs. Elsewhere it is emulated; section 4's claim
#    says what it did on this machine.
# 2. Mixed precision, the current way: `torch.autocast(device_type, dtype)` around the forward pass
#    and the loss, backward outside, `torch.amp.GradScaler` for fp16.
# 3. Layout (`channels_last`), compilation (`torch.compile`, with `freezing=True` for CPU inference)
#    and fused optimizers are speed on the same hardware, once measured: compilation costs far more
#    from a cold cache (a fresh session) than from a warm one, and pays back over many calls.
