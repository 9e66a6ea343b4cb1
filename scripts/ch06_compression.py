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
# **Estimated time:** ~120 min · **Hardware:** Any CPU (int8 pays most with VNNI or AMX); a CUDA GPU adds the torchao GPU quantization kernels

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
import math
import statistics
import warnings

import ipywidgets as widgets
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from helpers.ch06_compression.quantize import (  # first: it quietens a log line that importing torchao prints
    convert_qat, drop_unused_parameters, export_for_pt2e, fixed_batch_accuracy, fold_batch_norm,
    int8_reduce_range_needed, predict_in_fixed_batches, prepare_qat, quantized_activations, static_int8,
    symmetric_int8_error, with_int8_weights, x86_quantizer,
)
import torchao
from torchao.quantization import quantize_
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

from helpers.core.accuracy import fold_table, paired_difference, paired_prediction_change
from helpers.core.claims import make_claim, report_claim, timing_ratio
from helpers.core.cost import count_parameters, serialized_size_bytes
from helpers.core.measure import measure_interleaved, timing_table
from helpers.workload.data import load_digits_split, tensor_loader
from helpers.workload.models import small_cnn
from helpers.workload.training import evaluate_accuracy, train_epochs
from helpers.support.chapter import setup_chapter
from helpers.support.ledger import ledger_table, make_entry, record_chapter
from helpers.support.source import show_source
from helpers.support.widgets import live_control
from helpers.ch02_model_structure.pruning import prune_channels
from helpers.ch03_hardware.compile_timing import compile_for_inference
from helpers.ch06_compression.calibration import (
    activation_ranges, detectable_difference, equalization_scales, folded_student, multiply_adds, paired_table,
    quantizable_layers, rescale_channels, static_int8_variant,
)
from helpers.ch06_compression.distill import soft_target_loss, split_for_distillation, teacher_logits, train_student
from helpers.ch06_compression.exercises import (
    check_granularity_prediction, check_granularity_ratio, check_uint8_quantizer,
)
from helpers.ch06_compression.plots import plot_distributions, plot_spread, plot_stages
from helpers.ch06_compression.weight_only import (
    DYNAMIC_INT8, WEIGHT_ONLY, WidthResult, gpu_weight_only, last_level_cache_mib, measure_weight_only,
    quantization_config, weight_only_table,
)

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
# small CNN (32, 64 and 128 channels) as the teacher. The training images are split three ways
# before anything trains, for section 2's experiment: 600 for the teacher, 150 for validation (the
# settings of section 2 are chosen on them, never on the test images), and a pool of 597 that the
# teacher never sees.

# %%
digits = load_digits_split(image_size=16)
x_train, y_train, x_test, y_test = digits.x_train, digits.y_train, digits.x_test, digits.y_test
split = split_for_distillation(x_train, y_train, teacher_size=600, validation_size=150, labelled_per_class=5)
print(f"test {tuple(x_test.shape)}; training images: teacher {len(split.teacher[1])}, validation "
      f"{len(split.validation[1])}, pool {len(split.pool)} (of which {len(split.labelled[1])} labelled)")

# %% tags=["nbval-ignore-output"]
torch.manual_seed(0)
teacher = small_cnn((32, 64, 128))
train_epochs(teacher, tensor_loader(*split.teacher, batch_size=64, shuffle=True), epochs=10, anneal=True,
             progress=False)
teacher_accuracy = evaluate_accuracy(teacher, x_test, y_test)
print(f"teacher: {count_parameters(teacher):,} parameters, trained on {len(split.teacher[1])} images, "
      f"test accuracy {teacher_accuracy:.1%}")

# %% [markdown]
# ## 2. Knowledge distillation
# ### 2.1 The loss, and four ways to get it wrong
# A trained classifier knows more than its top answer: the probabilities it gives the *wrong* classes
# say which digits look alike (a 7 resembles a 1 more than a 0). Hinton, Vinyals and Dean
# ("Distilling the Knowledge in a Neural Network", 2015, arXiv:1503.02531) train the
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
# as $T$ grows); with it, it stays of the same order. **Why `reduction="batchmean"`.** `F.kl_div`
# with the default `reduction="mean"` divides by batch size *times* the number of classes, which is
# not the KL divergence per example; PyTorch warns about it:

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
# one NaN ruins the whole batch's gradient. (PyTorch's own distillation tutorial has used exactly this
# hand-written form, `soft_targets * (soft_targets.log() - soft_prob)`, in some of its versions.)
# `F.kl_div` with probabilities as the target
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
# comes. The helper that computes the targets once, for every image of the student's pool (section 2.2):

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
# ### 2.2 A fair experiment: a few labels, a pool of unlabelled images, a teacher trained elsewhere
# Distillation pays when the teacher knows something the student cannot learn from its own labels.
# The realistic case: a teacher trained elsewhere on its own labelled images (here the 600 of
# section 1), and a student whose owner has a pool of images the teacher never saw (597), only **5
# per digit** of them labelled (50 in all). The student is a much smaller CNN (16 and 32 channels).
# Four arms, same architecture, same 200 steps, same learning rate and schedule, same labelled
# batches for a given seed:
# - **labels only**: cross-entropy on the 50 labelled images (64 images per step);
# - **pseudo-labels**: plus cross-entropy on the teacher's top class for pool images, 64 more per step;
# - **soft targets**: plus `soft_target_loss` on the teacher's softened distribution for the same pool
#   images (distillation);
# - **true labels on the pool**: plus the pool's real labels, which the student's owner does not have:
#   the upper bound that tells how far the teacher's labels are from the truth.
#
# The pseudo-label arm is the control that separates the two things distillation could be adding:
# the teacher labelling more images, and the teacher's *soft* knowledge about wrong classes. The KD
# arms see twice the images per step of the labels-only arm (the pool is what they add), so the fair
# comparison for the soft targets is the pseudo-label arm, which sees exactly the same images. The
# training loop, shared by every arm:

# %%
show_source(train_student)

# %% [markdown]
# The arms, and how good the teacher's labels are on pool images it never saw:

# %% tags=["nbval-ignore-output"]
STUDENT_CHANNELS = (16, 32)
pool_logits = teacher_logits(teacher, split.pool)
ARMS = {"labels only": ("labels only", None),
        "pseudo-labels": ("hard labels", pool_logits),
        "soft targets": ("soft targets", pool_logits),
        "true labels on the pool": ("hard labels", F.one_hot(split.pool_labels, 10).float())}
pseudo_label_accuracy = (pool_logits.argmax(1) == split.pool_labels).float().mean().item()
print(f"the teacher's pseudo-labels are right on {pseudo_label_accuracy:.1%} of the {len(split.pool)} pool images; "
      f"student parameters: {count_parameters(small_cnn(STUDENT_CHANNELS)):,}")


# %%
def trained_student(arm: str, seed: int, temperature: float = 1.0, alpha: float = 0.5) -> nn.Module:
    """A fresh student trained 200 steps in this arm (see ARMS) with this seed, temperature and weight alpha."""
    targets, pool_targets = ARMS[arm]
    torch.manual_seed(seed)
    return train_student(small_cnn(STUDENT_CHANNELS), split.labelled, targets=targets, steps=200, seed=seed,
                         transfer=None if pool_targets is None else (split.pool, pool_targets),
                         temperature=temperature, alpha=alpha)


# %% [markdown]
# **Choosing $T$ and $\alpha$ on validation.** The temperature and the weight $\alpha$ of the teacher
# term (against $1-\alpha$ for the labels) are settings, and a comparison at an untuned setting says
# little. Each arm gets the same $\alpha$ grid (0.5, 0.9), the soft arm also $T$ in (1, 2, 4), one
# student each (seed 0), judged on the 150 validation images. One seed and 150 images resolve about
# 2 points, so the choice is itself uncertain; that is why the comparison after it uses fresh seeds
# and the test images.

# %% tags=["nbval-ignore-output"]
x_val, y_val = split.validation
grid = [("pseudo-labels", 1.0, alpha) for alpha in (0.5, 0.9)]
grid += [("soft targets", temperature, alpha) for temperature in (1.0, 2.0, 4.0) for alpha in (0.5, 0.9)]
validation = pd.DataFrame([{"arm": arm, "T": temperature, "alpha": alpha,
                            "validation accuracy (%)": 100 * evaluate_accuracy(
                                trained_student(arm, 0, temperature, alpha), x_val, y_val)}
                           for arm, temperature, alpha in grid])
chosen = validation.loc[validation.groupby("arm", sort=False)["validation accuracy (%)"].idxmax()].set_index("arm")
settings = {arm: (chosen.loc[arm, "T"], chosen.loc[arm, "alpha"]) for arm in chosen.index}
settings["true labels on the pool"] = settings["pseudo-labels"]
validation["chosen"] = [settings[arm] == (t, a) for arm, t, a in grid]
validation.assign(T=[t if arm == "soft targets" else "-" for arm, t, _ in grid]).round(1)

# %% [markdown]
# Now each arm at its chosen setting (the upper bound at the pseudo-label arm's $\alpha$), with 6
# fresh seeds (1 to 6: seed 0 chose the settings), on the 450 test images:

# %% tags=["nbval-ignore-output"]
TEST_SEEDS = range(1, 7)
student_runs = {arm: [evaluate_accuracy(trained_student(arm, seed, *settings.get(arm, (1.0, 0.5))), x_test, y_test)
                      for seed in TEST_SEEDS] for arm in ARMS}
kd_table = fold_table(student_runs)
kd_table.insert(0, "T, alpha", pd.Series({arm: f"{t:g}, {a:g}" if ARMS[arm][0] == "soft targets" else f"-, {a:g}"
                                          for arm, (t, a) in settings.items()}))
kd_table.round(2)

# %% tags=["nbval-ignore-output"]
plot_spread(student_runs, hardware=hw.cpu_label, reference=("teacher", teacher_accuracy),
            title=f"Student accuracy over {len(TEST_SEEDS)} seeds: 50 labelled images, {len(split.pool)} pool images")

# %% [markdown]
# Each seed trains every arm from the same initialisation on the same labelled batches, so the
# differences are paired: the mean difference in points with a 95% interval (Student's t over the
# 6 paired seeds), and the exact sign test (with 6 seeds, 6 wins out of 6 gives p = 0.031):

