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
# **Estimated time:** ~60 min · **Hardware:** Any CPU; a CUDA GPU adds pinned-memory, fp16, TF32 and CUDA-graph measurements

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
    ]
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *packages], check=True)
    importlib.invalidate_caches()
    print("Colab: installed the course helpers")

# %% tags=["nbval-ignore-output"]
import os

os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # one C++ compile at a time: see section 3

import copy
import time
import warnings

import ipywidgets as widgets
import pandas as pd
import torch
from torchvision.models import resnet18

from helpers import (
    PRECISIONS, amp_train_step, check_number, compare_host_to_device, compare_tf32_matmul, compare_variants,
    cuda_graph_replay, evaluate_accuracy, explain_precision, launch_versus_completion_ms, ledger_table, live_control,
    load_digits_split, make_claim, make_entry, make_grad_scaler, measure_interleaved, pick_device, plot_comparison,
    precision_point, precision_sweep, precision_workload, record_chapter, report_claim, saved_activation_bytes,
    setup_chapter, show_source, small_cnn, tensor_loader, timing_ratio, timing_table, train_epochs,
)

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
pd.DataFrame([{"format": name, "bits": torch.finfo(dtype).bits, "mantissa bits": -int(torch.log2(torch.tensor(torch.finfo(dtype).eps))),
               "largest": torch.finfo(dtype).max, "smallest normal": torch.finfo(dtype).tiny}
              for name, dtype in formats.items()]).set_index("format")

# %% [markdown]
# bf16 keeps fp32's exponent range (largest ~3e38) with fewer mantissa bits; fp16 has more mantissa
# but overflows above 65504, and below its smallest normal number (~6.1e-5) it has only subnormal
# numbers, which lose precision step by step down to 2^-24 ~ 5.96e-8; anything smaller rounds to zero.
# Gradients are often that small (exercise 2 tries 1e-8). That is why fp16 training needs loss
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
# ### The cost of a host-to-device copy
# A copy from ordinary (pageable) host memory goes through a pinned staging buffer the driver
# allocates; copying from memory that is already *pinned* (page-locked) lets the GPU's DMA engine
# read it directly, and `non_blocking=True` returns at once so the copy overlaps with compute.
# `DataLoader(pin_memory=True)` puts each batch in pinned memory for you (chapter 4).

# %% tags=["nbval-ignore-output"]
if device.type == "cuda":
    copies = compare_host_to_device(megabytes=64)
    display(copies.round(2))
else:
    print(f"No CUDA GPU here (device={device.type}): the pageable-versus-pinned copy measurement is skipped. "
          "On a GPU this cell times a 64 MB copy three ways; pinned memory typically copies about twice as fast.")

# %% [markdown]
# ### Asynchronous execution
# A CUDA call returns as soon as the kernel is *queued*. A clock read right after it measures the
# queueing, not the work (chapter 1 measured this); the course's timing helpers synchronise the
# device before reading the clock.

# %% tags=["nbval-ignore-output"]
if device.type == "cuda":
    square = torch.randn(4096, 4096, device=device)
    returned_ms, finished_ms = launch_versus_completion_ms(lambda: square @ square, repeats=20)
    print(f"20 matrix products: back in Python after {returned_ms:.2f} ms, finished after {finished_ms:.2f} ms")
else:
    print(f"No CUDA GPU here (device={device.type}): CPU operations finish before they return, so there is "
          "nothing asynchronous to expose. On a GPU, the first reading would be a small fraction of the second.")

# %% [markdown]
# ## 3. Free speed on the same hardware: memory layout and compilation
# Before changing the arithmetic, two changes that keep PyTorch's default fp32 settings (on an Ampere or
# newer GPU those already run convolutions in TF32, on both sides of each comparison: section 6).
#
# ### `torch.compile`
# `torch.compile` traces the model into a graph and has Inductor generate fused kernels (C++ with
# OpenMP on a CPU, Triton on a GPU). The price is paid once, at the first call; the reward on every
# later call. The first call is timed once with a clock (it happens only once); a second run of this
# notebook finds Inductor's on-disk cache warm and compiles faster.
#
# On a CPU, Inductor runs the C++ compiler, which needs memory of its own. Two settings keep it in
# check so that the chapter fits a 2 GB Binder session: the setup cell asked for one compile at a
# time (`TORCHINDUCTOR_COMPILE_THREADS=1`, read when Inductor is first imported; parallel compiles
# each need a few hundred MB), and `cpp_cache_precompile_headers=False` skips building the
# precompiled-header cache (about 500 MB). ResNet-18 inference at batch 8, 224x224:

