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
# # Chapter 6 — Compression: knowledge distillation and int8 quantization
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dl-perf-course/dl-performance-workbook/blob/main/notebooks/ch06_compression.ipynb) [![Launch Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/dl-perf-course/dl-performance-workbook/main?labpath=notebooks/ch06_compression.ipynb)
#
# A model that is smaller on disk is not automatically faster, and a model that is faster is not
# automatically as accurate. This chapter trains a teacher network on real handwritten digits, then
# compresses it two ways and measures all three sides of every step: size, latency and accuracy.
# **Distillation** trains a much smaller student from the teacher's softened predictions (with the
# loss of Hinton et al., 2015, written correctly); **quantization** stores and computes in 8-bit
# integers on today's path (torchao and PT2E, then `torch.compile` with freezing). Finally chapter 2's
# pruning, distillation and int8 run in sequence on one network.
#
# **Estimated time:** ~70 min · **Hardware:** Any CPU (int8 pays most with VNNI or AMX); a CUDA GPU adds the torchao GPU quantization kernels

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
import time
import warnings

import ipywidgets as widgets
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from helpers.ch06_compression.quantize import (  # first: it quietens a log line that importing torchao prints
    convert_qat, drop_unused_parameters, fixed_batch_accuracy, fold_batch_norm,
    int8_reduce_range_needed, predict_in_fixed_batches, prepare_qat, static_int8, x86_quantizer,
)
import torchao
from torchao.quantization import (
    Int4WeightOnlyConfig, Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_,
)
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.quant_primitives import (
    MappingType, choose_qparams_affine, dequantize_affine, quantize_affine,
)

from helpers.core.accuracy import compare_folds, fold_table, paired_prediction_change
from helpers.core.claims import make_claim, paired_ratio, report_claim, timing_ratio
from helpers.core.cost import count_parameters, serialized_size_bytes
from helpers.core.measure import measure_interleaved, timing_table
from helpers.workload.data import load_digits_split, tensor_loader
from helpers.workload.models import small_cnn
from helpers.workload.training import evaluate_accuracy, train_epochs
from helpers.support.chapter import setup_chapter
from helpers.support.checks import check_number
from helpers.support.ledger import ledger_table, make_entry, record_chapter
from helpers.support.plots import plot_sweep, plot_tradeoff
from helpers.support.source import show_source
from helpers.support.widgets import live_control
from helpers.ch02_model_structure.pruning import prune_channels
from helpers.ch03_hardware.compile_timing import compile_for_inference
from helpers.ch06_compression.distill import soft_target_loss, teacher_logits, train_student
from helpers.ch06_compression.exercises import check_uint8_quantizer
from helpers.ch06_compression.plots import plot_distributions, plot_spread, plot_stages

hw = setup_chapter(6)
print(f"torchao {torchao.__version__}")
claims = []  # this chapter's speed claims, judged on this machine; recorded in the summary

# %% [markdown]
# ## 1. Why compress, and what each method buys
# Three costs grow with a model: the **bytes** it occupies on disk and in memory (what a phone app or
# a download pays), the **arithmetic** per prediction, and the **bytes moved** per prediction (chapter
# 1's roofline: a layer whose weights are read once per small batch is bandwidth-bound). The methods
# attack different ones:
#
# | method | what changes | size | arithmetic | accuracy risk |
# |---|---|---|---|---|
# | distillation | a smaller architecture, trained from a teacher | the student's | the student's | the student's capacity |
# | pruning (chapter 2) | channels removed | smaller | fewer FLOPs | recovered by fine-tuning |
# | int8 quantization | the same architecture, 8-bit weights (and activations) | up to 4x smaller | int8 kernels, if the hardware and the runtime have them | rounding |
#
# Everything below runs on the digits at 16x16 (1,347 training and 450 test images), with chapter 2's
# small CNN (32, 64 and 128 channels) as the teacher.

# %%
digits = load_digits_split(image_size=16)
x_train, y_train, x_test, y_test = digits.x_train, digits.y_train, digits.x_test, digits.y_test
print(f"train {tuple(x_train.shape)}, test {tuple(x_test.shape)}")

# %% tags=["nbval-ignore-output"]
torch.manual_seed(0)
teacher = small_cnn((32, 64, 128))
train_epochs(teacher, tensor_loader(x_train, y_train, batch_size=64, shuffle=True), epochs=6, anneal=True,
             progress=False)
teacher_accuracy = evaluate_accuracy(teacher, x_test, y_test)
print(f"teacher: {count_parameters(teacher):,} parameters, test accuracy {teacher_accuracy:.1%}")

# %% [markdown]
# ## 2. Knowledge distillation
# ### 2.1 The loss, and three ways to get it wrong
# A trained classifier knows more than its top answer: the probabilities it gives the *wrong* classes
# say which digits look alike (a 7 resembles a 1 more than a 0). Hinton et al. (2015) train the
# student to match the teacher's whole distribution, softened by a temperature $T$ so that the small
# probabilities matter: $p_i = \mathrm{softmax}(z_i / T)$. The loss is the KL divergence between the
# softened teacher and student distributions, multiplied by $T^2$, usually mixed with cross-entropy on
# the true labels. Here is the one definition the whole chapter uses:

# %%
show_source(soft_target_loss)

# %% [markdown]
# **Why $T^2$.** Dividing logits by $T$ shrinks the gradient of the KL term with respect to the
# student's logits by about $1/T^2$ (one $1/T$ from the softmax, one because the softened
# probabilities differ less). Without the factor, raising $T$ would silently lower the soft term's
# weight against the label term. The gradient norms for random logits of a batch of 64:

# %%
generator = torch.Generator().manual_seed(0)
student_probe = torch.randn(64, 10, generator=generator) * 3
teacher_probe = torch.randn(64, 10, generator=generator) * 3


def soft_gradient_norm(temperature: float, scale_by_t_squared: bool) -> float:
    """Norm of d(soft loss)/d(student logits) at this temperature, with or without the T^2 factor."""
    logits = student_probe.clone().requires_grad_(True)
    loss = soft_target_loss(logits, teacher_probe, temperature)
    (loss if scale_by_t_squared else loss / temperature**2).backward()
    return logits.grad.norm().item()


pd.DataFrame({"without T^2": [soft_gradient_norm(t, False) for t in (1, 2, 4, 8)],
              "with T^2": [soft_gradient_norm(t, True) for t in (1, 2, 4, 8)]},
             index=pd.Index([1, 2, 4, 8], name="T")).map(lambda v: f"{v:.2e}")

# %% [markdown]
# Without $T^2$ the gradient falls roughly as $1/T^2$ (the fall per doubling of $T$ approaches 4x
# as $T$ grows); with it, it stays of the same order. **Why `reduction="batchmean"`.** `F.kl_div` with the default `reduction="mean"` divides
# by batch size *times* the number of classes, which is not the KL divergence per example; PyTorch
# warns about it:

# %%
student_log_probs = F.log_softmax(student_probe / 4, dim=-1)
teacher_log_probs = F.log_softmax(teacher_probe / 4, dim=-1)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    mean_kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="mean", log_target=True)
batchmean_kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)
print("PyTorch warns:", str(caught[0].message).split(".")[0] + ".")
print(f"'mean' / 'batchmean' = {(mean_kl / batchmean_kl).item():.4f} (1 / number of classes = {1 / 10:.4f})")

# %% [markdown]
# **Why log-probabilities and `log_target=True`.** A confident teacher gives some classes a
# probability that underflows to exactly 0 in float32. The textbook formula
# $\sum p \,(\log p - \log q)$ written by hand then computes $0 \cdot (-\infty)$, which is NaN, and
# one NaN ruins the whole batch's gradient. `F.kl_div` with probabilities as the target
# (`log_target=False`) avoids the NaN (it treats $0 \log 0$ as 0), and here gives the same loss: a
# class with probability $e^{-110}$ contributes nothing measurable. `log_softmax` computes the
# log-probabilities stably, and `log_target=True` lets `kl_div` use them directly, without a
# softmax-then-log round trip that would have to guard against $\log 0$:

