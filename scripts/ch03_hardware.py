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
# **Estimated time:** ~90 min · **Hardware:** Any CPU; a CUDA GPU adds pinned-memory, fp16, TF32 and CUDA-graph measurements

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

from helpers.core.amp import AUTOCAST_DTYPES, PRECISIONS, amp_train_step, make_grad_scaler, precision_mode
from helpers.core.claims import make_claim, report_claim, timing_ratio
from helpers.core.hardware import pick_device
from helpers.core.measure import measure_interleaved, measure_latency, synchronized_clock, timing_table
from helpers.workload.data import load_digits_split, tensor_loader
from helpers.workload.models import small_cnn
from helpers.workload.training import evaluate_accuracy, train_epochs
from helpers.support.chapter import setup_chapter
from helpers.support.ledger import ledger_table, make_entry, record_chapter
from helpers.support.plots import plot_comparison
from helpers.support.source import show_source
from helpers.support.widgets import live_control
from helpers.ch03_hardware.compile_timing import (
    ISOLATED, cache_hits, compile_for_inference, forget_compiled_code, freezing_passes, graphs_compiled,
    guard_on_module_identity,
)
from helpers.ch03_hardware.exercises import (
    check_activation_bytes_prediction, check_break_even, check_loss_scale, show_measured_bytes,
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
# Pick the available accelerator, else the CPU, and move the model and each batch there. PyTorch's
# device-neutral API says which accelerator this process has: `torch.accelerator.current_accelerator()`
# returns a CUDA, ROCm (also reported as `cuda`), Apple MPS or Intel XPU device, or `None`, and
# `torch.accelerator.synchronize()` waits for it, whichever it is. The course's `pick_device` and its
# timers use it, so the same code runs on each. `module.to(device)` moves the parameters in place; `tensor.to(device)` returns a
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
# left alone, since it would slow the Triton compiles down), and `cpp_cache_precompile_headers=False` skips
# building a precompiled-header cache. The model: the chapter's small CNN (three convolution, batch-norm
# and ReLU stages), inference at batch 64, 32x32.
#
# Every compile below goes through one function. It compiles for one input shape (`dynamic=False`),
# times the first call, and checks two things that can go wrong without an error: that a new graph
# was compiled (every `nn.Sequential` shares one `forward`, so Dynamo could hand this model a graph
# compiled for another), and, with `freezing=True` (below), that freezing's passes ran.

# %%
show_source(compile_for_inference)

# %% [markdown]
# A cold start needs an empty cache and a process that has compiled nothing yet. This kernel has
# compiled nothing so far, so the next cell points it at a new, empty directory (Inductor reads the
# variable when it first needs its cache) and times the first call: what a learner in a fresh
# session pays, including the one-time start of Inductor itself in this process.

# %% tags=["nbval-ignore-output"]
compile_cache = tempfile.mkdtemp(prefix="inductor-cache-")
os.environ["TORCHINDUCTOR_CACHE_DIR"] = compile_cache
forget_compiled_code()  # so that running this cell again in the same kernel starts cold as well
torch.manual_seed(0)
small_net = small_cnn().eval().to(device)
small_images = torch.randn(64, 1, 32, 32, device=device)
compiled, cold_compile_s = compile_for_inference(copy.deepcopy(small_net), small_images, freezing=False)
portable_cache = torch.compiler.save_cache_artifacts()  # what this process compiled, as bytes: used below
print(f"cold start (empty cache, nothing compiled in this process): first call {cold_compile_s:.1f} s")

# %% [markdown]
# A re-run of the notebook is a new process that finds the directory filled. This process gets the
# same start by forgetting what it compiled in memory, keeping the disk cache (a new process would
# also import Inductor's Python modules once more):

# %%
show_source(forget_compiled_code)

# %% tags=["nbval-ignore-output"]
forget_compiled_code()
compiled, warm_compile_s = compile_for_inference(copy.deepcopy(small_net), small_images, freezing=False)
print(f"warm start (the cache filled above): first call {warm_compile_s:.1f} s; "
      f"cold start: {cold_compile_s:.1f} s")

# %% [markdown]
# **Remedies for the cold start.** A service pays the cold price at every deployment unless the
# compiled code travels with it. Three ways, from lightest to heaviest:
# - **Portable cache artifacts**: `torch.compiler.save_cache_artifacts()` returns the cache entries this
#   process wrote, as bytes (with a summary of what they hold) (AOTAutograd's and Inductor's: the generated code; on a GPU the built
#   Triton kernels too); `load_cache_artifacts(data)` in a new process, before the first compile, puts
#   them in its cache. Dynamo still traces the model in the new process. Measured next, against a
#   control.
# - **Regional compilation**: compile the repeated block (`torch.compile(layer)` for each of a
#   transformer's identical layers) instead of the whole model. Identical blocks share one compiled
#   graph, so the compile time is about one block's, at some loss of fusion across the blocks.
# - **AOTInductor**: compile ahead of time with `torch.export` and `torch._inductor.aoti_compile_and_package`
#   into a package (a shared library with the weights), loaded by `aoti_load_package` from Python or
#   from C++ without Python: no compile at start-up, only a load. The price: the graph is fixed by the
#   export (shapes are static unless declared dynamic), and the package matches one device and version.

# %% [markdown]
# The cold start above also paid for starting Inductor in this process, which a second compile does
# not pay again. So the fair control for the artifacts is a compile in another empty directory in
# this same, warmed-up process, without them; then one with them loaded. Inductor's counters say
# whether the artifacts were used (cache hits):

# %% tags=["nbval-ignore-output"]
def first_call_in_empty_cache(artifacts: bytes | None) -> tuple[nn.Module, float, int, str]:
    """Compile the small CNN in a new, empty cache directory (loading artifacts first, if given); return the
    compiled model, its first call's seconds, the cache hits during it, and the directory."""
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = directory = tempfile.mkdtemp(prefix="inductor-empty-")
    forget_compiled_code()
    if artifacts is not None:
        torch.compiler.load_cache_artifacts(artifacts)
    hits_before = cache_hits()
    model, seconds = compile_for_inference(copy.deepcopy(small_net), small_images, freezing=False)
    return model, seconds, cache_hits() - hits_before, directory


_, control_compile_s, control_hits, control_cache_dir = first_call_in_empty_cache(None)
compiled, portable_compile_s, portable_hits, portable_cache_dir = first_call_in_empty_cache(portable_cache[0])
print(f"empty cache, no artifacts (the control): first call {control_compile_s:.1f} s, {control_hits} cache hits")
print(f"empty cache, the {len(portable_cache[0]) / 1e6:.2f} MB of artifacts loaded: first call "
      f"{portable_compile_s:.1f} s, {portable_hits} cache hits (warm start: {warm_compile_s:.1f} s)")
saved_share = 1 - portable_compile_s / control_compile_s
if portable_hits == 0:
    print("The artifacts were not used (no cache hits): their entries did not match this compile.")
elif saved_share > 0.5:
    print(f"The artifacts saved {saved_share:.0%} of the control's first call (one run of each, the control "
          "first): they carried most of what it spent its time on.")
else:
    print(f"The artifacts were used ({portable_hits} cache hits) yet saved little ({saved_share:.0%} of the "
          f"control's first call; one run of each, the control first): most of that time likely went to work "
          f"they do not carry here{' (on a CPU, building the generated C++ code)' if device.type == 'cpu' else ''}.")

# %% [markdown]
# **Freezing, for inference.** With `torch._inductor.config.freezing = True` (or the environment
# variable `TORCHINDUCTOR_FREEZING=1`), Inductor treats the weights as constants (its freezing passes,
# pytorch/pytorch#100652), so it can fold each batch norm into the convolution before it and
# precompute what depends only on the weights, on any device; on a CPU it also packs the weights into
# the layout oneDNN's kernels read fastest. This chapter measures it on a CPU. The flag must be set
# while Dynamo traces the model: Dynamo reads it to decide whether the weights become constants of the
# graph (pytorch/pytorch#139272 describes the mechanism). Passed as
# `torch.compile(model, options={"freezing": True})` it reaches Inductor only, too late, and the model
# compiles *unfrozen*, without a word. `compile_for_inference` sets the flag around the first call and
# counts the folding and packing passes; the counts prove the graph is frozen. The model it returns
# then refuses to recompile (`InferenceCompiled`: a later recompile would run with whatever settings
# hold at that moment, so a frozen model could silently come back unfrozen, as chapter 6 found):

# %% tags=["nbval-ignore-output"]
frozen_available = device.type == "cpu"
if frozen_available:
    frozen_net = copy.deepcopy(small_net)
    passes_before = freezing_passes()
    frozen, _ = compile_for_inference(frozen_net, small_images, freezing=True)
    passes = {name: count - passes_before[name] for name, count in freezing_passes().items()}
    print(f"freezing's passes for this graph: {passes['folded']} operations folded into the convolutions, "
          f"{passes['packed']} weights packed for oneDNN")
else:
    frozen = None
    print(f"On {device.type} this chapter compiles without freezing: it measures freezing on a CPU, where "
          "oneDNN's weight packing adds to the folding.")

# %% [markdown]
# Eager, compiled and (on a CPU) compiled with freezing, in the same alternating rounds, under
# `torch.no_grad()` as they were compiled (the compiled ones enforce it, and refuse to recompile
# rather than compile again without the flag). The check after the measurement says that no graph
# was compiled during it, so each variant stayed what it claims. The claims are judged on an interval:
# from 8 rounds up a 95% bootstrap interval; from fewer, as in most cells below, the range of the
# rounds' ratios ("range of 4 rounds"), not a 95% interval. "Inconclusive" means the threshold lies
# inside it. In the tables, `median_ms` is the median of each variant's round medians and `speedup` the
# median of the rounds' ratios, the estimator the claims and the ledger use; with noisy rounds (a
# large `block_iqr_ms`) the speedup can differ from the ratio of the two medians.

# %% tags=["nbval-ignore-output"]
graphs_before = graphs_compiled()
inference_variants = {"eager": partial(small_net, small_images), "torch.compile": partial(compiled, small_images)}
if frozen_available:
    inference_variants["compile + freezing"] = partial(frozen, small_images)
with torch.no_grad():
    compile_timings = measure_interleaved(inference_variants, rounds=8, min_run_time=0.5)
compile_table = timing_table(compile_timings)
print(f"graphs compiled during the measurement: {graphs_compiled() - graphs_before}")
compile_table.round(3)

# %% tags=["nbval-ignore-output"]
compile_claim = make_claim(3, "torch_compile_1.2x", "torch.compile makes the small CNN's inference at batch 64 "
                           "at least 1.2x faster than eager, once compiled.", threshold=1.2,
                           ratio=timing_ratio(compile_timings["eager"], compile_timings["torch.compile"]),
                           hardware=hw.label)
claims.append(compile_claim)
report_claim(compile_claim,
             holds="Inductor fused the element-wise work around the convolutions (batch norm, ReLU, "
                   "pooling) into fewer kernels and dropped Python and dispatch overhead between operators.",
             does_not_hold="On this device eager's convolution kernels already do most of the work at full "
                           "speed; fusing the cheap operations around them saves little.")

# %% tags=["nbval-ignore-output"]
if frozen_available:
    freezing_ratio = timing_ratio(compile_timings["torch.compile"], compile_timings["compile + freezing"])
    freezing_claim = make_claim(3, "compile_freezing_1.1x", "For CPU inference, torch.compile with freezing "
                                "makes the small CNN at batch 64 at least 1.1x faster than torch.compile "
                                "without it.", threshold=1.1, ratio=freezing_ratio, hardware=hw.label,
                                condition="a CPU")
    claims.append(freezing_claim)
    display(report_claim(freezing_claim,
                         holds="With the weights constant, batch norm disappeared into the convolutions and "
                               "oneDNN read weights packed once in its own layout, instead of reordering them "
                               "at every call, and each ReLU ran inside its convolution: less work per call. Chapter 6 measures freezing again, "
                               "with int8.",
                         does_not_hold="Freezing's passes ran (counted above), yet what they removed was too "
                                       "small a part of this call to show here; the table gives the three "
                                       "variants, and chapter 6 measures freezing again, with int8."))
else:
    print(f"No freezing claim on {device.type}: freezing is measured on a CPU.")

# %% [markdown]
# Compiled code is not bit-identical to eager: fused kernels add in a different order, and freezing
# rounds the folded weights once. The largest difference, relative to the largest output:

# %% tags=["nbval-ignore-output"]
with torch.no_grad():
    reference = small_net(small_images)
    for name, model_fn in (("compiled", compiled), ("compiled + freezing", frozen)):
        if model_fn is not None:
            print(f"{name} against eager: largest relative error "
                  f"{relative_error(model_fn(small_images), reference):.1e}")

# %% [markdown]
# Freezing has a price beyond the compile: the weights are baked in. Change the model's weights after
# compiling (a fine-tuning step, a swapped adapter) and the frozen graph goes on computing with the
# old ones, without a warning. So freeze for serving a fixed model, never while training:

# %%
if frozen_available:
    with torch.no_grad():
        before = frozen(small_images).clone()
        frozen_net[0].weight.mul_(0.5)  # the first convolution's weights, changed in place
        print(f"after halving the first convolution's weights: the eager model's output changed: "
              f"{not torch.equal(frozen_net(small_images), before)}; the frozen graph's output changed: "
              f"{not torch.equal(frozen(small_images), before)}")
else:
    print(f"No frozen model on {device.type}: nothing to show.")

# %% [markdown]
# **Compiling a training step.** `torch.compile` is not only for inference. For a model in training
# mode, AOTAutograd traces the forward and the backward pass together and Inductor compiles both, so
# the first call builds both graphs, and the fusions can reach the backward pass, usually the larger
# part of a step. The optimizer step stays eager unless
# it is compiled too (a compiled function that calls `optimizer.step()`). The first call's time grows
# with the number of kernels to build, so to keep this chapter short the network is the small CNN's
# first stage alone (convolution, batch norm, ReLU, pooling, then the classifier): one fp32 training
# step at batch 64, eager against compiled:

# %% tags=["nbval-ignore-output"]
torch.manual_seed(0)
eager_trainee = small_cnn((32,)).to(device)
compiled_trainee = torch.compile(copy.deepcopy(eager_trainee), dynamic=False, **ISOLATED)
labels = torch.randint(0, 10, (64,), device=device)
step_optimizers = {name: torch.optim.SGD(net.parameters(), lr=1e-3)
                   for name, net in (("eager", eager_trainee), ("torch.compile", compiled_trainee))}
fp32_scaler = make_grad_scaler("fp32", device)
start = synchronized_clock()
with torch._inductor.config.patch(cpp_cache_precompile_headers=False), guard_on_module_identity():
    amp_train_step(compiled_trainee, small_images, labels, step_optimizers["torch.compile"], fp32_scaler, "fp32")
training_compile_s = synchronized_clock() - start
print(f"first training call: {training_compile_s:.1f} s (forward and backward graphs, in a warmed-up process "
      f"whose cache held other models' inference graphs only)")

# %% tags=["nbval-ignore-output"]
graphs_before = graphs_compiled()
training_timings = measure_interleaved(
    {name: partial(amp_train_step, net, small_images, labels, step_optimizers[name], fp32_scaler, "fp32")
     for name, net in (("eager", eager_trainee), ("torch.compile", compiled_trainee))},
    rounds=8, min_run_time=0.4)
print(f"graphs compiled during the measurement: {graphs_compiled() - graphs_before}")
training_compile_ratio = timing_ratio(training_timings["eager"], training_timings["torch.compile"])
print(f"compiled training step against eager: {training_compile_ratio}: " + {
    "gain": "the compiled step is shorter; the fusions reached the backward pass.",
    "loss": "the compiled step was slower here: its kernels did not beat eager's for this network."}.get(
    training_compile_ratio.gain, "inconclusive, the interval includes 1. Here one convolution does most of the "
                                 "work and the fusions touch only what surrounds it (batch norm, ReLU, pooling): "
                                 "a likely cause, not measured."))
timing_table(training_timings).round(2)

# %% [markdown]
# The compiled code is loaded in this process now, so the cache directories can go (a new process
# would find them gone and start cold). Compilation can pay for long-running services and training
# jobs, where many calls repay the first one, if it shortens each call (measure it, as above); not for
# a one-off script. Nor does it pay for inputs whose shapes change on every call: a second
# distinct shape makes Dynamo recompile once with the changing sizes marked dynamic (automatic dynamic
# shapes), and that graph then serves later sizes, often with slower kernels than a static one;
# `torch.compile(dynamic=True)` or `torch._dynamo.mark_dynamic(x, 0)` asks for it up front, and
# `dynamic=False`, as above, compiles one graph per shape. Section 6 shows what splits a model into
# several compiled graphs.

# %%
del compiled, frozen, compiled_trainee
for directory in (compile_cache, control_cache_dir, portable_cache_dir):
    shutil.rmtree(directory, ignore_errors=True)
del os.environ["TORCHINDUCTOR_CACHE_DIR"]

# %% [markdown]
# ### Memory format: `channels_last`
# Convolutions read, for each output pixel, all input channels of a small window. In the default
# NCHW layout those channels are a whole plane apart; in `channels_last` (NHWC) they sit side by
# side, which suits vector units and tensor cores. ResNet-18 inference at batch 8, 224x224, eager, in
# both layouts:

# %% tags=["nbval-ignore-output"]
resnet = resnet18().eval().to(device)
images = torch.randn(8, 3, 224, 224, device=device)
resnet_cl = copy.deepcopy(resnet).to(memory_format=torch.channels_last)
images_cl = images.contiguous(memory_format=torch.channels_last)
with torch.inference_mode():
    layout_timings = measure_interleaved({"NCHW": partial(resnet, images),
                                          "channels_last": partial(resnet_cl, images_cl)},
                                         rounds=5, min_run_time=0.7)
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
# format and keeps precision-sensitive operations in fp32. Which ones differs by device: on CUDA the
# fp32 list includes softmax, layer norm, the losses, norms and reductions such as `sum` and `cumsum`;
# the CPU's keeps the losses, linear algebra and FFTs in fp32, but not softmax or layer norm. PyTorch's
# autocast op reference lists both. Three
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
# Autocast casts *copies* of the weights on every forward (its cache of a cast lasts until the
# `autocast` block ends; a copy the backward pass needs is saved with the graph until the backward
# pass has used it, after the block has ended; section 5 counts it): the parameters, their gradients
# and the optimizer's state stay fp32, so they take no less memory; what shrinks is the activations
# kept for the backward pass (measured below). The scaler starts at 65536 and adapts: a step whose gradients
# overflowed is skipped and the scale halved. One such step, staged: a gradient set to infinity, as an
# overflow in fp16 would leave it.

# %%
weights_before = [p.detach().clone() for p in net.parameters()]
scale_before = scaler.get_scale()
with torch.autocast(device.type, dtype=torch.float16):
    loss = torch.nn.functional.cross_entropy(net(inputs), targets)
optimizer.zero_grad(set_to_none=True)
scaler.scale(loss).backward()
next(net.parameters()).grad.view(-1)[0] = float("inf")  # the overflow, staged
scaler.step(optimizer)  # finds the inf and skips optimizer.step()
scaler.update()
unchanged = all(torch.equal(w, p) for w, p in zip(weights_before, net.parameters()))
print(f"scale {scale_before:g} -> {scaler.get_scale():g}; weights unchanged by the skipped step: {unchanged}")

# %% [markdown]
# The scale is part of the training state: a checkpoint saves `scaler.state_dict()` beside the model's
# and the optimizer's, and a resumed run loads it (`scaler.load_state_dict(...)`); otherwise it
# restarts at 65536 and skips steps again while it backs off. The course's training step, used from
# here on, is the same recipe:

# %%
show_source(amp_train_step)

# %%
show_source(make_grad_scaler)

# %% [markdown]
# Train the chapter's small CNN on the digits (upsampled to 32x32) in fp32, in bf16, and on a CUDA GPU
# also in fp16 with loss scaling (on a CPU fp16 training is expected to be slow; this chapter stores no
# measurement of it, and section 5's widget measures one step on yours).
# bf16 runs everywhere but is fast only with native support: a CPU with AVX512-BF16, AMX or ARM's BF16, an NVIDIA
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
    rounds=4, min_run_time=0.8)
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
elif device.type != "cpu":
    step_claim = None  # the CPU claims below are about CPU instructions; Apple's and Intel's GPUs have their own