# %% tags=["nbval-ignore-output"]
resnet = resnet18().eval().to(device)
images = torch.randn(8, 3, 224, 224, device=device)
compiled = torch.compile(copy.deepcopy(resnet), options={"cpp_cache_precompile_headers": False})
start = time.perf_counter()
with torch.inference_mode(), warnings.catch_warnings():
    # On an NVIDIA GPU Inductor suggests TF32 for matmuls here; this section keeps the defaults (section 6).
    warnings.filterwarnings("ignore", message="TensorFloat32 tensor cores")
    compiled(images)
compile_s = time.perf_counter() - start
with torch.inference_mode():
    compile_timings = measure_interleaved({"eager": lambda: resnet(images), "torch.compile": lambda: compiled(images)},
                                          rounds=5, min_run_time=3.0)
compile_table = timing_table(compile_timings)
compile_ratio = timing_ratio(compile_timings["eager"], compile_timings["torch.compile"])
saved_ms = compile_table.loc["eager", "median_ms"] - compile_table.loc["torch.compile", "median_ms"]
print(f"first call (compilation): {compile_s:.1f} s; steady-state speed-up (median of the rounds' ratios): "
      f"{compile_ratio}")
if saved_ms > 0:
    print(f"compilation pays for itself after about {compile_s * 1e3 / saved_ms:.0f} calls")
compile_table.round(2)

# %% tags=["nbval-ignore-output"]
compile_claim = make_claim(3, "torch_compile_1.2x", "torch.compile makes ResNet-18 inference at batch 8 at least 1.2x "
                           "faster than eager, once compiled.", threshold=1.2,
                           ratio=compile_ratio, hardware=hw.label)
claims.append(compile_claim)
report_claim(compile_claim, holds="Inductor fused the element-wise work around the convolutions (batch norm, ReLU, "
                                  "additions) into fewer kernels and dropped Python and dispatch overhead between "
                                  "operators.",
             does_not_hold="On this device eager's convolution kernels already do most of the work at full speed; "
                           "fusing the cheap operations around them saves little.")

# %%
with torch.inference_mode():
    print("compiled output matches eager:", torch.allclose(compiled(images), resnet(images), atol=1e-3, rtol=1e-3))

# %% [markdown]
# Compilation pays for long-running services and training jobs, not for a one-off script or a
# model whose input shapes change on every call (each new shape can trigger a recompilation).
# `torch.compile(model, options={"freezing": True})` additionally treats the weights as constants
# for inference; whether that helps depends on the CPU and the model: try it.

# %% [markdown]
# ### Memory format: `channels_last`
# Convolutions read, for each output pixel, all input channels of a small window. In the default
# NCHW layout those channels are a whole plane apart; in `channels_last` (NHWC) they sit side by
# side, which suits vector units and tensor cores. The same ResNet-18 inference, eager, in both layouts:

# %% tags=["nbval-ignore-output"]
resnet_cl = copy.deepcopy(resnet).to(memory_format=torch.channels_last)
images_cl = images.contiguous(memory_format=torch.channels_last)
with torch.inference_mode():
    layout_timings = measure_interleaved({"NCHW": lambda: resnet(images), "channels_last": lambda: resnet_cl(images_cl)},
                                         rounds=5, min_run_time=2.0)
layout_table = timing_table(layout_timings)
layout_table.round(2)

# %% tags=["nbval-ignore-output"]
layout_claim = make_claim(3, "channels_last_1.1x", "channels_last makes eager ResNet-18 inference at batch 8 at least "
                          "1.1x faster than NCHW.", threshold=1.1,
                          ratio=timing_ratio(layout_timings["NCHW"], layout_timings["channels_last"]),
                          hardware=hw.label)
claims.append(layout_claim)
report_claim(layout_claim, holds="The convolution kernels on this device prefer channels side by side.",
             does_not_hold="On this device the NCHW kernels are as good, or the layout conversions cost what the "
                           "layout saves.")

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
# also in fp16 with loss scaling (a CPU's fp16 training is far too slow, the sweep below measures it).
# bf16 runs everywhere but is fast only with native support: a CPU with AVX512-BF16 or AMX, an NVIDIA
# GPU of compute capability 8.0 or newer (not Colab's default T4, 7.5); elsewhere it is emulated, slowly.
# The learning rate follows a cosine to zero so that the final accuracy is steady; accuracy is
# evaluated in fp32.

