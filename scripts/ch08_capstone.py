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
# # Chapter 8 — Conclusion and capstone: one model through every technique, your decision guide, and what comes next
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dl-perf-course/dl-performance-workbook/blob/main/notebooks/ch08_capstone.ipynb) [![Launch Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/dl-perf-course/dl-performance-workbook/main?labpath=notebooks/ch08_capstone.ipynb)
#
# Seven chapters measured one technique at a time. A deployment uses several at once, and they
# interact: pruning leaves less work for int8, compilation is what makes int8 fast at all, a
# layout change that pays in eager mode may be worth nothing once the compiler chooses layouts,
# and every step may cost accuracy. This chapter takes one network through the course's
# techniques, measures every stage in the same interleaved rounds, and lets an accuracy budget
# that you set decide the deployment plan, with one rule that judges speed and accuracy by their
# intervals. Then it reads the ledger that chapters 1 to 7 wrote on this machine into your
# decision guide, measures the article's conclusion against it, and looks ahead to what this
# course's method meets next.
#
# What is new against chapter 6's combined compression (section 4 there): a validation split for
# every choice and the test set used once; branches that cost accuracy, so that the budget decides;
# the credit of each step measured alone and left out, in the same rounds; ONNX Runtime as a branch
# of its own; and a helper that runs the same waterfall on your own model.
#
# **Estimated time:** ~90 min · **Hardware:** Any CPU; reads the ledger that chapters 1 to 7 wrote on this machine
#
# A workshop adds 10 to 15 minutes for the class discussion.
#
# On a machine with a GPU the capstone still runs on the CPU: chapters 3 and 7 measure the GPU's own
# steps (autocast, CUDA graphs, TensorRT), and the method here applies to them unchanged.
#
# *Instructors:* the class report that gathers every participant's ledger is a command,
# `make class-report LEDGERS=folder/`; the README's instructor notes show what it contains.

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
import statistics
from dataclasses import asdict
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import onnx
import pandas as pd
import torch
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from torchvision.transforms import v2

from helpers.core.accuracy import paired_prediction_change, wilson_interval
from helpers.core.claims import claims_table, make_claim, paired_ratio, report_claim, timing_ratio
from helpers.core.cost import count_parameters, serialized_size_bytes
from helpers.core.measure import measure_interleaved
from helpers.core.memory import release_freed_memory
from helpers.workload.data import hold_out, load_digits_split, tensor_loader
from helpers.workload.models import small_cnn
from helpers.workload.training import evaluate_accuracy, train_epochs
from helpers.support.chapter import setup_chapter
from helpers.support.ledger import (
    COURSE_NOTEBOOKS, chapters_missing, ledger_table, load_ledger, make_entry, record_chapter,
)
from helpers.support.source import show_source
from helpers.support.widgets import live_control
from helpers.ch02_model_structure.pruning import prune_channels
from helpers.ch03_hardware.compile_timing import compile_for_inference
from helpers.ch04_data_pipeline.images import DecodedCache, image_folder, write_digit_images
from helpers.ch04_data_pipeline.loading import make_loader, measure_training
from helpers.ch06_compression.distill import teacher_logits, train_student
from helpers.ch06_compression.quantize import int8_reduce_range_needed, static_int8
from helpers.ch07_tools.onnx_runtime import CalibrationBatches, model_files, ort_predict, ort_session
from helpers.ch08_capstone.decision_guide import decision_guide, guide_table, ratio_text
from helpers.ch08_capstone.decision_guide import reading as guide_reading
from helpers.ch08_capstone.exercises import check_measured_verdict, check_rule_disagreement
from helpers.ch08_capstone.op_profile import time_by_operator_kind
from helpers.ch08_capstone.plots import plot_ledger, plot_waterfall
from helpers.ch08_capstone.versions import installed_version
from helpers.ch08_capstone.waterfall import (
    budget_is_clear, deployment_plan, flat_step_reason, paired_change_points, ratio_table, step_pays, within_budget,
)
from helpers.ch08_capstone.your_model import StageSpec, correct_flags, run_waterfall

hw = setup_chapter(8)
pd.set_option("display.max_colwidth", None)  # this chapter's tables hold sentences: show them whole
# One compile process: on a small machine a pool of compile workers, each importing torch, costs
# memory, not time.
torch._inductor.config.compile_threads = 1
claims = []  # this chapter's speed claims, judged on this machine; recorded in the summary
WORK = Path("ch08_files")  # the ONNX models this chapter writes
WORK.mkdir(exist_ok=True)
BATCH = 64  # every latency in the waterfall is one call on a batch of 64 digits

# %% [markdown]
# ## 1. The stages, the budget, and one rule for both sides
# Each technique attacks one cost, and they compose in a natural order along the main line:
#
# | stage | technique (chapter) | what it changes | can it cost accuracy? |
# |---|---|---|---|
# | 1 | `channels_last` layout (3) | how activations sit in memory | no: same arithmetic |
# | 2 | BN-aware channel pruning, then fine-tuning or distillation (2, 6) | the channels of every convolution | yes |
# | 3 | `torch.compile` with freezing (3) | fused kernels, weights as constants | no (float rounding only) |
# | 4 | int8 with PT2E and freezing (6) | 8-bit weights and activations | yes (rounding) |
#
# Compilation comes before int8 because PT2E's int8 kernels *are* compiler passes (chapter 6: without
# freezing, PT2E int8 is slower than fp32), so int8's own step is measured against compiled fp32, the
# fair baseline. Three branches leave the main line, so that the plan has real alternatives: the
# unpruned network compiled (and in int8), which keeps every channel; ONNX Runtime in fp32 and in
# int8 (chapter 7), another runtime for the pruned network; and an aggressive pruning of most
# channels, which is faster still and costs accuracy. The data pipeline (chapter 4) comes last: it
# changes training, not the model.
#
# **Three settings you choose.** How much accuracy you accept to lose, how much of every convolution
# the main line prunes, and how hard to prune on the aggressive branch:

# %%
ACCURACY_BUDGET_POINTS = 1.0  # at most this many points of accuracy lost against the baseline
PRUNE_FRACTION = 0.5  # the main line prunes this share of every convolution's channels
AGGRESSIVE_PRUNE = 0.8  # the aggressive branch prunes this share

# %% [markdown]
# **One rule, with intervals on both sides.** A stage may be the plan when
# - its accuracy is *shown* to be within the budget: the lower end of the paired 95% interval of its
#   change against the baseline is at or above minus the budget (a non-inferiority test), and the
#   same holds for every stage it builds on. A step that computes its parent's function up to float
#   rounding (a layout, a compiler, another runtime) and changes no image's verdict (right or wrong)
#   keeps its parent's standing: it is checked for parity, not for accuracy;
# - its own step buys something: its latency interval lies above 1 (faster), or it makes the model
#   smaller and its latency interval does not lie below 1 (smaller, at no measurable cost in time).
#
# The plan is the fastest such stage: a latency plan, in which size decides only whether a step pays.
# A stage whose accuracy interval straddles the budget line is
# *not shown* to be within it, and stays out: on this many images, the data cannot support it. The
# interval is Newcombe's score interval for paired proportions: unlike a bootstrap of the images, it
# stays wide when few images change, because a few hundred unchanged images cannot prove that none
# of the next thousand would change.
#
# **Validation for choices, the test set once.** Every choice (which recovery to carry on, which
# stages are within the budget, the plan) is made on a validation split taken from the training
# images. The test images are scored once, after the plan is fixed, for the final report (section
# 2.8): a test set that picked the winner would report the winner's luck as its accuracy.
#
# ## 2. The capstone
# ### 2.1 The data and the baseline
# The digits at 16x16: two thirds of the training images train, one third validates (stratified),
# and the 450 test images wait for section 2.8. The network is chapter 6's teacher, a small CNN
# with three convolution blocks (32, 64 and 128 channels), trained here for ten annealed epochs.
# Every arm then gets the same 200 more Adam steps from that trained network: the baseline as it is,
# the pruned networks to recover. So an accuracy change measures the technique, not extra training.

# %%
split, x_val, y_val = hold_out(load_digits_split(image_size=16), fraction=1 / 3)
x_train, y_train, x_test, y_test = split.x_train, split.y_train, split.x_test, split.y_test
example = x_val[:BATCH]  # the batch every stage is timed on (its contents do not change the time)
calibration_batches = [x_train[start:start + BATCH] for start in range(0, 512, BATCH)]
print(f"train {tuple(x_train.shape)}, validation {tuple(x_val.shape)}, test {tuple(x_test.shape)}")

# %% tags=["nbval-ignore-output"]
torch.manual_seed(0)
trained = small_cnn((32, 64, 128))
train_epochs(trained, tensor_loader(x_train, y_train, batch_size=64, shuffle=True), epochs=10, anneal=True,
             progress=False)
trained.eval()
baseline = train_student(copy.deepcopy(trained), (x_train, y_train), steps=200, lr=1e-3, batch_size=128).eval()
print(f"baseline: {count_parameters(baseline):,} parameters, validation accuracy "
      f"{evaluate_accuracy(baseline, x_val, y_val):.1%}")

# %% [markdown]
# ### 2.2 Layout, pruning, and the choice between two recoveries
# **Layout** (chapter 3): the same model with its weights in `channels_last`. The input batch stays
# as it comes: with one channel, both layouts hold the same bytes in the same order. With RGB input,
# convert inside the timed call, as a deployment would, or the conversion's cost goes missing.
#
# **Pruning** (chapter 2): remove the given share of output channels of every convolution, ranked by
# each filter's L1 norm scaled by its batch norm's $|\gamma|$; the result is a real, narrower
# network. Chapter 6 (section 4) compared the two ways to recover what pruning destroyed; here both
# run again briefly, with the baseline's 200 Adam steps of 128 training images: fine-tuning with
# labels (batches of 128), and distillation from the baseline ($T = 4$, $\alpha = 0.5$; each step 64
# labelled images and 64 with the baseline's soft targets). The aggressive branch is fine-tuned like
# the first.

# %% tags=["nbval-ignore-output"]
layout_model = copy.deepcopy(baseline).to(memory_format=torch.channels_last)
pruned = prune_channels(trained, PRUNE_FRACTION, criterion="bn_scaled_l1")
pruned_tuned = train_student(copy.deepcopy(pruned), (x_train, y_train), steps=200, lr=1e-3, batch_size=128)
transfer = (x_train, teacher_logits(baseline, x_train))
pruned_distilled = train_student(copy.deepcopy(pruned), (x_train, y_train), transfer=transfer,
                                 targets="soft targets", temperature=4.0, alpha=0.5, steps=200, lr=1e-3)
aggressive = train_student(prune_channels(trained, AGGRESSIVE_PRUNE, criterion="bn_scaled_l1"), (x_train, y_train),
                           steps=200, lr=1e-3, batch_size=128)
for model in (pruned_tuned, pruned_distilled, aggressive):
    model.eval().to(memory_format=torch.channels_last)
print(f"parameters: pruned {PRUNE_FRACTION:.0%} {count_parameters(pruned_tuned):,}, "
      f"pruned {AGGRESSIVE_PRUNE:.0%} {count_parameters(aggressive):,}")

# %% [markdown]
# Which recovery goes on to compilation and int8? The one more accurate on the *validation* images,
# compared image by image (chapter 6's paired comparison: how many images only one of them gets
# right, and McNemar's test of "both are equally accurate"):

# %% tags=["nbval-ignore-output"]
with torch.no_grad():
    tuned_vs_distilled = paired_prediction_change(pruned_tuned(x_val).argmax(1), pruned_distilled(x_val).argmax(1),
                                                  y_val)
distilled_better = tuned_vs_distilled["only the candidate right"] > tuned_vs_distilled["only the reference right"]
carried_how, carried = ("distilled", pruned_distilled) if distilled_better else ("fine-tuned", pruned_tuned)
print(f"fine-tuned (reference) against distilled (candidate), validation: {tuned_vs_distilled}")
print(f"carried on: {carried_how}")

# %% tags=["nbval-ignore-output"]
if tuned_vs_distilled["McNemar p"] > 0.05:
    print(f"McNemar p = {tuned_vs_distilled['McNemar p']:.2f}: the validation images cannot tell the two apart, so "
          f"carrying the {carried_how} network is a choice, not a finding.")
else:
    print(f"McNemar p = {tuned_vs_distilled['McNemar p']:.3f}: the {carried_how} network is more accurate on the "
          "validation images, beyond what chance would explain.")

# %% [markdown]
# McNemar's test covers the noise of which images were drawn, not the noise of training: each network
# was trained once, from one seed, so this run says which of *these two* networks to carry, not which
# method is better (that needs several seeds per method, as chapter 6's seed study does for
# distillation against pseudo-labels).
#
# ### 2.3 Compilation, int8, and ONNX Runtime
# `torch.compile` with freezing (chapter 3), then int8 with PT2E (chapter 6): `torch.export`, the
# x86 quantizer, calibration on 512 training images, conversion, and another compile with freezing,
# where the int8 kernels come from. Each compiled graph is built for a batch of 64 (`dynamic=False`)
# and its first call compiles: constraints a deployment must accept, listed in the table below.

# %% tags=["nbval-ignore-output"]
reduce_range = int8_reduce_range_needed()


def compiled(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of model compiled with freezing for batches like `example`."""
    return compile_for_inference(copy.deepcopy(model), example)[0]


def int8_pt2e(model: torch.nn.Module) -> tuple[torch.nn.Module, int]:
    """(PT2E static int8 of model, compiled with freezing; the converted module's bytes)."""
    converted = static_int8(model, example, calibration_batches, reduce_range=reduce_range)
    return compile_for_inference(converted, example)[0], serialized_size_bytes(converted)


compiled_full, (int8_full, int8_full_bytes) = compiled(layout_model), int8_pt2e(layout_model)
compiled_pruned, compile_s = compile_for_inference(copy.deepcopy(carried), example)
int8_pruned, int8_pruned_bytes = int8_pt2e(carried)
compiled_aggressive = compiled(aggressive)
print(f"the pruned network's first compiled call took {compile_s:.1f} s; reduce_range={reduce_range}")

# %% [markdown]
# ONNX Runtime (chapter 7) runs the pruned network exported to ONNX, in fp32 and in static int8 (QDQ,
# per-channel int8 weights, unsigned int8 activations), with as many threads as PyTorch uses here and
# its idle threads told not to spin, so that they take no core from PyTorch in the alternating rounds.
# Its int8 step is measured against its own fp32, so that the change of runtime and the change of
# precision each get their own step.

# %% tags=["nbval-ignore-output"]
fp32_onnx, prepared_onnx, int8_onnx = (WORK / f"capstone_{kind}.onnx" for kind in ("fp32", "prepared", "int8"))
torch.onnx.export(carried, (example,), fp32_onnx, dynamo=True, external_data=False, verbose=False,
                  dynamic_shapes={"input": {0: torch.export.Dim("batch", min=1, max=1024)}})
quant_pre_process(str(fp32_onnx), str(prepared_onnx), skip_symbolic_shape=True)
quantize_static(str(prepared_onnx), str(int8_onnx), CalibrationBatches("input", calibration_batches),
                quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, reduce_range=reduce_range)
ort_fp32, ort_int8 = (ort_session(path, threads=torch.get_num_threads(), spinning=False)
                      for path in (fp32_onnx, int8_onnx))
opset = next(entry.version for entry in onnx.load(str(fp32_onnx)).opset_import if entry.domain in ("", "ai.onnx"))
print(f"exported with opset {opset}; fp32 and int8 sessions ready")

# %% [markdown]
# ### 2.4 Every stage, timed in the same interleaved rounds
# Each stage below is a `StageSpec`: its model, its bytes (`torch.save`'s state dict for PyTorch, the
# `.onnx` file for ONNX Runtime, which also holds the graph), the stage it builds on, and what it asks
# of a deployment. `run_waterfall` times one call of each on the same batch of 64 in 8 alternating
# rounds (chapter 1), so a slow spell of the machine hits every stage alike, and scores each on the
# validation images. Three more calls, which no plan would stop at, are timed in the same rounds for
# section 2.7: the pruned, the compiled and the pruned int8 network in the default layout.

# %% tags=["nbval-ignore-output"]
main, wide = f"pruned {PRUNE_FRACTION:.0%}", f"pruned {AGGRESSIVE_PRUNE:.0%}"
fixed_batch = f"batch {BATCH} only; first call compiles"
fp32_bytes, pruned_bytes = serialized_size_bytes(baseline), serialized_size_bytes(carried)
specs = [
    StageSpec("fp32 eager", "baseline", baseline, fp32_bytes, constraint="any batch"),
    StageSpec("channels_last", "memory layout", layout_model, fp32_bytes, constraint="any batch", same_function=True),
    StageSpec("compiled", "torch.compile + freezing", compiled_full, fp32_bytes, constraint=fixed_batch,
              same_function=True),
    StageSpec("int8", "int8 PT2E + freezing", int8_full, int8_full_bytes, constraint=fixed_batch),
    StageSpec(main, f"prune {PRUNE_FRACTION:.0%}, {carried_how}", carried, pruned_bytes, builds_on="channels_last",
              constraint="any batch"),
    StageSpec(f"{main}, compiled", "torch.compile + freezing", compiled_pruned, pruned_bytes, constraint=fixed_batch,
              same_function=True),
    StageSpec(f"{main}, int8", "int8 PT2E + freezing", int8_pruned, int8_pruned_bytes, constraint=fixed_batch),
    StageSpec(f"{main}, ONNX Runtime", "export, ONNX Runtime fp32", lambda x: ort_predict(ort_fp32, x),
              sum(model_files(fp32_onnx).values()), builds_on=main, constraint="any batch; a session per process",
              same_function=True),
    StageSpec(f"{main}, ONNX Runtime int8", "static int8 (QDQ)", lambda x: ort_predict(ort_int8, x),
              sum(model_files(int8_onnx).values()), constraint="any batch; a session per process"),
    StageSpec(wide, f"prune {AGGRESSIVE_PRUNE:.0%}, fine-tuned", aggressive, serialized_size_bytes(aggressive),
              builds_on="channels_last", constraint="any batch"),
    StageSpec(f"{wide}, compiled", "torch.compile + freezing", compiled_aggressive, serialized_size_bytes(aggressive),
              constraint=fixed_batch, same_function=True),
]
pruned_default = copy.deepcopy(carried).to(memory_format=torch.contiguous_format)
compiled_default, (int8_pruned_default, _) = compiled(baseline), int8_pt2e(pruned_default)
ablation_calls = {"ablation: pruned, default layout": lambda: pruned_default(example),
                  "ablation: compiled, default layout": lambda: compiled_default(example),
                  "ablation: pruned int8, default layout": lambda: int8_pruned_default(example)}
waterfall, timings = run_waterfall(specs, example, x_val, y_val, also_time=ablation_calls)
print(f"{len(timings)} calls timed in {len(timings[main].round_medians_s)} interleaved rounds")

# %% [markdown]
# ### 2.5 The waterfall
# One row per stage: its own step (against the stage it builds on) and its total (against stage 0),
# both from the same rounds with their intervals; size; validation accuracy with its 95% Wilson
# interval; and the accuracy change against stage 0 with a paired 95% interval (Newcombe's score
# interval, from the validation images each scored by both models). Each speed-up is the median of
# the per-round ratios, so it need not equal the quotient of the two latencies printed (each the
# median of its own rounds).

# %% tags=["nbval-ignore-output"]
waterfall[["builds_on", "latency_ms", "step_speedup", "step_low", "step_high", "total_speedup", "total_low",
           "total_high", "size_KB", "accuracy_%", "accuracy_low_%", "accuracy_high_%", "accuracy_change_points",
           "change_low_points", "change_high_points", "constraint"]].round(2)

# %% [markdown]
# The main line's steps as claims, each judged on its own interval, then ONNX Runtime against the
# fair baseline, the compiled network, and its int8 against its own fp32. The thresholds are what
# would make each step worth its line of code on a CPU. The last claim is the composition itself:
# int8's step over compiled fp32 on the unpruned network against the same step after pruning, round
# by round.

# %% tags=["nbval-ignore-output"]
STEP_CLAIMS = {  # claim name: (without, with, threshold, statement)
    "capstone_channels_last": ("fp32 eager", "channels_last", 1.1,
                               "channels_last makes the baseline CNN at batch 64 at least 1.1x faster."),
    "capstone_pruning": ("channels_last", main, 1.5, f"Pruning {PRUNE_FRACTION:.0%} of every convolution's channels "
                         "makes the channels_last CNN at least 1.5x faster."),
    "capstone_compile": (main, f"{main}, compiled", 1.1, "torch.compile with freezing makes the pruned CNN at least "
                         "1.1x faster than eager."),
    "capstone_int8_after_pruning": (f"{main}, compiled", f"{main}, int8", 1.1, "int8 (PT2E) makes the pruned CNN at "
                                    "least 1.1x faster than compiled fp32."),
    "capstone_ort_fp32": (f"{main}, compiled", f"{main}, ONNX Runtime", 1.1, "ONNX Runtime (fp32) runs the pruned CNN "
                          "at least 1.1x faster than torch.compile with freezing."),
    "capstone_ort_int8": (f"{main}, ONNX Runtime", f"{main}, ONNX Runtime int8", 1.1, "ONNX Runtime's static int8 "
                          "makes the pruned CNN at least 1.1x faster than ONNX Runtime fp32."),
}
for name, (without, with_, threshold, statement) in STEP_CLAIMS.items():
    claims.append(make_claim(8, name, statement, threshold=threshold, hardware=hw.cpu_label,
                             ratio=timing_ratio(timings[without], timings[with_])))


def step_in_rounds(without: str, with_: str) -> list[float]:
    """The speed-up of with_ over without in each round (their round medians)."""
    return [a / b for a, b in zip(timings[without].round_medians_s, timings[with_].round_medians_s)]


composition = paired_ratio(step_in_rounds(f"{main}, compiled", f"{main}, int8"),
                           step_in_rounds("compiled", "int8"), higher_is_better=True)
claims.append(make_claim(8, "capstone_int8_composition", "int8's step over compiled fp32 is at least 1.2x larger "
                         "on the unpruned CNN than after pruning.", threshold=1.2, ratio=composition,
                         hardware=hw.cpu_label))
claims_table(claims)[["measured", "low", "high", "threshold", "verdict"]].round(2)

# %% [markdown]
# What each verdict means here:

# %% tags=["nbval-ignore-output"]
int8_size_step = waterfall.loc[f"{main}, compiled", "size_KB"] / waterfall.loc[f"{main}, int8", "size_KB"]
STEP_READINGS = {
    "capstone_channels_last": dict(
        holds="oneDNN's convolutions read channels_last directly; in the default layout each call reorders its input.",
        does_not_hold="At these shapes the default layout's convolutions are as fast or faster: the layout is not "
                      "the cost."),
    "capstone_pruning": dict(
        holds="Fewer channels in each layer leave fewer multiply-adds: a convolution keeps about the square of the "
              "share of channels kept.",
        does_not_hold="At 16x16 with few channels left, fixed per-layer costs weigh more than the arithmetic "
                      "that pruning removed."),
    "capstone_compile": dict(
        holds="Inductor fuses each convolution with its batch norm and ReLU, and freezing packs the weights once.",
        does_not_hold="The compiled graph is as fast or slower: the eager model was already a chain of oneDNN calls "
                      "with little between them to fuse."),
    "capstone_int8_after_pruning": dict(
        holds="This CPU's int8 instructions do more multiply-adds per cycle, and enough of them are left after "
              "pruning.",
        does_not_hold="Section 2.7's profile shows why on this machine: what int8 still saves in the convolutions "
                      "after pruning, against what the rest of its graph adds. Its size step holds regardless: "
                      f"{int8_size_step:.1f}x fewer bytes."),
    "capstone_ort_fp32": dict(
        holds="A likely reading, not measured here: ONNX Runtime's own convolution kernels (MLAS) are faster than "
              "oneDNN's at these small shapes; section 2.7's profile puts most of the compiled call in its "
              "convolutions, and chapter 7's ONNX Runtime profiler would show ONNX Runtime's side. Chapter 7 measured "
              "the two on ResNet-18: a runtime's verdict depends on the model's shapes.",
        does_not_hold="The compiled graph is as fast here, or faster: a likely reading, not measured, is that both "
                      "runtimes spend the call in their convolution kernels."),
    "capstone_ort_int8": dict(
        holds="ONNX Runtime's int8 convolutions have enough arithmetic left to repay their quantize steps.",
        does_not_hold="A likely reading, not measured here (chapter 7's ONNX Runtime profiler would show it): "
                      "after pruning, the quantize and dequantize nodes around each convolution cost more than its "
                      "int8 arithmetic saves; chapter 7's int8 gain came from ResNet-18, which has far more "
                      "arithmetic per call."),
    "capstone_int8_composition": dict(
        holds="Measured in the same rounds: int8's step is larger on the unpruned network. Section 2.7's profile "
              "shows how much of that is the convolution time int8 can save, and how much the rest of its graph.",
        does_not_hold="Measured in the same rounds, int8's step after pruning is about as large as before, or "
                      "larger: on this CPU pruning does not take away what int8 speeds up."),
}
for claim in claims:
    display(report_claim(claim, **STEP_READINGS[claim.name]))

# %% [markdown]
# Now the chart. Bars float on a log axis from the level of the stage each one builds on to its
# own: blue when the step is faster, orange when it is slower; a grey tick, flat at its parent's
# level, when its interval includes 1 (its size may still pay: the size panel shows it); red (a
# hatched bar, or a red tick) when the stage, or
# a stage it builds on, is not shown to be within your budget, which takes it out of the plan. Why
# the stages built on such a stage go too: they inherit its weights, and if one of them measures
# within the budget anyway, that recovery rests on a handful of images (a compiled or int8 copy
# computes the same function with rounding), so it is not evidence that the damage was repaired.

# %% tags=["nbval-ignore-output"]
waterfall_figure = plot_waterfall(waterfall, ACCURACY_BUDGET_POINTS, hardware=hw.cpu_label)
waterfall_figure

# %% tags=["nbval-ignore-output"]
for name, row in waterfall[~waterfall["step_gain"].isin(("gain", "baseline"))].iterrows():
    print(f"step that did not gain, {name}: {flat_step_reason(row)}")

# %% [markdown]
# ### 2.6 The budget decides
# The budget, stage by stage. One image is 0.22 points of 449 validation images, and the paired
# interval of each change spans several images: a stage is in the budget only when its whole interval
# clears the line (or it computes its parent's function and changed no image's verdict), and "clear of
# the noise" says where the whole interval lies on one side of the line: the decision is not within
# this sample's noise (an interval that ends near the line can still flip on another sample).

# %% tags=["nbval-ignore-output"]
allowed, clear = within_budget(waterfall, ACCURACY_BUDGET_POINTS), budget_is_clear(waterfall, ACCURACY_BUDGET_POINTS)
pd.DataFrame({"change (points)": waterfall["accuracy_change_points"].round(2),
              "paired 95% interval": [f"{low:+.2f} to {high:+.2f}" for low, high in
                                      zip(waterfall["change_low_points"], waterfall["change_high_points"])],
              "parent's function, unchanged": waterfall["same_function"] & (waterfall["changed_from_parent"] == 0),
              "shown within the budget": allowed, "decision clear of the noise": clear,
              "step pays": step_pays(waterfall)})

# %% tags=["nbval-ignore-output"]
judged = waterfall.iloc[1:].loc[~waterfall["same_function"].iloc[1:]]
print(f"the smallest budget any stage that changes the arithmetic could be shown within here: "
      f"{-judged['change_low_points'].max():.2f} points (the highest lower end of their intervals); a smaller budget "
      "needs more validation images, not a better model")

# %% tags=["nbval-ignore-output"]
plan = deployment_plan(waterfall, ACCURACY_BUDGET_POINTS)
plan_row = waterfall.loc[plan]
print(f"plan within a {ACCURACY_BUDGET_POINTS:g}-point budget: '{plan}': {plan_row['total_speedup']:.2f}x faster "
      f"({plan_row['total_low']:.2f} to {plan_row['total_high']:.2f}x), {plan_row['size_reduction']:.1f}x smaller, "
      f"accuracy change {plan_row['accuracy_change_points']:+.2f} points ({plan_row['change_low_points']:+.2f} to "
      f"{plan_row['change_high_points']:+.2f}); deployment: {plan_row['constraint']}")
others = waterfall.loc[within_budget(waterfall, ACCURACY_BUDGET_POINTS) & step_pays(waterfall)].drop(index=plan)
if len(others):
    runner_up = others["total_speedup"].idxmax()
    print(f"runner-up: '{runner_up}'; the plan against it, same rounds: "
          f"{timing_ratio(timings[runner_up], timings[plan])}")

# %% [markdown]
# The plan is the fastest candidate *in these rounds*, so its own ratio is a little optimistic (a
# winner picked from noisy numbers tends to be one that was lucky); the comparison with the runner-up,
# from the same rounds, says by how much it won, and whether the two can be told apart at all.
#
# The rule is three short functions, worth reading because the plan is only as good as the rule:

# %% tags=["nbval-ignore-output"]
show_source(within_budget)

# %% tags=["nbval-ignore-output"]
show_source(step_pays)

# %% tags=["nbval-ignore-output"]
show_source(deployment_plan)

# %% [markdown]
# Move the budget: the chart and the plan are re-drawn from the numbers measured above, without
# re-running anything. Try 0 points (only the baseline and the
# steps that compute their parent's function), 1, and 6.

# %% tags=["nbval-ignore-output"]
def budget_report(budget_points: float) -> object:
    """The waterfall and the plan for an accuracy budget, from this run's measurements."""
    chosen = deployment_plan(waterfall, budget_points)
    row = waterfall.loc[chosen]
    print(f"budget {budget_points:g} points -> plan '{chosen}': {row['total_speedup']:.2f}x faster, "
          f"{row['size_reduction']:.1f}x smaller, accuracy change {row['accuracy_change_points']:+.2f} points")
    return plot_waterfall(waterfall, budget_points, hardware=hw.cpu_label)


budget_slider = widgets.FloatSlider(value=ACCURACY_BUDGET_POINTS, min=0.0, max=6.0, step=0.25,
                                    description="budget (pts)")
live_control(budget_report, budget_points=budget_slider)

# %% [markdown]
# Which budgets change the plan on this run:

# %% tags=["nbval-ignore-output"]
BUDGETS = np.arange(0.0, 6.01, 0.25)
sweep = pd.Series({budget: deployment_plan(waterfall, budget) for budget in BUDGETS})
for plan_name, budgets in sweep.groupby(sweep, sort=False):
    print(f"budgets {budgets.index.min():g} to {budgets.index.max():g} points: plan '{plan_name}'")
print(f"{sweep.nunique()} different plans over budgets 0 to 6 points" if sweep.nunique() > 1 else
      "On this run the budget never changes the plan: every stage's interval is on the same side of every budget.")

# %% [markdown]
# ### 2.7 What each step is worth: alone, and left out
# A waterfall credits each step with what it added *in this order*: its bars are marginal values, and
# another order would share the credit differently. Two more readings from the same rounds say how
# much the order matters: each technique **alone** (against eager fp32 in the default layout), and
# each technique **left out** of the full main line (the full line against the line without it).
# Predict first: is the layout still worth anything once the compiler chooses the layouts?

# %% tags=["nbval-ignore-output"]
full = f"{main}, int8"
credit = ratio_table(timings, {
    "layout, alone": ("fp32 eager", "channels_last"),
    "pruning, alone": ("fp32 eager", "ablation: pruned, default layout"),
    "compile, alone": ("fp32 eager", "ablation: compiled, default layout"),
    "int8, over compile (unpruned)": ("compiled", "int8"),
    "layout, left out": ("ablation: pruned int8, default layout", full),
    "layout, left out of the compiled line": ("ablation: compiled, default layout", "compiled"),
    "pruning, left out": ("int8", full),
    "pruning, left out of the compiled line": ("compiled", f"{main}, compiled"),
    "compile (and int8, which needs it), left out": (main, full),
    "int8, left out": (f"{main}, compiled", full),
})
credit.replace({"reading": {"no gain": "inconclusive"}}).round(2)

# %% tags=["nbval-ignore-output"]
for technique in ("layout", "pruning"):
    alone, left_out = credit.loc[f"{technique}, alone"], credit.loc[f"{technique}, left out"]
    print(f"{technique}: alone {alone['speedup']:.2f}x ({alone['low']:.2f} to {alone['high']:.2f}, "
          f"{alone['reading'].replace('no gain', 'inconclusive')}); "
          f"once the rest of the line is there {left_out['speedup']:.2f}x ({left_out['low']:.2f} to "
          f"{left_out['high']:.2f}, {left_out['reading'].replace('no gain', 'inconclusive')})")

# %% [markdown]
# Read the pairs: where a technique's "alone" gain is large and its "left out" interval lies close
# around 1 (within 0.9 to 1.1, say), the rest of the line already captures what it did (the compiler
# chooses its own layouts, for example), and the waterfall's bar for it describes eager mode only;
# where the "left out" interval merely includes 1, the rest of the line may or may not capture it,
# and only more rounds can tell. Where both hold, it earns its keep in both positions measured here.
# Only the intervals license such a reading: two medians whose intervals
# overlap do not rank.
#
# **Where int8's step goes, unpruned and pruned: the profiler's evidence.** Where does a call of the compiled
# fp32 and the int8 network go, unpruned and pruned? Self CPU time per call, by kind of operator
# (chapter 7's method; three interleaved profiles of 20 calls each, the median kept):

# %% tags=["nbval-ignore-output"]
operator_time = time_by_operator_kind({"fp32, unpruned": lambda: compiled_full(example),
                                       "int8, unpruned": lambda: int8_full(example),
                                       "fp32, pruned": lambda: compiled_pruned(example),
                                       "int8, pruned": lambda: int8_pruned(example)})
operator_time.round(3)

# %% tags=["nbval-ignore-output"]
for network in ("unpruned", "pruned"):
    change = operator_time[f"int8, {network}"] - operator_time[f"fp32, {network}"]
    saved, rest = -change.iloc[0], change.iloc[1:-1]
    print(f"{network}: int8 saves {saved:.3f} ms of convolution time per call and changes the rest by "
          f"{rest.sum():+.3f} ms (most in {rest.idxmax() if rest.max() > 0 else 'none'}: {rest.max():+.3f} ms); "
          f"net {saved - rest.sum():+.3f} ms per call")

# %% [markdown]
# Read the two lines: int8 can only save time in the convolutions (its kernels do more multiply-adds
# per instruction), and whatever else its graph does differently (pooling on quantized tensors as a
# kernel of its own, the generated code that quantizes and requantizes between layers) is a cost or a
# saving on top. Pruning shrinks the convolution time that int8 can save; whether the rest shrinks
# with it is this machine's answer above, and where the net is near zero or negative, int8's step
# cannot pay. Each column is the median of three interleaved profiles of 20 calls, with the
# profiler's own overhead in it: it explains the timed rounds above, it does not replace them. Take
# it before adding int8 to any compressed model. Two cautions: the fp32 columns show 0 in the pooling
# row because Inductor fuses their pooling into its generated code (the int8 graph calls a pooling
# kernel of its own), and a profile's net can even disagree in sign with the timed rounds, which are
# the measurement.
#
# One number this profile does not explain: the int8 graph's pooling on quantized tensors, which can
# cost more on the pruned network's narrower tensors than on the wider ones (compare the pooling row
# of the two int8 columns). A guess, not a finding: channel counts that fill the CPU's vectors badly leave the
# kernel's fast path. `profile(record_shapes=True)` and chapter 7's tables are how to check it.
#
# ### 2.8 The test set, once
# The plan is fixed: now the test images, for the first time, for every stage. The validation images
# were used twice (to pick the recovery carried on and to judge every stage against the budget), so
# their verdicts carry a little selection; the test set is the honest confirmation. A stage may land
# a little differently here; what matters is whether the plan's change still clears the budget line.


# %% tags=["nbval-ignore-output"]
test_rows = {}
baseline_test = correct_flags(baseline, x_test, y_test, BATCH)
for spec in specs:
    flags = correct_flags(spec.model, x_test, y_test, BATCH)
    accuracy = flags.float().mean().item()
    change, low, high = paired_change_points(baseline_test, flags)
    test_rows[spec.name] = {"test accuracy (%)": 100 * accuracy,
                            "Wilson 95%": "{:.1f} to {:.1f}".format(*(100 * v for v in wilson_interval(accuracy,
                                                                                                 len(flags)))),
                            "change (points)": change, "paired 95% interval": f"{low:+.2f} to {high:+.2f}",
                            "validation change": waterfall.loc[spec.name, "accuracy_change_points"]}
test_table = pd.DataFrame.from_dict(test_rows, orient="index")
test_table.round(2)

# %% tags=["nbval-ignore-output"]
plan_test_low = paired_change_points(baseline_test, correct_flags(specs[[s.name for s in specs].index(plan)].model,
                                                                  x_test, y_test, BATCH))[1]
print(f"the plan '{plan}' on the test set: {test_table.loc[plan, 'change (points)']:+.2f} points "
      f"({test_table.loc[plan, 'paired 95% interval']}); "
      + ("still shown within the budget." if plan_test_low >= -ACCURACY_BUDGET_POINTS else
         "not shown within the budget on the test images: the validation decision did not carry over, a sign that "
         "the budget is too tight for this many images (see the summary's checklist on sample size)."))

# %% [markdown]
# The compiled graphs, int8 models and ONNX Runtime sessions have done their work (Exercise 1 keeps
# the pruned network compiled for batch 64 and compiles its own for batch 8): they go, and what they
# held goes back to the system before the data
# pipeline starts its worker processes (chapter 7).

# %% tags=["nbval-ignore-output"]
del specs, ablation_calls, compiled_full, int8_full, int8_pruned, compiled_aggressive, compiled_default
del int8_pruned_default, ort_fp32, ort_int8, transfer
print(f"returned {release_freed_memory() / 2**20:.0f} MB to the system")

# %% [markdown]
# ### 2.9 The data pipeline: training throughput
# The last technique does not touch the model: it feeds training faster. The pruned network is
# trained from JPEG files on disk (decoded, turned grey and resized to 16x16 for every item, as an
# image pipeline does), with 0 and with 2 DataLoader workers, and from a cache that holds the
# preprocessed images in memory (chapter 4). With workers, the training step gets the threads the
# two workers leave, and at least one: on a machine with two logical CPUs that is one thread sharing
# them with both workers. Alternating rounds, 16 batches each, the workers' head start off the clock:

# %% tags=["nbval-ignore-output"]
jpeg_root, _ = write_digit_images(size=32, copies=1)
files = image_folder(jpeg_root, transform=v2.Compose([v2.Grayscale(), v2.Resize(16)]))
cache = DecodedCache(torch.stack([files[index][0] for index in range(len(files))]), torch.tensor(files.targets))
pipelines = {"JPEG files, 0 workers": make_loader(files), "JPEG files, 2 workers": make_loader(files, num_workers=2),
             "decoded cache, 0 workers": make_loader(cache)}
training_rates = measure_training(pipelines, copy.deepcopy(pruned), rounds=5, max_batches=16,
                                  num_threads={"JPEG files, 2 workers": max(1, torch.get_num_threads() - 2)})
pipeline_medians = {name: statistics.median(rates) for name, rates in training_rates.items()}
pd.Series(pipeline_medians, name="training images/s").round(0).to_frame()

# %% tags=["nbval-ignore-output"]
workers_ratio, cache_ratio = (paired_ratio(training_rates["JPEG files, 0 workers"], training_rates[name],
                                           higher_is_better=True)
                              for name in ("JPEG files, 2 workers", "decoded cache, 0 workers"))
claims.append(make_claim(8, "capstone_cache", "A decoded in-memory cache makes training the pruned CNN at least "
                         "1.5x faster than decoding JPEG files each epoch.", threshold=1.5, ratio=cache_ratio,
                         hardware=hw.cpu_label))
claims.append(make_claim(8, "capstone_workers", "Two DataLoader workers (training on the threads they leave, at least "
                         "one) make training the pruned CNN from JPEG files at least 1.2x faster.", threshold=1.2,
                         ratio=workers_ratio, hardware=hw.cpu_label))
training_threads = max(1, torch.get_num_threads() - 2)
display(report_claim(claims[-2], holds="Decoding each JPEG costs more than the training step of this small network: "
                                       "the cache removes that work from every epoch.",
                     does_not_hold="The training step dominates here, so removing the decoding saves little."))
display(report_claim(claims[-1], holds=f"The two workers decode while the main process trains on {training_threads} "
                                       f"thread(s); on {hw.cpu_cores} logical CPUs the three share the cores, and the "
                                       "decoding still overlaps the training.",
                     does_not_hold=f"With {hw.cpu_cores} logical CPUs the workers and the training step share the "
                                   "same cores, and each batch pays the crossing between processes (chapter 4)."))

# %% [markdown]
# Chapter 4 gave its workers the training step's threads as well; here the training step gets what
# the workers leave. Where this result shows a gain, your decision guide below cites it beside
# chapter 4's.
#
# The whole waterfall with the data pipeline beside it (the chart the book shows for this chapter):

# %% tags=["nbval-ignore-output"]
pipeline_ratios = {"JPEG files, 0 workers": ("baseline", 1.0), "JPEG files, 2 workers": (workers_ratio.gain,
                   workers_ratio.median), "decoded cache, 0 workers": (cache_ratio.gain, cache_ratio.median)}
plot_waterfall(waterfall, ACCURACY_BUDGET_POINTS, hardware=hw.cpu_label,
               training={name: (rate, *pipeline_ratios[name]) for name, rate in pipeline_medians.items()})

# %% tags=["nbval-ignore-output"]
del pipelines, cache
print(f"returned {release_freed_memory() / 2**20:.0f} MB to the system")

# %% [markdown]
# ## 3. Exercises: measure, then decide
# **Exercise 1 (measure a deployment the capstone did not).** Your service receives batches of 8,
# not 64. Does compiling still pay on the pruned network there? Predict first: is the gain larger or
# smaller than at batch 64, and why? Then compile a copy for batch 8 (`compile_for_inference`: a
# compiled graph serves one shape), time eager and compiled at batch 8 in interleaved rounds with
# `measure_interleaved` (name them `"eager"` and `"compiled"`, at least 5 rounds), with the batch-64
# pair (`carried` and `compiled_pruned` on `example`, named `"eager, 64"` and `"compiled, 64"`) in the
# same rounds, so that the two gains can be
# compared at all; then answer with the verdict of the claim
# "compiling makes the pruned network at least 1.2x faster at batch 8": `"holds"`,
# `"does not hold here"` or `"inconclusive"`. The check reads your own timings, and checks that the
# batch-8 calls take less time than the batch-64 ones.

# %%
small_batch = x_val[:8]
my_timings = ...  # measure_interleaved({"eager": ..., "compiled": ..., "eager, 64": ..., "compiled, 64": ...}, ...)
my_verdict = ...  # "holds", "does not hold here" or "inconclusive"

# %%
check_measured_verdict("Exercise 1", my_verdict, my_timings, baseline="eager", candidate="compiled", threshold=1.2,
                       also_timed=("eager, 64", "compiled, 64"), smaller_calls=(("eager", "eager, 64"),
                                                                                ("compiled", "compiled, 64")))

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution", "nbval-ignore-output"]
# A smaller batch leaves less arithmetic per call, so the fixed cost per call that compiling removes (Python,
# dispatch, one kernel per layer) is a larger share of it: the usual expectation is a larger gain.
# The batch-64 pair
# is timed in the same rounds, so that the two steps can be compared (the waterfall's is another measurement).
compiled_small, _ = compile_for_inference(copy.deepcopy(carried), small_batch)
with torch.no_grad():
    my_timings = measure_interleaved({"eager": lambda: carried(small_batch),
                                      "compiled": lambda: compiled_small(small_batch),
                                      "eager, 64": lambda: carried(example),
                                      "compiled, 64": lambda: compiled_pruned(example)}, rounds=8, min_run_time=0.2)
batch8 = timing_ratio(my_timings["eager"], my_timings["compiled"])
my_verdict = "holds" if batch8.low >= 1.2 else "does not hold here" if batch8.high < 1.2 else "inconclusive"


def step_per_round(without: str, with_: str) -> list[float]:
    """The speed-up of with_ over without in each round of my_timings."""
    return [a / b for a, b in zip(my_timings[without].round_medians_s, my_timings[with_].round_medians_s)]


larger_at_8 = paired_ratio(step_per_round("eager, 64", "compiled, 64"), step_per_round("eager", "compiled"),
                           higher_is_better=True)
batch64 = timing_ratio(my_timings["eager, 64"], my_timings["compiled, 64"])
print(f"compiled against eager at batch 8: {batch8}; at batch 64: {batch64}")
reading = {"gain": "larger at batch 8", "loss": "smaller at batch 8"}.get(larger_at_8.gain,
                                                                          "not told apart by these rounds")
print(f"the step at 8 over the step at 64, round by round: {larger_at_8}: {reading}")
check_measured_verdict("Exercise 1", my_verdict, my_timings, baseline="eager", candidate="compiled", threshold=1.2,
                       also_timed=("eager, 64", "compiled, 64"), smaller_calls=(("eager", "eager, 64"),
                                                                                ("compiled", "compiled, 64")))

# %% [markdown]
# **Exercise 2 (what the interval rule buys).** A simpler rule, which an earlier edition of this
# chapter used, admits a stage on its *point estimate* (`accuracy_change_points >= -budget`, for it
# and its parents) and a step
# only when it was faster (`step_gain` of `"gain"`). Write that rule as a function of the waterfall
# table and a budget, and list the budgets in `BUDGETS` (0 to 6 points in steps of 0.25) where it
# picks a different plan than this chapter's `deployment_plan`. Before you compute: which kind of
# stage do you expect the old rule to let in?

# %%
my_disagreeing_budgets = ...  # a list of budgets, in the form [0.1, 0.2]; [] if the rules always agree

# %%
check_rule_disagreement("Exercise 2", my_disagreeing_budgets, waterfall, BUDGETS)

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution", "nbval-ignore-output"]
# The old rule lets in stages whose interval crosses the budget line (luck on a few images reads as "within
# budget"), and it drops a step that only made the model smaller. Which rule is right depends on the cost of a
# wrong "yes"; to keep more options open on a small validation set, collect more images rather than
# relax the rule.
def plan_on_point_estimates(table: pd.DataFrame, budget: float) -> str:
    """The old rule: in budget on the point estimate (with the parents), and a step only when faster."""
    keep = {}
    for stage, parent in table["builds_on"].items():
        keep[stage] = table.loc[stage, "accuracy_change_points"] >= -budget and keep.get(parent, True)
    keep = pd.Series(keep) & table["step_gain"].isin(["gain", "baseline"])
    return table.loc[keep, "total_speedup"].idxmax()


my_disagreeing_budgets = [b for b in BUDGETS if plan_on_point_estimates(waterfall, b) != deployment_plan(waterfall, b)]
check_rule_disagreement("Exercise 2", my_disagreeing_budgets, waterfall, BUDGETS)

# %% [markdown]
# **Exercise 3 (open: your own model).** `run_waterfall` takes `StageSpec`s for any model that maps a
# batch to logits. Take a model you care about, write its stages (baseline, layout, compiled, int8,
# or a pruned copy), a held-out set with labels, and a budget, and run it: which stage is your plan,
# and which of your decision guide's entries would you *not* trust for that model and hardware?

# %% tags=["nbval-ignore-output"]
show_source(run_waterfall)

# %% [markdown]
# ## 4. Your ledger and your decision guide
# Every chapter recorded its results into the ledger (`results/ledger.json`, or `$COURSE_LEDGER`).
# This chapter's results join them first, so that the guide can read them too: the plan against eager
# fp32 (a combination of techniques, marked as such), the plan's bytes, each step of the main line
# against the stage before it, int8 on the unpruned network against it compiled, ONNX Runtime
# against the compiled network and its int8 against its
# fp32, and the data pipeline's two claims.

# %% tags=["nbval-ignore-output"]
claim_named = {claim.name: claim for claim in claims}
entries = [
    make_entry(8, "capstone_plan_latency", metric=f"digits CNN latency, batch 64, plan '{plan}' (budget "
               f"{ACCURACY_BUDGET_POINTS:g} {'point' if ACCURACY_BUDGET_POINTS == 1 else 'points'})", unit="ms",
               baseline=timings["fp32 eager"].round_median_ms,
               optimized=timings[plan].round_median_ms, higher_is_better=False, hardware=hw.cpu_label,
               ratio=timing_ratio(timings["fp32 eager"], timings[plan]), compared_with="eager fp32, same rounds",
               combination=True, extras={"plan": plan, "budget_points": ACCURACY_BUDGET_POINTS,
                                         "carried": carried_how, "prune_fraction": PRUNE_FRACTION,
                                         "validation_change_points": float(plan_row["accuracy_change_points"]),
                                         "test_change_points": float(test_table.loc[plan, "change (points)"])}),
    make_entry(8, "capstone_plan_size", metric=f"digits CNN bytes, plan '{plan}'", unit="KB",
               baseline=waterfall.loc["fp32 eager", "size_KB"], optimized=plan_row["size_KB"],
               higher_is_better=False, hardware=hw.cpu_label, compared_with="fp32 state dict", combination=True),
    make_entry(8, "capstone_int8_after_pruning", metric="pruned digits CNN latency, batch 64", unit="ms",
               baseline=timings[f"{main}, compiled"].round_median_ms, optimized=timings[full].round_median_ms,
               higher_is_better=False, hardware=hw.cpu_label, claim=claim_named["capstone_int8_after_pruning"],
               compared_with="the pruned CNN compiled with freezing, same rounds",
               extras={"size_ratio": float(int8_size_step), "unpruned_step": credit.loc["int8, over compile "
                                                                                         "(unpruned)", "speedup"]}),
]
BASELINE_WORDS = {"fp32 eager": "eager fp32", "channels_last": "eager fp32 in channels_last",
                  main: "the pruned CNN, eager", f"{main}, compiled": "the pruned CNN compiled with freezing",
                  f"{main}, ONNX Runtime": "ONNX Runtime fp32"}
entries.append(make_entry(8, "capstone_int8_unpruned", metric="digits CNN latency, batch 64", unit="ms",
                          baseline=timings["compiled"].round_median_ms, optimized=timings["int8"].round_median_ms,
                          higher_is_better=False, hardware=hw.cpu_label, ratio=timing_ratio(timings["compiled"],
                                                                                            timings["int8"]),
                          compared_with="the unpruned CNN compiled with freezing, same rounds"))
STEP_ENTRIES = ("capstone_channels_last", "capstone_pruning", "capstone_compile", "capstone_ort_fp32",
                "capstone_ort_int8")
for name in STEP_ENTRIES:
    without, with_, _, _ = STEP_CLAIMS[name]
    entries.append(make_entry(8, name, metric="digits CNN latency, batch 64", unit="ms",
                              baseline=timings[without].round_median_ms, optimized=timings[with_].round_median_ms,
                              higher_is_better=False, hardware=hw.cpu_label, claim=claim_named[name],
                              compared_with=f"{BASELINE_WORDS[without]}, same rounds"))
for name, technique in (("capstone_workers", "JPEG files, 2 workers"), ("capstone_cache", "decoded cache, 0 workers")):
    entries.append(make_entry(8, name, metric=f"training images/s, pruned CNN, '{technique}'", unit="images/s",
                              baseline=pipeline_medians["JPEG files, 0 workers"], optimized=pipeline_medians[technique],
                              higher_is_better=True, hardware=hw.cpu_label, claim=claim_named[name],
                              compared_with="JPEG files, 0 workers, same rounds"))
everything = [entry for entry in load_ledger() if entry["chapter"] != 8] + [asdict(entry) for entry in entries]
here = [entry for entry in everything if entry["hardware"] in (hw.cpu_label, hw.gpu_name)]
missing = chapters_missing(here, [number for number in COURSE_NOTEBOOKS if number < 8])
print(f"{len(here)} results from this machine; {len(everything) - len(here)} from other hardware left out")
if missing:
    print(f"not in the ledger yet: chapter{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))}. "
          "Run each (open it and run all cells, or `make execute NB=notebooks/<chapter>.ipynb`), then re-run this "
          "section.")

# %% [markdown]
# **On Colab or Binder** each session is a fresh machine: the ledger of a chapter run elsewhere is not
# here. Either point every chapter at one file that survives the session (on Colab, mount Drive and
# set `%env COURSE_LEDGER=/content/drive/MyDrive/ledger.json` in chapter 1 and in each chapter after
# it), or download `results/ledger.json` after each chapter and upload it here before this section.
# A different virtual machine may have a different CPU: its results carry another hardware label and
# are counted apart above, as they should be.
#
# Your machine's time ratios measured in rounds, each with its interval (the table, with exact ratios
# and accuracy results too, is collapsed under the chart):

# %% tags=["nbval-ignore-output"]
ledger_view = ledger_table(sorted(here, key=lambda entry: entry["chapter"]))
plot_ledger(ledger_view, hardware=hw.cpu_label) if here else print("The ledger is empty: nothing to plot yet.")

# %% jupyter={"outputs_hidden": true} tags=["nbval-ignore-output"]
ledger_view[["metric", "compared_with", "speedup", "speedup_low", "speedup_high", "gain", "verdict"]].round(2)

# %% [markdown]
# ### 4.1 Your decision guide
# Written from the ledger, from the results this machine measured. It compares like with like: a
# ratio is ranked only against ratios of the same kind with the same baseline, a combination of
# techniques is never ranked against single ones, and "try first" goes to the cheapest and safest
# technique that gained. Inconclusive results stay inconclusive (measure more rounds), and a reason is
# given only where a chapter measured one.

# %% tags=["nbval-ignore-output"]
decision_guide(everything, hw)

# %% jupyter={"outputs_hidden": true} tags=["nbval-ignore-output"]
guide = guide_table(everything, hw)
guide

# %% [markdown]
# ## 5. Conclusion and outlook
# ### 5.1 The article's conclusion, measured
# The article's conclusion makes two claims and ends with a call to keep up with new tools and
# methods, which the outlook below answers. First, that deep-learning performance is a problem of many
# dimensions and many fields: from the design of the model's structure to the use of the hardware,
# from data processing to distributed computing, any of these stages can become the bottleneck.
# Second, that sensible design and optimization can raise training and inference efficiency a great
# deal while keeping the model's accuracy.
#
# The first claim is about *limits*, so its evidence is where a chapter found the limiting stage, not
# the best gain in each area (a best-of list shows only gains, and cannot show that anything limited
# anything). Each row: the area, the chapter's measurement that located the limit, and its verdict on
# this machine:

# %% tags=["nbval-ignore-output"]
LIMITS = [  # (the article's area, technique, what a gain shows was limiting, what a loss shows)
    ("hardware utilisation", "torch_compile", "the overhead between kernels: fusing them gained",
     "not the overhead between kernels"),
    ("data processing", "memory_cache", "decoding: training waited for the loader until the cache removed it",
     "not the loader: the training step"),
    ("distributed computing", "ddp_two_processes", "the one process: a second one trained faster despite communicating",
     "communication and shared cores: a second process made training slower"),
    ("finding it (chapter 7)", "profiler_fix", "what the profile pointed at: fixing it gained",
     "the profile's suspect was not the limit"),
]


def limit_row(area: str, measurement: str, result: str, reading: str, if_gain: str, otherwise: str) -> dict:
    """One row of the table: the area, what measured it, the result and its reading, and what that says."""
    gained, lost = reading.startswith(("paid", "gained")), reading == "did not pay"
    verdict = if_gain if gained else otherwise if lost else f"open: {reading}"
    return {"area": area, "measurement": measurement, "result here": f"{result}, {reading}",
            "so the limit was": verdict}


pruning = credit.loc["pruning, alone"]
rows = [limit_row("model structure", "pruning alone (this chapter, section 2.7)",
                  f"{pruning['speedup']:.2f}x ({pruning['low']:.2f} to {pruning['high']:.2f}x)",
                  {"gain": "gained, no claim", "loss": "did not pay"}.get(pruning["reading"], "inconclusive"),
                  "the convolutions' arithmetic: fewer channels, faster calls", "fixed costs per layer")]
by_technique = {entry["technique"]: entry for entry in here}
for area, technique, if_gain, otherwise in LIMITS:
    entry = by_technique.get(technique)
    rows.append(limit_row(area, f"{technique} (chapter {entry['chapter']})", ratio_text(entry), guide_reading(entry),
                          if_gain, otherwise) if entry else
                {"area": area, "measurement": technique, "result here": "not measured here yet",
                 "so the limit was": ""})
pd.DataFrame(rows).set_index("area")

# %% tags=["nbval-ignore-output"]
readings = guide["reading"].value_counts() if len(guide) else pd.Series(dtype=int)
print(f"Of this machine's {len(guide)} results: " + ", ".join(f"{count} {reading}" for reading, count in
                                                            readings.items()) + ".")
print(f"Second claim, measured here: within a {ACCURACY_BUDGET_POINTS:g}-point budget the capstone's plan ('{plan}') "
      f"is {plan_row['total_speedup']:.2f}x faster ({plan_row['total_low']:.2f} to {plan_row['total_high']:.2f}x) "
      f"and {plan_row['size_reduction']:.1f}x smaller than eager fp32, with a test-set change of "
      f"{test_table.loc[plan, 'change (points)']:+.2f} points ({test_table.loc[plan, 'paired 95% interval']}).")

# %% [markdown]
# **What the article got wrong here.** Its conclusion promises large gains without conditions. The
# course measured the conditions: whether a technique pays depends on the CPU's instructions, its
# cores, the model's size and what the other techniques already did (section 2.7); "keeping
# accuracy" is a budget you set and *show* with an interval on held-out data, not a given; and a gain
# counted by construction (bf16 halves the bytes) is arithmetic, not a measurement, which is why the
# count above leaves such results apart as "accounted".
#
# ### 5.2 The appendix's tools, revisited
# The article's appendix recommends five tools without versions or dates. Their state today (the
# versions installed in this kernel, read from each package's metadata):

# %% tags=["nbval-ignore-output"]
pd.DataFrame([
    {"tool": "PyTorch", "chapters": "all", "today": f"{installed_version('torch')}; quantization moved to torchao, "
     "torch.ao.quantization deprecated"},
    {"tool": "TensorRT", "chapters": "7", "today": "bindings installed here: "
     f"{installed_version('tensorrt-cu13-bindings')}; TensorRT 11 is strongly typed only (precision comes from the "
     "model); build_engine and execute_async_v2 removed in 10"},
    {"tool": "Horovod", "chapters": "5 (replaced)", "today": "last release 0.28.1 (June 2023, PyPI); torchrun with "
     "DDP and FSDP2 is PyTorch's own path"},
    {"tool": "ONNX", "chapters": "7, 8", "today": f"{installed_version('onnx')}; the dynamo exporter "
     f"(torch.export) writes opset {opset}; run by ONNX Runtime"},
    {"tool": "Keras", "chapters": "none", "today": "Keras 3 (3.15.1 on PyPI, checked December 2026), "
     "multi-backend: post-training quantization with model.quantize(mode) (int8, float8, int4, GPTQ, AWQ); no "
     "pruning API (TF-MOT's pruning needs tf_keras, Keras 2: tensorflow/model-optimization#1119)"},
]).set_index("tool")

# %% [markdown]
# The course's own instruments, which the article does not name: `torch.utils.benchmark` with
# interleaved rounds and intervals (every chapter), `torch.profiler` (chapters 7 and 8), and
# `torch.compile`, torchao, Torch-Pruning, ONNX Runtime and torchrun with DDP and FSDP2 as the
# engines. **What the article got wrong here:** its quantization code (section 6.2.1) uses
# `torch.quantization`, now deprecated, "TensorRT" points at a Python API that lost `build_engine`
# and its precision
# flags, Horovod has had no release since June 2023, and Keras's pruning does not exist for Keras 3.
# A list of tools needs versions and a date, as the one above and the outlook below have.
#
# ### 5.3 Outlook (December 2026)
# Where the field is moving, the chapter each trend extends, and what from this CNN-on-a-CPU course
# carries over. Versions were checked on PyPI and in the projects' own notes in December 2026.
#
# | trend | extends | what carries over |
# |---|---|---|
# | **Lower precision.** fp8 is routine for training and serving on Hopper and Blackwell GPUs; block-scaled formats (MXFP8, MXFP4, NVFP4) arrive on Blackwell (torchao 0.18 adds NVFP4 training for linear layers as a prototype); on x86 servers, AMX runs bf16 and int8 | chapters 3, 6 | measure a precision's step against the *compiled* higher-precision baseline, check accuracy with a paired interval, and expect the gain to depend on the instructions, as int8 did here |
# | **Serving language models.** Decoding one token at a time reads every weight per token: memory-bound, the opposite of this chapter's batch-64 CNN. Weight-only int4/int8, a paged KV cache, continuous batching and speculative decoding are the tools (vLLM 0.34 and SGLang 0.5 on PyPI; on CPUs, llama.cpp with GGUF weights); the metrics are time to first token, time per output token and p99 under load | chapters 1, 6 | the roofline (bytes against FLOPs per token), percentiles instead of means, and the rule that a technique's verdict depends on the regime: on the course's reference machine, weight-only int8 paid at batch 1 in chapter 6 and did not at large batches |
# | **Compile and export as the default path.** `torch.compile` for Python serving, `torch.export` with AOTInductor for a packaged model, ExecuTorch for phones and boards (1.5 on PyPI); TorchServe has been in limited maintenance since 2025 (its repository archived in August 2025): serving moves to vLLM, SGLang, Triton Inference Server or KServe | chapters 3, 7 | count the first call's compile time and the shape constraints as part of the plan (this chapter's constraint column), and re-measure on the deployment target |
# | **Custom kernels.** Triton, FlexAttention and the CUTLASS/CuTe DSLs make a fused kernel a few dozen lines | chapters 3, 7 | profile first: a kernel pays only where the profile shows time that fusion can remove (section 2.7) |
# | **Sparsity and structured pruning on hardware that uses it.** 2:4 sparse tensor cores, and pruning of attention heads and MLP width in transformers | chapters 2, 6 | pruning pays in time only where the arithmetic was the limit (sections 2.5 and 2.7), and its accuracy must be shown, not assumed |
# | **Distributed training on DTensor.** FSDP2 with tensor, context, pipeline and expert parallelism composed on a device mesh (torchtitan 0.3) | chapter 5 | the α-β cost model, overlap observed rather than assumed, and restarts tested by killing a rank |
# | **Cost and energy per request.** The metric moves from milliseconds to dollars and joules per 1,000 requests at a p99 target | chapters 1, 8 | the same interleaved rounds, with a power reading beside the time |
#
# The newest PyTorch on PyPI when this was written was 2.15.0; the course pins 2.14.1. Re-running the
# course on a newer release is the cheapest way to see which of your verdicts still hold.
#
# Appendix A, after this chapter, measures the second row of the table on this machine: prefill
# and decode on the roofline, the KV cache, attention kernels, weight-only quantization and batching
# on a small language model. Its results join your ledger as a group of their own ("generation").
#
# ## 6. Summary
# This chapter's results, recorded into the ledger with its claims:

# %% tags=["nbval-ignore-output"]
record_chapter(8, entries, claims)
ledger_table(entries)[["metric", "compared_with", "baseline", "optimized", "speedup", "speedup_low", "speedup_high",
                       "gain", "verdict", "combination"]].round(3)

# %% [markdown]
# **A method you can take to your own model.**
# 1. Profile first (chapter 7): find the stage that limits (data, arithmetic, overhead, communication).
# 2. Pick the technique that attacks that cost, and its *fair* baseline (int8 against compiled fp32).
# 3. Measure in interleaved rounds, with warm-up and synchronisation; read the interval, not the median.
# 4. Decide on a validation split with a non-inferiority rule; how many images you need follows from the
#    budget: on about 450 images the paired interval is about ±1 point even when nothing changes, so a
#    0.5-point budget needs more (section 2.6 printed the smallest budget this run could show).
# 5. Write down the constraints (batch sizes, first-call compile, runtime) and the one-off costs; a
#    real plan also puts p99 latency under load (chapter 1) and peak memory (chapter 7) beside the
#    median this capstone reports.
# 6. Report once on the test set, and re-measure on the deployment hardware.
# 7. Keep the gain: turn the claims your plan relies on into a check that runs on the deployment
#    hardware after every change. `make claims` prints every chapter's verdicts; it exits 1 when any
#    claim does not hold, and some of the course's claims are expected not to hold on a small CPU, so
#    a CI job should check the claims you chose, not all of them.
#
# `run_waterfall` (section 3, Exercise 3) runs steps 3 to 5 on any model that maps a batch to logits.
#
# **Take-aways**
# 1. A waterfall credits each step with what it added *in that order*. Section 2.7 measured each step
#    alone and left out in the same rounds: a technique can pay alone and not be shown to add anything
#    once the rest of the line is there. Compare ratios only when they were measured in the same rounds.
# 2. A plan is the fastest stage that is *shown* to be within an accuracy budget you set (the lower end
#    of a paired interval on validation images) and whose step buys speed or size; the test set is
#    touched once, after the plan is fixed.
# 3. Your decision guide is your machine's: it ranks like with like, and the same ledger on another CPU
#    or a GPU says something else. Re-measure on the hardware you deploy to: on a language model's
#    decoding, memory-bound where this CNN was not, several of this course's verdicts turn around.