elif hw.cpu_native_bf16:
    step_claim = make_claim(3, "bf16_training_step", "With native bf16 instructions, a bf16 autocast "
                            "training step of the small CNN is at least 1.2x faster than fp32.",
                            threshold=1.2, ratio=low_ratio, hardware=hw.label,
                            condition="a CPU with native bf16 (AVX512-BF16, AMX or ARM's BF16)")
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
    sweep_ratio = timing_ratio(sweep_steps["fp32"], sweep_steps["bf16"])
    same = sweep_ratio.gain == low_ratio.gain
    print(f"On a CPU, section 4's claim about the small CNN is the chapter's bf16 claim. On ResNet-18 bf16 "
          f"measured {sweep_ratio} against fp32 ({sweep_ratio.gain}); on the small CNN {low_ratio} "
          f"({low_ratio.gain}). " + ("The same verdict on both networks." if same else
                                     "Not the same verdict: the next cells look for the cause."))
else:
    print(f"On {device.type} no bf16 claim is made: how much bf16 gains depends on the chip; the table above "
          "shows what it did here.")

# %% [markdown]
# ### Where bf16 autocast pays, and where its casts cost more than it saves
# Under autocast the parameters stay fp32: every convolution and linear layer casts its weight to bf16
# each time it runs, on every forward (autocast keeps a cast only until its block ends). That is a fixed
# price per call, set by the number of weights: ResNet-18 has about 11 M of them, section 4's small CNN
# about 94 k. What the casts buy is cheaper arithmetic on the activations, which grows with the batch
# and the image size, and the CPU sweep uses a small one (8 images of 48x48; ResNet-18's last feature
# maps are 2x2). Four variants in the same rounds separate the two: fp32; bf16 autocast; the same
# network stored in bf16 (`model.to(torch.bfloat16)`, no casts, as one would serve it); and the weight
# casts alone.