# %%
confident_teacher = torch.tensor([[30.0, -80.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
some_student = torch.zeros(1, 10)
p_teacher = F.softmax(confident_teacher, dim=-1)
log_p_teacher = F.log_softmax(confident_teacher, dim=-1)
log_q_student = F.log_softmax(some_student, dim=-1)
hand_written = (p_teacher * (p_teacher.log() - log_q_student)).sum()
print(f"class 1: probability {p_teacher[0, 1].item()}, log-probability {log_p_teacher[0, 1].item():.1f}")
print(f"hand-written p * (log p - log q): {hand_written.item()}")
print(f"kl_div, probabilities as target:  {F.kl_div(log_q_student, p_teacher, reduction='batchmean').item():.4f}")
print(f"kl_div, log_target=True:          "
      f"{F.kl_div(log_q_student, log_p_teacher, reduction='batchmean', log_target=True).item():.4f}")

# %% [markdown]
# **Why the teacher runs in `eval()` under `torch.no_grad()`.** In training mode, batch norm
# normalises with the statistics of the current batch (and updates its running averages), so the
# teacher's targets would change with whatever the batch holds, and the teacher itself would drift.
# Without `no_grad`, autograd would also keep every teacher activation for a backward pass that never
# comes. The helper that computes the targets once, for every transfer image:

# %%
show_source(teacher_logits)

# %% tags=["nbval-ignore-output"]
probe_batch = x_train[:64]
with torch.no_grad():
    in_train_mode = copy.deepcopy(teacher).train()(probe_batch)  # a copy: train mode would update BN's statistics
in_eval_mode = teacher_logits(teacher, probe_batch)
print(f"largest logit difference, train mode against eval mode: {(in_train_mode - in_eval_mode).abs().max():.2f}")
print(f"targets need grad: {in_eval_mode.requires_grad}")

# %% [markdown]
# ### 2.2 A fair experiment: few labels, many unlabelled images
# Distillation pays when the teacher knows something the student cannot learn from its own labels.
# A common case: labelled data is scarce (here **5 labelled images per digit**, 50 in all), while
# unlabelled images are plentiful (here the 1,347 training images *without* their labels) and a
# teacher exists (here trained on the full labelled set, as a large model trained elsewhere would be).
# The student is a much smaller CNN (16 and 32 channels). Three arms, same architecture, same 200
# steps, same learning rate and schedule, same labelled batches for a given seed:
# - **labels only**: cross-entropy on the 50 labelled images;
# - **teacher's hard labels**: plus cross-entropy on the teacher's top class for transfer images (pseudo-labels);
# - **teacher's soft targets**: plus `soft_target_loss` at $T = 2$ for the same transfer images (distillation).
#
# $T = 2$ is a common choice for small students, which follow a mildly softened distribution more
# easily than a flat one; section 2.3 lets you try others.
#
# The middle arm is the control that separates the two things distillation could be adding: the
# teacher labelling more images, and the teacher's *soft* knowledge about wrong classes. Each arm
# runs with 5 seeds (initialisation and batch order).

# %%
show_source(train_student)

# %%
STUDENT_CHANNELS = (16, 32)
SEEDS = range(5)
labelled_index = torch.cat([torch.nonzero(y_train == digit).flatten()[:5] for digit in range(10)])
labelled = (x_train[labelled_index], y_train[labelled_index])
transfer = (x_train, teacher_logits(teacher, x_train))
print(f"labelled images: {len(labelled_index)}, transfer images: {len(transfer[0])}, "
      f"student parameters: {count_parameters(small_cnn(STUDENT_CHANNELS)):,}")


# %%
def student_accuracy(targets: str, seed: int, **options: float) -> float:
    """Train a fresh student with these targets and this seed; return its test accuracy."""
    torch.manual_seed(seed)
    student = train_student(small_cnn(STUDENT_CHANNELS), labelled, targets=targets, steps=200, seed=seed,
                            transfer=None if targets == "labels only" else transfer, **options)
    return evaluate_accuracy(student, x_test, y_test)


# %% tags=["nbval-ignore-output"]
arms = ["labels only", "teacher's hard labels", "teacher's soft targets"]
student_runs = {arm: [student_accuracy(arm, seed, temperature=2.0, alpha=0.9) for seed in SEEDS] for arm in arms}
kd_table = fold_table(student_runs)
kd_table.round(2)

# %% tags=["nbval-ignore-output"]
plot_spread(student_runs, hardware=hw.cpu_label, reference=("teacher", teacher_accuracy),
            title="Student accuracy over 5 seeds: 50 labelled images, 1,347 transfer images")

# %% tags=["nbval-ignore-output"]
alone, distilled = statistics.mean(student_runs["labels only"]), statistics.mean(student_runs["teacher's soft targets"])
gap_closed = (distilled - alone) / (teacher_accuracy - alone)
soft_vs_alone = compare_folds(student_runs["labels only"], student_runs["teacher's soft targets"])
soft_vs_hard = compare_folds(student_runs["teacher's hard labels"], student_runs["teacher's soft targets"])
kd_ratio = paired_ratio(student_runs["labels only"], student_runs["teacher's soft targets"], higher_is_better=True)
print(f"distillation closes {gap_closed:.0%} of the student-teacher gap ({alone:.1%} -> {distilled:.1%}, "
      f"teacher {teacher_accuracy:.1%}); distilled against labels only: {soft_vs_alone.replace('fold', 'seed')}, "
      f"accuracy ratio {str(kd_ratio).replace('rounds', 'seeds')}")
print(f"soft targets against the teacher's hard labels: {soft_vs_hard.replace('fold', 'seed')}, "
      f"{100 * (distilled - statistics.mean(student_runs[arms[1]])):+.1f} points on average")

# %% [markdown]
# What the two lines mean for this run:

# %% tags=["nbval-ignore-output"]
if soft_vs_alone != "higher on every fold":
    print("Distillation did not beat labels only on every seed here: with this spread, a gain is not shown.")
else:
    print(f"Distillation beat labels only on all {len(SEEDS)} seeds, and the interval of the accuracy ratio "
          f"{'lies above 1: a gain' if kd_ratio.low > 1 else 'still reaches 1: more seeds would settle it'}.")
if soft_vs_hard == "higher on every fold":
    print("At this T and alpha the soft targets also beat the teacher's hard labels on every seed: the teacher's "
          "knowledge about the wrong classes adds to what labelling more images gives.")
elif soft_vs_hard == "mixed":
    print("Against the teacher's hard labels the soft targets were better on some seeds and worse on others: "
          "most of the gain comes from the teacher labelling the transfer images; whether its soft knowledge adds "
          "anything is not resolved by 5 seeds.")
else:
    print("At this T and alpha the teacher's hard labels did better on every seed: the gain comes from the teacher "
          "labelling the transfer images, not from its soft knowledge. A likely reason (a hypothesis this run does "
          "not test): "
          f"soft targets ask a {count_parameters(small_cnn(STUDENT_CHANNELS)):,}-parameter student to reproduce "
          "the teacher's whole distribution, logit gaps included, while hard labels ask only for the right class.")

# %% [markdown]
# The lesson is the control: **compare distillation with pseudo-labelling from the same teacher
# before you credit the soft targets**. Soft targets are reported to pay more with a stronger
# student, fewer transfer images, or classes that really resemble each other; the widget below lets
# you try other temperatures and weights.
#
# ### 2.3 Explore: temperature and alpha
# The widget trains one student (seed 0, 200 steps, about a second) with your temperature $T$ and
# weight $\alpha$ of the teacher term, and shows its accuracy and one test image's teacher
# distribution at that temperature. $T=1$ leaves the teacher's distribution as it is; a large $T$
# flattens it towards uniform. The static figure first: a sweep of $T$ (one seed each, so a
# difference of a point or two is within the seed-to-seed spread measured in 2.2; and since it reads
# test accuracy, a real choice of $T$ would use a validation split) and the softened distribution of
# one image.

# %% tags=["nbval-ignore-output"]
temperatures = [1.0, 2.0, 4.0, 8.0]
sweep = pd.Series({t: student_runs["teacher's soft targets"][0] if t == 2.0  # seed 0 at T=2 ran in 2.2
                   else student_accuracy("teacher's soft targets", 0, temperature=t, alpha=0.9) for t in temperatures},
                  name="student accuracy (seed 0)")
one_image_logits = teacher_logits(teacher, x_test[:1])[0]
display(plot_distributions({f"T={t:g}": F.softmax(one_image_logits / t, dim=-1) for t in temperatures},
                           title=f"teacher's softened distribution for one test image (label {y_test[0].item()})"))
plot_sweep(temperatures, {"accuracy": [100 * sweep[t] for t in temperatures]}, xlabel="temperature T (log scale)",
           ylabels={"accuracy": "student test accuracy (%)"}, hardware=hw.cpu_label,
           title="Distilled student (seed 0) against the temperature")


# %%
def distillation_report(temperature: float, alpha: float) -> pd.DataFrame:
    """Distil one student with these settings; print the softened teacher distribution of one image."""
    accuracy = student_accuracy("teacher's soft targets", 0, temperature=temperature, alpha=alpha)
    probabilities = F.softmax(one_image_logits / temperature, dim=-1)
    print(f"teacher's distribution at T={temperature:g} for a test '{y_test[0].item()}': "
          + " ".join(f"{p:.3f}" for p in probabilities.tolist()))
    return pd.DataFrame({"temperature": [temperature], "alpha": [alpha], "student accuracy": [round(accuracy, 3)],
                         "labels-only mean (5 seeds)": [round(alone, 3)]})


# %% tags=["nbval-ignore-output"]
live_control(distillation_report,
             temperature=widgets.FloatSlider(value=2.0, min=1.0, max=10.0, step=0.5, description="T"),
             alpha=widgets.FloatSlider(value=0.9, min=0.0, max=1.0, step=0.1, description="alpha"))

# %% [markdown]
# ## 3. Quantization on the current path
# ### 3.1 What an int8 tensor stores
# An int8 tensor stores integers $q \in [-128, 127]$ and a float **scale** $s$ (and a zero point $z$
# for unsigned activations): $x \approx s\,(q - z)$. One scale for the whole tensor (per-tensor) must
# cover its largest value; one scale per output channel (per-channel, the default for weights) adapts
# to each filter. The rounding error is at most $s/2$ per element, so a filter whose weights are
# small loses more of its precision under a scale set by the largest filter. torchao's quantization primitives
# express the granularity as a **block size**: the whole shape means one scale for the tensor;
# `(1, *rest)` means one scale per output channel. The weights that get quantized are those of the
# convolutions with batch norm folded in (PT2E folds it before quantizing; folding multiplies each
# filter by its own BN scale, so the filters' ranges can differ more than before). On each of them:

# %% tags=["nbval-ignore-output"]
def symmetric_int8_error(values: torch.Tensor, block_size: tuple[int, ...]) -> float:
    """Mean |x - dequantize(quantize(x))| relative to mean |x|, symmetric int8, one scale per block (torchao)."""
    scale, zero_point = choose_qparams_affine(values, MappingType.SYMMETRIC, block_size, torch.int8)
    quantized = quantize_affine(values, block_size, scale, zero_point, torch.int8)
    error = dequantize_affine(quantized, block_size, scale, zero_point, torch.int8) - values
    return (error.abs().mean() / values.abs().mean()).item()


folded_teacher = fold_batch_norm(teacher)
convs = {f"conv {index}": layer.weight.detach() for index, layer in enumerate(folded_teacher)
         if isinstance(layer, nn.Conv2d)}
granularity = pd.DataFrame({"per-tensor": {name: symmetric_int8_error(w, tuple(w.shape)) for name, w in convs.items()},
                            "per-channel": {name: symmetric_int8_error(w, (1, *w.shape[1:]))
                                            for name, w in convs.items()}})
granularity["per-tensor / per-channel"] = granularity["per-tensor"] / granularity["per-channel"]
print("mean rounding error relative to the mean weight magnitude:")
granularity.round(4)

# %% [markdown]
# Two questions decide whether int8 is also *faster*: does the runtime have int8 kernels for these
# layers on this CPU (x86 int8 dot products use the VNNI instructions where they exist), and does the
# conversion to and from int8 around each layer cost less than it saves? The next sections measure
# the three variants that PyTorch's current quantization library, **torchao**, offers:
#
# | variant | weights | activations | suits |
# |---|---|---|---|
# | dynamic int8 (`Int8DynamicActivationInt8WeightConfig`) | int8 | quantized on the fly, per batch | Linear-heavy models |
# | weight-only int8 (`Int8WeightOnlyConfig`) | int8 | float | memory-bound matrix-vector work (LLM decoding) |
# | static int8 (PT2E + `X86InductorQuantizer`) | int8 | int8, ranges from calibration | CNNs on CPU |
#
# Whether this CPU has the VNNI int8 dot-product instructions (torchao checks for the AVX-512 form;
# client CPUs with the 256-bit AVX-VNNI form and ARM CPUs are outside what this check knows, and
# x86 CPUs with neither need the `reduce_range` setting of section 3.3):

# %% tags=["nbval-ignore-output"]
reduce_range = int8_reduce_range_needed()
print(f"this CPU {'lacks' if reduce_range else 'has'} AVX-512 VNNI (the form torchao detects): "
      f"reduce_range={reduce_range}")

# %% [markdown]
# ### 3.2 Dynamic and weight-only int8 for a Linear-heavy model
# A multilayer perceptron on the flattened 16x16 digits (256 -> 1024 -> 1024 -> 10) is almost all
# matrix multiplication. `quantize_` swaps each Linear weight for an int8 tensor subclass;
# `torch.compile` then fuses the quantize, int8 matmul and dequantize steps. The fair baseline is the
# fp32 model **compiled** the same way (torchao's recipe: plain `torch.compile`, no freezing; freezing
# belongs to the PT2E path of section 3.3), so that the ratio measures int8 and not compilation. Each
# variant is compiled once per batch size, on its own copy, for that shape only.

# %% tags=["nbval-ignore-output"]
torch.manual_seed(0)
mlp = nn.Sequential(nn.Flatten(), nn.Linear(256, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                    nn.Linear(1024, 10))
train_epochs(mlp, tensor_loader(x_train, y_train, batch_size=64, shuffle=True), epochs=5, anneal=True, progress=False)
mlp.eval()
mlp_dynamic, mlp_weight_only = copy.deepcopy(mlp), copy.deepcopy(mlp)
quantize_(mlp_dynamic, Int8DynamicActivationInt8WeightConfig())
quantize_(mlp_weight_only, Int8WeightOnlyConfig())
mlp_variants = {"fp32": mlp, "int8 dynamic": mlp_dynamic, "int8 weight-only": mlp_weight_only}
print({name: type(model[1].weight).__name__ for name, model in mlp_variants.items()})

# %% tags=["nbval-ignore-output"]
compiled_mlps = {(name, batch): compile_for_inference(copy.deepcopy(model), x_test[:batch], freezing=False)[0]
                 for name, model in mlp_variants.items() for batch in (1, 64)}
with torch.no_grad():
    mlp_timings = {batch: measure_interleaved({name: (lambda f=compiled_mlps[name, batch], b=batch: f(x_test[:b]))
                                               for name in mlp_variants}, rounds=5, min_run_time=1.0)
                   for batch in (64, 1)}
mlp_table = pd.DataFrame({
    "size (KB)": {name: serialized_size_bytes(model) / 1e3 for name, model in mlp_variants.items()},
    "test accuracy": {name: fixed_batch_accuracy(compiled_mlps[name, 64], x_test, y_test) for name in mlp_variants},
    "batch 64 (ms)": {name: timing.median_ms for name, timing in mlp_timings[64].items()},
    "batch 1 (ms)": {name: timing.median_ms for name, timing in mlp_timings[1].items()},
})
mlp_table.round(3)

# %% tags=["nbval-ignore-output"]
dynamic_claim = make_claim(6, "int8_dynamic_linear_2x", "torchao dynamic int8 makes the compiled MLP at batch 64 at "
                           "least 2x faster than the compiled fp32 MLP.", threshold=2.0,
                           ratio=timing_ratio(mlp_timings[64]["fp32"], mlp_timings[64]["int8 dynamic"]),
                           hardware=hw.cpu_label)
claims.append(dynamic_claim)
report_claim(dynamic_claim,
             holds="The int8 matrix products (VNNI or AMX instructions where the CPU has them) do four times the "
                   "multiply-adds per instruction of fp32, and the per-batch activation quantization costs little "
                   "against three large matmuls.",
             does_not_hold=("This CPU lacks AVX-512 VNNI (the only form torchao detects): without a VNNI form, "
                            "x86 int8 dot products need extra instructions." if reduce_range else
                            "This CPU has AVX-512 VNNI, yet the gain stays under the threshold here. A likely "
                            "reason (not measured here): quantizing the activations of every batch and the int8 "
                            "kernels' fixed costs eat into it."))

# %% tags=["nbval-ignore-output"]
weight_only_claim = make_claim(6, "weight_only_int8_batch1_1.2x", "Weight-only int8 makes the compiled MLP at batch 1 "
                               "at least 1.2x faster than compiled fp32.", threshold=1.2,
                               ratio=timing_ratio(mlp_timings[1]["fp32"], mlp_timings[1]["int8 weight-only"]),
                               hardware=hw.cpu_label)
claims.append(weight_only_claim)
report_claim(weight_only_claim,
             holds="At batch 1 each weight is used once per call, so reading a quarter of the bytes matters.",
             does_not_hold=f"A likely reason: the MLP's {mlp_table.loc['fp32', 'size (KB)'] / 1e3:.1f} MB of fp32 "
                           "weights can stay in a server CPU's last-level cache, so reading fewer bytes saves "
                           "little, and every weight must still be converted to float before the float multiply. "
                           "Weight-only int8 pays when the weights do not fit in cache and are read once per "
                           "token: decoding with a large language model, often at batch 1, is the case it was "
                           "built for.")

# %% [markdown]
# Compare the size column (the biases and scales stay in float), then the speed of each variant
# relative to compiled fp32 at both batch sizes (medians; the claims above carry the intervals):

# %% tags=["nbval-ignore-output"]
print("size, fp32 / int8: " + ", ".join(f"{name} {mlp_table.loc['fp32', 'size (KB)'] / size:.2f}x"
                                       for name, size in mlp_table["size (KB)"].items() if name != "fp32"))
for column in ("batch 64 (ms)", "batch 1 (ms)"):
    relative = mlp_table.loc["fp32", column] / mlp_table[column]
    print(f"{column.removesuffix(' (ms)')}: " + ", ".join(f"{name} {ratio:.2f}x" for name, ratio in relative.items()))
dynamic_batch_1 = timing_ratio(mlp_timings[1]["fp32"], mlp_timings[1]["int8 dynamic"])
print(f"dynamic int8 at batch 1: {dynamic_batch_1} ({dynamic_batch_1.gain})")
if dynamic_batch_1.high < 1:
    print("At batch 1 dynamic int8 is slower than fp32 here. A likely reason: quantizing the activations and the "
          "int8 kernels' fixed costs are paid on every call, and one row gives them nothing to amortise over.")

# %% [markdown]
# Weight-only int8 computes in float after converting the weights, so at batch 64, where the layers
# are compute-bound, it has nothing to gain; it can only gain where reading the weights dominates.
#
# **int4** weight-only quantization halves the bytes again, but torchao's default int4 packing
# relies on a CUDA kernel library (a CPU layout exists as a prototype, not as a fast path). What this
# machine says when asked for the default:

# %% tags=["nbval-ignore-output"]
try:
    quantize_(copy.deepcopy(mlp), Int4WeightOnlyConfig())
    print("int4 weight-only quantization is available on this machine")
except ImportError as error:
    print(f"int4 weight-only on this machine: {type(error).__name__}: {error}")

# %% [markdown]
# ### 3.3 Static int8 for a CNN: PT2E, calibration and freezing
# Convolutions need their activations in int8 too, with ranges fixed ahead of time, or the
# quantize and dequantize steps around every layer eat the gain. The PT2E flow, step by step, on the
# teacher: export the model to a graph; insert observers where the x86 backend supports int8; run
# real batches through it so that the observers record each activation's range (calibration);
# convert the observers into quantize and dequantize operations with fixed scales.

# %% tags=["nbval-ignore-output"]
example = x_test[:64]
calibration_batches = [x_train[start:start + 64] for start in range(0, 512, 64)]
exported = torch.export.export(teacher.eval(), (example,)).module()
prepared = prepare_pt2e(exported, x86_quantizer(reduce_range=reduce_range))
with torch.no_grad():
    for images in calibration_batches:
        prepared(images)
converted = convert_pt2e(prepared)

# %% [markdown]
# `convert_pt2e` stores each weight as int8, but it keeps the original fp32 weights as attributes
# that the graph no longer reads. Saved as it is, the int8 model is *larger* than the fp32 one;
# deleting what the graph does not use gives the real size:

# %%
converted_size = serialized_size_bytes(converted)
int8_teacher = drop_unused_parameters(converted)
size_table = pd.Series({"fp32 teacher": serialized_size_bytes(teacher), "int8 as converted": converted_size,
                        "int8, unused fp32 weights dropped": serialized_size_bytes(int8_teacher)}, name="bytes")
size_table.to_frame()

# %% [markdown]
# The same steps, dropping included, live in `static_int8` (`helpers/ch06_compression/quantize.py`)
# for the rest of the chapter. Now speed.
# The x86 int8 convolutions with fused ReLU come from Inductor's **freezing** passes, which treat
# the weights as constants and pre-pack them for oneDNN; without freezing, the graph keeps separate
# quantize, dequantize and float operations. Five variants: eager fp32, and fp32 and int8 each
# compiled without and with freezing, once each at batch 64 (the compiled graphs have static shapes,
# so accuracy is measured in batches of 64 too). The first-call seconds are short when Inductor's
# on-disk cache already holds these graphs from an earlier run (chapter 3).

# %% tags=["nbval-ignore-output"]
cnn_compiled = {"fp32 eager": (teacher, 0.0),
                "fp32 compiled": compile_for_inference(copy.deepcopy(teacher), example, freezing=False),
                "fp32 compiled + freezing": compile_for_inference(copy.deepcopy(teacher), example, freezing=True),
                "int8 compiled": compile_for_inference(copy.deepcopy(int8_teacher), example, freezing=False),
                "int8 compiled + freezing": compile_for_inference(int8_teacher, example, freezing=True)}
print({name: f"first call {seconds:.1f} s" for name, (_, seconds) in cnn_compiled.items()})

# %% tags=["nbval-ignore-output"]
with torch.no_grad():
    cnn_timings = measure_interleaved({name: (lambda f=model: f(example)) for name, (model, _) in cnn_compiled.items()},
                                      rounds=5, min_run_time=2.0)
    reference_logits = teacher(x_test)
    cnn_logits = {name: predict_in_fixed_batches(model, x_test, 64) for name, (model, _) in cnn_compiled.items()}
cnn_accuracy = {name: (logits.argmax(1) == y_test).sum().item() / len(y_test) for name, logits in cnn_logits.items()}
cnn_table = timing_table(cnn_timings, baseline="fp32 eager")
cnn_table["test accuracy"] = pd.Series(cnn_accuracy)
cnn_table["predictions changed"] = pd.Series({name: int((logits.argmax(1) != reference_logits.argmax(1)).sum())
                                              for name, logits in cnn_logits.items()})
cnn_table["largest logit error"] = pd.Series({name: (logits - reference_logits).abs().max().item()
                                              for name, logits in cnn_logits.items()})
cnn_table.round(4)

# %% [markdown]
# Two claims: the issue a deployment cares about (int8 against the model as written, eager fp32) and
# the fair one for int8 itself (against fp32 compiled with freezing too).

# %% tags=["nbval-ignore-output"]
static_claim = make_claim(6, "int8_static_pt2e_3x", "PT2E static int8, compiled with freezing, makes the teacher CNN "
                          "at batch 64 at least 3x faster than eager fp32.", threshold=3.0,
                          ratio=timing_ratio(cnn_timings["fp32 eager"], cnn_timings["int8 compiled + freezing"]),
                          hardware=hw.cpu_label)
claims.append(static_claim)
display(report_claim(static_claim, holds="Part of this is compilation: the next claim isolates int8.",
                     does_not_hold="Not even with compilation: the next claim shows what int8 itself gives here."))

# %% tags=["nbval-ignore-output"]
fair_static_claim = make_claim(6, "int8_static_vs_compiled_2x", "PT2E static int8 makes the teacher CNN at batch 64 "
                               "at least 2x faster than fp32, both compiled with freezing.", threshold=2.0,
                               ratio=timing_ratio(cnn_timings["fp32 compiled + freezing"],
                                                  cnn_timings["int8 compiled + freezing"]), hardware=hw.cpu_label)
claims.append(fair_static_claim)
display(report_claim(fair_static_claim,
                     holds="The int8 convolutions (VNNI or AMX where the CPU has them) do more multiply-adds per "
                           "instruction, and the activations stay in int8 from layer to layer.",
                     does_not_hold=("This CPU lacks AVX-512 VNNI (the only form torchao detects): without a VNNI "
                                    "form the int8 convolutions need extra instructions, and reduce_range's 7-bit "
                                    "activations." if reduce_range else
                                    "This CPU has AVX-512 VNNI. A likely reason (not measured here): at this size "
                                    "the quantize and reorder steps around the int8 convolutions eat much of the "
                                    "gain.")))
for precision in ("fp32", "int8"):
    freezing_gain = timing_ratio(cnn_timings[f"{precision} compiled"], cnn_timings[f"{precision} compiled + freezing"])
    print(f"freezing, {precision}: {freezing_gain} ({freezing_gain.gain})")

# %% [markdown]
# Read the table from the top: compilation alone (chapter 3), compilation with freezing, then int8
# without and with freezing. The two lines above isolate what freezing gives each precision: for
# int8 it is where the fused int8 convolutions come from, so int8 without freezing keeps separate
# quantize, dequantize and float steps. The accuracy column and the number of test images whose
# prediction changed show what int8 cost in accuracy on these 450 images.
#
# **`reduce_range`.** x86 CPUs without VNNI multiply unsigned 8-bit activations by signed 8-bit
# weights with an instruction (`vpmaddubsw`) whose 16-bit intermediate sums can saturate. Quantizing
# activations to 7 bits (`reduce_range=True`) avoids it at the cost of coarser rounding, and
# `torchao.utils.should_reduce_range` says which case this CPU is (printed before section 3.2, with
# the setting this chapter uses); the other setting, compiled and compared:

# %% tags=["nbval-ignore-output"]
other_setting = static_int8(teacher, example, calibration_batches, reduce_range=not reduce_range)
other_compiled, _ = compile_for_inference(other_setting, example, freezing=True)
with torch.no_grad():
    other_error = (predict_in_fixed_batches(other_compiled, x_test, 64) - reference_logits).abs().max().item()
pd.Series({f"reduce_range={reduce_range} (this CPU's setting)": cnn_table.loc["int8 compiled + freezing",
                                                                               "largest logit error"],
           f"reduce_range={not reduce_range}": other_error}, name="largest logit error against fp32").to_frame()

# %% [markdown]
# On a CPU with VNNI both errors are small, and `reduce_range=True` is the one with coarser
# rounding. On an AVX2-only CPU the setting *without* `reduce_range` can saturate, which shows as
# a much larger error in the second row: run this cell on such a machine to see it there.
#
# ### 3.4 Quantization-aware training: does post-training int8 lose accuracy here?
# The smaller the model, the less redundancy it has to absorb rounding. PT2E's quantization-aware
# training (`prepare_qat_pt2e`, with `is_qat=True` in the quantizer's config) inserts *fake-quantize*
# nodes that round in the forward pass and let gradients through, so that the weights learn to
# live with int8. The fair comparison: the smallest student (8 and 16 channels) trained 300 steps on
# all labels, then either 60 more fp32 steps and post-training quantization, or 60 quantization-aware
# steps, with this CPU's `reduce_range` setting in both. Batch norm is folded into the convolutions
# first (`fold_batch_norm`, chapter 2's folding): a short fine-tune does not need batch statistics,
# and PT2E's QAT conversion would otherwise have to find and fold every conv-BN pattern itself, which
# takes far longer than the training. Accuracy comes from the converted graphs run eagerly: they
# compute the same quantize, dequantize and float arithmetic as the compiled int8 kernels up to
# rounding (though not, for instance, the `vpmaddubsw` saturation above).

# %% tags=["nbval-ignore-output"]
torch.manual_seed(0)
base_student = fold_batch_norm(train_student(small_cnn((8, 16)), (x_train, y_train), steps=300))
start = time.perf_counter()
ptq_student = train_student(copy.deepcopy(base_student), (x_train, y_train), steps=60, lr=1e-3, seed=1)
fp32_steps_s = time.perf_counter() - start
qat_prepared = prepare_qat(copy.deepcopy(base_student), example, reduce_range=reduce_range)
start = time.perf_counter()
train_student(qat_prepared, (x_train, y_train), steps=60, lr=1e-3, seed=1)
qat_steps_s = time.perf_counter() - start
qat_predictions = {
    "fp32, 360 steps": predict_in_fixed_batches(ptq_student, x_test, 64).argmax(1),
    "post-training int8": predict_in_fixed_batches(static_int8(ptq_student, example, calibration_batches,
                                                               reduce_range=reduce_range), x_test, 64).argmax(1),
    "quantization-aware int8": predict_in_fixed_batches(convert_qat(qat_prepared), x_test, 64).argmax(1),
}
qat_table = pd.DataFrame({name: {"test accuracy": (predicted == y_test).sum().item() / len(y_test),
                                 **paired_prediction_change(qat_predictions["fp32, 360 steps"], predicted, y_test)}
                          for name, predicted in qat_predictions.items()}).T
counts = ["predictions changed", "only the reference right", "only the candidate right"]
qat_table[counts] = qat_table[counts].astype(int)
print(f"60 training steps: fp32 {fp32_steps_s:.2f} s, quantization-aware {qat_steps_s:.2f} s")
qat_table.round(3)

# %% [markdown]
# Both int8 rows are compared with the fp32 row on the *same* 450 images, so the right test is a
# paired one: of the images whose prediction changed, how many went each way, and McNemar's exact
# p-value for "no difference in accuracy" (two separate confidence intervals would waste the
# pairing). What the table says for this run:

# %% tags=["nbval-ignore-output"]
for name in ("post-training int8", "quantization-aware int8"):
    row = qat_table.loc[name]
    change = 100 * (row["test accuracy"] - qat_table.loc["fp32, 360 steps", "test accuracy"])
    verdict = "a measurable difference" if row["McNemar p"] < 0.05 else "no measurable difference"
    print(f"{name}: {change:+.1f} points against fp32, {int(row['predictions changed'])} predictions changed, "
          f"McNemar p = {row['McNemar p']:.2f}: {verdict}.")
if qat_table.loc["post-training int8", "McNemar p"] >= 0.05:
    print("Post-training int8 loses nothing measurable on this smallest student, so quantization-aware training "
          "has nothing to recover here.")

# %% [markdown]
# Quantization-aware training costs more per step than fp32 training (the line above the table) and
# a more delicate workflow; use it when post-training int8 loses accuracy you can measure, which is
# most common for very small models, for models with outlier activations, and for 4-bit weights.
#
# ### 3.5 The trade-off, and the precision widget
# One chart of the teacher's variants: latency against accuracy, with the size in each name.

# %% tags=["nbval-ignore-output"]
variant_sizes = {name: size_table["fp32 teacher"] if name.startswith("fp32") else
                 size_table["int8, unused fp32 weights dropped"] for name in cnn_compiled}
plot_tradeoff({f"{name} ({variant_sizes[name] / 1e3:.0f} KB)": (cnn_table.loc[name, "median_ms"],
                                                                 100 * cnn_accuracy[name]) for name in cnn_compiled},
              xlabel="latency, batch 64 (ms, log scale)", ylabel="test accuracy (%)", hardware=hw.cpu_label,
              title="The teacher CNN: size, latency and accuracy of each variant")

# %% [markdown]
# The widget runs the teacher in the precision you pick and measures it against fp32 (compiled with
# freezing) in alternating rounds: size, latency, accuracy and the largest logit difference. A new
# precision compiles once (a few seconds), then is reused. `int8 dynamic` quantizes only the final
# Linear layer of this CNN (dynamic quantization does not cover convolutions), so it shows what
# choosing the wrong variant for a model costs; `int4 weight-only` reports whether this machine
# supports it.

# %%
PRECISIONS = ["fp32", "bf16", "int8 dynamic", "int8 static", "int4 weight-only"]
precision_models = {"fp32": cnn_compiled["fp32 compiled + freezing"][0],
                    "int8 static": cnn_compiled["int8 compiled + freezing"][0]}


def teacher_in_precision(precision: str) -> tuple[nn.Module, torch.dtype]:
    """The teacher converted to this precision (not yet compiled), and the input dtype it takes."""
    model = copy.deepcopy(teacher)
    if precision == "bf16":
        return model.to(torch.bfloat16), torch.bfloat16
    configs = {"int8 dynamic": Int8DynamicActivationInt8WeightConfig(), "int4 weight-only": Int4WeightOnlyConfig()}
    quantize_(model, configs[precision])
    return model, torch.float32


def precision_report(precision: str) -> pd.DataFrame:
    """Size, latency, accuracy and largest logit difference of the teacher in this precision, against fp32."""
    if precision not in precision_models:
        try:
            model, dtype = teacher_in_precision(precision)
        except ImportError as error:
            print(f"{precision} is not available on this machine: {error}")
            return None
        precision_models[precision] = compile_for_inference(model, example.to(dtype))[0]
        precision_models[precision + " size"] = serialized_size_bytes(model)
    model = precision_models[precision]
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    with torch.no_grad():
        timings = measure_interleaved({"fp32": lambda: precision_models["fp32"](example),
                                       precision: lambda: model(example.to(dtype))}, rounds=3, min_run_time=0.6)
        logits = predict_in_fixed_batches(lambda images: model(images.to(dtype)), x_test, 64)
    size = precision_models.get(precision + " size", size_table["fp32 teacher"] if precision == "fp32"
                                else size_table["int8, unused fp32 weights dropped"])
    return pd.DataFrame({"size (KB)": [size / 1e3], "latency (ms)": [timings[precision].median_ms],
                         "against fp32": [str(timing_ratio(timings["fp32"], timings[precision]))],
                         "test accuracy": [(logits.argmax(1) == y_test).float().mean().item()],
                         "largest logit difference": [(logits - reference_logits).abs().max().item()]},
                        index=[precision]).round(4)


# %% tags=["nbval-ignore-output"]
live_control(precision_report, precision=widgets.ToggleButtons(options=PRECISIONS, value="fp32",
                                                               description="precision"))

# %% [markdown]
# ## 4. Compression combined: prune, distil, quantize
# Now the three methods in sequence on the teacher, each step measured (chapter 8 builds on this):
# 1. **prune** half of every convolution's channels with chapter 2's BN-scaled L1 criterion, then
#    fine-tune with labels for 200 steps of 128 images;
# 2. **distil** instead: the same pruned network, fine-tuned for the same 200 steps of 128 images (64
#    with their labels, 64 with the unpruned teacher's soft targets at $T=4$, $\alpha=0.5$);
# 3. **int8**: the distilled pruned network, static int8 compiled with freezing.
#
# Latency is compiled with freezing for every row, so that each ratio measures the compression.

# %% tags=["nbval-ignore-output"]
all_labels = (x_train, y_train)
pruned = prune_channels(teacher, 0.5, criterion="bn_scaled_l1")
pruned_tuned = train_student(copy.deepcopy(pruned), all_labels, steps=200, lr=1e-3, batch_size=128)
pruned_distilled = train_student(copy.deepcopy(pruned), all_labels, transfer=transfer,
                                 targets="teacher's soft targets", temperature=4.0, alpha=0.5, steps=200, lr=1e-3)
pruned_int8 = static_int8(pruned_distilled, example, calibration_batches, reduce_range=reduce_range)
stages = {"teacher (fp32)": teacher, "pruned 50% + fine-tuned": pruned_tuned,
          "pruned 50% + distilled": pruned_distilled, "pruned + distilled + int8": pruned_int8}
stage_compiled = {"teacher (fp32)": precision_models["fp32"]}
stage_compiled |= {name: compile_for_inference(model, example)[0] for name, model in list(stages.items())[1:]}

# %% tags=["nbval-ignore-output"]
with torch.no_grad():
    stage_timings = measure_interleaved({name: (lambda f=f: f(example)) for name, f in stage_compiled.items()},
                                        rounds=5, min_run_time=1.5)
stage_table = pd.DataFrame({
    "size (KB)": {name: serialized_size_bytes(model) / 1e3 for name, model in stages.items()},
    "latency (ms)": {name: timing.median_ms for name, timing in stage_timings.items()},
    "test accuracy (%)": {name: 100 * fixed_batch_accuracy(f, x_test, y_test) for name, f in stage_compiled.items()},
})
combined_ratio = timing_ratio(stage_timings["teacher (fp32)"], stage_timings["pruned + distilled + int8"])
stage_table.round(2)

# %% tags=["nbval-ignore-output"]
plot_stages(stage_table, ["size (KB)", "latency (ms)", "test accuracy (%)"], hardware=hw.cpu_label,
            title="One network through pruning, distillation and int8 (latency compiled with freezing, batch 64)")

# %% tags=["nbval-ignore-output"]
combined_claim = make_claim(6, "compression_combined_2x", "Pruning half the channels, distilling and static int8 "
                            "together make the teacher at batch 64 at least 2x faster than the teacher compiled "
                            "with freezing.", threshold=2.0, ratio=combined_ratio, hardware=hw.cpu_label)
claims.append(combined_claim)
report_claim(combined_claim,
             holds="Pruning half the channels of every layer removes about three quarters of the multiply-adds; "
                   "the line below says what int8 added on top of it on this machine.",
             does_not_hold="A likely reason (not measured here): at this size the fixed costs of each call "
                           "(launching the graph, the layers that compression does not touch) limit what removing "
                           "work can save.")

# %% tags=["nbval-ignore-output"]
int8_on_pruned = timing_ratio(stage_timings["pruned 50% + distilled"], stage_timings["pruned + distilled + int8"])
print(f"int8 on the pruned network: {int8_on_pruned} ({int8_on_pruned.gain}); "
      f"on the unpruned teacher: {fair_static_claim.ratio}")
if int8_on_pruned.high < fair_static_claim.ratio.low:
    print("int8 gained less on the pruned network than on the teacher. A likely reason: with 16 to 64 channels at "
          "16x16, each int8 convolution has less arithmetic to repay its fixed costs (quantizing the input, "
          "reordering the data for the int8 kernel).")

# %% [markdown]
# The accuracy of the pruned network before any fine-tuning, and the two fine-tuned rows compared on
# the same test images (one run each, so this says what happened in this run, not how often):

# %% tags=["nbval-ignore-output"]
print(f"pruned 50%, not fine-tuned: {evaluate_accuracy(pruned, x_test, y_test):.1%}")
tuned_vs_distilled = paired_prediction_change(predict_in_fixed_batches(pruned_tuned, x_test, 64).argmax(1),
                                              predict_in_fixed_batches(pruned_distilled, x_test, 64).argmax(1), y_test)
print(f"fine-tuned against distilled: {tuned_vs_distilled}")

# %% [markdown]
# ## 5. What the source article got wrong
# **The distillation "loss".** The article computes `loss_fn(student_output, teacher_output)` on raw
# outputs with an unspecified `loss_fn`: no temperature, no softened distributions, no $T^2$, no true
# labels, and the teacher is neither put in `eval()` nor run under `no_grad()`. Section 2.1 shows
# each piece and why it is there.
#
# **The quantization code** uses `torch.quantization`, an alias of `torch.ao.quantization`, which is
# deprecated (its PT2E modules have already moved to torchao). It also has three bugs of its own. The
# cell below runs each of them, showing the warnings they raise instead of hiding them:

# %%
def run_quoted_mistake(label: str, action) -> None:
    """Run one of the article's lines; print its warnings and the error it raises, if any."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            action()
            outcome = "ran without error"
        except (TypeError, AssertionError, NameError) as error:
            outcome = f"{type(error).__name__}: {error}"
    for warning in sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0]}" for w in caught}):
        print(f"{label} warns {warning}")
    print(f"{label}: {outcome}")


def article_qconfig() -> None:
    """The article's QConfig: whole QConfigs passed where observer constructors belong."""
    import torch.quantization as old_quantization

    qconfig = old_quantization.QConfig(activation=old_quantization.default_qconfig,
                                       weight=old_quantization.default_qconfig)
    model = nn.Sequential(nn.Linear(4, 4))
    model.qconfig = qconfig
    old_quantization.prepare(model)


run_quoted_mistake("QConfig(activation=default_qconfig, weight=default_qconfig)", article_qconfig)
def article_dynamic(*args: object, **kwargs: object) -> nn.Module:
    """The article's call, in the deprecated namespace, on purpose (it runs only inside run_quoted_mistake)."""
    return torch.quantization.quantize_dynamic(*args, **kwargs)  # the article's deprecated call


run_quoted_mistake("quantize_dynamic(..., dtype=quint8)",
                   lambda: article_dynamic(nn.Sequential(nn.Linear(4, 4)), {nn.Linear}, dtype=torch.quint8))  # errata
run_quoted_mistake("quantize_dynamic(model, ...) with model undefined",
                   lambda: article_dynamic(model_never_defined, {nn.Linear}))  # noqa: F821

# %% [markdown]
# - The deprecation message above names a removal release (2.10) that has already passed: the
#   namespace still exists in torch 2.14 as a shim, which is no reason to start using it.
# - `QConfig(activation=..., weight=...)` expects observer *constructors*; passing whole QConfigs
#   fails only later, when `prepare` tries to build an observer from one.
# - Dynamic quantization of Linear layers supports `torch.qint8` (or `float16`), not `quint8`.
# - The `QuantizedModel` wrapper with `QuantStub`/`DeQuantStub` belongs to the eager *static* flow
#   (stubs, a QConfig, `prepare`, calibration, `convert`), yet the snippet then calls the *dynamic*
#   flow's `quantize_dynamic`, which needs neither; the wrapper is never used, and `quantize_dynamic`
#   runs on a `model` the snippet never defines.
# - "int8 reduces model size and inference time" is stated unconditionally. The size holds (3 to
#   4x, once the unused fp32 weights are dropped); the time is conditional: weight-only int8 cannot
#   speed up compute-bound layers, static int8 needs int8 kernels on the CPU and the freezing passes,
#   and dynamic int8 at batch 1 pays its fixed costs on every call. The verdicts of section 3 say
#   which of these paid on this machine.
#
# The corrected, current code is sections 3.2 and 3.3: `torchao.quantization.quantize_` for
# Linear-heavy models, PT2E with `X86InductorQuantizer` and `torch.compile` with freezing for CNNs.
#
# ## 6. On a GPU
# On a CUDA GPU torchao offers int8 and int4 weight-only kernels (the int4 one is what makes 4-bit
# LLM decoding fast) and, on GPUs with fp8 tensor cores (compute capability 8.9 and up), fp8
# matmuls (`Float8DynamicActivationFloat8WeightConfig`). The cell measures the MLP in bf16 and with
# each of them, and names those this GPU or its installed kernels do not support. At batch 64 and
# 1024 wide this MLP is small for a GPU: expect launch costs to dominate, and read the ratios with that
# in mind.

# %% tags=["nbval-ignore-output"]
def gpu_variant(config: object, gpu_input: torch.Tensor) -> tuple[object, str]:
    """The bf16 MLP on the GPU, quantized with config and compiled; or None and the reason it is unsupported."""
    model = copy.deepcopy(mlp).cuda().to(torch.bfloat16)
    try:
        if config is not None:
            quantize_(model, config)
        return compile_for_inference(model, gpu_input, freezing=False)[0], ""
    except (ImportError, RuntimeError, ValueError, NotImplementedError, AssertionError) as error:
        return None, f"{type(error).__name__}: {str(error).splitlines()[0]}"


if torch.cuda.is_available():
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig

    gpu_input = x_test[:64].cuda().to(torch.bfloat16)
    gpu_configs = {"bf16": None, "int8 weight-only": Int8WeightOnlyConfig(), "int4 weight-only": Int4WeightOnlyConfig(),
                   "fp8 dynamic": Float8DynamicActivationFloat8WeightConfig()}
    gpu_compiled = {}
    for name, config in gpu_configs.items():
        model, problem = gpu_variant(config, gpu_input)
        if model is None:
            print(f"{name}: not supported on this GPU ({problem})")
        else:
            gpu_compiled[name] = model
    with torch.no_grad():
        gpu_timings = measure_interleaved({name: (lambda f=f: f(gpu_input)) for name, f in gpu_compiled.items()},
                                          rounds=5, min_run_time=1.0)
    for name in list(gpu_timings)[1:]:
        print(f"{name} against bf16: {timing_ratio(gpu_timings['bf16'], gpu_timings[name])}")
    display(timing_table(gpu_timings, baseline="bf16").round(4))
else:
    print("No CUDA GPU here: the GPU quantization kernels (int8 and int4 weight-only, fp8) are skipped.")

# %% [markdown]
# ## 7. Exercises
# **Exercise 1 (predict, then measure: the size of an int8 model).** Predict, in bytes, the size of
# the pruned, distilled int8 network of section 4 as `torch.save` writes its state dict. Its
# parameters are listed below; the converted graph stores each convolution and Linear weight as int8
# (1 byte), each weight's per-channel scale as float32 and zero point as int64, biases in float32,
# and `torch.save` adds some bookkeeping per file and per stored tensor (measure it: save a state dict
# with one tiny tensor, then with two). Within 10% passes.

# %%
pd.DataFrame([{"tensor": name, "shape": tuple(value.shape), "dtype": str(value.dtype).replace("torch.", "")}
              for name, value in pruned_int8.state_dict().items()])

# %%
my_int8_bytes = ...  # your prediction, in bytes
check_number("Exercise 1", my_int8_bytes, serialized_size_bytes(pruned_int8), rtol=0.10,
             hint="Add numel x bytes per element for every tensor listed, then the bookkeeping per tensor.")

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution"]
element_bytes = {torch.int8: 1, torch.float32: 4, torch.int64: 8}
payload = sum(value.numel() * element_bytes[value.dtype] for value in pruned_int8.state_dict().values())
one_tensor = serialized_size_bytes(nn.Linear(1, 1, bias=False))  # a 4-byte weight
two_tensors = serialized_size_bytes(nn.Linear(1, 1))  # a 4-byte weight and a 4-byte bias
per_tensor = two_tensors - one_tensor - 4
per_file = one_tensor - per_tensor - 4
my_int8_bytes = per_file + payload + per_tensor * len(pruned_int8.state_dict())
check_number("Exercise 1", my_int8_bytes, serialized_size_bytes(pruned_int8), rtol=0.10,
             hint="Add numel x bytes per element for every tensor listed, then the bookkeeping per tensor.")

# %% [markdown]
# **Exercise 2 (an activation's int8 by hand).** After a ReLU, activations are never negative, so a
# *symmetric* scale wastes half of the codes. Activations therefore use **asymmetric** (affine)
# quantization to unsigned 8-bit codes $q \in [0, 255]$: $x \approx s\,(q - z)$ with a scale $s$ and
# an integer zero point $z$ chosen so that the range $[\min(x, 0), \max(x, 0)]$ maps onto
# $[0, 255]$ (the range always includes 0, so that 0 is represented exactly: padding and ReLU
# outputs are full of zeros). Write `uint8_quantize(values)` returning `(codes, scale, zero_point)`
# for a 1-D float tensor. The check compares all three with torchao's own quantization primitives on
# four tensors: after a ReLU, shifted away from zero, with one outlier, and centred on zero.

# %%
def uint8_quantize(values: torch.Tensor) -> tuple[torch.Tensor, float, int]:
    """Asymmetric uint8 codes of values over [min(x, 0), max(x, 0)], with their scale and zero point."""
    ...  # your code


generators = [torch.Generator().manual_seed(seed) for seed in (1, 2, 3, 4)]
exercise_tensors = [torch.relu(torch.randn(1000, generator=generators[0])),
                    torch.randn(1000, generator=generators[1]) + 2,
                    torch.cat([torch.rand(999, generator=generators[2]), torch.tensor([40.0])]),
                    torch.randn(1000, generator=generators[3])]

# %%
check_uint8_quantizer("Exercise 2", uint8_quantize, exercise_tensors)

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution"]
def uint8_quantize(values: torch.Tensor) -> tuple[torch.Tensor, float, int]:
    """Asymmetric uint8 codes of values over [min(x, 0), max(x, 0)], with their scale and zero point."""
    low, high = min(values.min().item(), 0.0), max(values.max().item(), 0.0)
    scale = (high - low) / 255
    zero_point = round(-low / scale)
    codes = torch.clamp(torch.round(values / scale) + zero_point, 0, 255)
    return codes, scale, zero_point


check_uint8_quantizer("Exercise 2", uint8_quantize, exercise_tensors)

# %% [markdown]
# The largest round-trip error $|s\,(q - z) - x|$ of each case, from the codes:

# %%
def round_trip_error(values: torch.Tensor) -> float:
    """Largest |s (q - z) - x| of uint8_quantize's codes."""
    codes, scale, zero_point = uint8_quantize(values)
    return ((codes - zero_point) * scale - values).abs().max().item()


pd.Series({label: f"{round_trip_error(values):.4f}"
           for label, values in zip(["after ReLU", "shifted", "one outlier", "centred"], exercise_tensors)},
          name="largest round-trip error").to_frame()

# %% [markdown]
# Look at the outlier case: one value of 40 sets the scale for all 1,000 values (the others, all
# below 1, share a handful of codes), which is why activation outliers are the hard part of
# quantizing large language models.
#
# ## 8. Summary
# The results this run measured, recorded into the course's ledger for chapter 8:

# %% tags=["nbval-ignore-output"]
int8_size_ratio = size_table["fp32 teacher"] / size_table["int8, unused fp32 weights dropped"]
entries = [
    make_entry(6, "knowledge_distillation", metric="tiny student test accuracy, 50 labelled images", unit="%",
               baseline=100 * alone, optimized=100 * distilled, higher_is_better=True, hardware=hw.cpu_label,
               ratio=kd_ratio, extras={"teacher_accuracy": 100 * teacher_accuracy, "gap_closed": gap_closed, "seeds": len(SEEDS),
                       "against_labels_only": soft_vs_alone.replace("fold", "seed"),
                       "hard_label_arm": 100 * statistics.mean(student_runs[arms[1]]),
                       "against_hard_labels": soft_vs_hard.replace("fold", "seed"),
                       "per_seed_gain_points": [100 * (d - a) for a, d in zip(student_runs[arms[0]],
                                                                              student_runs[arms[2]])],
                       "spread_points": {arm: float(kd_table.loc[arm, "std (points)"]) for arm in arms}}),
    make_entry(6, "int8_dynamic_linear", metric="MLP latency, batch 64, against compiled fp32", unit="ms",
               baseline=mlp_table.loc["fp32", "batch 64 (ms)"], optimized=mlp_table.loc["int8 dynamic", "batch 64 (ms)"],
               higher_is_better=False, hardware=hw.cpu_label, ratio=dynamic_claim.ratio,
               extras={"size_ratio": mlp_table.loc["fp32", "size (KB)"] / mlp_table.loc["int8 dynamic", "size (KB)"]}),
    make_entry(6, "int8_static_pt2e", metric="teacher CNN latency, batch 64, against eager fp32", unit="ms",
               baseline=cnn_table.loc["fp32 eager", "median_ms"],
               optimized=cnn_table.loc["int8 compiled + freezing", "median_ms"], higher_is_better=False,
               hardware=hw.cpu_label, ratio=static_claim.ratio,
               extras={"size_ratio": int8_size_ratio, "against_compiled_fp32": fair_static_claim.as_dict()["ratio"] | {"verdict": fair_static_claim.verdict},
                       "accuracy_change_points": 100 * (cnn_accuracy["int8 compiled + freezing"] - teacher_accuracy)}),
    make_entry(6, "weight_only_int8", metric="MLP latency, batch 1, against compiled fp32", unit="ms",
               baseline=mlp_table.loc["fp32", "batch 1 (ms)"], optimized=mlp_table.loc["int8 weight-only", "batch 1 (ms)"],
               higher_is_better=False, hardware=hw.cpu_label, ratio=weight_only_claim.ratio),
    make_entry(6, "compression_combined", metric="teacher latency, batch 64, against compiled fp32", unit="ms",
               baseline=stage_table.loc["teacher (fp32)", "latency (ms)"],
               optimized=stage_table.loc["pruned + distilled + int8", "latency (ms)"], higher_is_better=False,
               hardware=hw.cpu_label, ratio=combined_ratio,
               extras={"size_ratio": stage_table["size (KB)"].iloc[0] / stage_table["size (KB)"].iloc[-1],
                       "accuracy_change_points": stage_table["test accuracy (%)"].iloc[-1]
                       - stage_table["test accuracy (%)"].iloc[0]}),
]
record_chapter(6, entries, claims)
ledger_table(entries).round(3)

# %% [markdown]
# **Take-aways**
# 1. Distillation is Hinton's loss exactly: softened log-probabilities, KL with `batchmean` and
#    `log_target=True`, times $T^2$, with the teacher in `eval()` under `no_grad()`. Test it against
#    the control that matters: pseudo-labels from the same teacher on the same images.
# 2. int8 makes a model 3 to 4x smaller once the unused fp32 weights are dropped (less for small
#    models: scales, zero points and biases stay wide); it makes it faster only with the right
#    variant for the layers (dynamic for Linear, static PT2E for convolutions), int8 kernels on the
#    CPU, and the right compilation (freezing for PT2E).
# 3. Measure size, latency and accuracy at every step, accuracy with its interval: a compression
#    that loses less than the test set can resolve has not been shown to lose anything.