# %% tags=["nbval-ignore-output"]
digits = load_digits_split(image_size=32)
train_loader = tensor_loader(digits.x_train, digits.y_train, batch_size=64, shuffle=True)
trained_precisions = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
trained = {}
for precision in trained_precisions:
    torch.manual_seed(0)
    trained[precision] = small_cnn()
    train_epochs(trained[precision], train_loader, epochs=6, lr=3e-3, device=device, precision=precision,
                 anneal=True, progress=False)
accuracy = {p: evaluate_accuracy(net, digits.x_test, digits.y_test, device=device) for p, net in trained.items()}
print({p: f"{a:.1%}" for p, a in accuracy.items()})

# %% [markdown]
# Step time and memory, measured on one fixed batch of 64, the precisions in alternating rounds.
# "Saved for backward" counts the bytes of the tensors autograd keeps between the forward and the
# backward pass, which is where low precision saves memory:

# %% tags=["nbval-ignore-output"]
x_step, y_step = digits.x_train[:64].to(device), digits.y_train[:64].to(device)
steppers = {p: (copy.deepcopy(trained["fp32"]), p) for p in trained_precisions}
optimizers = {p: torch.optim.SGD(net.parameters(), lr=1e-3) for p, (net, _) in steppers.items()}
scalers = {p: make_grad_scaler(p, device) for p in trained_precisions}
step_timings = measure_interleaved(
    {p: (lambda p=p: amp_train_step(steppers[p][0], x_step, y_step, optimizers[p], scalers[p], p)) for p in trained_precisions},
    rounds=4, min_run_time=2.0)
step_table = timing_table(step_timings)
step_table["saved_for_backward_MB"] = [saved_activation_bytes(steppers[p][0], x_step, p) / 2**20 for p in step_table.index]
step_table["test_accuracy"] = [accuracy[p] for p in step_table.index]
step_table.round(3)

# %%
plot_comparison(step_table["median_ms"].to_dict(), metric="training step, small CNN, batch 64", unit="ms",
                hardware=hw.label, higher_is_better=False, title="Mixed-precision training step")

# %% tags=["nbval-ignore-output"]
bf16_ratio = timing_ratio(step_timings["fp32"], step_timings["bf16"])
if device.type == "cuda":
    net, optimizer, scaler = steppers["fp32"][0], optimizers["fp32"], scalers["fp32"]
    x_big, y_big = digits.x_train[:256].to(device), digits.y_train[:256].to(device)
    batch_timings = measure_interleaved({"batch 64": lambda: amp_train_step(net, x_step, y_step, optimizer, scaler, "fp32"),
                                         "batch 256": lambda: amp_train_step(net, x_big, y_big, optimizer, scaler, "fp32")},
                                        rounds=4, min_run_time=1.0)
    bf16_claim = make_claim(3, "small_step_launch_bound", "On a GPU, the small CNN's training step is bound by kernel "
                            "launches, not arithmetic: 4x the batch (256 images instead of 64) takes at most 2x "
                            "the time.", threshold=2.0, ratio=timing_ratio(batch_timings["batch 256"],
                                                                           batch_timings["batch 64"]),
                            hardware=hw.label, direction="at most", condition="a CUDA GPU")
    readings = {"holds": f"Four times the arithmetic barely moves the step: its time goes to launching some hundred "
                         f"small kernels, not to computing. bf16 shortens the computing only, so it cannot pay "
                         f"here: bf16 against fp32 measured {bf16_ratio} ({bf16_ratio.gain}). Section 5 gives the "
                         f"GPU a workload big enough for its tensor cores.",
                "does_not_hold": "On this GPU the arithmetic of this small step already takes most of its time, "
                                 "so lower precision can pay even here: compare the bf16 row above."}
elif hw.cpu_native_bf16:
    bf16_claim = make_claim(3, "bf16_training_step", "With native bf16 instructions, a bf16 autocast training step of "
                            "the small CNN is at least 1.2x faster than fp32.", threshold=1.2, ratio=bf16_ratio,
                            hardware=hw.label, condition="a CPU with native bf16 (AVX512-BF16 or AMX)")
else:
    bf16_claim = make_claim(3, "bf16_training_step", "Without native bf16 instructions, a bf16 autocast training step "
                            "of the small CNN is slower than fp32 (at most 1x).", threshold=1.0, ratio=bf16_ratio,
                            hardware=hw.label, direction="at most", condition="a CPU without native bf16 instructions")