# %%
def cast_weights(model: nn.Module, dtype: torch.dtype) -> list[torch.Tensor]:
    """Cast every convolution and linear weight, as autocast does at each call of those layers."""
    return [m.weight.to(dtype) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def autocast_inference(model: nn.Module, inputs: torch.Tensor, precision: str) -> torch.Tensor:
    """One inference call in that precision's autocast (fp32: none)."""
    with precision_mode(precision, inputs.device):
        return model(inputs)


# %% tags=["nbval-ignore-output"]
if low_precision in runnable:
    resnet_fp32, resnet_inputs = workload[0].eval(), workload[1]
    resnet_low = copy.deepcopy(resnet_fp32).to(AUTOCAST_DTYPES[low_precision])
    with torch.inference_mode():
        cast_timings = measure_interleaved({
            "fp32": partial(autocast_inference, resnet_fp32, resnet_inputs, "fp32"),
            f"{low_precision} autocast": partial(autocast_inference, resnet_fp32, resnet_inputs, low_precision),
            f"{low_precision} weights (no casts)": partial(resnet_low,
                                                           resnet_inputs.to(AUTOCAST_DTYPES[low_precision])),
            "the weight casts alone": partial(cast_weights, resnet_fp32, AUTOCAST_DTYPES[low_precision])},
            rounds=8, min_run_time=0.3)
    display(timing_table(cast_timings).drop(columns="speedup").round(3))
else:
    cast_timings = None
    print(f"{low_precision} is not measured on {device.type}: nothing to take apart.")

# %% tags=["nbval-ignore-output"]
if cast_timings is not None:
    rows = {name: timing.round_median_ms for name, timing in cast_timings.items()}
    casts_ms, dtype = rows["the weight casts alone"], AUTOCAST_DTYPES[low_precision]
    small_casts_ms = measure_latency(partial(cast_weights, trained["fp32"], dtype), min_run_time=0.2).median_ms
    weights = {name: sum(w.numel() for w in cast_weights(net, torch.float32))
               for name, net in (("ResNet-18", resnet_fp32), ("small CNN", trained["fp32"]))}
    print(f"casting ResNet-18's {weights['ResNet-18'] / 1e6:.1f} M weights: {casts_ms:.2f} ms, "
          f"{casts_ms / rows['fp32']:.0%} of its fp32 inference call (this cell) and "
          f"{casts_ms / sweep_steps['fp32'].round_median_ms:.0%} of its training step (the sweep's); casting the "
          f"small CNN's {weights['small CNN'] / 1e3:.0f} k weights: {small_casts_ms:.3f} ms, "
          f"{small_casts_ms / step_timings['fp32'].round_median_ms:.2%} of its training step (section 4's). "
          "These are the forward's casts; a training step also casts each weight's gradient back to fp32 in "
          "the backward pass, about as much again.")
    autocast_cost = timing_ratio(cast_timings[f"{low_precision} autocast"],
                                 cast_timings[f"{low_precision} weights (no casts)"])
    stored_ratio = timing_ratio(cast_timings["fp32"], cast_timings[f"{low_precision} weights (no casts)"])
    print(f"stored in {low_precision} against autocast (the same arithmetic, no casts): {autocast_cost} "
          f"({autocast_cost.gain}); stored in {low_precision} against fp32: {stored_ratio} ({stored_ratio.gain})")
    extra_ms = rows[f"{low_precision} autocast"] - rows[f"{low_precision} weights (no casts)"]
    if autocast_cost.gain == "gain":
        print(f"Autocast's extra work cost {extra_ms:.1f} ms per call; the weight casts alone take "
              f"{casts_ms:.1f} ms, about {casts_ms / extra_ms:.0%} of it (the rest is autocast's other work, "
              "not taken apart here: casting each layer's input, its dispatch).")
    else:
        print(f"This run cannot tell autocast's extra work from the noise ({autocast_cost}); the casts' own "
              "time, above, is their price per call.")
    print({"gain": f"Without the casts, {low_precision}'s arithmetic beats fp32's on this network: the hardware's "
                   "instructions are necessary, not sufficient; the work they speed up must outweigh the casts.",
           "loss": f"Even without the casts, {low_precision} lost to fp32 here: at this size its kernels are "
                   "themselves slower, so the casts are only part of the story."}.get(
        stored_ratio.gain, f"Without the casts, {low_precision} against fp32 is within this measurement's noise: "
                           "at this size its cheaper arithmetic saves too little to see, and the casts are a "
                           "cost on top of it."))
    weight_copies_mb = sum(w.numel() for w in cast_weights(resnet_fp32, torch.float32)) * 2 / 2**20
    fp32_saved = precision_table.loc["fp32", "saved_for_backward_MB"]
    print(f"Training keeps the copies too: {low_precision} saved "
          f"{precision_table.loc[low_precision, 'saved_for_backward_MB']:.1f} MB for backward against "
          f"{fp32_saved:.1f} MB in fp32; half of fp32's activations plus the {weight_copies_mb:.1f} MB of "
          f"{low_precision} weight copies come to {fp32_saved / 2 + weight_copies_mb:.1f} MB.")

# %% [markdown]
# Two costs meet in every autocast call: the casts, set by the number of weights, and the arithmetic
# bf16 makes cheaper, set by the activations. The cells above priced both for this sweep, whatever they
# found: what the casts take of a call, and what bf16 arithmetic saves without them. Section 4's small
# CNN is the other extreme: its casts take a fraction of a percent of its step (printed above), so
# whatever bf16 saves in arithmetic shows. The memory kept for backward follows the same rule: the
# weight copies against the activations. For the training step, the sweep's verdict also depends on
# the bf16 backward kernels, which this chapter does not take apart. For inference there is a way
# around the casts: serve a model stored in bf16 (the third row), once its accuracy is checked.

# %% tags=["nbval-ignore-output"]
if device.type == "cuda" and "fp16" in runnable and hw.gpu_tensor_cores:
    fp16_claim = make_claim(3, "fp16_resnet18_training_gpu", "On a GPU with tensor cores, an fp16 autocast "
                            "training step of ResNet-18 (batch 64, 224x224, with GradScaler) is at least 1.2x "
                            "faster than true fp32.", threshold=1.2, hardware=hw.label,
                            ratio=timing_ratio(sweep_steps["fp32"], sweep_steps["fp16"]),
                            condition="a CUDA GPU with tensor cores")
    claims.append(fp16_claim)
    display(report_claim(fp16_claim, holds="The convolutions ran on the fp16 tensor cores.",
                         does_not_hold="Something fp16 does not shorten bounds the step here: launches, the "
                                       "optimizer, or the layers autocast keeps in fp32."))
elif device.type == "cuda":
    print(f"{hw.gpu_name} has no tensor cores (they came with compute capability 7.0): no fp16 speed claim.")
else:
    print(f"No CUDA GPU here (device={device.type}): the fp16 speed claim is made on a GPU only.")

# %% tags=["nbval-ignore-output"]
for precision in runnable:
    print(f"{precision}: {explain_precision(precision, hw)}")

# %% [markdown]
# ## 6. Beyond the article
# ### `torch.inference_mode`, CUDA graphs, TF32 and FP8
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
#   training step (backward and optimizer step too); in your own code, `torch.backends.cuda.matmul.fp32_precision
#   = "tf32"` turns TF32 on for matmuls. Use one API: once the new switches are set to a
#   mix the legacy flags cannot express (for example `cudnn.conv` set and `cudnn.rnn` not, as
#   `precision_mode` leaves them), reading the legacy `torch.backends.cudnn.allow_tf32` can raise a
#   RuntimeError, and so can reading `torch.backends.cuda.matmul.allow_tf32` once the one-liner above
#   has set the new matmul switch.
#
# - **Attention kernels.** `torch.nn.functional.scaled_dot_product_attention` picks a fused kernel for a
#   transformer's attention by the inputs' device, dtype and shapes: FlashAttention, a memory-efficient
#   kernel or cuDNN's on NVIDIA GPUs, a fused C++ kernel on CPUs, the plain math as the fallback. The
#   fused ones never store the sequence-by-sequence score matrix, which is what lets long sequences fit;
#   `torch.nn.attention.sdpa_kernel` restricts the choice, to test one. This course's CNNs have no
#   attention, so nothing here measures it.
# - **FP8 training** goes one format further: `torchao.float8.convert_to_float8_training(model)` swaps each
#   `nn.Linear` for one that casts its inputs, weights and gradients to 8-bit floats with a scale per
#   tensor (e4m3 forward, e5m2 for gradients by default), multiplies on the fp8 tensor cores, and keeps
#   fp32 weights and optimizer state, under `torch.compile` so the casts fuse. It runs on NVIDIA GPUs of
#   compute capability 8.9 or newer (Ada, Hopper; Blackwell adds the finer-scaled MXFP8 and NVFP4
#   formats) and on AMD's MI300 (with the `fnuz` variants of the fp8 formats) and newer (MI350 uses the
#   standard ones), not on CPUs; it pays for large matrix products (transformer layers of a few thousand
#   features), where the arithmetic dominates, and not for a small CNN, whose convolutions it does not
#   touch. This chapter does not measure it; the next cell says whether this device could run it.

# %% tags=["nbval-ignore-output"]
if device.type == "cuda":
    capability = torch.cuda.get_device_capability()
    if torch.version.hip:
        arch = torch.cuda.get_device_properties(0).gcnArchName
        print(f"{hw.gpu_name} ({arch}): fp8 training with torchao "
              f"{'can run here' if arch.startswith(('gfx942', 'gfx950')) else 'needs MI300 (gfx942) or newer'}.")
    else:
        print(f"{hw.gpu_name}, compute capability {capability[0]}.{capability[1]}: fp8 training with torchao "
              f"{'can run here' if capability >= (8, 9) else 'needs 8.9 or newer'}.")
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
    print(f"No CUDA GPU here (device={device.type}): the TF32 and CUDA-graph measurements are skipped, and "
          "fp8 training (compute capability 8.9 or newer) cannot run. On a GPU, this cell says whether fp8 "
          "can, times a 4096x4096 matmul with and without TF32, and batch-1 inference with and without a "
          "CUDA graph.")

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
# wait is short; it hurts when the GPU still has a long queue and the CPU has work of its own that it
# could do meanwhile. fp16 training has a wait of its own: `GradScaler.step` reads whether any
# gradient was inf or NaN, one synchronisation per step, unless the optimizer is fused (`fused=True`,
# next section's fused optimizers), which takes the scale and the inf flag on the device. The cost of
# reading the loss at every step, on a GPU, in the case where it matters: ResNet-18 training steps at
# batch 64, 224x224 (a long GPU queue), each on a batch of uint8 images the CPU makes while the GPU
# works (the host work of a data pipeline, of about the same length on a recent GPU), copied from
# pinned memory without blocking. With a `.item()` per step the
# CPU's work and the GPU's take turns; without, they overlap.

# %% tags=["nbval-ignore-output"]
def host_batch() -> torch.Tensor:
    """64 uint8 images made on the CPU, as a data pipeline would, sent to the GPU without waiting, scaled there."""
    images = torch.randint(0, 256, (64, 3, 224, 224), dtype=torch.uint8).pin_memory()
    return images.to(device, non_blocking=True).float().div_(255)


def train_steps(net: torch.nn.Module, optimizer: torch.optim.Optimizer, labels: torch.Tensor, steps: int, *,
                read_loss_every_step: bool) -> float:
    """fp32 training steps, each on a new host batch; return the mean loss, read at each step or once."""
    scaler = make_grad_scaler("fp32", device)
    total = torch.zeros((), device=device)
    for _ in range(steps):
        loss = amp_train_step(net, host_batch(), labels, optimizer, scaler, "fp32")
        total += loss.item() if read_loss_every_step else loss
    return total.item() / steps


if device.type == "cuda":
    sync_net = resnet18(num_classes=10).to(device)
    sync_optimizer = torch.optim.SGD(sync_net.parameters(), lr=1e-3)
    sync_labels = torch.randint(0, 10, (64,), device=device)
    halves = measure_interleaved({  # is the host's work about as long as the GPU's? each alone
        "making a host batch": host_batch,
        "one training step": partial(amp_train_step, sync_net, host_batch(), sync_labels, sync_optimizer,
                                     make_grad_scaler("fp32", device), "fp32")}, rounds=3, min_run_time=0.5)
    print("each half alone: " + "; ".join(f"{name} {t.round_median_ms:.1f} ms" for name, t in halves.items()))
    sync_timings = measure_interleaved({
        "10 steps, .item() every step": partial(train_steps, sync_net, sync_optimizer, sync_labels, 10,
                                                read_loss_every_step=True),
        "10 steps, one .item() at the end": partial(train_steps, sync_net, sync_optimizer, sync_labels, 10,
                                                    read_loss_every_step=False),
    }, rounds=4, min_run_time=0.8)
    display(timing_table(sync_timings).round(3))
    sync_claim = make_claim(3, "one_item_per_epoch_1.05x", "Reading the loss once after 10 ResNet-18 training "
                            "steps (batch 64, 224x224, each batch made on the CPU) instead of at every step "
                            "makes them at least 1.05x faster.",
                            threshold=1.05, hardware=hw.label, condition="a CUDA GPU",
                            ratio=timing_ratio(sync_timings["10 steps, .item() every step"],
                                               sync_timings["10 steps, one .item() at the end"]))
    claims.append(sync_claim)
    display(report_claim(sync_claim, holds="Without the waits, the CPU made the next batch while the GPU "
                                           "still worked on this step; with them, the two took turns.",
                         does_not_hold="The CPU's share of a step was too small beside the GPU's for the "
                                       "turns to cost much here."))
else:
    print(f"No CUDA GPU here (device={device.type}): on a CPU every operation has finished when it "
          "returns, so .item() waits for nothing. On a GPU this cell times 10 ResNet-18 training steps, each "
          "on a batch made on the CPU, with and without a .item() per step.")

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
# `OMP_NUM_THREADS` fix it. On a server with several sockets (NUMA nodes), memory attached to the
# other socket is slower to reach: keep a process and its memory on one node (`numactl
# --cpunodebind=0 --membind=0 python train.py`), one process per node. The tuning guide also suggests
# a different `malloc` for CPU work:
# jemalloc or tcmalloc, loaded with `LD_PRELOAD`, reuse freed memory with less overhead than glibc's
# allocator when tensors are created and freed at a high rate; how much that gains depends on the
# workload, and this course does not measure it. On a GPU, PyTorch's own caching allocator keeps
# freed blocks for reuse; `PYTORCH_ALLOC_CONF` (the device-neutral name since PyTorch 2.9; the older
# `PYTORCH_CUDA_ALLOC_CONF` is still read), for example `expandable_segments:True`, which reduces
# fragmentation when shapes vary, tunes it and must be set before the first allocation on the device.

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
# loses fusion across it. Running a script with `TORCH_LOGS=graph_breaks` logs each break as it happens;
# in a notebook, `torch._dynamo.explain` (a private but long-standing helper) lists the graphs and why
# each break happened:

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
                                        rounds=4, min_run_time=0.6)
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
# What is kept between the passes falls to about the inputs of the blocks; during the backward pass
# one block's recomputed activations exist on top of that, so the peak is the inputs plus one block's
# activations (on a GPU, `torch.cuda.max_memory_allocated` shows it). The step costs about one more
# forward pass.
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
      f"(one block's input: {stack_input.numel() * 4 / 2**20:.2f} MB)")