# %% tags=["nbval-ignore-output"]
kd_differences = {
    "soft targets against labels only": paired_difference(student_runs["labels only"], student_runs["soft targets"]),
    "pseudo-labels against labels only": paired_difference(student_runs["labels only"], student_runs["pseudo-labels"]),
    "soft targets against pseudo-labels": paired_difference(student_runs["pseudo-labels"],
                                                            student_runs["soft targets"]),
    "true labels against pseudo-labels": paired_difference(student_runs["pseudo-labels"],
                                                           student_runs["true labels on the pool"]),
}
for name, difference in kd_differences.items():
    print(f"{name}: {difference} -> {difference.verdict}")

# %% [markdown]
# What the comparisons say for this run:

# %% tags=["nbval-ignore-output"]
soft_vs_alone, soft_vs_hard = kd_differences["soft targets against labels only"], kd_differences[
    "soft targets against pseudo-labels"]
print({"higher": "The teacher's outputs help: distilled students beat labels only.",
       "lower": "Distilled students did worse than labels only here: the teacher's outputs hurt at this setting.",
       "no measurable difference": "Distillation did not measurably beat labels only over these seeds."}
      [soft_vs_alone.verdict])
print({"higher": "At the best T and alpha found on validation, the soft targets also beat the teacher's own "
                 "pseudo-labels on the same images: the teacher's knowledge about the wrong classes adds to what "
                 "labelling the pool gives.",
       "lower": "At the best T and alpha found on validation, the teacher's pseudo-labels beat its soft targets on "
                "the same images: the gain comes from the teacher labelling the pool, not from its soft knowledge.",
       "no measurable difference": "At the best T and alpha found on validation, soft targets and pseudo-labels "
                                   "are not measurably different over these seeds: whatever distillation gains "
                                   "here, labelling the pool with the teacher's top class gains as much."}
      [soft_vs_hard.verdict])

# %% [markdown]
# The lesson is the control: **compare distillation with pseudo-labelling from the same teacher on
# the same images, each at its best validated setting, before you credit the soft targets**. The
# literature agrees that the answer depends on the setting: soft targets help less when the student
# is much smaller than the teacher (Cho and Hariharan, "On the Efficacy of Knowledge Distillation",
# ICCV 2019), students often fail to match their teacher's distribution even when it helps (Stanton
# et al., "Does Knowledge Distillation Really Work?", NeurIPS 2021), and distillation needs long,
# consistent schedules, far longer than 200 steps (Beyer et al., "Knowledge distillation: A good
# teacher is patient and consistent", CVPR 2022), which favours pseudo-labels in a short run like
# this one. The verdicts also depend on this teacher: its pseudo-labels are nearly all right (the
# accuracy printed with the arms), so pseudo-labels are almost the true labels; a weaker teacher,
# whose top class errs more often, is where its soft targets have more to add (train the teacher for
# fewer epochs in section 1 to try it). Distillation can also match intermediate features, not
# only the outputs (FitNets: Romero et al., ICLR 2015), which this chapter does not cover.
#
# ### 2.3 Explore: temperature and alpha
# The widget trains one student (seed 0, 200 steps, a second or two) with your temperature $T$ and
# weight $\alpha$, and shows its *validation* accuracy beside the pseudo-label arm's at seed 0 and
# two measures of noise, so that a difference smaller than them is not read as a finding: the
# seed-to-seed spread measured above on the 450 test images, and the sampling error of an accuracy
# measured on only 150 images (the binomial standard error, usually the larger of the two); and one
# test image's teacher distribution at that temperature. $T = 1$ leaves the
# teacher's distribution as it is; a large $T$ flattens it towards uniform. How far each $T$
# flattens this teacher's distribution for one image (log scale):

# %% tags=["nbval-ignore-output"]
one_image_logits = teacher_logits(teacher, x_test[:1])[0]
plot_distributions({f"T={t:g}": F.softmax(one_image_logits / t, dim=-1) for t in (1.0, 2.0, 4.0, 8.0)},
                   title=f"the teacher's softened distribution for one test image (label {y_test[0].item()})")


# %%
def distillation_report(temperature: float, alpha: float) -> pd.DataFrame:
    """Distil one student (seed 0) with these settings; print the softened teacher distribution of one image."""
    accuracy = evaluate_accuracy(trained_student("soft targets", 0, temperature, alpha), x_val, y_val)
    probabilities = F.softmax(one_image_logits / temperature, dim=-1)
    print(f"teacher's distribution at T={temperature:g} for a test '{y_test[0].item()}': "
          + " ".join(f"{p:.3f}" for p in probabilities.tolist()))
    pseudo = validation.loc[validation["arm"] == "pseudo-labels", "validation accuracy (%)"].max()
    spread = kd_table.loc["soft targets", "std (points)"]
    sampling = 100 * math.sqrt(accuracy * (1 - accuracy) / len(y_val))  # binomial standard error on 150 images
    return pd.DataFrame({"T": [temperature], "alpha": [alpha], "validation accuracy (%)": [round(100 * accuracy, 1)],
                         "pseudo-labels, seed 0 (%)": [round(pseudo, 1)],
                         "seed-to-seed std, test (points)": [round(spread, 1)],
                         "sampling error, 150 images (points)": [round(sampling, 1)]})


# %% tags=["nbval-ignore-output"]
live_control(distillation_report,
             temperature=widgets.FloatSlider(value=1.0, min=1.0, max=10.0, step=0.5, description="T",
                                             continuous_update=False),
             alpha=widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.1, description="alpha",
                                       continuous_update=False))

# %% [markdown]
# ## 3. Quantization on the current path
# ### 3.1 What an int8 tensor stores
# An int8 tensor stores integers $q \in [-128, 127]$ and a float **scale** $s$ (and a zero point $z$
# for unsigned activations): $x \approx s\,(q - z)$. One scale for the whole tensor (per-tensor) must
# cover its largest value; one scale per output channel (per-channel, the default for weights) adapts
# to each filter. The rounding error is at most $s/2$ per element, so a filter whose weights are
# small loses more of its precision under a scale set by the largest filter. torchao's quantization
# primitives express the granularity as a **block size**: the whole shape means one scale for the
# tensor; `(1, *rest)` means one scale per output channel. The weights that get quantized are those
# of the convolutions with batch norm folded in (PT2E folds it before quantizing; folding multiplies
# each filter by its own BN scale, so the filters' ranges can differ more than before). The measure,
# with torchao's primitives:

# %%
show_source(symmetric_int8_error)

# %% tags=["nbval-ignore-output"]
folded_teacher = fold_batch_norm(teacher)
convs = {f"conv {number}": layer.weight.detach()
         for number, layer in enumerate((m for m in folded_teacher if isinstance(m, nn.Conv2d)), start=1)}
granularity = pd.DataFrame({"per-tensor": {name: symmetric_int8_error(w, tuple(w.shape)) for name, w in convs.items()},
                            "per-channel": {name: symmetric_int8_error(w, (1, *w.shape[1:]))
                                            for name, w in convs.items()}})
granularity["per-tensor / per-channel"] = granularity["per-tensor"] / granularity["per-channel"]
print("mean rounding error relative to the mean weight magnitude:")
granularity.round(4)

# %% [markdown]
# Per tensor rounds these weights more coarsely (the last column says how many times). Whether that costs
# accuracy is a separate question, answered by the model: the folded teacher with only its weights
# rounded to int8 (`with_int8_weights`; activations stay fp32), against fp32 on the same test images.

# %% tags=["nbval-ignore-output"]
def weight_rounding_table(model: nn.Module) -> pd.DataFrame:
    """Test accuracy of model with its weights rounded to int8 per channel and per tensor, against fp32."""
    variants = {"fp32": model, "int8 weights, per channel": with_int8_weights(model, per_channel=True),
                "int8 weights, per tensor": with_int8_weights(model, per_channel=False)}
    predictions = {name: predict_in_fixed_batches(variant, x_test, 64).argmax(1) for name, variant in variants.items()}
    return paired_table(predictions, y_test, reference="fp32")[["test accuracy", "change (points)", "McNemar p"]]


def read_change(table: pd.DataFrame, name: str) -> str:
    """'loses measurably', 'gains measurably' or 'no measurable difference' for one row of a paired table."""
    row = table.loc[name]
    if row["McNemar p"] >= 0.05:
        return f"no measurable difference ({row['change (points)']:+.1f} points, p = {row['McNemar p']:.2f})"
    return (f"{'loses' if row['change (points)'] < 0 else 'gains'} measurably ({row['change (points)']:+.1f} "
            f"points, p = {row['McNemar p']:.2g})")


teacher_rounding = weight_rounding_table(folded_teacher)
for name in teacher_rounding.index[1:]:
    print(f"{name}: {read_change(teacher_rounding, name)}")
teacher_rounding.round(4)

# %% [markdown]
# Where both lines read "no measurable difference", the filters' ranges are close enough that one
# scale serves them all: the larger rounding error of section 3.1's table is real but too small to
# move a prediction of this teacher. Section 3.4 builds a network whose filters are far apart, as
# batch-norm folding can make them, and measures the same two roundings there.

# %% [markdown]
# Two questions decide whether int8 is also *faster*: does the runtime have int8 kernels for these
# layers on this CPU (x86 int8 dot products use the VNNI instructions where they exist), and does the
# conversion to and from int8 around each layer cost less than it saves? The next sections measure
# the three variants that PyTorch's current quantization library, **torchao**, offers:
#
# | variant | weights | activations | suits |
# |---|---|---|---|
# | dynamic int8 (`Int8DynamicActivationInt8WeightConfig`) | int8, one scale per output row | int8 on the fly: symmetric, one scale per row (per token) of each call | Linear-heavy models |
# | weight-only int8 (`Int8WeightOnlyConfig`) | int8, one scale per output row | float (bf16 for the fast CPU kernels) | memory-bound matrix-vector work (LLM decoding) |
# | static int8 (PT2E + `X86InductorQuantizer`) | int8 | int8, ranges from calibration | CNNs on CPU |
#
# Dynamic int8's per-row activation scales are section 3.1's per-channel lesson applied to the
# activations: each row (each token of a language model) gets its own scale. Whether this CPU has the
# VNNI int8 dot-product instructions (torchao checks for the AVX-512 form; client CPUs with the
# 256-bit AVX-VNNI form and ARM CPUs are outside what this check knows, and x86 CPUs with neither
# need the `reduce_range` setting of section 3.3), and whether it has AMX, the matrix units of Intel
# Xeons since Sapphire Rapids that multiply int8 and bf16 tiles and decide their speed there:

# %% tags=["nbval-ignore-output"]
reduce_range = int8_reduce_range_needed()
print(f"this CPU {'lacks' if reduce_range else 'has'} AVX-512 VNNI (the form torchao detects): "
      f"reduce_range={reduce_range}; AMX tiles: {torch.cpu._is_amx_tile_supported()}; "
      f"native bf16 (chapter 3's test): {hw.cpu_native_bf16}")

# %% [markdown]
# ### 3.2 Weight-only and dynamic int8 for Linear layers: where each pays
# At batch 1 a Linear layer reads every weight once and does one multiply-add with it: its time is
# the time to read the weight bytes (chapter 1's roofline: memory-bound). At a large batch every
# weight is reused by every row, and the layer is compute-bound. The variants attack different
# costs: **weight-only** int8 or int4 shrinks the weight bytes but still multiplies in floating
# point after unpacking; **dynamic** int8 also quantizes the activations and multiplies in int8.
# So weight-only can pay only where reading weights dominates, dynamic int8 only where the arithmetic
# does.
#
# The experiment: a stack of four bias-free bf16 Linear layers, 4096 wide (128 MiB of weights) at
# batch 1, and 1024 wide (8 MiB) at batch 1 and at batch 128. (Compare the weights with this CPU's
# last-level cache, printed below: where they fit in it, each call reads them from the cache, far
# faster than from memory, and the float path may then outrun the int8 kernel's unpacking.)
# The baseline is **bf16**, not fp32: on a CPU with native bf16 it is the float to beat, and the fast
# CPU weight-only kernels expect bf16 activations (pytorch/pytorch#131887). Each variant runs on its
# fast path on a CPU, read in torchao's and PyTorch's source and confirmed by the profiler (the
# operators column):
# - bf16: compiled with freezing, which packs each weight for oneDNN;
# - int8 weight-only: compiled, which rewrites torchao's forward into one kernel that reads the int8
#   weight directly (`_weight_int8pack_mm`); run eagerly, torchao would convert the whole weight to
#   bf16 first, slower than bf16 itself;
# - int4 weight-only: torchao's CPU layout (a prototype; the default `Int4WeightOnlyConfig` needs a
#   GPU kernel package) calls PyTorch's CPU kernel `_weight_int4pack_mm_for_cpu` itself: eager;
# - int8 dynamic: compiled, so that quantizing the activations fuses around the int8 matmul
#   (`_int_mm`). Inductor also has a fused oneDNN int8 linear for this pattern, registered for frozen
#   graphs. Whether torchao 0.18's dynamic int8 with bf16 activations reaches it is not checked in
#   this chapter, so dynamic int8 is compiled without freezing, on the plain path the profile names.
#
# One thread, so that the other core's load does not enter, and every configuration is built with
# `set_inductor_config=False`: torchao's default changes five of Inductor's process-wide settings
# and never restores them, which would change every later compile in this notebook. (Importing
# torchao's x86 quantizer, as this chapter does, also sets Inductor's `pre_grad_custom_pass` for every
# later compile, the fp32 baselines included.) The configs:

# %%
show_source(quantization_config)

# %% tags=["nbval-ignore-output"]
print(f"this CPU's last-level cache, as the operating system reports it: {last_level_cache_mib()} MiB")
weight_only = measure_weight_only({4096: (1,)}) | measure_weight_only({1024: (1, 128)},
                                                                   variants=(*WEIGHT_ONLY, DYNAMIC_INT8))
weight_only_table(weight_only).drop(columns="why not").round(2)

# %% [markdown]
# Why the batch-1 rows come out as they do: each variant's rate at batch 1, as weight bytes read per
# second and as weights used per second (four layers of width x width, whatever their format). The
# variant with the higher rate of weights wins; bytes per second show whether it was reading at
# memory speed or doing something else, such as unpacking int8 or int4 to bf16.

# %% tags=["nbval-ignore-output"]
def batch1_rates(result: WidthResult) -> pd.DataFrame:
    """Weight bytes read per second and weights used per second by each variant at batch 1."""
    rates = {}
    for variant, size in result.weight_bytes.items():
        seconds = result.timings[1, variant].median_ms / 1e3
        rates[variant] = {"GB read/s": size / seconds / 1e9,
                          "G weights/s": result.layers * result.width**2 / seconds / 1e9}
    return pd.DataFrame(rates).T


cache_mib = last_level_cache_mib()
cache_fit = {}  # each width's bf16 weights against the cache, in words (the ledger keeps them)
for width, result in weight_only.items():
    rates = batch1_rates(result)
    bf16_mib = result.weight_bytes["bf16"] / 2**20
    cache_fit[width] = ("a last-level cache of unknown size" if cache_mib is None else
                        f"weights {'within' if bf16_mib <= cache_mib else 'larger than'} the last-level cache")
    print(f"width {width}: bf16's {bf16_mib:.0f} MiB, {cache_fit[width]} ({cache_mib} MiB); "
          f"bf16 used {rates.loc['bf16', 'G weights/s']:.1f} G weights/s, int8 weight-only "
          f"{rates.loc['int8 weight-only', 'G weights/s']:.1f} G: {result.ratio(1, 'int8 weight-only')} at batch 1")
pd.concat({width: batch1_rates(result) for width, result in weight_only.items()}, names=["width", "variant"]).round(1)

# %% [markdown]
# Weight-only int8 pays where the float path uses fewer weights per second than the int8 kernel
# can unpack and multiply. Compare each variant's rate across the two widths: a rate that stays put
# is set by the kernel's own work, one that falls when the weights leave the cache is set by memory.
# The two widths were timed in separate rounds, so compare their rates loosely. All of this is on
# one thread; with every core reading weights at once, each core's share of the memory bandwidth
# shrinks, which should move the balance towards the smaller formats (not measured here).

# %% tags=["nbval-ignore-output"]
weight_only_claims = {
    "int8 weight-only": make_claim(6, "weight_only_int8_batch1_1.3x", "At batch 1, int8 weight-only makes a 4096-wide "
                                   f"bf16 Linear stack ({weight_only[4096].weight_bytes['bf16'] / 2**20:.0f} MiB of "
                                   "weights) at least 1.3x faster than bf16 compiled with freezing.", threshold=1.3, ratio=weight_only[4096].ratio(1, "int8 weight-only"),
                                   hardware=hw.cpu_label),
    "int4 weight-only": make_claim(6, "weight_only_int4_batch1_1.5x", "At batch 1, int4 weight-only makes the 4096-wide "
                                   "bf16 stack at least 1.5x faster than bf16 compiled with freezing.", threshold=1.5,
                                   ratio=weight_only[4096].ratio(1, "int4 weight-only"), hardware=hw.cpu_label),
    "batch 128": make_claim(6, "weight_only_int8_batch128_slower", "At batch 128, int8 weight-only makes the 1024-wide "
                            "stack slower than bf16 compiled with freezing (a ratio of at most 1x).", threshold=1.0,
                            direction="at most", ratio=weight_only[1024].ratio(128, "int8 weight-only"),
                            hardware=hw.cpu_label),
}
claims += weight_only_claims.values()
display(*(report_claim(claim) for claim in weight_only_claims.values()))
dynamic_ratio = weight_only[1024].ratio(128, DYNAMIC_INT8)
print(f"int8 dynamic against bf16 at batch 128 (1024 wide): {dynamic_ratio} ({dynamic_ratio.gain}); "
      f"at batch 1 (1024 wide): {weight_only[1024].ratio(1, DYNAMIC_INT8)}")
print({"gain": "At batch 128 dynamic int8 beat bf16 here: a likely reason, not measured here, is that this CPU's int8 "
               "units multiply faster than its bf16 ones, by more than quantizing the activations costs.",
       "loss": "At batch 128 dynamic int8 (on aten::_int_mm, the operators column) lost to bf16 on oneDNN's packed "
               "GEMM here. A likely reason, not measured here: quantizing the activations of every call and "
               "rescaling the int32 results cost more than the int8 multiplies save against this CPU's bf16.",
       "no gain": "At batch 128 dynamic int8 and bf16 are not measurably different here."}[dynamic_ratio.gain])

# %% [markdown]
# The rule the verdicts test: **weight-only quantization pays when weight bytes dominate, at small
# batch (a language model decoding one token at a time is the case it was built for), with bf16
# activations; at a large batch it loses, most likely because the unpacking adds work to layers
# that were limited by arithmetic (the weight-only rows at batch 128 run ATen's `_weight_int8pack_mm` and
# `_weight_int4pack_mm_for_cpu` kernels as they are; Inductor's C++ GEMM templates for them need
# max-autotune, not tried here).** The int4 kernel reads half the bytes of int8 again. Dynamic int8
# is the variant for the compute-bound case, and whether it beats bf16 there depends on the CPU's
# int8 and bf16 units (VNNI, AMX): the last line above reads what happened here, against the fair
# float baseline rather than fp32.
#
# Appendix A applies these variants to the case they were built for, the decode step of a small
# language model, with its held-out loss beside each speed-up and the batch-1 and batch-64 contrast
# measured on one model.

# %% [markdown]
# ### 3.3 Static int8 for a CNN: PT2E, calibration and freezing
# Convolutions need their activations in int8 too, with ranges fixed ahead of time, or the
# quantize and dequantize steps around every layer eat the gain. The PT2E flow, step by step, on the
# teacher: export the model to a graph; insert observers where the x86 backend supports int8; run
# real batches through it (calibration); convert the observers into quantize and dequantize
# operations with fixed scales. The x86 quantizer's observers differ: a weight's observer records
# each output channel's minimum and maximum, but an activation's is a `HistogramObserver`, which
# keeps a histogram of the values seen and picks the clipping range that approximately minimises
# the rounding plus clipping error (section 3.4 shows what it does, and what bad calibration data
# costs). Calibration uses 512 of the teacher's own training images, data like what the model will
# see. One trap on the way in: the quantizer finds convolutions by a label (`source_fn_stack`) that
# `torch.export`'s default tracing does not write. torch 2.14 falls back to the module each operation
# came from; torch 2.11, Colab's, does not, and the "int8" model comes out all fp32 without a
# warning. `export_for_pt2e` (in `helpers/ch06_compression/quantize.py`) adds the labels, and the
# cell counts the quantize operations to prove that something was quantized.