if device.type != "cuda":
    readings = {"holds": "The hardware report at the top says which case this CPU is, and the measurement agrees: "
                         "lower precision pays only where the hardware has instructions for it.",
                "does_not_hold": "The measurement disagrees with what the hardware report leads us to expect: the "
                                 "convolutions may have fallen back to a path that converts to fp32, or the step is "
                                 "dominated by work that autocast leaves in fp32."}
claims.append(bf16_claim)
report_claim(bf16_claim, **readings)

# %%
print("bf16 accuracy within 1 point of fp32:", accuracy["bf16"] >= accuracy["fp32"] - 0.01)
print("bf16 keeps about half the bytes for backward:",
      0.4 < step_table.loc["bf16", "saved_for_backward_MB"] / step_table.loc["fp32", "saved_for_backward_MB"] < 0.75)

# %% tags=["nbval-ignore-output"]
print(explain_precision("bf16", hw))

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
# The same measurement for every precision this device runs, the precisions in alternating rounds, as a
# static figure for the book. *Saved for backward* counts the memory autograd keeps for the backward
# pass: the activations and, under autocast, the low-precision copies of the weights that the forward
# made. With a large batch the activations dominate and low precision halves them; with a small batch
# the weight copies can outweigh what the activations save.

# %% tags=["nbval-ignore-output"]
runnable = [p for p in PRECISIONS if p != "tf32" or hw.gpu_tf32]
precision_table, sweep_steps = precision_sweep(*workload, runnable, rounds=3, min_run_time=1.5)
precision_table.round(4)

# %%
plot_comparison(precision_table["train_step_ms"].to_dict(), metric="ResNet-18 training step", unit="ms",
                hardware=hw.label, higher_is_better=False, title="One training step in each precision")

# %% tags=["nbval-ignore-output"]
if device.type == "cuda" and hw.gpu_bf16 and hw.gpu_tf32:
    resnet_bf16_claim = make_claim(3, "bf16_resnet18_training_gpu", "On a GPU with bf16 tensor cores, a bf16 autocast "
                                   "training step of ResNet-18 (batch 64, 224x224) is at least 1.2x faster than true "
                                   "fp32 (TF32 switched off).",
                                   threshold=1.2, ratio=timing_ratio(sweep_steps["fp32"], sweep_steps["bf16"]),
                                   hardware=hw.label, condition="a CUDA GPU with native bf16 (compute capability 8.0+)")
    claims.append(resnet_bf16_claim)
    display(report_claim(resnet_bf16_claim, holds="Convolutions of this size keep the tensor cores busy, and bf16 "
                                                  "halves the bytes every layer reads and writes.",
                         does_not_hold="Even at this size the step is bound by something bf16 does not shorten: "
                                       "kernel launches, the optimizer, or the element-wise layers autocast keeps "
                                       "in fp32."))
    against_tf32 = timing_ratio(sweep_steps["tf32"], sweep_steps["bf16"])
    print(f"Against TF32 (what PyTorch's default already gives cuDNN convolutions), bf16 measured {against_tf32}: "
          f"{against_tf32.gain}. TF32 already puts the convolutions on the tensor cores; what bf16 adds is half the "
          "bytes, which pays only in the layers bound by memory.")
elif device.type == "cuda":
    print(f"{hw.gpu_name} has no native bf16 (it needs compute capability 8.0, Ampere or newer): bf16 runs emulated "
          "there, so no gain is claimed; fp16 with a GradScaler is this GPU's fast format.")
else:
    print("On a CPU, section 4's claim about the small CNN is the chapter's bf16 claim; this sweep shows the same "
          "effect on a larger network.")

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
#   switches to `"ieee"` so that fp32 means fp32, and `"tf32"` sets both to `"tf32"`.

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
        display(compare_variants({"eager launches": lambda: small(one),
                                  "CUDA graph replay (input copied in)": lambda: replay(one)}).round(4))
else:
    print(f"No CUDA GPU here (device={device.type}): the TF32 and CUDA-graph measurements are skipped. On a GPU, "
          "this cell times a 4096x4096 matmul with and without TF32, and batch-1 inference with and without a CUDA graph.")

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

# %%
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    torch.cuda.amp.autocast(enabled=False)  # the article's deprecated call, run on purpose to show its warning
print("warnings raised by the article's autocast:", sorted({w.category.__name__ for w in caught}))