# %% tags=["nbval-ignore-output"]
def stack_step(net: nn.Module) -> None:
    """Forward, a scalar loss, and backward: the part of a training step checkpointing changes."""
    net(stack_input).square().mean().backward()


checkpoint_timings = measure_interleaved({"plain": partial(stack_step, stack),
                                          "checkpointed": partial(stack_step, stack_checkpointed)},
                                         rounds=4, min_run_time=0.6)
checkpoint_cost = timing_ratio(checkpoint_timings["checkpointed"], checkpoint_timings["plain"])
print(f"checkpointed step time over plain: {checkpoint_cost}")
if device.type == "cuda":  # the peak, recomputed block included, where the allocator can report it
    for name, net in (("plain", stack), ("checkpointed", stack_checkpointed)):
        torch.cuda.reset_peak_memory_stats()
        stack_step(net)
        print(f"{name}: peak GPU memory during the step {torch.cuda.max_memory_allocated() / 2**20:.1f} MB")
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
# Its device line, `"cuda" if torch.cuda.is_available() else "cpu"`, also ignores Apple and Intel GPUs;
# the course's `pick_device` asks `torch.accelerator` and falls back to the CPU.
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
    speed = timing_ratio(sweep_steps["fp32"], sweep_steps[precision])
    saved_mb = precision_table["saved_for_backward_MB"]
    memory = saved_mb[precision] / saved_mb["fp32"]
    print(f"{precision} against fp32 in section 5's sweep on {hw.label}: training step {speed} ({speed.gain}), "
          f"{memory:.2f}x the memory saved for backward")

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
# (b) Measure with `saved_activation_bytes`, which counts every tensor autograd keeps (the next cell
# runs it on `exercise_mlp()` and shows the result beside your predictions). One of the two formats
# keeps more than its activations: which tensor is the difference here,
# and why is only that one kept, and not the same kind of tensor for the first Linear?