# %% tags=["nbval-ignore-output"]
example = x_test[:64]
calibration_batches = list(split.teacher[0][:512].split(64))
exported = export_for_pt2e(teacher.eval(), example)  # torch.export, with the labels the quantizer reads
prepared = prepare_pt2e(exported, x86_quantizer(reduce_range=reduce_range))
with torch.no_grad():
    for images in calibration_batches:
        prepared(images)
converted = convert_pt2e(prepared)
print({type(observer).__name__ for observer in prepared.modules() if "Observer" in type(observer).__name__})
quantized_tensors = quantized_activations(converted)
assert quantized_tensors > 0, "PT2E quantized nothing: the int8 rows below would be fp32"
print(f"{quantized_tensors} activations quantized to int8 in the converted graph")

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
# The file is not the memory. A model compiled with freezing holds its weights twice: Inductor's
# frozen, pre-packed constants, and the module's own parameters, which it keeps unless
# `torch._inductor.config.freezing_discard_parameters` is set; so a frozen model can occupy more RAM
# than its file says (read from Inductor's settings, not measured in this chapter). And a torchao-
# quantized checkpoint stores tensor subclasses, which `torch.load` (with its default
# `weights_only=True`) loads only where torchao is installed.
#
# The same steps, dropping included, live in `static_int8` (`helpers/ch06_compression/quantize.py`)
# for the rest of the chapter. Now speed.
# The x86 int8 convolutions with fused ReLU come from Inductor's **freezing** passes, which treat
# the weights as constants and pre-pack them for oneDNN; without freezing, the graph keeps separate
# quantize, dequantize and float operations. Six variants, once each at batch 64: eager fp32; fp32
# and int8 each compiled without and with freezing; and **bf16** compiled with freezing, int8's real
# competitor on a CPU with native bf16 (and on every GPU): half the bytes, no calibration. (The
# compiled graphs have static shapes, so accuracy is measured in batches of 64 too; each compiled
# model refuses to recompile, so it stays frozen or not as its name says.)

# %% tags=["nbval-ignore-output"]
cnn_compiled = {"fp32 eager": (teacher, 0.0),
                "fp32 compiled": compile_for_inference(copy.deepcopy(teacher), example, freezing=False),
                "fp32 compiled + freezing": compile_for_inference(copy.deepcopy(teacher), example, freezing=True),
                "bf16 compiled + freezing": compile_for_inference(copy.deepcopy(teacher).to(torch.bfloat16),
                                                                  example.to(torch.bfloat16), freezing=True),
                "int8 compiled": compile_for_inference(copy.deepcopy(int8_teacher), example, freezing=False),
                "int8 compiled + freezing": compile_for_inference(int8_teacher, example, freezing=True)}
cnn_inputs = {name: example.to(torch.bfloat16) if name.startswith("bf16") else example for name in cnn_compiled}
print({name: f"first call {seconds:.1f} s" for name, (_, seconds) in cnn_compiled.items()})

# %% tags=["nbval-ignore-output"]
with torch.no_grad():
    cnn_timings = measure_interleaved({name: (lambda f=model, x=cnn_inputs[name]: f(x))
                                       for name, (model, _) in cnn_compiled.items()}, rounds=5, min_run_time=0.8)
    reference_logits = teacher(x_test)
    cnn_logits = {name: predict_in_fixed_batches(lambda images, f=model, x=cnn_inputs[name]: f(images.to(x.dtype)),
                                                 x_test, 64) for name, (model, _) in cnn_compiled.items()}
cnn_accuracy = {name: (logits.argmax(1) == y_test).sum().item() / len(y_test) for name, logits in cnn_logits.items()}
cnn_table = timing_table(cnn_timings, baseline="fp32 compiled + freezing")
file_bytes = {"fp32": size_table["fp32 teacher"], "int8": size_table["int8, unused fp32 weights dropped"],
              "bf16": serialized_size_bytes(copy.deepcopy(teacher).to(torch.bfloat16))}
cnn_table["size (KB)"] = pd.Series({name: file_bytes[name.split()[0]] / 1e3 for name in cnn_compiled})
cnn_table["test accuracy"] = pd.Series(cnn_accuracy)
cnn_table["predictions changed"] = pd.Series({name: int((logits.argmax(1) != reference_logits.argmax(1)).sum())
                                              for name, logits in cnn_logits.items()})
cnn_table["largest logit error"] = pd.Series({name: (logits - reference_logits).abs().max().item()
                                              for name, logits in cnn_logits.items()})
cnn_table.round(4)

# %% [markdown]
# Every speed-up in the table is against fp32 compiled with freezing, the fair baseline: the
# question is what the precision buys once the fp32 model is as fast as compilation makes it. The
# claim for int8, and the same comparison for bf16, from the same rounds:

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
                                    "form the int8 convolutions need extra instructions, and reduce_range rounds the "
                                    "activations to 7 bits." if reduce_range else
                                    "This CPU has AVX-512 VNNI. A likely reason (not measured here): at this size "
                                    "the quantize and reorder steps around the int8 convolutions eat much of the "
                                    "gain.")))
bf16_ratio = timing_ratio(cnn_timings["fp32 compiled + freezing"], cnn_timings["bf16 compiled + freezing"])
int8_vs_bf16 = timing_ratio(cnn_timings["bf16 compiled + freezing"], cnn_timings["int8 compiled + freezing"])
print(f"bf16 against fp32 (both frozen): {bf16_ratio} ({bf16_ratio.gain}); int8 against bf16: {int8_vs_bf16} "
      f"({int8_vs_bf16.gain})")
for precision in ("fp32", "int8"):
    freezing_gain = timing_ratio(cnn_timings[f"{precision} compiled"], cnn_timings[f"{precision} compiled + freezing"])
    print(f"freezing, {precision}: {freezing_gain} ({freezing_gain.gain})")
compile_gain = timing_ratio(cnn_timings["fp32 eager"], cnn_timings["fp32 compiled + freezing"])
print(f"compiling fp32 with freezing, against eager fp32: {compile_gain} ({compile_gain.gain}); int8 against eager "
      f"fp32, compilation included: {timing_ratio(cnn_timings['fp32 eager'], cnn_timings['int8 compiled + freezing'])}")

# %% [markdown]
# Read the lines in order. *int8 or bf16* is the decision on a CPU with native bf16 (and on a GPU):
# bf16 needs no calibration and halves the bytes, int8 quarters them and needs a calibration set;
# which is faster here is the second line's verdict. (torchao's x86 recipe also has an
# "int8-mixed-bf16" mode: the converted int8 model run under `torch.autocast("cpu", torch.bfloat16)`,
# so that the layers left out of int8 run in bf16 rather than fp32.) The freezing lines isolate what
# freezing gives each precision: for int8 it is where the fused int8 convolutions come from, so int8
# without freezing keeps separate quantize, dequantize and float steps. The last line is what a
# deployment that starts from the eager model sees, compilation and int8 together: the compile part
# of it is compilation's (chapter 3), not int8's, and the ledger records the two apart. The accuracy
# column and the number of test images whose prediction changed show what each precision cost on
# these 450 images.
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
# ### 3.4 When post-training int8 does lose accuracy, and how to get it back
# Section 3.3's table shows what int8 cost the teacher, and a well-calibrated model of this size
# rarely loses anything measurable. Two things that do break post-training int8: calibration data
# unlike what the model will see (a calibration loader that skips a preprocessing step, for
# instance), and a model whose activations have outlier channels. First the data: here the loader
# skips `load_digits_split`'s division by 16 (scikit-learn stores the pixels as 0 to 16, and the
# model was trained on 0 to 1). The model is the smallest student (8 and 16 channels, 300 steps on
# the labelled training images outside section 1's validation set, batch norm folded into the
# convolutions). Every row is compared with fp32 on the same 450 test images: the images only one
# of the two gets right, and McNemar's exact p-value for "same accuracy" (the paired test; two
# separate intervals would waste the pairing). Two rows use 7-bit activations (`reduce_range=True`,
# what CPUs without VNNI need, section 3.3), whatever this CPU is: the converted graphs run eagerly
# here, so they compute either setting's rounding exactly (though not, for instance, the
# `vpmaddubsw` saturation).

# %% tags=["nbval-ignore-output"]
fit_set = (torch.cat([split.teacher[0], split.pool]), torch.cat([split.teacher[1], split.pool_labels]))
student = folded_student((8, 16), fit_set, seed=0)  # trained on every training image outside the validation set
raw_batches = [images * 16 for images in calibration_batches]  # sklearn's pixel values, 0 to 16: the /16 forgotten
one_digit = [x_train[y_train == 0][:64]]  # preprocessed, but one batch of one digit


def int8_predictions(model: nn.Module, batches: list[torch.Tensor], **options: object) -> torch.Tensor:
    """Test-set predictions of model in static int8 (PT2E, X86InductorQuantizer), calibrated on batches."""
    return predict_in_fixed_batches(static_int8_variant(model, example, batches, **options), x_test, 64).argmax(1)


ladder = {
    "fp32": predict_in_fixed_batches(student, x_test, 64).argmax(1),
    "raw pixels": int8_predictions(student, raw_batches),
    "raw pixels, MinMax observer": int8_predictions(student, raw_batches, observer="minmax"),
    "1 batch of digit 0": int8_predictions(student, one_digit),
    "section 3.3's calibration set": int8_predictions(student, calibration_batches),
    "... with 7-bit activations": int8_predictions(student, calibration_batches, reduce_range=True),
    "... and the MinMax observer": int8_predictions(student, calibration_batches, reduce_range=True, observer="minmax"),
}
ladder_table = paired_table(ladder, y_test, reference="fp32")
ladder_table.round(4)

# %% tags=["nbval-ignore-output"]
for name in list(ladder)[1:]:
    print(f"{name}: {read_change(ladder_table, name)}")
one_digit_lost = ladder_table.loc["1 batch of digit 0", "McNemar p"] < 0.05
print("One batch of a single digit " + ("was not enough here: calibration data must cover what the model will see, "
                                        "not just be correctly preprocessed." if one_digit_lost else
                                        "was enough here: correctly preprocessed, it covered the activation ranges."))