# %% [markdown]
# ## 8. Exercises
# **Exercise 1.** How many bits of mantissa does bf16 keep? (Hint: `torch.finfo(torch.bfloat16).eps` is 2 to the
# power minus that number.)

# %%
bf16_mantissa_bits = ...  # your answer: an integer
check_number("Exercise 1", bf16_mantissa_bits, 7, rtol=0)

# %% jupyter={"source_hidden": true} tags=["solution"]
bf16_mantissa_bits = 7
check_number("Exercise 1", bf16_mantissa_bits, -torch.log2(torch.tensor(torch.finfo(torch.bfloat16).eps)).item(), rtol=0)

# %% [markdown]
# **Exercise 2.** A gradient of 1e-8 in fp16: what does it become? Convert it and compare with zero; then
# multiply by 65536 (a typical loss scale) *before* converting. Give the fp16 value of the scaled gradient.

# %%
scaled_gradient = ...  # your answer: torch.tensor(1e-8 * 65536, dtype=torch.float16).item()
check_number("Exercise 2", scaled_gradient, torch.tensor(1e-8 * 65536, dtype=torch.float16).item(), rtol=1e-3)

# %% jupyter={"source_hidden": true} tags=["solution"]
print("1e-8 in fp16 is zero:", torch.tensor(1e-8, dtype=torch.float16).item() == 0.0)
scaled_gradient = torch.tensor(1e-8 * 65536, dtype=torch.float16).item()
check_number("Exercise 2", scaled_gradient, torch.tensor(1e-8 * 65536, dtype=torch.float16).item(), rtol=1e-3)

# %% [markdown]
# **Exercise 3.** From this run's measurements, after how many calls does `torch.compile` pay for its
# compilation? (compile time divided by the time saved per call; both in the same unit.)

# %%
break_even_calls = ...  # your answer, computed from compile_s and compile_table
check_number("Exercise 3", break_even_calls, compile_s * 1e3 / max(saved_ms, 1e-9), rtol=1e-6)

# %% jupyter={"source_hidden": true} tags=["solution"]
break_even_calls = compile_s * 1e3 / max(saved_ms, 1e-9)
check_number("Exercise 3", break_even_calls, compile_s * 1e3 / max(saved_ms, 1e-9), rtol=1e-6)

# %% [markdown]
# ## 9. Summary

# %% tags=["nbval-ignore-output"]
entries = [
    make_entry(3, "mixed_precision_bf16", metric="training step, small CNN, batch 64", unit="ms",
               baseline=step_table.loc["fp32", "median_ms"], optimized=step_table.loc["bf16", "median_ms"],
               higher_is_better=False, hardware=hw.label, ratio=bf16_ratio,
               extras={"accuracy_fp32": accuracy["fp32"], "accuracy_bf16": accuracy["bf16"]}),
    make_entry(3, "mixed_precision_bf16_resnet18", metric=f"training step, ResNet-18, batch {len(workload[1])}",
               unit="ms", baseline=precision_table.loc["fp32", "train_step_ms"],
               optimized=precision_table.loc["bf16", "train_step_ms"], higher_is_better=False, hardware=hw.label,
               ratio=timing_ratio(sweep_steps["fp32"], sweep_steps["bf16"])),
    make_entry(3, "torch_compile", metric="ResNet-18 inference, batch 8", unit="ms",
               baseline=compile_table.loc["eager", "median_ms"], optimized=compile_table.loc["torch.compile", "median_ms"],
               higher_is_better=False, hardware=hw.label, ratio=compile_claim.ratio, extras={"compile_s": compile_s}),
    make_entry(3, "channels_last", metric="ResNet-18 inference, batch 8", unit="ms",
               baseline=layout_table.loc["NCHW", "median_ms"], optimized=layout_table.loc["channels_last", "median_ms"],
               higher_is_better=False, hardware=hw.label, ratio=layout_claim.ratio),
]
record_chapter(3, entries, claims)
ledger_table(entries).round(3)

# %% [markdown]
# **Take-aways**
# 1. Lower precision pays only where the hardware has instructions for it: bf16 on CPUs with
#    AVX512-BF16 or AMX and on recent GPUs, fp16 on GPUs. Elsewhere it is measured here as a slowdown.
# 2. Mixed precision, the current way: `torch.autocast(device_type, dtype)` around the forward pass
#    and the loss, backward outside, `torch.amp.GradScaler` for fp16.
# 3. Layout (`channels_last`) and compilation (`torch.compile`) are free speed on the same hardware,
#    once measured: compilation costs seconds up front and pays back over many calls.
