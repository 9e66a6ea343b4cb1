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
# # Chapter 8 — Conclusion and capstone: one model through every technique, your decision guide, the class report
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dl-perf-course/dl-performance-workbook/blob/main/notebooks/ch08_capstone.ipynb) [![Launch Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/dl-perf-course/dl-performance-workbook/main?labpath=notebooks/ch08_capstone.ipynb)
#
# Seven chapters measured one technique at a time. A deployment uses several at once, and they
# interact: pruning leaves less work for int8 to speed up, compilation is what makes int8 fast,
# and every step may cost accuracy. This chapter takes one network through the course's
# techniques in order, measures every stage in this run (latency with its interval, size, accuracy
# with its interval, training throughput for the data pipeline) and draws the result as a
# waterfall against an accuracy budget that you set. Then it reads the ledger that chapters 1 to 7
# wrote on this machine into a decision guide, revisits the article's conclusion and its table of
# tools, and ends with deployment exercises and, for instructors, the class report.
#
# **Estimated time:** ~45 min · **Hardware:** Any CPU; reads the ledger that chapters 1 to 7 wrote on this machine

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
import json
import statistics
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import onnx
import pandas as pd
import torch
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from torchvision.transforms import v2

from helpers.core.accuracy import paired_prediction_change
from helpers.core.claims import claims_table, make_claim, paired_ratio, report_claim, timing_ratio
from helpers.core.cost import count_parameters, serialized_size_bytes
from helpers.core.measure import measure_interleaved
from helpers.core.memory import release_freed_memory
from helpers.workload.data import load_digits_split, tensor_loader
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
from helpers.ch06_compression.quantize import (
    int8_reduce_range_needed, predict_in_fixed_batches, static_int8,
)
from helpers.ch07_tools.onnx_runtime import CalibrationBatches, model_files, ort_predict, ort_session
from helpers.ch08_capstone.class_report import (
    class_figure, class_report_html, class_table, read_class, reference_ledgers,
)
from helpers.ch08_capstone.decision_guide import decision_guide, measured_on, ratio_text, sure_gain
from helpers.ch08_capstone.exercises import check_latency_plan, check_plan_without
from helpers.ch08_capstone.plots import plot_ledger, plot_waterfall
from helpers.ch08_capstone.versions import installed_version
from helpers.ch08_capstone.waterfall import (
    PAYS, Stage, budget_is_clear, deployment_plan, flat_step_reason, plan_candidates, waterfall_table, within_budget,
)

hw = setup_chapter(8)
claims = []  # this chapter's speed claims, judged on this machine; recorded in the summary
WORK = Path("ch08_files")  # the ONNX models this chapter writes
WORK.mkdir(exist_ok=True)
BATCH = 64  # every latency in the waterfall is one call on a batch of 64 digits

# %% [markdown]
# ## 1. Why the order matters, and the accuracy budget
# Each technique attacks one cost (chapter 6's table), and they compose in a natural order:
#
# | stage | technique (chapter) | what it changes | can it cost accuracy? |
# |---|---|---|---|
# | 1 | `channels_last` layout (3) | how activations sit in memory | no: same arithmetic |
# | 2 | BN-aware channel pruning + fine-tuning (2) | half the channels of every convolution | yes |
# | 3 | distillation into the pruned network (6) | the pruned network's weights, trained from the teacher | it is meant to win some back |
# | 4 | `torch.compile` with freezing (3) | fused kernels, weights as constants | no (float rounding only) |
# | 5 | int8: PT2E + freezing, or ONNX Runtime QDQ (6, 7) | 8-bit weights and activations | yes (rounding) |
# | 6 | data pipeline: workers and a decoded cache (4) | training throughput, not the model | no |
#
# Compilation comes before int8 because PT2E's int8 kernels *are* compiler passes (chapter 6: without
# freezing PT2E int8 is slower than fp32); measured after compilation, the int8 stage shows what
# int8 adds over a compiled fp32 model, the fair comparison.
#
# A deployment is decided by a **budget**: how many points of test accuracy you accept to lose.
# Set yours here (the widget of section 2.6 moves it later without re-measuring):

# %%
ACCURACY_BUDGET_POINTS = 1.0  # at most this many points of test accuracy lost against the baseline

# %% [markdown]
# ## 2. The capstone: one model, every technique
# ### 2.1 The baseline
# Chapter 6's teacher, a small CNN with three convolution blocks (32, 64 and 128 channels), trained
# on the digits at 16x16 (1,347 training and 450 test images). Trained here, annealed, six epochs:

# %%
digits = load_digits_split(image_size=16)
x_train, y_train, x_test, y_test = digits.x_train, digits.y_train, digits.x_test, digits.y_test
example = x_test[:BATCH]
calibration_batches = [x_train[start:start + BATCH] for start in range(0, 512, BATCH)]
print(f"train {tuple(x_train.shape)}, test {tuple(x_test.shape)}")

# %% tags=["nbval-ignore-output"]
torch.manual_seed(0)
baseline = small_cnn((32, 64, 128))
train_epochs(baseline, tensor_loader(x_train, y_train, batch_size=64, shuffle=True), epochs=6, anneal=True,
             progress=False)
baseline.eval()
print(f"baseline: {count_parameters(baseline):,} parameters, test accuracy "
      f"{evaluate_accuracy(baseline, x_test, y_test):.1%}")

# %% [markdown]
# ### 2.2 Layout, pruning and distillation
# **Layout** (chapter 3): the same model with its weights and input in `channels_last`, the layout
# oneDNN's convolutions prefer on x86.

# %%
layout_model = copy.deepcopy(baseline).to(memory_format=torch.channels_last)
example_cl = example.contiguous(memory_format=torch.channels_last)

# %% [markdown]
# **Pruning** (chapter 2): remove half the output channels of every convolution, ranked by the
# L1 norm of each filter scaled by its batch norm's $|\gamma|$ (a filter whose BN scale is near 0
# contributes little, however large its weights). The pruned network is a real, smaller
# `nn.Sequential`: no masks, every layer narrower. Straight after pruning it is at chance level:
# each remaining layer was trained to read all of its input channels, half of which are now gone.

# %% tags=["nbval-ignore-output"]
pruned = prune_channels(baseline, 0.5, criterion="bn_scaled_l1")
print(f"pruned, before fine-tuning: {count_parameters(pruned):,} parameters, test accuracy "
      f"{evaluate_accuracy(pruned, x_test, y_test):.1%}")

# %% [markdown]
# Two ways to recover, each 200 Adam steps on batches of 128 training images:
# - **fine-tuning** with labels (chapter 2);
# - **distillation** (chapter 6): 64 labelled images plus 64 images carrying the unpruned teacher's
#   softened predictions ($T = 4$, $\alpha = 0.5$) per step, the loss of Hinton et al.
#
# Same architecture and the same number of steps and images; the targets differ (and so do the
# labelled images each step draws, 128 against 64).

# %% tags=["nbval-ignore-output"]
pruned_tuned = train_student(copy.deepcopy(pruned), (x_train, y_train), steps=200, lr=1e-3, batch_size=128)
transfer = (x_train, teacher_logits(baseline, x_train))
pruned_distilled = train_student(copy.deepcopy(pruned), (x_train, y_train), transfer=transfer,
                                 targets="soft targets", temperature=4.0, alpha=0.5, steps=200, lr=1e-3)
for model in (pruned_tuned, pruned_distilled):
    model.to(memory_format=torch.channels_last)

# %% [markdown]
# Which one goes on to compilation and int8? The more accurate one on the test images, compared
# image by image (the paired comparison of chapter 6: how many images only one of them gets right,
# and McNemar's test of "both are equally accurate"):

# %% tags=["nbval-ignore-output"]
with torch.no_grad():
    tuned_vs_distilled = paired_prediction_change(pruned_tuned(x_test).argmax(1), pruned_distilled(x_test).argmax(1),
                                                  y_test)
distilled_better = tuned_vs_distilled["only the candidate right"] > tuned_vs_distilled["only the reference right"]
carried_name, carried = ("distilled", pruned_distilled) if distilled_better else ("pruned + fine-tuned", pruned_tuned)
print(f"fine-tuned (reference) against distilled (candidate): {tuned_vs_distilled}")
print(f"carried on: {carried_name}")

# %% tags=["nbval-ignore-output"]
if tuned_vs_distilled["McNemar p"] > 0.05:
    print(f"McNemar p = {tuned_vs_distilled['McNemar p']:.2f}: this run cannot tell the two apart. With all 1,347 "
          "labels at hand, soft targets may have less to add than in chapter 6's experiment with 50 labelled images.")
else:
    print(f"McNemar p = {tuned_vs_distilled['McNemar p']:.3f}: the {carried_name} network is more accurate on these "
          "images, beyond what chance would explain.")

# %% [markdown]
#
# ### 2.3 Compilation, then int8 two ways
# `torch.compile` with freezing on the network carried on (chapter 3). Then the two int8 routes the
# course measured, calibrated on the same 512 training images; the faster one on this machine goes
# into the waterfall:
# - **PT2E** (chapter 6): `torch.export`, the x86 quantizer, calibration, conversion, then
#   `torch.compile` with freezing (where the int8 convolutions come from);
# - **ONNX Runtime** (chapter 7): export to ONNX, `quantize_static` with QDQ, per-channel int8
#   weights and unsigned int8 activations (U8S8, which fuses every convolution on x86), with as many
#   threads as PyTorch uses here, and its idle threads told not to spin, so that they take no core
#   from PyTorch in the alternating rounds below.

# %% tags=["nbval-ignore-output"]
reduce_range = int8_reduce_range_needed()
compiled_fp32, compile_s = compile_for_inference(copy.deepcopy(carried), example)
pt2e_int8 = static_int8(carried, example, calibration_batches, reduce_range=reduce_range)
compiled_int8, int8_compile_s = compile_for_inference(pt2e_int8, example)
print(f"first calls (compilation): fp32 {compile_s:.1f} s, PT2E int8 {int8_compile_s:.1f} s; "
      f"reduce_range={reduce_range}")

# %% tags=["nbval-ignore-output"]
fp32_onnx, prepared_onnx, int8_onnx = (WORK / f"capstone_{kind}.onnx" for kind in ("fp32", "prepared", "int8"))
torch.onnx.export(carried, (example,), fp32_onnx, dynamo=True, external_data=False, verbose=False,
                  dynamic_shapes={"input": {0: torch.export.Dim("batch", min=1, max=1024)}})
quant_pre_process(str(fp32_onnx), str(prepared_onnx), skip_symbolic_shape=True)
quantize_static(str(prepared_onnx), str(int8_onnx), CalibrationBatches("input", calibration_batches),
                quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, reduce_range=reduce_range)
ort_int8 = ort_session(int8_onnx, threads=torch.get_num_threads(), spinning=False)
opset = next(entry.version for entry in onnx.load(str(fp32_onnx)).opset_import if entry.domain in ("", "ai.onnx"))
print(f"exported with opset {opset}; int8 model written")

# %% [markdown]
# ### 2.4 Every stage, timed in the same interleaved rounds
# One call of each stage on the same batch of 64, in alternating rounds (chapter 1), so a slow
# spell of the machine hits every stage alike. Fine-tuned and distilled networks have the same
# layers and shapes, so the carried one is timed for both: distillation changes the weights, not
# the work.

# %% tags=["nbval-ignore-output"]
stage_calls = {
    "fp32 eager": lambda: baseline(example),
    "channels_last": lambda: layout_model(example_cl),
    "pruned": lambda: carried(example_cl),
    "compiled + freezing": lambda: compiled_fp32(example),
    "int8 PT2E + freezing": lambda: compiled_int8(example),
    "int8 ONNX Runtime": lambda: ort_int8.run(None, {"input": example.numpy()}),
}
with torch.no_grad():
    timings = measure_interleaved(stage_calls, rounds=5, min_run_time=1.0)
int8_race = timing_ratio(timings["int8 ONNX Runtime"], timings["int8 PT2E + freezing"])
int8_route = "int8 PT2E + freezing" if int8_race.median >= 1 else "int8 ONNX Runtime"
print(f"PT2E against ONNX Runtime int8: {int8_race} -> the waterfall uses {int8_route}")

# %% [markdown]
# Which test images each stage classifies correctly (the compiled graphs run only at batch 64, so
# every stage is scored in batches of 64), and size: the bytes of `torch.save`'s state dict for the
# PyTorch stages, the `.onnx` file for ONNX Runtime (which also holds the graph).

# %% tags=["nbval-ignore-output"]
def correct_in_batches(model: object) -> torch.Tensor:
    """One bool per test image: is the model's prediction right (called in batches of 64)?"""
    return predict_in_fixed_batches(model, x_test, BATCH).argmax(1) == y_test


correct = {"fp32 eager": correct_in_batches(baseline), "channels_last": correct_in_batches(layout_model),
           "pruned + fine-tuned": correct_in_batches(pruned_tuned), "distilled": correct_in_batches(pruned_distilled),
           "compiled + freezing": correct_in_batches(compiled_fp32),
           "int8 PT2E + freezing": correct_in_batches(compiled_int8),
           "int8 ONNX Runtime": ort_predict(ort_int8, x_test).argmax(1) == y_test}
size_bytes = {"fp32": serialized_size_bytes(baseline), "pruned": serialized_size_bytes(carried),
              "int8 PT2E + freezing": serialized_size_bytes(pt2e_int8),
              "int8 ONNX Runtime": sum(model_files(int8_onnx).values())}
pd.DataFrame({"test accuracy (%)": {name: 100 * flags.float().mean().item() for name, flags in correct.items()}}).T.round(2)

# %% [markdown]
# ### 2.5 The waterfall
# The stages in order. Each has its own step (against the row before it) and its total (against
# stage 0), both from the same rounds with 95% intervals; its accuracy with a 95% Wilson interval;
# and its accuracy change against stage 0 with a paired 95% interval (resampling the 450 test
# images, each scored by both models). The distilled row is a side branch: it starts from the
# channels_last model, like the fine-tuned one, and the compiled stage continues from the one
# carried on.

# %% tags=["nbval-ignore-output"]
same_work = "same layers and shapes as the fine-tuned network: distillation changes weights, not work"
stages = [
    Stage("fp32 eager", "baseline", timings["fp32 eager"], size_bytes["fp32"], correct["fp32 eager"]),
    Stage("channels_last", "memory layout", timings["channels_last"], size_bytes["fp32"], correct["channels_last"]),
    Stage("pruned + fine-tuned", "prune 50% (BN-aware), fine-tune", timings["pruned"], size_bytes["pruned"],
          correct["pruned + fine-tuned"]),
    Stage("distilled", "prune 50%, distil instead", timings["pruned"], size_bytes["pruned"], correct["distilled"],
          builds_on="channels_last", note=same_work),
    Stage("compiled + freezing", "torch.compile + freezing", timings["compiled + freezing"], size_bytes["pruned"],
          correct["compiled + freezing"], builds_on=carried_name),
    Stage(int8_route, "int8", timings[int8_route], size_bytes[int8_route], correct[int8_route]),
]
waterfall = waterfall_table(stages)
waterfall[["step", "builds_on", "latency_ms", "step_speedup", "step_low", "step_high", "total_speedup", "total_low",
           "total_high", "size_KB", "accuracy_%", "accuracy_change_points", "change_low_points",
           "change_high_points"]].round(2)

# %% [markdown]
# Each step's claim, judged on its own interval (a step "pays" when its whole interval is above 1).
# The thresholds are what would make each step worth its line of code on a CPU:

# %% tags=["nbval-ignore-output"]
STEP_CLAIMS = {  # stage: (claim name, threshold, statement)
    "channels_last": ("capstone_channels_last", 1.1, "channels_last makes the baseline CNN at batch 64 at least "
                                                      "1.1x faster."),
    "pruned + fine-tuned": ("capstone_pruning", 1.5, "Pruning half of every convolution's channels makes the "
                                                     "channels_last CNN at least 1.5x faster."),
    "compiled + freezing": ("capstone_compile", 1.1, "torch.compile with freezing makes the pruned CNN at least "
                                                     "1.1x faster than eager."),
    int8_route: ("capstone_int8", 1.5, f"int8 ({int8_route}) makes the pruned CNN at least 1.5x faster than "
                                       "compiled fp32."),
}
step_from = {"channels_last": "fp32 eager", "pruned + fine-tuned": "channels_last",
             "compiled + freezing": "pruned", int8_route: "compiled + freezing"}
for stage_name, (claim_name, threshold, statement) in STEP_CLAIMS.items():
    timed_as = "pruned" if stage_name == "pruned + fine-tuned" else stage_name
    claims.append(make_claim(8, claim_name, statement, threshold=threshold, hardware=hw.cpu_label,
                             ratio=timing_ratio(timings[step_from[stage_name]], timings[timed_as])))
claims_table(claims)[["measured", "low", "high", "threshold", "verdict"]].round(2)

# %% [markdown]
# What each verdict means here:

# %% tags=["nbval-ignore-output"]
int8_size_step = waterfall.loc["compiled + freezing", "size_KB"] / waterfall.loc[int8_route, "size_KB"]
STEP_READINGS = {
    "capstone_channels_last": dict(
        holds="oneDNN's convolutions read channels_last directly; in the default layout each call reorders its input.",
        does_not_hold="At these shapes the default layout's convolutions are as fast: the layout is not the cost."),
    "capstone_pruning": dict(
        holds="Half the channels of each layer leave about a quarter of the multiply-adds.",
        does_not_hold="At 16x16 with 16 to 64 channels left, fixed per-layer costs weigh more than the arithmetic "
                      "that pruning removed."),
    "capstone_compile": dict(
        holds="Inductor fuses each convolution with its batch norm and ReLU, and freezing packs the weights once.",
        does_not_hold="The eager model was already a chain of oneDNN calls with little between them to fuse."),
    "capstone_int8": dict(
        holds="This CPU's int8 instructions do more multiply-adds per cycle than its fp32 ones.",
        does_not_hold="After pruning, each convolution has little arithmetic left to repay quantizing its input and "
                      "reordering it for the int8 kernel (the summary compares int8's gain on the unpruned teacher, "
                      f"chapter 6). int8's size step holds regardless: {int8_size_step:.1f}x fewer bytes here."),
}
for claim in claims:
    display(report_claim(claim, **STEP_READINGS[claim.name]))

# %% [markdown]
# Now the chart. Bars float on a log axis from the level of the stage each one builds on to its
# own: blue when the step paid; a grey tick, flat at its parent's level, when it did not (the table
# above has its measured ratio, the next cell its reason); red (a hatched bar, or a red tick) when
# the stage, or a stage it builds on, loses more accuracy than your budget allows, which takes it
# out of the plan. Why the stages built on it go too: they inherit its weights, and if one of them
# measures within the budget anyway, that recovery rests on a handful of test images (a compiled
# or int8 copy computes the same function with rounding), so it is not evidence that the damage
# was repaired. Each bar is labelled with the cumulative factor and the stage's test accuracy.

# %% tags=["nbval-ignore-output"]
plot_waterfall(waterfall, ACCURACY_BUDGET_POINTS, hardware=hw.cpu_label)

# %% tags=["nbval-ignore-output"]
for name, row in waterfall[~waterfall["step_gain"].isin(PAYS)].iterrows():
    print(f"flat step, {name}: {flat_step_reason(row)}")

# %% [markdown]
# The budget, stage by stage. A loss of one image is 0.22 points on 450 images, and the paired
# interval of each change (its width is printed) spans several images: where it straddles your
# budget line, the decision rests on a handful of images and another test set could reverse it.

# %% tags=["nbval-ignore-output"]
allowed, clear = within_budget(waterfall, ACCURACY_BUDGET_POINTS), budget_is_clear(waterfall, ACCURACY_BUDGET_POINTS)
pd.DataFrame({"change (points)": waterfall["accuracy_change_points"].round(2),
              "paired 95% interval": [f"{low:+.2f} to {high:+.2f}" for low, high in
                                      zip(waterfall["change_low_points"], waterfall["change_high_points"])],
              "width (points)": (waterfall["change_high_points"] - waterfall["change_low_points"]).round(2),
              "in the plan's budget": allowed, "decision clear of the noise": clear})

# %% tags=["nbval-ignore-output"]
plan = deployment_plan(waterfall, ACCURACY_BUDGET_POINTS)
plan_row = waterfall.loc[plan]
print(f"plan within a {ACCURACY_BUDGET_POINTS:g}-point budget: up to '{plan}': {plan_row['total_speedup']:.2f}x "
      f"faster (95% interval {plan_row['total_low']:.2f} to {plan_row['total_high']:.2f}x), "
      f"{plan_row['size_reduction']:.1f}x smaller, accuracy {plan_row['accuracy_%']:.1f}% "
      f"({plan_row['accuracy_change_points']:+.2f} points)")
largest = waterfall["step_speedup"].iloc[1:].idxmax()
print(f"largest single step: {largest} ({waterfall.loc[largest, 'step_speedup']:.2f}x)")

# %% [markdown]
# The rule that picked it is three short functions, worth reading because the plan is only as good
# as the rule:

# %% tags=["nbval-ignore-output"]
show_source(within_budget)

# %% tags=["nbval-ignore-output"]
show_source(plan_candidates)

# %% tags=["nbval-ignore-output"]
show_source(deployment_plan)

# %% [markdown]
# How to read it, on any machine:
# - **Layout** is worth its one line where oneDNN prefers `channels_last` for these shapes; where the
#   step is flat, the convolutions already ran in their preferred layout, or the reorders cost what
#   they saved.
# - **Pruning** halves every layer's channels, which removes about three quarters of the
#   multiply-adds and of the weight bytes; how much of that shows as latency depends on how much of
#   each call was arithmetic. Its accuracy cost is the one to watch: fine-tuning or distillation
#   recovers it, and the paired comparison above says which did better here.
# - **int8** stores the weights in one byte instead of four, plus per-channel scales, so its size
#   step is a little under 4x on top of pruning's. Whether it pays on latency depends on the CPU's int8 instructions and on how much arithmetic each
#   convolution has left after pruning.
# - The **plan** is the fastest stage within your budget among those whose own step paid (against
#   the stage it builds on). A stage over budget drops out with every stage built on it, even if they
#   are faster.
#
# ### 2.6 Explore: the accuracy budget
# The budget is a decision, not a measurement: moving it re-draws the chart and re-picks the plan
# from the numbers measured above, without re-running anything.

# %% tags=["nbval-ignore-output"]
def budget_report(budget_points: float) -> object:
    """The waterfall and the plan for an accuracy budget, from this run's measurements."""
    plan = deployment_plan(waterfall, budget_points)
    row = waterfall.loc[plan]
    print(f"budget {budget_points:g} points -> plan '{plan}': speed-up {row['total_speedup']:.2f}x, size reduction "
          f"{row['size_reduction']:.1f}x, accuracy change {row['accuracy_change_points']:+.2f} points")
    return plot_waterfall(waterfall, budget_points, hardware=hw.cpu_label)


live_control(budget_report, budget_points=widgets.FloatSlider(value=ACCURACY_BUDGET_POINTS, min=0.0, max=5.0,
                                                              step=0.25, description="budget (pts)"))

# %% [markdown]
# Try 0 points (only stages that, with every stage they build on, lose no image on balance) and 5.
# Which budgets change the plan on this run:

# %% tags=["nbval-ignore-output"]
sweep = pd.Series({budget: deployment_plan(waterfall, budget) for budget in np.arange(0.0, 5.01, 0.25)})
worst = waterfall["accuracy_change_points"].idxmin()
print(f"largest loss: {-waterfall.loc[worst, 'accuracy_change_points']:.2f} points ({worst})")
for plan_name, budgets in sweep.groupby(sweep, sort=False):
    print(f"budgets {budgets.index.min():g} to {budgets.index.max():g} points: plan '{plan_name}'")
if sweep.nunique() == 1:
    print("On this run the budget never changes the plan: no stage on the way to it loses more than the "
          "smallest budget. The budget matters where a stage costs more: prune 85% of the channels instead of 50% "
          "in section 2.2 and run the chapter again.")

# %% [markdown]
#
#
# ### 2.7 The data pipeline: training throughput
# The last technique does not touch the model: it feeds training faster. The pruned network is
# trained from JPEG files on disk (decoded, turned grey and resized to 16x16 for every item, as an
# image pipeline does), with 0 and with 2 DataLoader workers, and from a cache that holds the
# preprocessed images in memory (chapter 4). With workers, the training step runs on the cores the
# two workers leave (at least one thread), as chapter 4 tried. Alternating rounds, 16 batches
# each, the workers' head start off the clock:

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
workers_ratio = paired_ratio(training_rates["JPEG files, 0 workers"], training_rates["JPEG files, 2 workers"],
                             higher_is_better=True)
cache_ratio = paired_ratio(training_rates["JPEG files, 0 workers"], training_rates["decoded cache, 0 workers"],
                           higher_is_better=True)
claims.append(make_claim(8, "capstone_cache", "A decoded in-memory cache makes training the pruned CNN at least "
                         "1.5x faster than decoding JPEG files each epoch.", threshold=1.5, ratio=cache_ratio,
                         hardware=hw.cpu_label))
claims.append(make_claim(8, "capstone_workers", "Two DataLoader workers (training on the cores they leave) make "
                         "training the pruned CNN from JPEG files at least 1.2x faster.", threshold=1.2, ratio=workers_ratio, hardware=hw.cpu_label,
                         condition="at least 2 cores"))
display(report_claim(claims[-2], holds="Decoding each JPEG costs more than the training step of this small network: "
                                       "the cache removes that work from every epoch.",
                     does_not_hold="The training step dominates here, so removing the decoding saves little."))
display(report_claim(claims[-1], holds="The two workers decode while the main process trains.",
                     does_not_hold=f"With {hw.cpu_cores} cores the workers and the training step share the same "
                                   "cores, and each batch pays the crossing between processes (chapter 4)."))

# %% [markdown]
# The complete waterfall, with the pipeline beside it (the chart the book shows for this chapter):

# %% tags=["nbval-ignore-output"]
pipeline_ratios = {"JPEG files, 0 workers": ("baseline", 1.0), "JPEG files, 2 workers": (workers_ratio.gain,
                   workers_ratio.median), "decoded cache, 0 workers": (cache_ratio.gain, cache_ratio.median)}
plot_waterfall(waterfall, ACCURACY_BUDGET_POINTS, hardware=hw.cpu_label,
               training={name: (rate, *pipeline_ratios[name]) for name, rate in pipeline_medians.items()})

# %% [markdown]
# The ONNX files are written; the sessions and compiled graphs stay for the exercises. What the
# capstone held in memory that nothing uses any more goes back to the system (chapter 7):

# %% tags=["nbval-ignore-output"]
del pipelines, transfer
print(f"returned {release_freed_memory() / 2**20:.0f} MB to the system")

# %% [markdown]
# ## 3. The whole course's ledger
# Every chapter recorded its results into the ledger (`results/ledger.json`, or `$COURSE_LEDGER`).
# Here are those this machine measured, together, each with its hardware label. A result is a speed-up against
# its own baseline, with its 95% interval where it was measured in rounds (sizes and byte counts
# are exact).

# %% tags=["nbval-ignore-output"]
everything = [entry for entry in load_ledger() if entry["chapter"] != 8]
earlier = measured_on(everything, hw)  # this machine's results (its CPU label, or its GPU's name)
print(f"{len(earlier)} results from this machine; {len(everything) - len(earlier)} from other hardware left out")
missing = chapters_missing(earlier, [number for number in COURSE_NOTEBOOKS if number != 8])
if missing:
    print(f"not in the ledger yet: chapter{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))}. "
          "Run each (open it and run all cells, or `make execute NB=notebooks/<chapter>.ipynb`), then re-run this "
          "section. On Colab every notebook runs on a machine of its own: download results/ledger.json from each "
          "chapter's runtime and merge their entries into this runtime's results/ledger.json.")
ledger_view = ledger_table(sorted(earlier, key=lambda entry: entry["chapter"]))
ledger_view[["metric", "speedup", "speedup_low", "speedup_high", "gain", "hardware"]].round(2) if earlier else None

# %% tags=["nbval-ignore-output"]
plot_ledger(ledger_view, hardware=hw.cpu_label) if earlier else print("The ledger is empty: nothing to plot yet.")

# %% [markdown]
# ### 3.1 Your decision guide
# Generated from the ledger above, from the results this machine measured (results from other
# hardware are counted and left out): for each goal, what paid, the surest gain first (the largest
# lower bound of its interval; for size, the largest size ratio; results without an interval after
# those with one), what did not, and a likely reason read from the hardware report. The reasons are
# explanations from the chapters, not measurements; every number is a ledger number, and each is
# against its own baseline, named in its metric.

# %% tags=["nbval-ignore-output"]
decision_guide(everything, hw)

# %% [markdown]
# Read the guide with the claims table of `make claims` beside it: the ledger keeps one number per
# technique, the claims keep the verdict against a stated threshold.
#
# ## 4. Conclusion and outlook
# ### 4.1 The article's conclusion, measured
# The article ends with three statements (paraphrased here). What this course measured behind each,
# on this machine (the numbers below are printed from this run or from the ledger):

# %% tags=["nbval-ignore-output"]
PARTS = {"the data pipeline": ("memory_cache", "dataloader_workers", "batched_data_fetch"),
         "the model's structure": ("channel_pruning_50", "depthwise_separable_conv", "conv_bn_folding"),
         "the hardware's features": ("mixed_precision_bf16", "torch_compile", "channels_last", "fused_adamw"),
         "the training loop": ("profiler_fix",)}


def best_in_part(techniques: tuple[str, ...]) -> str:
    """The surest gain among a part's ledger results (largest interval lower bound), or what measured nothing."""
    found = [e for e in earlier if e["technique"] in techniques]
    paid = [e for e in found if e["gain"] == "gain"]
    if paid:
        entry = max(paid, key=sure_gain)
        return f"{entry['technique']} {ratio_text(entry)}"
    return "nothing paid here" if found else "not measured here yet"


def conclusion_backing(plan_row: pd.Series, plan: str, budget_points: float) -> list[str]:
    """The article's first two statements, each with what this run and this machine's ledger measured behind it."""
    gains = [e for e in earlier if e["gain"] == "gain"]
    parts = "; ".join(f"{part}, {best_in_part(techniques)}" for part, techniques in PARTS.items())
    first = (f"1. Performance has many dimensions, and any stage can limit it. {len(gains)} of this machine's "
             f"{len(earlier)} ledger results paid. The surest gain in each part of the work: {parts}.")
    if plan == waterfall.index[0]:
        second = (f"2. Large gains while keeping accuracy: not here. Within a {budget_points:g}-point budget no stage "
                  "that paid stayed in, so the plan is the baseline.")
    else:
        second = (f"2. Large gains while keeping accuracy: within a {budget_points:g}-point budget the capstone's "
                  f"plan ('{plan}') is {plan_row['total_speedup']:.2f}x faster ({plan_row['total_low']:.2f} to "
                  f"{plan_row['total_high']:.2f}x) and {plan_row['size_reduction']:.1f}x smaller, at "
                  f"{plan_row['accuracy_change_points']:+.2f} points (paired interval "
                  f"{plan_row['change_low_points']:+.2f} to {plan_row['change_high_points']:+.2f}).")
    return [first, second]


print("\n".join(conclusion_backing(plan_row, plan, ACCURACY_BUDGET_POINTS)))

# %% [markdown]
# 3. Tools and methods keep changing, so keep up with them. Each chapter's errata section ran the
#    article's snippets against today's versions and showed the warnings and errors they raise; the
#    table of section 4.2 has the tools' state today.
#
# The article's conclusion is right as far as it goes, but it promises gains without conditions.
# The ledger shows the conditions: techniques that did not pay on this machine are listed in the
# guide above with a reason, and the verdicts depend on the CPU's instructions, its cores and the
# model's size. "Keeping accuracy" is a budget you set and check with an interval, not a given. A
# plan comes from measuring on the deployment hardware, not from a list.
#
# ### 4.2 The appendix's tools, revisited
# The article's appendix recommends five tools. Their state today, with the chapter that used each
# (the versions installed in this kernel, read from each package's metadata):

# %% tags=["nbval-ignore-output"]
tools = pd.DataFrame([
    {"tool": "PyTorch", "chapters": "all", "today": f"{installed_version('torch')}; quantization moved to torchao, torch.ao.quantization deprecated"},
    {"tool": "TensorRT", "chapters": "7", "today": f"{installed_version('tensorrt-cu13-bindings')}: TensorRT 11, "
     "strongly typed only (precision comes from the model); build_engine and execute_async_v2 removed in 10"},
    {"tool": "Horovod", "chapters": "5 (replaced)", "today": "last release 0.28.1 (June 2023, PyPI); torchrun with "
     "DDP and FSDP2 is PyTorch's own path"},
    {"tool": "ONNX", "chapters": "7, 8", "today": f"{installed_version('onnx')}; the dynamo exporter "
     f"(torch.export) writes opset {opset}; run by ONNX Runtime"},
    {"tool": "Keras", "chapters": "none", "today": "Keras 3 (3.15.1 on PyPI when checked, November 2026), multi-backend "
     "(JAX, TensorFlow, PyTorch): post-training quantization with model.quantize(mode), modes int8, float8, int4, "
     "GPTQ and AWQ (weight-only, for large models, with calibration data); no pruning API (TF-MOT's pruning needs tf_keras, Keras 2: tensorflow/model-optimization#1119)"},
])
tools.set_index("tool")

# %% [markdown]
# And the tools the course used that the article does not name:

# %% tags=["nbval-ignore-output"]
pd.DataFrame([
    {"tool": "torch.utils.benchmark", "chapters": "1-8", "role": "timing with warm-up and synchronisation"},
    {"tool": "torch.compile (Inductor)", "chapters": "3, 6, 7, 8", "role": "fused kernels; freezing for int8"},
    {"tool": "Torch-Pruning", "chapters": "2", "role": f"{installed_version('torch-pruning')}: dependency-aware "
                                                         "structured pruning of torchvision models"},
    {"tool": "torchao", "chapters": "6, 8", "role": f"{installed_version('torchao')}: int8 dynamic and weight-only, "
                                                   "PT2E static int8"},
    {"tool": "ONNX Runtime", "chapters": "7, 8", "role": f"{installed_version('onnxruntime')}: graph optimisations "
                                                        "and static QDQ int8"},
    {"tool": "torch.profiler", "chapters": "7", "role": "where the time goes, and memory"},
    {"tool": "torchrun, DDP, FSDP2", "chapters": "5", "role": "multi-process training in PyTorch itself"},
]).set_index("tool")

# %% [markdown]
# **What the article got wrong here.** The appendix table is undated and unversioned: "PyTorch
# supports quantization" pointed at an API that is now deprecated (chapter 6), "TensorRT" at a
# Python API that lost `build_engine` and its precision flags (chapter 7), Horovod has had no
# release since June 2023, and Keras "supports model compression" only for quantization today:
# pruning lives in TF-MOT, which does not support Keras 3. A tools list needs versions and a date.
#
# ## 5. Exercises: choose a deployment plan
# Each exercise states a deployment; answer with the row label of a stage in the table of section
# 2.5 (for example `"channels_last"`), or `"none"` when no stage meets the limits. The limits are set
# from this run's measurements, so the right answer can differ between machines: reason from the
# table, not from memory. The rule is the plan's (section 2.5): the stage, and every stage it builds
# on, lose at most the budget's points, and the stage's own step paid.
#
# **Exercise 1 (a latency budget on this machine).** A service on this CPU answers batches of 64
# and must take at most the latency printed below, losing at most 1 point of accuracy. Which stage
# is the *simplest* plan that meets both (the earliest row, so that the fewest techniques have to
# be maintained)?

# %% tags=["nbval-ignore-output"]
latency_budget_ms = 0.6 * waterfall.loc["fp32 eager", "latency_ms"]
print(f"latency budget: {latency_budget_ms:.3f} ms per batch of 64; stages: {list(waterfall.index)}")

# %%
my_latency_plan = ...  # a row label, or "none"

# %%
check_latency_plan("Exercise 1", my_latency_plan, waterfall, latency_ms=latency_budget_ms, budget_points=1.0)

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution"]
fits = plan_candidates(waterfall, 1.0) & (waterfall["latency_ms"] <= latency_budget_ms)
my_latency_plan = fits.idxmax() if fits.any() else "none"
check_latency_plan("Exercise 1", my_latency_plan, waterfall, latency_ms=latency_budget_ms, budget_points=1.0)

# %% [markdown]
# A stage whose median is just under the limit will exceed it on some calls: a real latency
# budget is usually a percentile (chapter 1's p99), measured on the deployment hardware.
#
# **Exercise 2 (a small board without int8 kernels).** A single-board computer runs PyTorch on an
# ARM CPU for which neither int8 route has fast kernels (int8 there would be slower than fp32,
# chapter 6). The model may take at most 30% of the baseline's bytes and lose at most 2 points.
# Which is the *fastest* stage that meets both, leaving out the int8 rows? The board's CPU is not
# this one, so its latency ranking may differ: say in a sentence which number you would re-measure
# there first.

# %% tags=["nbval-ignore-output"]
size_budget_KB = 0.3 * waterfall.loc["fp32 eager", "size_KB"]
print(f"size limit: {size_budget_KB:.1f} KB")

# %%
my_board_plan = ...  # a row label, or "none"

# %%
check_plan_without("Exercise 2", my_board_plan, waterfall, size_KB=size_budget_KB, budget_points=2.0,
                   excluded_prefix="int8")

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution"]
fits = (plan_candidates(waterfall, 2.0) & (waterfall["size_KB"] <= size_budget_KB)
        & ~waterfall.index.str.startswith("int8"))
my_board_plan = waterfall.loc[fits, "total_speedup"].idxmax() if fits.any() else "none"
check_plan_without("Exercise 2", my_board_plan, waterfall, size_KB=size_budget_KB, budget_points=2.0,
                   excluded_prefix="int8")

# %% [markdown]
# The number to re-measure first is your answer's own step on the board: if it is the compiled
# stage, Inductor generates other code for an ARM CPU, and what it fuses there decides whether that
# row still wins; if it is a pruned stage, how much of each call is arithmetic on that CPU.
#
# **Exercise 3 (open).** Pick a deployment you care about (a GPU server, a Raspberry Pi, a laptop
# in a browser) and write its plan as a list of stages with the numbers you would need to measure
# there first. Which entries of your decision guide would you *not* trust on that hardware, and why?
#
# ## 6. For instructors: the class report
# In a workshop every participant's machine writes its own ledger. Collect them (each participant
# copies `results/ledger.json` to a shared folder under their own name, e.g. `alice.json`), then run
# `make class-report LEDGERS=folder/`: it writes `class-report.html` with one figure of every
# technique's speed-up per participant, grouped by CPU instruction set with core count, and by GPU,
# and a table of the median per group. Files that are not ledgers, and incomplete entries, are named
# on the page and skipped. Here it runs on a class of two, this machine's chapters 1 to 7 and the
# GPU reference run that ships with the course (`results/gpu/`), plus one unfinished file, to show
# what the page reports. A reference run carries only the chapters whose code it ran as they are
# today: a chapter edited since its GPU run is left out and named ("an earlier edition"), so that
# no number from other code is set beside this machine's under the same name.

# %% tags=["nbval-ignore-output"]
class_folder = WORK / "class"
class_folder.mkdir(exist_ok=True)
(class_folder / "this-machine.json").write_text(json.dumps({"entries": earlier}))
for name, reference in reference_ledgers().items():
    (class_folder / f"reference-{name}.json").write_text(reference.read_text())
(class_folder / "unfinished.json").write_text('{"entries": [')
participants = read_class(class_folder)
(WORK / "class-report.html").write_text(class_report_html(participants))
for participant in participants:
    print(f"{participant.name}: {len(participant.entries)} entries used; problems: {participant.problems or 'none'}")

# %% tags=["nbval-ignore-output"]
class_figure(class_table(participants)) if any(p.entries for p in participants) else None

# %% [markdown]
# ## 7. Summary
# This chapter's results, recorded into the ledger: the capstone's plan against the baseline
# (latency with its interval, size exact), and the fastest data pipeline against decoding files.

# %% tags=["nbval-ignore-output"]
best_pipeline = max(pipeline_medians, key=pipeline_medians.get)
pipeline_ratio = None if best_pipeline == "JPEG files, 0 workers" else paired_ratio(
    training_rates["JPEG files, 0 workers"], training_rates[best_pipeline], higher_is_better=True)
plan_timing = timings["pruned" if plan in ("pruned + fine-tuned", "distilled") else plan]
entries = [
    make_entry(8, "capstone_latency", metric=f"digits CNN latency, batch 64, plan '{plan}' against eager fp32",
               unit="ms", baseline=waterfall.loc["fp32 eager", "latency_ms"], optimized=plan_row["latency_ms"],
               higher_is_better=False, hardware=hw.cpu_label, ratio=timing_ratio(timings["fp32 eager"], plan_timing),
               extras={"budget_points": ACCURACY_BUDGET_POINTS, "int8_route": int8_route, "carried": carried_name,
                       "accuracy_change_points": float(plan_row["accuracy_change_points"])}),
    make_entry(8, "capstone_size", metric=f"digits CNN bytes, plan '{plan}' against fp32", unit="KB",
               baseline=waterfall.loc["fp32 eager", "size_KB"], optimized=plan_row["size_KB"],
               higher_is_better=False, hardware=hw.cpu_label),
    make_entry(8, "capstone_pipeline", metric=f"training images/s, '{best_pipeline}' against JPEG files, 0 workers",
               unit="images/s", baseline=pipeline_medians["JPEG files, 0 workers"],
               optimized=pipeline_medians[best_pipeline], higher_is_better=True, hardware=hw.cpu_label,
               ratio=pipeline_ratio),
]
record_chapter(8, entries, claims)
ledger_table(entries).round(3)

# %% [markdown]
# Techniques compose, but not by multiplying the speed-ups each one showed alone: int8 over compiled
# fp32 on chapter 6's unpruned teacher (from this machine's ledger), against int8 over compiled fp32
# on the pruned network here:

# %% tags=["nbval-ignore-output"]
teacher_int8 = next((e for e in earlier if e["technique"] == "int8_static_pt2e"), None)
int8_here = next(c for c in claims if c.name == "capstone_int8").ratio
print(f"on the pruned network here: {int8_here}")
print(f"on the unpruned teacher (chapter 6, against {teacher_int8['compared_with']}): {ratio_text(teacher_int8)}"
      if teacher_int8 else "chapter 6 has not run on this machine yet")

# %% [markdown]
# **Take-aways**
# 1. Techniques compose, but each one changes what the next has left to gain (the two int8 numbers
#    above). Measure the stages in order on one model, in the same rounds.
# 2. A plan is the fastest stage within an accuracy budget that *you* set, checked with the paired
#    interval of its accuracy change: on 450 test images one image is 0.22 points.
# 3. Your decision guide is your machine's: the same ledger on another CPU or a GPU says something
#    else (the class report shows how much). Re-measure on the hardware you deploy to.