# %% [markdown]
# Read the lines against the table. The batch of a single digit tests the opposite worry, too little
# and too narrow calibration data; the last line reads it. Why raw pixels hurt, and how the two
# observers differ: the largest value each activation quantizer can represent, read from the
# converted graphs. The x86 quantizer's static config gives the weights a per-channel MinMax
# observer, which records each filter's range, and the activations a `HistogramObserver`, which
# keeps a histogram of the values and picks the range that approximately minimises the squared
# rounding-plus-clipping error: it clips a smooth tail of large values, but a lone extreme value
# still stretches its range.

# %% tags=["nbval-ignore-output"]
def ranges_after(batches: list[torch.Tensor], observer: str = "histogram", model: nn.Module = student) -> pd.Series:
    """The largest value each activation quantizer of model can represent after calibrating on batches."""
    return activation_ranges(static_int8_variant(model, example, batches, observer=observer))


pd.DataFrame({"raw pixels": ranges_after(raw_batches), "section 3.3's set": ranges_after(calibration_batches),
              "section 3.3's set, MinMax": ranges_after(calibration_batches, "minmax")}).round(2)

# %% [markdown]
# With raw pixels every range is many times too wide (16x at the input, more further in, because the
# biases do not scale with the input), so the real activations fall on a small fraction of the 256
# levels. The fix is the data, not the observer.
#
# **A loss that the right data does not remove: an outlier channel.** Large language models carry a
# few activation channels whose values are tens of times larger than the rest (Dettmers et al.,
# 2022, *LLM.int8()*). With one scale per tensor, such a channel sets the range, and every other
# channel is left with a handful of the 256 levels. This student has no such channel, so we make one
# without changing what the network computes: ReLU and max-pooling give the same result whether a
# positive factor is applied before or after them, so multiplying one output channel of the first
# convolution (its filter and bias) by 64 and dividing the second convolution's weights for that
# input channel by 64 leaves every fp32 output as it was. Plain training seldom ends at such an
# imbalance (for gradient flow without normalization, Du, Hu and Lee, 2018, prove that a channel's
# incoming and outgoing weights stay as balanced as they started, and weight decay pulls them
# together); in practice it comes from folding batch norm into the filters and, in
# transformers, from LayerNorm's per-channel gains. The planted channel stands in for those. The
# helper that rescales:

# %%
show_source(rescale_channels)

# %% tags=["nbval-ignore-output"]
def with_outlier_channel(model: nn.Module, factor: float = 64.0) -> nn.Module:
    """model with the first convolution's busiest output channel (on the calibration images) factor times larger
    and the second convolution's weights for that channel divided by factor: the same function in fp32."""
    with torch.no_grad():
        busiest = model[:3](torch.cat(calibration_batches)).amax(dim=(0, 2, 3)).argmax()
    scales = torch.ones(model[0].out_channels)
    scales[busiest] = factor
    return rescale_channels(model, "0", "3", scales)


outlier_student = with_outlier_channel(student)
logit_change = (predict_in_fixed_batches(outlier_student, x_test, 64)
                - predict_in_fixed_batches(student, x_test, 64)).abs().max().item()
print(f"fp32, before and after the rescaling: largest logit change {logit_change:.1e}, predictions changed: "
      f"{(predict_in_fixed_batches(outlier_student, x_test, 64).argmax(1) != ladder['fp32']).sum().item()}")
pd.DataFrame({"as trained": ranges_after(calibration_batches),
              "one channel x64": ranges_after(calibration_batches, model=outlier_student)}).round(2)

# %% [markdown]
# Only the range of the first block's output, the second convolution's input, grew, by a large factor
# (the histogram observer clips a little of the channel's tail): the other seven channels now share a
# few levels. The rescaled filter also shows why weights get one scale per output channel. Folding
# batch norm multiplies each filter by its own factor, and in depthwise networks such as MobileNet
# those factors can differ by orders of magnitude (Nagel et al., 2021, *A White Paper on Neural
# Network Quantization*, section 3); here one filter is 64 times larger than it was. Only the weights
# rounded, as in section 3.1:

# %% tags=["nbval-ignore-output"]
outlier_rounding = weight_rounding_table(outlier_student)
for name in outlier_rounding.index[1:]:
    print(f"{name}: {read_change(outlier_rounding, name)}")
outlier_rounding.round(4)

# %% [markdown]
# With one scale per tensor the first convolution's large filter sets the scale, and its seven others
# keep a few levels. One scale per output channel saves that layer but not the second convolution:
# the weights that were divided by 64 sit in every one of its filters next to weights of normal
# size, sharing their scale, and many of them round to zero (separating them would take a scale
# per *input* channel, which int8 kernels do not offer). The x86 quantizer rounds weights per
# channel, so static int8 has to survive that rounding and the activation range together. The
# ladder on this model, each rung applied alone and compared with fp32 on the same test images, and
# also with plain int8, to say whether the rung recovered anything:
# - the other observer (MinMax), to rule out calibration;
# - one layer kept in fp32, the one that keeps the most accuracy on the 150 validation images (the
#   whole validation table is printed, with the share of the multiply-adds left in int8: keeping
#   every layer in float would "recover" everything and quantize nothing).
#   `set_module_name_qconfig(name, None)` on the quantizer matches the exported graph's nodes by the
#   module they came from;
# - quantization-aware training, against the fair alternative: the same 60 extra steps in fp32 (the
#   student's own learning rate, 3e-3), then post-training int8;
# - cross-layer equalization, explained after the table.
#
# A trap met while writing this section: switching an exported QAT graph between `train()` and
# `eval()` with torchao's helper rewrites its batch-norm and dropout patterns by exporting them with
# strict `torch.export`, which resets `torch.compile`'s caches. Every model compiled earlier in the
# process then compiles again on its next call, with whatever settings hold at that moment: a model
# compiled with freezing came back unfrozen, silently, and was timed as if frozen. The course's
# compiled models now refuse to recompile (`InferenceCompiled` in chapter 3's helper), and
# `prepare_qat` switches modes without a rewrite when the graph has no batch norm or dropout, as here.