# %%
measured_bytes = show_measured_bytes("Exercise 2 (b)", predicted_fp32_bytes, predicted_bf16_bytes, batch=64)

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
measured_bytes = show_measured_bytes("Exercise 2 (b)", predicted_fp32_bytes, predicted_bf16_bytes, batch=batch)
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
               baseline=step_timings["fp32"].round_median_ms,
               optimized=step_timings[low_precision].round_median_ms, higher_is_better=False, hardware=hw.label,
               compared_with="true fp32 (TF32 off), same step" if hw.gpu_tf32 else "fp32, same step",
               # on a CPU the bf16 claim judged this ratio; elsewhere none did
               **({"claim": step_claim} if device.type == "cpu" else {"ratio": low_ratio}),
               extras={"accuracy_fp32": accuracy["fp32"], f"accuracy_{low_precision}": accuracy[low_precision]}),
    make_entry(3, f"mixed_precision_{low_precision}_resnet18",
               metric=f"training step, ResNet-18, batch {len(workload[1])}, "
                      f"{workload[1].shape[-1]}x{workload[1].shape[-1]}", unit="ms",
               baseline=sweep_steps["fp32"].round_median_ms, optimized=sweep_steps[low_precision].round_median_ms,
               higher_is_better=False, hardware=hw.label,
               compared_with="true fp32 (TF32 off), same step" if hw.gpu_tf32 else "fp32, same step",
               ratio=timing_ratio(sweep_steps["fp32"], sweep_steps[low_precision])),
    make_entry(3, "torch_compile", metric="small CNN inference, batch 64", unit="ms",
               baseline=compile_timings["eager"].round_median_ms,
               optimized=compile_timings["torch.compile"].round_median_ms, higher_is_better=False,
               hardware=hw.label, claim=compile_claim, compared_with="eager fp32",
               extras={"cold_compile_s": cold_compile_s, "warm_compile_s": warm_compile_s,
                       "empty_cache_compile_s": control_compile_s, "portable_cache_compile_s": portable_compile_s}),
    make_entry(3, "torch_compile_training", metric="training step, one-stage small CNN, batch 64, fp32",
               unit="ms",
               baseline=training_timings["eager"].round_median_ms,
               optimized=training_timings["torch.compile"].round_median_ms, higher_is_better=False,
               hardware=hw.label, ratio=training_compile_ratio, compared_with="eager fp32, same step",
               extras={"first_call_s": training_compile_s}),
    make_entry(3, "fused_adamw", metric="AdamW step, MobileNetV3-Small parameters", unit="ms",
               baseline=optimizer_timings["for-loop (foreach=False)"].round_median_ms,
               optimized=optimizer_timings["fused=True"].round_median_ms, higher_is_better=False,
               hardware=hw.cpu_label, claim=fused_claim, compared_with="AdamW with foreach=False"),
    make_entry(3, "channels_last", metric="ResNet-18 inference, batch 8", unit="ms",
               baseline=layout_timings["NCHW"].round_median_ms,
               optimized=layout_timings["channels_last"].round_median_ms, higher_is_better=False,
               hardware=hw.label, claim=layout_claim, compared_with="NCHW, eager"),
]
if frozen_available:
    entries.append(make_entry(3, "torch_compile_freezing", metric="small CNN inference, batch 64", unit="ms",
                              baseline=compile_timings["torch.compile"].round_median_ms,
                              optimized=compile_timings["compile + freezing"].round_median_ms,
                              higher_is_better=False, hardware=hw.label, claim=freezing_claim,
                              compared_with="torch.compile without freezing"))