# %% tags=["nbval-ignore-output"]
def fp32_layer_choices(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> pd.DataFrame:
    """Each quantizable layer kept in fp32 in turn (the rest int8), against fp32 on these images, with the share
    of model's multiply-adds that stays in int8."""
    work = multiply_adds(model, example)
    predict = {"fp32": predict_in_fixed_batches(model, images, 64).argmax(1)}
    for name in quantizable_layers(model):
        variant = static_int8_variant(model, example, calibration_batches, fp32_layers=[name])
        predict[name] = predict_in_fixed_batches(variant, images, 64).argmax(1)
    table = paired_table(predict, labels, reference="fp32")[["test accuracy", "change (points)", "McNemar p"]]
    table["multiply-adds in int8"] = [0.0, *(1 - work[name] / work.sum() for name in table.index[1:])]
    return table.rename(index=lambda name: name if name == "fp32" else f"layer {name} in fp32")


def quantization_aware(model: nn.Module, steps: int = 60, seed: int = 1) -> nn.Module:
    """model trained for steps more with fake-quantized weights and activations, then converted to int8."""
    prepared = prepare_qat(copy.deepcopy(model), example)
    return convert_qat(train_student(prepared, fit_set, steps=steps, seed=seed))


EQUALIZED = "cross-layer equalization, then int8 (undoes the planting by construction)"


def outlier_ladder(model: nn.Module, fp32_layer: str) -> dict[str, torch.Tensor]:
    """Test-set predictions of model in fp32 and of each rung of the ladder, each applied alone."""
    fine_tuned = train_student(copy.deepcopy(model), fit_set, steps=60, seed=1)
    equalized = rescale_channels(model, "0", "3", equalization_scales(model, "0", "3"))
    return {"fp32": predict_in_fixed_batches(model, x_test, 64).argmax(1),
            "int8": int8_predictions(model, calibration_batches),
            "int8, MinMax observer": int8_predictions(model, calibration_batches, observer="minmax"),
            f"int8, layer {fp32_layer} in fp32": int8_predictions(model, calibration_batches,
                                                                  fp32_layers=[fp32_layer]),
            "60 fp32 steps (still fp32)": predict_in_fixed_batches(fine_tuned, x_test, 64).argmax(1),
            "60 fp32 steps, then int8": int8_predictions(fine_tuned, calibration_batches),
            "60 quantization-aware steps, int8": predict_in_fixed_batches(quantization_aware(model), x_test,
                                                                         64).argmax(1),
            EQUALIZED: int8_predictions(equalized, calibration_batches)}


choices = fp32_layer_choices(outlier_student, x_val, y_val).rename(columns={"test accuracy": "validation accuracy"})
fp32_layer = choices.drop("fp32")["validation accuracy"].idxmax().split()[1]
kept_variant = static_int8_variant(outlier_student, example, calibration_batches, fp32_layers=[fp32_layer])
print(f"kept in fp32 from here on: layer {fp32_layer}, which leaves "
      f"{choices.loc[f'layer {fp32_layer} in fp32', 'multiply-adds in int8']:.0%} of the multiply-adds in int8; "
      f"the activation ranges of that variant (its input is still rounded):")
print(activation_ranges(kept_variant).round(2).to_string())
display(choices.round(3))
outlier_rungs = outlier_ladder(outlier_student, fp32_layer)
outlier_table = paired_table(outlier_rungs, y_test, reference="fp32")


def read_pair(rungs: dict[str, torch.Tensor], reference: str, name: str, *, better: str, worse: str) -> str:
    """Images gained and lost by rung `name` against rung `reference`, McNemar's p, and the verdict it supports."""
    versus = paired_prediction_change(rungs[reference], rungs[name], y_test)
    gained, lost = versus["only the candidate right"], versus["only the reference right"]
    verdict = "no measurable difference" if versus["McNemar p"] >= 0.05 else better if gained > lost else worse
    return f"against {reference}: {gained} images gained, {lost} lost, p = {versus['McNemar p']:.2g}: {verdict}"


for name in list(outlier_rungs)[1:]:
    print(f"{name}: {read_change(outlier_table, name)}" + ("" if name in ("int8", "60 fp32 steps (still fp32)") else
          "; " + read_pair(outlier_rungs, "int8", name, better="recovered measurably", worse="measurably worse")))
print("the fake quantization itself, quantization-aware "
      + read_pair(outlier_rungs, "60 fp32 steps, then int8", "60 quantization-aware steps, int8",
                  better="QAT did better than the same steps in fp32",
                  worse="QAT did worse than the same steps in fp32"))
outlier_table.round(4)

# %% [markdown]
# Read the lines against the table. The middle rungs attack the problem from outside. Keeping a
# layer in float keeps its weights and arithmetic in float, **not its input**: the max-pooling before
# it is an int8-in, int8-out operation for the x86 quantizer, so the kept layer still reads values
# rounded with the outlier's range (the range printed above the validation table). Both kinds of
# damage sit at the second convolution, its divided weights and its input's range, so keeping it in
# float removes the first and not the second, at the price of float arithmetic for most of the
# network's work (the validation table's last column) with a conversion on each side (not measured
# here). Quantization-aware training lets the weights adjust to the rounding, at the price of a training
# run with settings of its own (60 steps here, at the student's own learning rate). The rows "60 fp32
# steps" are its control: the same training without fake quantization, first in fp32 (what the steps
# alone did to accuracy) and then quantized; if the control recovers as much, the steps did the work,
# not the fake quantization (the last printed line compares the two on this seed; the seed table
# below, on four).
#
# **Cross-layer equalization** (Nagel et al., 2019) chooses, for each channel between two
# convolutions, the factor that gives the channel the same weight range in both: from the weights
# alone, with no data and no cost at run time. It needs a function between the two layers that a
# positive per-channel factor passes through (ReLU or max-pooling; not GELU or SiLU), and the first
# layer's output must feed only the second (no branch). One warning about its row above: equalized,
# channel $i$ has range $\sqrt{r_1 r_2}$ in both layers, and the planted factor multiplies $r_1$ by 64
# and divides $r_2$ by 64, which leaves the product alone. Equalizing the planted student therefore
# gives the same weights as equalizing the student as trained (the next cell checks it): on the planted
# model this rung succeeds by construction. The test where it could fail is the student as trained,
# with no planted imbalance. SmoothQuant (Xiao et al., 2023) moves the scale of language models'
# outlier activation channels into the next layer's weights by the same kind of factor, chosen from
# calibration data rather than from the weights alone.

# %% tags=["nbval-ignore-output"]
show_source(equalization_scales)
equalized_from = {name: rescale_channels(model, "0", "3", equalization_scales(model, "0", "3"))
                  for name, model in {"planted": outlier_student, "as trained": student}.items()}
weight_gap = max((planted - trained).abs().max().item() for planted, trained in
                 zip(equalized_from["planted"].parameters(), equalized_from["as trained"].parameters()))
print(f"equalized from the planted student and from the student as trained: largest weight difference "
      f"{weight_gap:.1e}")
as_trained = {"int8": ladder["section 3.3's calibration set"],
              "equalized, then int8": int8_predictions(equalized_from["as trained"], calibration_batches)}
print("the student as trained, equalized, then int8, " + read_pair(
    as_trained, "int8", "equalized, then int8", better="equalization helped", worse="equalization hurt"))

# %% [markdown]
# One student could be a fluke, so the rungs again for students trained from seeds 1 to 3, each with
# its own outlier channel made the same way (the layer chosen above is kept in fp32), beside seed 0's:
# each rung's change against fp32, and quantization-aware training against its control, seed by seed
# (McNemar on each seed's 450 images) and counted over the four seeds. Four seeds are too few for a
# test across seeds: a sign test cannot go below p = 0.125 with four, so the per-seed tests carry
# the evidence.

# %% tags=["nbval-ignore-output"]
def rungs_for_seed(seed: int) -> dict[str, torch.Tensor]:
    """outlier_ladder's predictions for a student trained from seed, with its own planted outlier channel."""
    return outlier_ladder(with_outlier_channel(folded_student((8, 16), fit_set, seed=seed)), fp32_layer)


rungs_by_seed = {0: outlier_rungs} | {seed: rungs_for_seed(seed) for seed in (1, 2, 3)}
seed_table = pd.concat({seed: paired_table(rungs, y_test, reference="fp32")[["change (points)", "McNemar p"]]
                        .drop("fp32") for seed, rungs in rungs_by_seed.items()}, axis=1, names=["seed", ""])
changes, p_values = seed_table.xs("change (points)", axis=1, level=1), seed_table.xs("McNemar p", axis=1, level=1)
print(f"seeds on which each rung lost measurably against fp32 (of {len(rungs_by_seed)}):")
print(((p_values < 0.05) & (changes < 0)).sum(axis=1).to_string())
qat_verdicts = []
for seed, rungs in rungs_by_seed.items():
    reading = read_pair(rungs, "60 fp32 steps, then int8", "60 quantization-aware steps, int8",
                        better="QAT better", worse="QAT worse")
    qat_verdicts.append(reading.rpartition(": ")[2])
    print(f"seed {seed}: quantization-aware {reading}")
qat_gain = changes.loc["60 quantization-aware steps, int8"] - changes.loc["60 fp32 steps, then int8"]
print(f"QAT measurably better than its control on {qat_verdicts.count('QAT better')} of {len(qat_verdicts)} seeds, "
      f"measurably worse on {qat_verdicts.count('QAT worse')}; mean difference {qat_gain.mean():+.1f} points")
seed_table.round(3)

# %% [markdown]
# How small a difference can these comparisons see? The smallest change McNemar's exact test can
# call significant on 450 images, for a given number of discordant images (those only one model gets
# right):

# %% tags=["nbval-ignore-output"]
detectable = {discordant: detectable_difference(discordant, len(y_test)) for discordant in (3, 5, 6, 10, 20, 50, 100)}
(100 * pd.Series(detectable, name="smallest detectable change (points)", dtype=float)).rename_axis(
    "discordant images").to_frame().round(2)

# %% [markdown]
# With 5 or fewer discordant images no split is significant at all, and the gap needed grows with
# their number: a "no measurable difference" between two close models (ten or twenty discordant
# images) means smaller than about two points, but between two models that disagree on eighty images,
# as QAT and its control can, it allows four. It never means "equal". The recovery ladder, in the
# order that costs least: **fix the calibration data; if one channel's range dwarfs the others and
# the layers allow it, equalize the ranges (free, no data); keep the most sensitive layer in float;
# and train with quantization in the loop.** Read the seed table for how far each rung got on this
# network: a rung that recovers part of a loss on every seed is doing its job, and one that still
# loses on some seeds says the next rung is needed. Equalization's row is the exception: it undoes
# the planting by construction, so it shows what the rung does, not that it will help; what this
# chapter shows of it on a real network is that it had no measurable cost on the student as trained.

# %% [markdown]
# ### 3.5 The trade-off, and the precision widget
# The teacher's variants side by side: latency at batch 64, size, and the largest difference of any
# logit from eager fp32's over the 450 test images (section 3.3's table counts the predictions that
# changed). The fair baseline, fp32 compiled with freezing, is shaded:

# %% tags=["nbval-ignore-output"]
plot_stages(cnn_table.rename(columns={"median_ms": "latency (ms)"}),
            ["latency (ms)", "size (KB)", "largest logit error"], hardware=hw.cpu_label,
            baseline="fp32 compiled + freezing", title="The teacher CNN in each variant (batch 64)")

# %% [markdown]
# The widget runs the teacher in the precision you pick and measures it against fp32 (compiled with
# freezing) in alternating rounds: size, latency, accuracy and the largest logit difference. A new
# precision compiles once (a few seconds), then is reused. `int8 dynamic` quantizes only the final
# Linear layer of this CNN (dynamic quantization does not cover convolutions), so it shows what
# choosing the wrong variant for a model costs. The table above already holds bf16 and static int8
# from the same rounds; the widget re-measures the one you pick.

# %%
PRECISIONS = ["bf16", "int8 static", DYNAMIC_INT8]
precision_models = {"fp32": cnn_compiled["fp32 compiled + freezing"][0],
                    "bf16": cnn_compiled["bf16 compiled + freezing"][0],
                    "int8 static": cnn_compiled["int8 compiled + freezing"][0]}
precision_sizes = {"bf16": cnn_table.loc["bf16 compiled + freezing", "size (KB)"],
                   "int8 static": cnn_table.loc["int8 compiled + freezing", "size (KB)"]}


def teacher_in_precision(precision: str) -> nn.Module:
    """The teacher with its Linear layer quantized by torchao in this precision (not yet compiled)."""
    model = copy.deepcopy(teacher)
    quantize_(model, quantization_config(precision, "cpu"))
    return model


def precision_report(precision: str) -> pd.DataFrame:
    """Size, latency, accuracy and largest logit difference of the teacher in this precision, against fp32."""
    if precision not in precision_models:
        model = teacher_in_precision(precision)
        # dynamic int8 without freezing, as in section 3.2; the others with it
        precision_models[precision] = compile_for_inference(model, example, freezing=precision != DYNAMIC_INT8)[0]
        precision_sizes[precision] = serialized_size_bytes(model) / 1e3
    model = precision_models[precision]
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    with torch.no_grad():
        timings = measure_interleaved({"fp32": lambda: precision_models["fp32"](example),
                                       precision: lambda: model(example.to(dtype))}, rounds=3, min_run_time=0.6)
    logits = predict_in_fixed_batches(lambda images: model(images.to(dtype)), x_test, 64)
    return pd.DataFrame({"size (KB)": [precision_sizes[precision]], "latency (ms)": [timings[precision].median_ms],
                         "against fp32": [str(timing_ratio(timings["fp32"], timings[precision]))],
                         "test accuracy": [(logits.argmax(1) == y_test).float().mean().item()],
                         "largest logit difference": [(logits - reference_logits).abs().max().item()]},
                        index=[precision]).round(4)


# %% tags=["nbval-ignore-output"]
live_control(precision_report, precision=widgets.ToggleButtons(options=PRECISIONS, value="bf16",
                                                               description="precision"))

# %% [markdown]
# ## 4. Compression combined: prune, distil, quantize
# Now the three methods in sequence on the teacher, each step measured (chapter 8 builds on this).
# Here the owner compresses their own teacher, so its 600 labelled training images are at hand, and
# the pool of section 2 serves as unlabelled transfer images:
# 1. **prune** half of every convolution's channels with chapter 2's BN-scaled L1 criterion, then
#    fine-tune with labels for 200 steps of 128 images;
# 2. **distil** instead: the same pruned network, fine-tuned for the same 200 steps (64 labelled
#    images and 64 pool images with the unpruned teacher's soft targets per step), at the $T$ and
#    $\alpha$ that section 2.2's validation chose for the soft arm (chosen for another student, not
#    re-tuned here);
# 3. **int8**: the distilled pruned network, static int8 compiled with freezing.
#
# Latency is compiled with freezing for every row, so that each ratio measures the compression; the
# teacher's row is the frozen fp32 model of section 3.3, timed again here in the same rounds.

# %% tags=["nbval-ignore-output"]
soft_temperature, soft_alpha = settings["soft targets"]
pruned = prune_channels(teacher, 0.5, criterion="bn_scaled_l1")
pruned_tuned = train_student(copy.deepcopy(pruned), split.teacher, steps=200, lr=1e-3, batch_size=128)
pruned_distilled = train_student(copy.deepcopy(pruned), split.teacher, transfer=(split.pool, pool_logits),
                                 targets="soft targets", temperature=soft_temperature, alpha=soft_alpha, steps=200,
                                 lr=1e-3)
pruned_int8 = static_int8(pruned_distilled, example, calibration_batches, reduce_range=reduce_range)
stages = {"teacher (fp32)": teacher, "pruned 50% + fine-tuned": pruned_tuned,
          "pruned 50% + distilled": pruned_distilled, "pruned + distilled + int8": pruned_int8}
stage_compiled = {"teacher (fp32)": precision_models["fp32"]}
stage_compiled |= {name: compile_for_inference(model, example)[0] for name, model in list(stages.items())[1:]}

# %% tags=["nbval-ignore-output"]
teacher_int8_compiled = precision_models["int8 static"]  # timed in the same rounds, for the int8 comparison below
with torch.no_grad():
    stage_timings = measure_interleaved({name: (lambda f=f: f(example)) for name, f in
                                         (stage_compiled | {"teacher (int8)": teacher_int8_compiled}).items()},
                                        rounds=5, min_run_time=1.0)
int8_on_pruned = timing_ratio(stage_timings["pruned 50% + distilled"], stage_timings["pruned + distilled + int8"])
int8_on_teacher = timing_ratio(stage_timings["teacher (fp32)"], stage_timings["teacher (int8)"])
stage_table = pd.DataFrame({
    "size (KB)": {name: serialized_size_bytes(model) / 1e3 for name, model in stages.items()},
    "latency (ms)": {name: stage_timings[name].round_median_ms for name in stages},
    "test accuracy (%)": {name: 100 * fixed_batch_accuracy(f, x_test, y_test) for name, f in stage_compiled.items()},
})
combined_ratio = timing_ratio(stage_timings["teacher (fp32)"], stage_timings["pruned + distilled + int8"])
stage_table.round(2)

# %% tags=["nbval-ignore-output"]
plot_stages(stage_table, ["size (KB)", "latency (ms)", "test accuracy (%)"], hardware=hw.cpu_label,
            title="One network through pruning, distillation and int8 (latency compiled with freezing, batch 64)")

# %% tags=["nbval-ignore-output"]
work_removed = 1 - multiply_adds(pruned_distilled, example).sum() / multiply_adds(teacher, example).sum()
combined_claim = make_claim(6, "compression_combined_2x", "Pruning half the channels, fine-tuning by distillation "
                            "and static int8 together make the teacher at batch 64 at least 2x faster than the teacher compiled "
                            "with freezing.", threshold=2.0, ratio=combined_ratio, hardware=hw.cpu_label)
claims.append(combined_claim)
report_claim(combined_claim,
             holds="Distillation changes no arithmetic, only the accuracy the pruned network keeps: the latency "
                   f"comes from pruning half the channels of every layer ({work_removed:.0%} of the multiply-adds) "
                   + {"gain": "and from int8 on top of it.",
                      "loss": "alone: int8 made the pruned network measurably *slower* (the line below), so "
                              "pruning and distillation without int8 would have been faster still.",
                      }.get(int8_on_pruned.gain, "almost alone: int8 added no measurable gain on the pruned network "
                                                 "(the line below)."),
             does_not_hold="A likely reason (not measured here): at this size the fixed costs of each call "
                           "(launching the graph, the layers that compression does not touch) limit what removing "
                           "work can save.")

# %% tags=["nbval-ignore-output"]
print(f"int8 on the pruned network: {int8_on_pruned} ({int8_on_pruned.gain}); on the unpruned teacher, in the "
      f"same rounds: {int8_on_teacher} ({int8_on_teacher.gain})")
if int8_on_pruned.gain == "loss":
    print("int8 made the pruned network measurably slower (the teacher's verdict is beside it). A likely reason: "
          "with 16 to 64 channels at 16x16, each int8 convolution has too little arithmetic to repay its fixed "
          "costs (quantizing the input, reordering the data for the int8 kernel).")
elif int8_on_pruned.high < int8_on_teacher.low:
    print("int8 gained less on the pruned network than on the teacher. A likely reason: with 16 to 64 channels at "
          "16x16, each int8 convolution has less arithmetic to repay its fixed costs (quantizing the input, "
          "reordering the data for the int8 kernel).")
elif int8_on_pruned.low > int8_on_teacher.high:
    print("int8 gained more on the pruned network than on the teacher here.")
else:
    print("The two intervals overlap: these rounds cannot tell whether int8 gains less on the pruned network.")

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
#   namespace still exists in torch 2.14 as a shim, which is no reason to start using it (torchao
#   tracks the migration in pytorch/ao#2259).
# - `QConfig(activation=..., weight=...)` expects observer *constructors*; passing whole QConfigs
#   fails only later, when `prepare` tries to build an observer from one. The article itself never
#   calls `prepare` (its QConfig is dead code there): the cell runs it through `prepare` to show
#   where it would fail, so the TypeError is this cell's, not a line of the article's.
# - Dynamic quantization of Linear layers supports `torch.qint8` (or `float16`), not `quint8`.
# - The `QuantizedModel` wrapper with `QuantStub`/`DeQuantStub` belongs to the eager *static* flow
#   (stubs, a QConfig, `prepare`, calibration, `convert`), yet the snippet then calls the *dynamic*
#   flow's `quantize_dynamic`, which needs neither; the wrapper is never used, and `quantize_dynamic`
#   runs on a `model` the snippet never defines.
# - "int8 reduces model size and inference time" is stated unconditionally. The size holds (3 to
#   4x, once the unused fp32 weights are dropped); the time is conditional: weight-only int8 pays
#   only where reading weights dominates (small batch) and loses on compute-bound layers, static
#   int8 needs int8 kernels on the CPU and the freezing passes, and dynamic int8 quantizes the
#   activations on every call and must beat the float arithmetic of the CPU at hand (bf16, where
#   it is native). The verdicts of section 3 say which of these paid on this machine.
#
# The corrected, current code is sections 3.2 and 3.3: `torchao.quantization.quantize_` for
# Linear-heavy models, PT2E with `X86InductorQuantizer` and `torch.compile` with freezing for CNNs.
#
# ## 6. On a GPU
# On a CUDA GPU the same experiment as section 3.2 runs with every variant torchao offers there: bf16,
# int8 weight-only, int4 weight-only with the tinygemm layout (`int4_packing_format=
# "tile_packed_to_4d"`, a kernel that ships with PyTorch; the default int4 layout needs the separate
# `mslk` package, which the course does not install), dynamic int8 (W8A8 on the int8 tensor cores)
# and, on GPUs with fp8 tensor cores (compute capability 8.9 and up), dynamic float8. A 4096-wide
# stack at batch 1 (memory-bound) and 64, every variant compiled and replayed as a CUDA graph so that
# launching kernels from Python does not hide their time at batch 1. A variant that cannot run says
# whether a package is missing or this GPU lacks the feature. Note that PyTorch's CUDA kernel for
# int8 weight-only multiplies on the ordinary cores, not the tensor cores: its result says as much
# about that kernel as about int8. **This cell has not yet run on a GPU in the course's own checks**:
# its calls were checked against torchao 0.18's source, and the course's GPU reference runs do not
# include this chapter yet; a failure here is a bug to report.

# %% tags=["nbval-ignore-output"]
if torch.cuda.is_available():
    gpu_results = gpu_weight_only(width=4096, batches=(1, 64))
    display(weight_only_table(gpu_results).round(3))
else:
    print("No CUDA GPU here: the GPU variants (bf16, int8 and int4 weight-only, int8 and float8 dynamic) are "
          "skipped.")

# %% [markdown]
# **Not covered here, and when it matters.** Methods a practitioner meets next, with the condition
# under which each pays:
#
# | method | what it does | pays when |
# |---|---|---|
# | 2:4 semi-structured sparsity (Mishra et al., 2021; `torch.sparse.to_sparse_semi_structured`, torchao's sparsity API) | two of every four weights are zero, in a pattern the GPU's sparse tensor cores skip | large matrix products on NVIDIA GPUs from Ampere on, with fine-tuning to recover the accuracy; PyTorch has no CPU kernels for it |
# | fp8 (`Float8DynamicActivationFloat8WeightConfig`, section 6's cell) | 8-bit floating point weights and activations with per-tensor or per-row scales | large matmuls on GPUs with fp8 tensor cores (compute capability 8.9 and up: Ada, Hopper, Blackwell) |
# | int4 weight-only (section 3.2 on this CPU; `Int4WeightOnlyConfig` on a GPU) | 4-bit weights in groups of 32 to 128 with a scale each, float activations | memory-bound decoding at small batch, where weight bytes dominate |
# | SmoothQuant (Xiao et al., 2023; a prototype in torchao) | moves activation outliers into the weights by a per-channel scale chosen from calibration data, so that both quantize to int8 | W8A8 on language models, whose activations have outlier channels (section 3.4's equalization is the data-free relative for ReLU networks; exercise 2's outlier case) |
# | MX and NVFP4 formats (torchao's `prototype.mx_formats`) | 8-, 6- or 4-bit floats sharing one scale per block of 16 or 32 values | GPUs with hardware for them (NVIDIA Blackwell); training and inference of large models |
# | KV-cache quantization | stores a language model's attention keys and values in int8 or fp8 | long contexts and large batches, where the cache, not the weights, fills the memory |
# | ExecuTorch with XNNPACK (or a phone's NPU delegate) | exports a quantized model to a small on-device runtime | section 1's phone app: the same PT2E quantizer flow, with XNNPACK's quantizer instead of the x86 one |
# | GPTQ (Frantar et al., 2023), AWQ (Lin et al., 2024; both prototypes in torchao) | choose 4-bit weights that minimise each layer's output error (GPTQ) or protect the weights of salient activation channels (AWQ), from a small calibration set | 4-bit weight-only quantization of large language models, where plain rounding loses accuracy |
# | feature distillation (FitNets: Romero et al., 2015) | the student also matches the teacher's intermediate features | students too small or too different to learn from the outputs alone |

# %% [markdown]
# ## 7. Exercises
# **Exercise 1 (predict, then measure: which layer does one scale per tensor hurt most?).** Section
# 3.1 measured how much more rounding error one scale for a whole weight tensor causes than one
# scale per filter, on the teacher. Take the pruned, distilled network of section 4 with batch norm
# folded in. The table below describes each convolution's filters by their largest absolute weight
# (the value that sets each filter's own scale): the smallest, the median and the largest over the
# filters. Predict which convolution has the largest ratio of per-tensor to per-channel error, then
# measure that ratio with section 3.1's `symmetric_int8_error` (the check wants it within 2%). Does
# the measurement agree with your prediction, and with what the table suggested?

# %% tags=["nbval-ignore-output"]
pruned_folded_convs = {f"conv {number}": layer.weight.detach() for number, layer in enumerate(
    (m for m in fold_batch_norm(pruned_distilled) if isinstance(m, nn.Conv2d)), start=1)}
pd.DataFrame({name: weights.abs().amax(dim=(1, 2, 3)).quantile(torch.tensor([0.0, 0.5, 1.0])).tolist()
              for name, weights in pruned_folded_convs.items()},
             index=["smallest filter max", "median filter max", "largest filter max"]).T.round(3)

# %%
my_worst_conv = ...  # your prediction: "conv 1", "conv 2" or "conv 3"
check_granularity_prediction("Exercise 1", my_worst_conv, pruned_folded_convs)
my_worst_ratio = ...  # measured: its per-tensor error divided by its per-channel error
check_granularity_ratio("Exercise 1 (measured)", my_worst_ratio, pruned_folded_convs)

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution", "nbval-ignore-output"]
penalty = {name: symmetric_int8_error(w, tuple(w.shape)) / symmetric_int8_error(w, (1, *w.shape[1:]))
           for name, w in pruned_folded_convs.items()}  # per_tensor_penalty in quantize.py computes the same
print({name: f"{ratio:.2f}x" for name, ratio in penalty.items()})
my_worst_conv = max(penalty, key=penalty.get)
check_granularity_prediction("Exercise 1", my_worst_conv, pruned_folded_convs)
check_granularity_ratio("Exercise 1 (measured)", penalty[my_worst_conv], pruned_folded_convs)

# %% [markdown]
# **Exercise 2 (an activation's int8 by hand).** After a ReLU, activations are never negative, so a
# *symmetric* scale wastes half of the codes. The x86 static path therefore quantizes activations
# **asymmetrically** (affine) to unsigned 8-bit codes $q \in [0, 255]$, with $x \approx s\,(q - z)$
# for a float scale $s$ and an integer zero point $z$. Two requirements fix $s$ and $z$: the codes
# must cover every value of the tensor, and 0 must be represented exactly (padding and ReLU outputs
# are full of zeros), even when every value is positive. Work out $s$ and $z$ from these, then write
# `uint8_quantize(values)` returning `(codes, scale, zero_point)` for a 1-D float tensor. The check
# compares all three with torchao's own quantization primitives on four tensors: after a ReLU,
# shifted away from zero, with one outlier, and centred on zero.

# %%
def uint8_quantize(values: torch.Tensor) -> tuple[torch.Tensor, float, int]:
    """Asymmetric uint8 codes of values, with their scale and zero point."""
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
arm_means = {arm: 100 * statistics.mean(runs) for arm, runs in student_runs.items()}
student_metric = f"tiny student test accuracy, 50 labelled + {len(split.pool)} pool images, {len(TEST_SEEDS)} seeds"
frozen_fp32 = "fp32 compiled + freezing"
entries = [
    make_entry(6, "pseudo_labelling", metric=student_metric, unit="%", baseline=arm_means["labels only"],
               optimized=arm_means["pseudo-labels"], higher_is_better=True, hardware=hw.cpu_label,
               difference=kd_differences["pseudo-labels against labels only"], compared_with="labels only",
               extras={"pseudo_label_accuracy": 100 * pseudo_label_accuracy}),
    make_entry(6, "knowledge_distillation", metric=student_metric, unit="%", baseline=arm_means["pseudo-labels"],
               optimized=arm_means["soft targets"], higher_is_better=True, hardware=hw.cpu_label,
               difference=soft_vs_hard, compared_with="pseudo-labels from the same teacher on the same images",
               extras={"settings": {arm: list(map(float, pair)) for arm, pair in settings.items()},
                       "against_labels_only": str(soft_vs_alone), "upper_bound_true_labels": arm_means[
                           "true labels on the pool"], "teacher_accuracy": 100 * teacher_accuracy}),
    make_entry(6, "compile_freezing_teacher", metric="teacher CNN latency, batch 64", unit="ms",
               baseline=cnn_table.loc["fp32 eager", "median_ms"], optimized=cnn_table.loc[frozen_fp32, "median_ms"],
               higher_is_better=False, hardware=hw.cpu_label, ratio=compile_gain, compared_with="eager fp32"),
    make_entry(6, "bf16_inference", metric="teacher CNN latency, batch 64", unit="ms",
               baseline=cnn_table.loc[frozen_fp32, "median_ms"],
               optimized=cnn_table.loc["bf16 compiled + freezing", "median_ms"], higher_is_better=False,
               hardware=hw.cpu_label, ratio=bf16_ratio, compared_with="fp32, compiled with freezing",
               extras={"size_ratio": file_bytes["fp32"] / file_bytes["bf16"], "predictions_changed": int(
                   cnn_table.loc["bf16 compiled + freezing", "predictions changed"])}),
    make_entry(6, "int8_static_pt2e", metric="teacher CNN latency, batch 64", unit="ms",
               baseline=cnn_table.loc[frozen_fp32, "median_ms"],
               optimized=cnn_table.loc["int8 compiled + freezing", "median_ms"], higher_is_better=False,
               hardware=hw.cpu_label, claim=fair_static_claim, compared_with="fp32, compiled with freezing",
               extras={"size_ratio": int8_size_ratio, "against_bf16": str(int8_vs_bf16),
                       "accuracy_change_points": 100 * (cnn_accuracy["int8 compiled + freezing"] - teacher_accuracy)}),
    *[make_entry(6, name, metric=f"4096-wide bf16 Linear stack latency, batch 1, 1 thread, {cache_fit[4096]} "
                 f"({variant})", unit="ms",
                 baseline=weight_only[4096].timings[1, "bf16"].round_median_ms,
                 optimized=weight_only[4096].timings[1, variant].round_median_ms, higher_is_better=False,
                 hardware=hw.cpu_label, claim=weight_only_claims[variant], compared_with="bf16, compiled with freezing",
                 extras={"size_ratio": weight_only[4096].weight_bytes["bf16"] / weight_only[4096].weight_bytes[variant],
                         "at_batch_1_1024_wide": str(weight_only[1024].ratio(1, variant)),
                         "1024_wide_weights": cache_fit[1024],
                         "at_batch_128_1024_wide": str(weight_only[1024].ratio(128, variant)),
                         "last_level_cache_mib": cache_mib, "threads": 1})
      for name, variant in (("weight_only_int8", "int8 weight-only"), ("weight_only_int4", "int4 weight-only"))],
    make_entry(6, "int8_dynamic_linear", metric="1024-wide bf16 Linear stack latency, batch 128", unit="ms",
               baseline=weight_only[1024].timings[128, "bf16"].round_median_ms,
               optimized=weight_only[1024].timings[128, DYNAMIC_INT8].round_median_ms, higher_is_better=False,
               hardware=hw.cpu_label, ratio=dynamic_ratio, compared_with="bf16, compiled with freezing"),
    make_entry(6, "compression_combined", metric="teacher latency, batch 64", unit="ms",
               baseline=stage_table.loc["teacher (fp32)", "latency (ms)"],
               optimized=stage_table.loc["pruned + distilled + int8", "latency (ms)"], higher_is_better=False,
               hardware=hw.cpu_label, claim=combined_claim, compared_with="teacher fp32, compiled with freezing",
               combination=True,
               extras={"size_ratio": stage_table["size (KB)"].iloc[0] / stage_table["size (KB)"].iloc[-1],
                       "accuracy_change_points": stage_table["test accuracy (%)"].iloc[-1]
                       - stage_table["test accuracy (%)"].iloc[0],
                       "pruned_and_distilled_against_teacher": str(timing_ratio(
                           stage_timings["teacher (fp32)"], stage_timings["pruned 50% + distilled"])),
                       "int8_on_the_pruned_network": f"{int8_on_pruned} ({int8_on_pruned.gain})"}),
]
record_chapter(6, entries, claims)
ledger_table(entries).round(3)

# %% [markdown]
# **Take-aways**
# 1. Distillation is Hinton's loss exactly: softened log-probabilities, KL with `batchmean` and
#    `log_target=True`, times $T^2$, with the teacher in `eval()` under `no_grad()`. Credit it only
#    against the control that matters, pseudo-labels from the same teacher on the same images, each
#    at a setting chosen on validation, over enough seeds for a paired interval.
# 2. Compare each precision against the fair baseline: fp32 (or bf16, on a CPU with native bf16)
#    compiled with freezing, never eager fp32, and record the compile gain apart. int8 makes a model
#    3 to 4x smaller once the unused fp32 weights are dropped (less for small models); it makes it
#    faster only with the right variant for the regime: weight-only where weight bytes dominate
#    (batch 1, large weights, bf16 activations), dynamic or static where the arithmetic does, with
#    int8 kernels on the CPU and the right compilation (freezing for PT2E).
# 3. When int8 loses accuracy, climb the ladder in order of cost: fix the calibration data, equalize
#    channel ranges where the layers allow it (free; harmless here on the student as trained), keep
#    the most sensitive layer in float, then train with quantization in the loop; and judge each
#    rung with a paired test, knowing the smallest difference the test set can resolve.