if device.type == "cuda" and "tf32" in sweep_steps and low_precision in sweep_steps:
    entries.append(make_entry(3, f"mixed_precision_{low_precision}_vs_tf32_resnet18",
                              metric="training step, ResNet-18, batch 64, 224x224", unit="ms",
                              baseline=sweep_steps["tf32"].round_median_ms,
                              optimized=sweep_steps[low_precision].round_median_ms, higher_is_better=False,
                              hardware=hw.label, compared_with="TF32 (PyTorch's default for convolutions), same step",
                              ratio=timing_ratio(sweep_steps["tf32"], sweep_steps[low_precision])))
record_chapter(3, entries, claims)
ledger_table(entries).round(3)

# %% [markdown]
# **Take-aways**
# 1. Lower precision needs hardware with instructions for it (bf16 on CPUs with AVX512-BF16, AMX or
#    ARM's BF16, and on GPUs of compute capability 8.0 or newer; fp16 on GPUs), and that is necessary,
#    not sufficient: autocast casts the weights at every call, a fixed cost set by the number of
#    weights, so it pays only where the arithmetic it saves per call is larger. Section 5 priced both
#    for one network's inference; section 4's claim and the summary table say what it did on this
#    machine.
# 2. Mixed precision, the current way: `torch.autocast(device_type, dtype)` around the forward pass
#    and the loss, backward outside, `torch.amp.GradScaler` for fp16, its state saved with the model's.
# 3. Layout (`channels_last`), compilation (`torch.compile`, for inference and for training steps) and
#    fused optimizers can be speed on the same hardware, once measured here (the summary table gives
#    each one's verdict on this machine). Compilation costs far more
#    from a cold cache (a fresh session) than from a warm one, and pays back over many calls; cache
#    artifacts, regional compilation and AOTInductor shorten the cold start. Freezing is for serving a
#    fixed model (measured here on a CPU): set it in Inductor's config (not `options=`), check that it
#    ran, and measure it; this chapter's claim says what it gained here.
