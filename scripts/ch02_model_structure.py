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
# # Chapter 2 — Model structure: lightweight networks, depthwise separable convolution, channel pruning
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dl-perf-course/dl-performance-workbook/blob/main/notebooks/ch02_model_structure.ipynb) [![Launch Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/dl-perf-course/dl-performance-workbook/main?labpath=notebooks/ch02_model_structure.ipynb)
#
# The cheapest computation is the one the model never asks for. This chapter measures three ways to
# ask for less: architectures designed to be light (MobileNet, EfficientNet, ShuffleNet), the
# depthwise separable convolution they are built from, and channel pruning, which removes whole
# filters from a trained network so that it really gets smaller and faster. Along the way you will
# see why fewer FLOPs do not always mean less time.
#
# **Estimated time:** ~120 min · **Hardware:** Any CPU; a GPU adds GPU latency columns

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
import itertools

import ipywidgets as widgets
import pandas as pd
import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils import prune as torch_prune
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.optim.swa_utils import update_bn
from torchvision import models

from helpers.core.accuracy import fold_table, paired_prediction_change, wilson_interval
from helpers.core.claims import make_claim, report_claim, timing_ratio
from helpers.core.cost import count_flops, count_parameters, model_cost, serialized_size_bytes
from helpers.core.hardware import last_level_cache_bytes
from helpers.core.measure import (
    WHOLE_NETWORK, measure_interleaved, measure_latency, time_layers_by_round, timing_table,
)
from helpers.core.roofs import roof_operations, roofs_from_seconds
from helpers.workload.data import digits_folds, hold_out, tensor_loader
from helpers.workload.models import small_cnn
from helpers.workload.training import evaluate_accuracy, train_epochs
from helpers.support.chapter import setup_chapter
from helpers.support.checks import check_function, check_number
from helpers.support.ledger import ledger_table, load_ledger, make_entry, record_chapter
from helpers.support.plots import plot_roofline, plot_sweep, plot_together, plot_tradeoff
from helpers.support.source import show_source
from helpers.support.widgets import live_control
from helpers.ch02_model_structure.exercises import (
    best_ratio_within, big_layer_kinds, depthwise_flop_share, expected_pruned_ms, kind_shortfall,
)
from helpers.ch02_model_structure.layers import DepthwiseSeparableConv, separable_cost_ratio
from helpers.ch02_model_structure.pruning import (
    filter_importance, keep_batch_norm_channels, keep_output_channels, prune_channels,
)
from helpers.ch02_model_structure.roofline import conv_min_bytes, depthwise_intensity
from helpers.ch02_model_structure.zoo import (
    ARCHITECTURES, FIRST_WEIGHTS, build_architecture, published_gflops, published_top1, weights_top1,
)

hw = setup_chapter(2)
claims = []  # this chapter's speed claims, judged on this machine; recorded in the summary

# %% [markdown]
# ## 1. Why structure matters
# A standard convolution with $C_\text{in}$ input channels, $N$ output channels and a $k \times k$
# kernel has $k^2 C_\text{in} N$ weights and, on an $H \times W$ output, does $k^2 C_\text{in} N H W$
# multiply-adds, that is $2 k^2 C_\text{in} N H W$ FLOPs. Every factor multiplies: doubling the
# channels of two consecutive layers quadruples the cost of the second. Lightweight architectures
# attack the $k^2 N$ product; pruning attacks $C_\text{in}$ and $N$.
#
# ## 2. Lightweight architectures, measured here
# Seven torchvision architectures, built with `weights=None` so nothing is downloaded. Their
# *static* costs are exact and machine-independent:

# %% tags=["nbval-ignore-output"]
image = torch.randn(1, 3, 224, 224)
zoo = {name: build_architecture(name) for name in ARCHITECTURES}

# %%
static = pd.DataFrame({name: model_cost(net, image) for name, net in zoo.items()}).T
static["published top-1 (%)"] = [published_top1(name) for name in static.index]
static["published GFLOPS"] = [published_gflops(name) for name in static.index]
static.assign(params_M=static["parameters"] / 1e6, GFLOPs=static["flops"] / 1e9, size_MB=static["size_bytes"] / 1e6)[
    ["params_M", "GFLOPs", "published GFLOPS", "size_MB", "published top-1 (%)"]].round(3)

# %% [markdown]
# The accuracies and the "published GFLOPS" are torchvision's figures for each architecture's first
# pretrained weights (`IMAGENET1K_V1`, trained with its original recipe; section 6 says why not the
# newer ones), read offline from the weight enums' metadata (keys `_metrics` and `_ops`); they are
# quoted, not measured here. Our `GFLOPs` column comes from PyTorch's `FlopCounterMode`, which counts
# a multiply-add as **two** operations. Divide one by the other:

# %%
(static["flops"] / 1e9 / static["published GFLOPS"]).rename("our FLOPs / published 'GFLOPS'").round(2)

# %% [markdown]
# The factor is 2 (a little less where a small published figure is rounded): torchvision's "GFLOPS",
# like most papers' "FLOPs" and "MAdds" (MobileNet's and ShuffleNet's tables among them), are
# **multiply-adds** (MACs). Before you compare two models' costs from two sources, find out which
# one each counts; a factor of 2 is the usual discrepancy. The latencies below *are* measured, at
# batch size 1, in alternating rounds:

# %% tags=["nbval-ignore-output"]
with torch.inference_mode():
    cpu_timings = measure_interleaved({name: (lambda net=net: net(image)) for name, net in zoo.items()},
                                      min_run_time=0.3)
static["cpu latency (ms)"] = [cpu_timings[name].median_ms for name in static.index]
if hw.device == "cuda":
    gpu_image = image.cuda()
    gpu_zoo = {name: copy.deepcopy(net).cuda() for name, net in zoo.items()}
    with torch.inference_mode():
        gpu_timings = measure_interleaved({name: (lambda net=net: net(gpu_image)) for name, net in gpu_zoo.items()})
    static["gpu latency (ms)"] = [gpu_timings[name].median_ms for name in static.index]
static.drop(columns=["size_bytes"]).round(2)

# %%
plot_tradeoff({n: (static.loc[n, "cpu latency (ms)"], static.loc[n, "published top-1 (%)"]) for n in ARCHITECTURES},
              xlabel="measured latency, batch 1 (ms)", ylabel="published ImageNet top-1 (%)", hardware=hw.cpu_label,
              title="Accuracy against latency on this machine")

# %% [markdown]
# The dashed line joins the Pareto front: the networks that no other one beats on both axes at once
# (faster *and* more accurate). The next chart plots two costs against each other, so it has no front
# to draw: there, lower is better on both axes.

# %%
del zoo  # about 200 MB of weights: the rest of the chapter needs only the table
plot_tradeoff({n: (static.loc[n, "flops"] / 1e9, static.loc[n, "cpu latency (ms)"]) for n in ARCHITECTURES},
              xlabel="GFLOPs per image", ylabel="measured latency (ms)", hardware=hw.cpu_label,
              title="FLOPs against latency: not a straight line", pareto=False)

# %% [markdown]
# **Are FLOPs latency?** Against ResNet-50, compare the fraction of the arithmetic each network does
# with the fraction of the time it takes on this machine:

# %% tags=["nbval-ignore-output"]
against_resnet50 = pd.DataFrame({
    "FLOPs / resnet50": static["flops"] / static.loc["resnet50", "flops"],
    "latency / resnet50": static["cpu latency (ms)"] / static.loc["resnet50", "cpu latency (ms)"],
    "ms per GFLOP": static["cpu latency (ms)"] / (static["flops"] / 1e9)})
against_resnet50.sort_values("ms per GFLOP").round(2)

# %% [markdown]
# Wherever the latency fraction is well above the FLOP fraction (a high `ms per GFLOP`), the
# network spends its time on something other than arithmetic. Two suspects, which this table alone
# cannot tell apart: depthwise convolutions, which do little arithmetic per byte they move (section 3
# places them on the roofline), and many more, smaller layers, each paying a fixed cost per call.

# %% [markdown]
# ### Thinner or smaller: MobileNet's two multipliers
# MobileNet scales a network with two knobs: the **width multiplier** $\alpha$ thins every layer
# (channels $\times \alpha$), the **resolution multiplier** $\rho$ shrinks the input image. Every
# layer's work scales with $H W$, so resolution cuts the multiply-adds by $\rho^2$. Width cuts a
# standard or pointwise convolution's work ($\propto C_\text{in} N$) by $\alpha^2$, but a depthwise
# one's ($\propto C$) only by $\alpha$, and the first convolution's (3 input channels) also only by
# $\alpha$. Only width cuts the parameters. torchvision's MobileNetV2 takes `width_mult`; the
# resolution is simply the input's size:

# %% tags=["nbval-ignore-output"]
multipliers = {(alpha, size): models.mobilenet_v2(weights=None, width_mult=alpha).eval()
               for alpha in (1.0, 0.5) for size in (224, 160)}
inputs_by_size = {size: torch.randn(1, 3, size, size) for size in (224, 160)}
with torch.inference_mode():
    multiplier_timings = measure_interleaved(
        {key: (lambda net=net, x=inputs_by_size[key[1]]: net(x)) for key, net in multipliers.items()},
        rounds=5, min_run_time=0.4)

# %%
multiplier_table = pd.DataFrame([
    {"width alpha": alpha, "resolution": size, "params_M": count_parameters(net) / 1e6,
     "GFLOPs": count_flops(net, inputs_by_size[size]) / 1e9, "alpha^2 rho^2": alpha**2 * (size / 224) ** 2}
    for (alpha, size), net in multipliers.items()]).set_index(["width alpha", "resolution"])
multiplier_table["GFLOPs / full"] = multiplier_table["GFLOPs"] / multiplier_table["GFLOPs"].iloc[0]
multiplier_table.round(3)

# %% tags=["nbval-ignore-output"]
full_size = multiplier_timings[(1.0, 224)]
multiplier_speedups = {key: timing_ratio(full_size, timing) for key, timing in multiplier_timings.items()}
multiplier_table["latency (ms)"] = [multiplier_timings[key].median_ms for key in multipliers]
multiplier_table["speed-up"] = [multiplier_speedups[key].median for key in multipliers]
multiplier_table["interval"] = [f"{r.low:.2f} to {r.high:.2f}x ({r.interval_label})"
                                for r in multiplier_speedups.values()]
multiplier_table.round(3)

# %% [markdown]
# The resolution rows follow $\rho^2$; the width rows fall short of $\alpha^2$, because the depthwise
# and first convolutions scale only with $\alpha$, channel counts are rounded to multiples of 8, and
# torchvision keeps MobileNetV2's last layer at 1280 channels for $\alpha < 1$.
# Now compare the speed-up column with the inverse of `GFLOPs / full`: wherever the speed-up is the
# smaller of the two, the time saved is smaller than the arithmetic saved, for the reasons above,
# and by how much is this machine's answer. Thinning also shrinks the model file; a smaller input
# does not. Section 4 meets the width multiplier again: a network pruned uniformly by half has the
# architecture of $\alpha = 0.5$.

# %% [markdown]
# ## 3. Depthwise separable convolution
# A depthwise separable convolution splits a $k \times k$ convolution in two: a **depthwise** one that
# filters each channel on its own (`groups = in_channels`), then a $1 \times 1$ **pointwise** one that
# mixes channels. Its cost relative to the standard convolution is
#
# $$\frac{k^2 C_\text{in} + C_\text{in} N}{k^2 C_\text{in} N} = \frac{1}{N} + \frac{1}{k^2}.$$
#
# The module, as `helpers/ch02_model_structure/layers.py` defines it (padding derived from the kernel
# size and dilation):

# %%
show_source(DepthwiseSeparableConv)

# %% [markdown]
# It gives the same output shape as a standard convolution for every kernel size and stride:

# %%
probe = torch.randn(1, 16, 28, 28)
shapes = []
for k in (1, 3, 5, 7):
    for stride in (1, 2):
        standard = nn.Conv2d(16, 32, k, stride=stride, padding=k // 2)
        separable = DepthwiseSeparableConv(16, 32, k, stride=stride)
        shapes.append({"kernel": k, "stride": stride, "standard": tuple(standard(probe).shape),
                       "separable": tuple(separable(probe).shape)})
pd.DataFrame(shapes)

# %% [markdown]
# Parameters and FLOPs agree *exactly* with the formula (bare convolutions, no bias or batch norm):

# %%
channels, k = 256, 3
feature_map = torch.randn(8, channels, 14, 14)
standard = nn.Conv2d(channels, channels, k, padding=1, bias=False).eval()
separable = DepthwiseSeparableConv(channels, channels, k, norm=False).eval()
pd.Series({
    "params ratio": count_parameters(separable) / count_parameters(standard),
    "FLOPs ratio": count_flops(separable, feature_map) / count_flops(standard, feature_map),
    "formula 1/N + 1/k^2": separable_cost_ratio(channels, k),
})

# %% [markdown]
# Measured at 256 channels, 14x14, batch 8, against the theoretical ratio (the inverse of the line
# above):

# %% tags=["nbval-ignore-output"]
with torch.inference_mode():
    ds_timings = measure_interleaved({"standard 3x3": lambda: standard(feature_map),
                                      "depthwise separable": lambda: separable(feature_map)},
                                     rounds=8, min_run_time=0.6)
ds_table = timing_table(ds_timings)
ds_table.round(3)

# %% [markdown]
# The table's `speedup` column divides the two pooled medians; the claim below takes the median of
# the ratios of each round, pairing the two variants within a round, so the two numbers can
# differ. The claim's is the one judged and recorded.

# %% tags=["nbval-ignore-output"]
ds_theory = 1 / separable_cost_ratio(channels, k)
ds_claim = make_claim(2, "depthwise_separable_3x", "At 256 channels, 14x14, batch 8, a depthwise separable 3x3 "
                      "convolution is at least 3x faster than a standard one.", threshold=3.0,
                      ratio=timing_ratio(ds_timings["standard 3x3"], ds_timings["depthwise separable"]),
                      hardware=hw.cpu_label)
claims.append(ds_claim)
report_claim(ds_claim, holds=f"Of the {ds_theory:.1f}x fewer FLOPs, {ds_claim.ratio.median:.1f}x turns into time "
                             "saved; the roofline below shows where the rest goes.",
             does_not_hold=f"On this machine the separable block saves much less time than its {ds_theory:.1f}x "
                           "fewer FLOPs: the roofline below shows where the time goes.")

# %% [markdown]
# ### Each half on the roofline
# Chapter 1's roofline says an operation with intensity $I$ (FLOP per byte moved) can reach at
# most $\min(P_\text{peak}, I \cdot B_\text{peak})$. A $k \times k$ depthwise convolution does $2k^2$
# FLOPs per output element and must at least read one input element and write one output element:
# $I \approx 2k^2 / (2 \times 4) = k^2/4$ FLOP/byte in float32. The pointwise $1 \times 1$
# convolution reads a pixel's 256 channels once and uses each 256 times: far more intensity.
#
# The roofs come from `helpers/core/roofs.py`, the probes chapter 1 uses: the better of two large
# matrix products (the compute roof) and one bandwidth roof per way of touching memory. A
# convolution reads its input and weights and writes a **new output**, so each layer here is
# compared with the new-output roof, the one a copy into a second vector measures. First the layers
# (a standard convolution, each half of the separable block, depthwise kernels of size 5 and 7) and
# the minimum bytes each must move:

# %%
def depthwise(kernel: int) -> nn.Conv2d:
    """A bare k x k depthwise convolution over the 256-channel feature map."""
    return nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels, bias=False).eval()


ACCESS = "new output"  # a convolution writes a fresh output tensor: the copy's roof is its bandwidth roof
roofline_layers = {"standard 3x3": standard, "pointwise 1x1": separable.pointwise,
                   "depthwise 3x3": separable.depthwise, "depthwise 5x5": depthwise(5), "depthwise 7x7": depthwise(7)}
layer_work = pd.DataFrame({name: {"flops": count_flops(layer, feature_map),
                                  "min_bytes": conv_min_bytes(layer, feature_map)}
                           for name, layer in roofline_layers.items()}).T
layer_work["flop_per_byte"] = layer_work["flops"] / layer_work["min_bytes"]
layer_work["k^2/4"] = [depthwise_intensity(layer.kernel_size[0]) if layer.groups > 1 else None
                       for layer in roofline_layers.values()]
layer_work.round(2)

# %% [markdown]
# The roofs and the layers are timed **in the same alternating rounds**, so that both see the same
# machine state; a roof measured in another cell, a minute earlier, could be a different machine
# under a different load.

# %% tags=["nbval-ignore-output"]
layer_calls = {name: (lambda layer=layer: layer(feature_map)) for name, layer in roofline_layers.items()}
with torch.inference_mode():
    seconds = {name: t.median_s for name, t in
               measure_interleaved({**roof_operations(), **layer_calls}, min_run_time=0.3).items()}
roofs = roofs_from_seconds(seconds)
ridge = roofs.ridge(ACCESS)
print(f"roofs on this machine: {roofs.summary()}")
print(roofs.cache_note())
map_mib, cache_bytes = feature_map.numel() * feature_map.element_size() / 2**20, last_level_cache_bytes()
cache_text = "no cache size reported" if cache_bytes is None else f"largest cache {cache_bytes / 2**20:.0f} MiB"
print(f"the layers' input feature map: {map_mib:.1f} MiB ({cache_text})")
layer_work["median_ms"] = [seconds[name] * 1e3 for name in roofline_layers]
layer_work["gflop_per_s"] = layer_work["flops"] / layer_work["median_ms"] / 1e6
roof_here = layer_work["flop_per_byte"].map(lambda intensity: roofs.attainable_gflops(intensity, ACCESS))
layer_work["side of the ridge"] = [roofs.side(i, ACCESS) for i in layer_work["flop_per_byte"]]
layer_work["share of roof"] = layer_work["gflop_per_s"] / roof_here
layer_work["ms at its roof"] = layer_work["flops"] / roof_here / 1e6
layer_work["ms lost below the roof"] = (layer_work["median_ms"] - layer_work["ms at its roof"]).clip(lower=0)
layer_work.round(3)

# %%
plot_roofline(roofs, {name: (row.flop_per_byte, row.gflop_per_s) for name, row in layer_work.iterrows()},
              hardware=hw.cpu_label)

# %% tags=["nbval-ignore-output"]
halves = layer_work.loc[["depthwise 3x3", "pointwise 1x1"]]
lost_ms = halves["ms lost below the roof"].sum()
for name, row in halves.iterrows():
    lost = f"{row['ms lost below the roof'] / lost_ms:.0%}" if lost_ms > 0 else "none"
    print(f"{name}: {row.flops / halves['flops'].sum():.0%} of the block's FLOPs, "
          f"{row.median_ms / halves['median_ms'].sum():.0%} of its time (halves timed alone); intensity "
          f"{row.flop_per_byte:.2f} FLOP/byte (new-output ridge at {ridge:.1f}: {row['side of the ridge']}); "
          f"{row['share of roof']:.0%} of its roof; {lost} of the time the block loses below its roofs")
sides = layer_work["side of the ridge"]
side_labels = {"memory": "memory side here", "at the ridge": "at the ridge (within 10%)", "compute": "compute side"}
print(" | ".join(f"{label}: {', '.join(sides.index[sides == side]) or 'none'}" for side, label in side_labels.items()))
for name, row in layer_work[layer_work["share of roof"] > 1].iterrows():
    why = ("the compute roof is our best matrix product, a lower bound: this convolution's kernel beats it"
           if row["side of the ridge"] != "memory" else
           "its data came partly from a cache faster than the probes' 64 MiB footprint")
    print(f"{name} is above its roof ({row['share of roof']:.2f}x): {why}.")

# %% [markdown]
# The printed lines read this machine's table; compare them with the plot. The intensity of a
# depthwise kernel is $k^2/4$ whatever the width, so a larger kernel moves it to the right: which of
# them land on the memory side of the ridge is this machine's answer (the memory-side line above),
# since the ridge is where *this* CPU's compute roof meets its bandwidth roof.
#
# Where a layer also stays far below its roof, neither roof explains its time, and the roofline
# cannot say what does. Candidates are the work around the arithmetic: reordering the data into the
# library's own layout before and after the call, or filters too small (one input channel each) to
# fill the vector units. This chapter does not measure which; a profiler can (chapter 7), and so
# can timing the layer in another memory layout. "Memory-bound" is a diagnosis you check on the
# roofline, not a label.
#
# Two caveats, for a point that sits *above* its roof (the last printed lines name any). The roofs
# are the best rates our probes reached, not the hardware's: on the compute side, a convolution
# library's hand-tuned kernel can beat the matrix product we time, so the compute roof is a lower
# bound and a layer above it says so. On the memory side, the layers' input (a few MiB, printed
# above) is small enough to stay in the cache across calls, while the probes stream a 64 MiB
# footprint; a layer fed from the cache can outrun a bandwidth roof measured further out (chapter
# 1's copy over twice the footprint shows how much the footprint alone changes a roof). Finally, read
# how the time the block loses below its roofs splits between its two halves (the last figure of
# each line): where both take a large share, the depthwise half alone is not what keeps the block
# from its FLOP ratio.
#
# Across sizes, the gap between theory and measurement changes:

# %% tags=["nbval-ignore-output"]
def separable_speedup(channels: int, size: int, kernel: int = 3, batch: int = 8) -> dict:
    """Measured standard/separable latency ratio at one shape (median and range of 3 rounds), and the theory."""
    x = torch.randn(batch, channels, size, size)
    std = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=False).eval()
    sep = DepthwiseSeparableConv(channels, channels, kernel, norm=False).eval()
    with torch.inference_mode():
        timings = measure_interleaved({"standard": lambda: std(x), "separable": lambda: sep(x)},
                                      rounds=3, min_run_time=0.15)
    ratio = timing_ratio(timings["standard"], timings["separable"])
    return {"channels": channels, "size": size, "kernel": kernel, "measured": ratio.median,
            "lowest round": ratio.low, "highest round": ratio.high,
            "theory": 1 / separable_cost_ratio(channels, kernel), "depthwise FLOP/byte": depthwise_intensity(kernel)}


points = pd.DataFrame([separable_speedup(c, s) for c, s in [(32, 56), (64, 28), (256, 14), (512, 7)]])
points.round(2)

# %%
plot_together(points["channels"].tolist(), {"measured": points["measured"], "theory (FLOP ratio)": points["theory"]},
              xlabel="channels (resolution shrinks as channels grow)", ylabel="speed-up of separable over standard (x)",
              hardware=hw.cpu_label, title="Depthwise separable against standard 3x3 convolution",
              intervals={"measured": (points["lowest round"], points["highest round"])})

# %% [markdown]
# Both on one scale (the bars span the rounds' ratios): the vertical gap between the two curves is the
# arithmetic the separable block saves but the time it does not.
#
# ### Explore: channels and kernel size
# Larger kernels make the theory more generous ($1/k^2$ shrinks) and move the depthwise half to the
# right on the roofline; watch whether the measured speed-up follows.

# %% tags=["nbval-ignore-output"]
live_control(lambda channels, kernel: pd.DataFrame([separable_speedup(channels, 14, kernel)]).round(2),
             channels=widgets.SelectionSlider(options=[32, 64, 128, 256, 512], value=256, description="channels",
                                              continuous_update=False),
             kernel=widgets.SelectionSlider(options=[3, 5, 7], value=3, description="kernel", continuous_update=False))

# %% [markdown]
# ## 4. Channel pruning that really removes channels
# A pruning result is only as good as its baseline, its control and its uncertainty. Four rules make
# the comparison fair:
# - **Equal budgets.** The dense network trains with a schedule (Adam, a cosine decay of the
#   learning rate); then *every* arm, the unpruned one included, gets the same fine-tuning epochs
#   on the same shuffled batches. Otherwise a pruned network that trained longer can look better
#   than its parent. The unpruned arm also tells whether the dense network had finished learning:
#   if its extra epochs change little, the baseline is not under-trained.
# - **A from-scratch control.** Pruning produces an architecture *and* inherits weights. Train the
#   same thin architecture from a random start for the same number of epochs: if it does as well,
#   the pruning bought an architecture, not a head start (Liu et al., *Rethinking the Value of
#   Network Pruning*, ICLR 2019).
# - **Accuracy with its spread, and a paired test.** One test set of a few hundred images pins an
#   accuracy down only to an interval of a point or more (printed below), so each experiment runs
#   on three cross-validation folds of the digits, each with its own initialisation. Every digit is
#   a test image in exactly one fold, so two arms can also be compared digit by digit on all of them.
# - **Choices on validation data.** Ratios and thresholds are chosen on a validation set carved
#   from each fold's training images; the test images only report.
#
# The digits are upsampled to 32x32 so the convolutions have work to do:

# %% tags=["nbval-ignore-output"]
DENSE_EPOCHS, FINETUNE_EPOCHS = 8, 2
folds, validation = [], []
for k, fold in enumerate(digits_folds(3, image_size=32)):
    fit, x_val, y_val = hold_out(fold, 0.2, seed=k)
    folds.append(fit)
    validation.append((x_val, y_val))
print(f"per fold: {len(folds[0].y_train)} training, {len(validation[0][1])} validation, "
      f"{len(folds[0].y_test)} test images")


# %%
def fold_loader(k: int) -> torch.utils.data.DataLoader:
    """Fold k's training batches, shuffled in the same order every time it is created."""
    return tensor_loader(folds[k].x_train, folds[k].y_train, batch_size=64, shuffle=True, seed=k)


def calibration_loader(k: int) -> torch.utils.data.DataLoader:
    """The first 256 of fold k's training images, for recalibrating batch norm statistics."""
    return tensor_loader(folds[k].x_train[:256], folds[k].y_train[:256], batch_size=64, shuffle=False)


# %% tags=["nbval-ignore-output"]
dense_nets = []
for k in range(len(folds)):
    torch.manual_seed(k)
    net = small_cnn()
    train_epochs(net, fold_loader(k), epochs=DENSE_EPOCHS, lr=3e-3, anneal=True, progress=False)
    dense_nets.append(net)
dense_accuracy = [evaluate_accuracy(net, f.x_test, f.y_test) for net, f in zip(dense_nets, folds)]
fold_table({"dense": dense_accuracy}).round(2)

# %% tags=["nbval-ignore-output"]
n_test = len(folds[0].y_test)
for accuracy in (dense_accuracy[0], 0.9):
    low, high = wilson_interval(accuracy, n_test)
    print(f"{accuracy:.1%} measured on {n_test} test images: 95% interval {low:.1%} to {high:.1%}")

# %% [markdown]
# ### Which filters to remove
# The classic criterion ranks each convolution's filters by the L1 norm of their weights and
# removes the smallest. But in this network every convolution is followed by batch norm, which
# multiplies channel $c$ by $\gamma_c / \sqrt{\sigma^2_c + \epsilon}$: a filter with small weights can
# feed a channel that batch norm scales up, and the reverse. Folding that factor into the filter
# gives a criterion that measures what the channel passes on (network slimming uses $|\gamma_c|$
# alone, after training with a penalty that pushes many $\gamma$ to zero):

# %%
show_source(filter_importance)

# %% [markdown]
# `prune_channels` keeps each convolution's most important output channels (one ratio for all
# convolutions, or one per convolution) and builds a **new** network in which each convolution, its
# batch norm and the next layer's inputs are physically smaller:

# %%
show_source(prune_channels)

# %% [markdown]
# The surgery itself is a copy of the kept slices into new, smaller layers. On a convolution's
# output channels (its weight's first axis; `keep_input_channels` does the same on the next layer's
# second axis):

# %%
show_source(keep_output_channels)

# %% [markdown]
# And on each batch norm, which keeps the statistics and the affine parameters of the kept channels:

# %%
show_source(keep_batch_norm_channels)

# %% [markdown]
# After pruning, each batch norm's running mean and variance describe inputs that no longer exist
# (the previous layer lost channels). **Recalibrating** them costs one pass over training images
# without gradients (a few hundred images are enough for the statistics); PyTorch ships it as
# `torch.optim.swa_utils.update_bn`. Then fine-tuning repairs the rest. One arm of the experiment,
# with the accuracy after each step (test images) and the final one on the validation images:

# %%
def prune_recalibrate_finetune(k: int, ratio: float | list[float], criterion: str) -> tuple[nn.Sequential, dict]:
    """Prune fold k's dense network, recalibrate its batch norms, fine-tune; the accuracy after each step."""
    fold, (x_val, y_val) = folds[k], validation[k]
    if ratio == 0:  # nothing to remove: a plain copy
        net = copy.deepcopy(dense_nets[k])
    else:
        net = prune_channels(dense_nets[k], ratio, criterion=criterion)
    accuracy = {"pruned": evaluate_accuracy(net, fold.x_test, fold.y_test)}
    update_bn(calibration_loader(k), net)  # fresh running statistics for the inputs each batch norm now receives
    accuracy["BN recalibrated"] = evaluate_accuracy(net, fold.x_test, fold.y_test)
    torch.manual_seed(k)
    train_epochs(net, fold_loader(k), epochs=FINETUNE_EPOCHS, lr=1e-3, anneal=True, progress=False)
    accuracy["final"] = evaluate_accuracy(net, fold.x_test, fold.y_test)
    accuracy["final, validation"] = evaluate_accuracy(net, x_val, y_val)
    return net, accuracy


# %% [markdown]
# Three arms, three folds each, the same budget ($8 + 2$ epochs): the unpruned network fine-tuned
# like the others, and 50% of every convolution's channels removed by each criterion:

# %% tags=["nbval-ignore-output"]
CRITERION = "bn_scaled_l1"  # the criterion the rest of the chapter prunes with
arms = {"unpruned": (0.0, "l1"), "L1, 50%": (0.5, "l1"), "BN-scaled L1, 50%": (0.5, CRITERION)}
arm_nets, arm_accuracy = {}, {}
for arm, (ratio, criterion) in arms.items():
    results = [prune_recalibrate_finetune(k, ratio, criterion) for k in range(len(folds))]
    arm_nets[arm] = [net for net, _ in results]
    arm_accuracy[arm] = pd.DataFrame([accuracy for _, accuracy in results])
extra_epochs = (arm_accuracy["unpruned"]["final"] - pd.Series(dense_accuracy)) * 100
print(f"the unpruned arm's {FINETUNE_EPOCHS} extra epochs moved its test accuracy by {extra_epochs.mean():+.2f} points "
      f"on average (per fold: {', '.join(f'{d:+.2f}' for d in extra_epochs)}); the paired test below says whether "
      "that is more than chance")

# %% [markdown]
# **The control.** Uniform 50% pruning turns `small_cnn()`, with 32, 64 and 128 channels, into a
# network with half as many in every layer: exactly `small_cnn((16, 32, 64))`, which is also section
# 2's width multiplier $\alpha = 0.5$ applied to this network. Check that the two are the same
# architecture:

# %%
THIN = (16, 32, 64)
uniform_pruned = arm_nets["BN-scaled L1, 50%"][0]
print(f"pruned 50%: channels {tuple(m.out_channels for m in uniform_pruned if isinstance(m, nn.Conv2d))}, "
      f"{count_parameters(uniform_pruned):,} parameters; small_cnn({THIN}): "
      f"{count_parameters(small_cnn(THIN)):,} parameters; same layers: "
      f"{[type(m) for m in uniform_pruned] == [type(m) for m in small_cnn(THIN)]}")

# %% [markdown]
# Train it from a random start on each fold, with the dense network's recipe, for all $8 + 2$ epochs
# (it has no pruning stages, so its first two columns below stay empty):

# %% tags=["nbval-ignore-output"]
def train_from_scratch(k: int) -> tuple[nn.Sequential, dict]:
    """The thin architecture trained from a random start on fold k for the pruned arms' total epochs."""
    torch.manual_seed(k)
    net = small_cnn(THIN)
    train_epochs(net, fold_loader(k), epochs=DENSE_EPOCHS + FINETUNE_EPOCHS, lr=3e-3, anneal=True, progress=False)
    accuracy = {"final": evaluate_accuracy(net, folds[k].x_test, folds[k].y_test),
                "final, validation": evaluate_accuracy(net, *validation[k])}
    return net, accuracy


results = [train_from_scratch(k) for k in range(len(folds))]
arm_nets["from scratch"] = [net for net, _ in results]
arm_accuracy["from scratch"] = pd.DataFrame([accuracy for _, accuracy in results])
stages = ["pruned", "BN recalibrated", "final", "final, validation"]
mean_by_stage = pd.DataFrame({arm: table.mean() * 100 for arm, table in arm_accuracy.items()}).T[stages]
mean_by_stage.round(1).add_suffix(" (%, mean)")

# %% tags=["nbval-ignore-output"]
fold_table({arm: table["final"] for arm, table in arm_accuracy.items()}).round(2)

# %% [markdown]
# **What three folds can say.** "Higher on every fold" sounds decisive, but for two equally good
# arms each fold is a coin flip, so one of the two comes out higher on all three folds one time in
# four ($2 \times 1/2^3$): three folds can never be conclusive on their own. The folds' test sets
# together hold every digit exactly once, each predicted by a network that never trained on it. Pool
# those predictions and compare two arms digit by digit: McNemar's test looks only at the digits that
# exactly one of the two gets right, and asks whether that split could be chance.

# %% tags=["nbval-ignore-output"]
def pooled_predictions(nets: list[nn.Module]) -> torch.Tensor:
    """Each fold's network on its own fold's test images, concatenated: one prediction for every digit."""
    with torch.inference_mode():
        return torch.cat([net.eval()(fold.x_test).argmax(dim=1) for net, fold in zip(nets, folds)])


pooled_labels = torch.cat([fold.y_test for fold in folds])
predictions = {arm: pooled_predictions(nets) for arm, nets in arm_nets.items()}


def paired_comparison(reference: str, candidate: str) -> dict:
    """Candidate against reference: the per-fold differences in points, then McNemar on the pooled predictions."""
    differences = (arm_accuracy[candidate]["final"] - arm_accuracy[reference]["final"]) * 100
    return {"reference": reference, "candidate": candidate,
            "per-fold difference (points)": ", ".join(f"{d:+.1f}" for d in differences),
            **paired_prediction_change(predictions[reference], predictions[candidate], pooled_labels)}


pairs = [("unpruned", "BN-scaled L1, 50%"), ("L1, 50%", "BN-scaled L1, 50%"), ("from scratch", "BN-scaled L1, 50%"),
         ("unpruned", "from scratch")]
paired = pd.DataFrame([paired_comparison(*pair) for pair in pairs]).set_index(["reference", "candidate"])
print(f"{len(pooled_labels)} digits, each predicted once by each arm")
paired.round(4)

# %% [markdown]
# First, the yardstick every arm shares: was the dense network itself done training? The unpruned
# arm is the same networks after two more epochs, so the same paired test on the dense networks
# against the unpruned arm answers it (a *p* above 0.05 says the extra epochs changed no more
# digits than chance would; it does not prove that they changed nothing):

# %% tags=["nbval-ignore-output"]
more_training = paired_prediction_change(pooled_predictions(dense_nets), predictions["unpruned"], pooled_labels)
gained, lost = more_training["only the candidate right"], more_training["only the reference right"]
print(f"{FINETUNE_EPOCHS} more epochs: {gained} digits newly right, {lost} newly wrong, McNemar p = "
      f"{more_training['McNemar p']:.3f}: "
      + ("no more change than chance, so the dense baseline was not measurably short of training"
         + (" (though the direction favours more training)." if gained > lost else ".")
         if more_training["McNemar p"] >= 0.05 else
         "more than chance, so the dense network was still learning: the baseline is under-trained."
         if gained > lost else "more than chance, and for the worse: the extra epochs over-fitted."))

# %% tags=["nbval-ignore-output"]
steps_per_epoch = len(fold_loader(0))
control = paired.loc[("from scratch", "BN-scaled L1, 50%")]
pruned_better, scratch_better = control["only the candidate right"], control["only the reference right"]
if control["McNemar p"] >= 0.05:
    verdict = "the test cannot tell the pruned network from the same architecture trained from scratch"
elif scratch_better > pruned_better:
    verdict = ("training the thin architecture from scratch beat pruning: here pruning bought an architecture, "
               "and the inherited weights did not pay within this budget")
else:
    verdict = "pruning beat training the same architecture from scratch: the inherited weights paid"
print(f"BN-scaled L1 50% against from scratch: {pruned_better} digits only the pruned network gets right, "
      f"{scratch_better} only the from-scratch one (McNemar p = {control['McNemar p']:.2g}): {verdict}.")
print(f"The pruned arms fine-tuned for {FINETUNE_EPOCHS} epochs ({FINETUNE_EPOCHS * steps_per_epoch} steps) after "
      f"the surgery; the from-scratch network trained all {DENSE_EPOCHS + FINETUNE_EPOCHS} epochs "
      f"({(DENSE_EPOCHS + FINETUNE_EPOCHS) * steps_per_epoch} steps) in its final shape.")

# %% [markdown]
# Read the tables together. Right after removing half of every layer's channels at once, compare
# each arm's accuracy with chance (10%): the layers were pruned together, so each one's errors
# compound, and the batch norms normalise with statistics of inputs that are gone. Recalibration
# costs no training; see how much of the loss it repairs. Fine-tuning does the rest. The paired table
# then says which differences are real: a McNemar p below 0.05 means the two arms differ on these
# digits by more than chance would give; above it, they cannot be told apart here, however the
# folds line up. Beside it, the per-fold differences show the spread.
#
# The control is where a pruning claim usually stands or falls. What most likely limits the pruned
# arms here (not measured: the rerun suggested below would measure it) is the design: a few dozen steps of fine-tuning (the line above) to recover from removing half of
# every layer at once, against the from-scratch network's whole training in its final shape. Longer
# fine-tuning, or pruning in several small steps with fine-tuning between them, gives the inherited
# weights more of a chance: raise `FINETUNE_EPOCHS` (for every arm alike) and rerun to see how far.

# %% [markdown]
# ### Latency
# Latency at batch 64. PyTorch's default memory layout, NCHW, stores each channel as its own plane;
# `channels_last` (NHWC) puts a pixel's channels side by side, which vectorised kernels can use
# (chapter 3 measures the layout on its own). Which layers gain from it is a measurement, not a
# rule: the per-layer table further down shows it for this CPU. The from-scratch control has the
# pruned network's architecture, so its latency is the same and is not timed twice. First, fold 0's
# networks in both layouts:

# %% tags=["nbval-ignore-output"]
dense, finetuned = dense_nets[0], arm_nets["BN-scaled L1, 50%"][0]
one_digit = folds[0].x_test[:1]
test_batch = folds[0].x_test[:64]
test_batch_cl = test_batch.contiguous(memory_format=torch.channels_last)
for net in (dense, finetuned):
    net.eval()
dense_cl, finetuned_cl = (copy.deepcopy(net).to(memory_format=torch.channels_last) for net in (dense, finetuned))

# %% [markdown]
# They are timed in alternating rounds, and each pruned network is compared with the dense one in
# the same layout:

# %% tags=["nbval-ignore-output"]
prune_variants = {"dense, NCHW": lambda: dense(test_batch), "pruned 50%, NCHW": lambda: finetuned(test_batch),
                  "dense, channels_last": lambda: dense_cl(test_batch_cl),
                  "pruned 50%, channels_last": lambda: finetuned_cl(test_batch_cl)}
with torch.inference_mode():
    prune_timings = measure_interleaved(prune_variants, rounds=8, min_run_time=0.6)

# %% tags=["nbval-ignore-output"]
same_layout_dense = {name: "dense, NCHW" if "NCHW" in name else "dense, channels_last" for name in prune_variants}
prune_table = timing_table(prune_timings, items_per_call=64)
prune_table["speedup, same layout"] = [prune_table.loc[same_layout_dense[name], "median_ms"] / ms
                                       for name, ms in prune_table["median_ms"].items()]
prune_table.round(3)

# %% [markdown]
# Halving every layer's channels divides a convolution's work by about 4 ($C_\text{in}$ and $N$ both
# halve), but batch norm, ReLU and max pooling touch each value once: their work only halves. Where
# does the time go, layer kind by layer kind? Every layer of three networks (dense in both layouts,
# pruned in `channels_last`) is timed on the input it receives in a forward pass, all of them in
# four alternating rounds. Each cell of the first table is the median over the rounds of that kind's
# summed time, and its `total` row the sum of the kinds above it; the second table gives each
# kind's lowest and highest round. A median shrugs off a round in which one layer hit a slow spell;
# the range does not, so read a wide range as "this run had slow spells", and a difference smaller
# than the ranges as no difference:

# %% tags=["nbval-ignore-output"]
networks = {"dense, NCHW": (dense, test_batch), "dense, channels_last": (dense_cl, test_batch_cl),
            "pruned, channels_last": (finetuned_cl, test_batch_cl)}
timed_rounds = time_layers_by_round(networks, rounds=4, min_run_time=0.08)
is_whole = timed_rounds["kind"] == WHOLE_NETWORK  # each network also timed whole, in the same rounds
layer_rounds, whole_rounds = timed_rounds[~is_whole], timed_rounds[is_whole].set_index(["network", "round"])["ms"]
by_kind = layer_rounds.groupby(["kind", "network"], sort=False)["ms"]
layer_times = by_kind.median().unstack()[list(networks)]
layer_times.loc["total"] = layer_times.sum()
whole_network_ms = whole_rounds.groupby("network").median()
print("each network timed whole in the same rounds:",
      ", ".join(f"{name} {whole_network_ms[name]:.3f} ms" for name in networks))
layer_times.round(3)

# %% tags=["nbval-ignore-output"]
by_kind.agg(lambda ms: f"{ms.min():.3f} to {ms.max():.3f}").unstack()[list(networks)]

# %% [markdown]
# **Layers timed alone are not the network.** Each layer above ran again and again on one input,
# so its input and weights stay in the nearest caches between calls; in a forward pass each layer
# instead reads what the previous layer has just written, after that layer's own work has passed
# through the same small caches, and every layer allocates a fresh output. Those effects can make
# the sum of the layers come out *below* the network timed whole; the overhead each call pays on
# its own pushes the other way. Which one wins here is measured below, per round, since the whole
# networks ran in the same rounds as their layers; *why* would take a profiler with hardware
# counters. The method is the same for every kind, so the table's *shares* are comparable with each
# other, and the ceiling computed from them below is a share of the per-layer sum; the whole
# network, timed in the same rounds, is the other denominator:

# %% tags=["nbval-ignore-output"]
round_sums = layer_rounds.groupby(["network", "round"])["ms"].sum()
sum_over_whole = (round_sums / whole_rounds).groupby("network")
for name in networks:
    low, median, high = sum_over_whole.get_group(name).agg(["min", "median", "max"])
    reading = ("below the whole network in every round: whatever layers timed alone miss outweighs their own "
               "overheads" if high < 1 else "above it in every round: per-call overheads outweigh the rest"
               if low > 1 else "on both sides of it across rounds: no difference this run can show")
    print(f"{name}: the layers sum to {median:.0%} of the network timed whole (rounds {low:.0%} to {high:.0%}); "
          f"{reading}")

# %% [markdown]
# Look at max pooling in both layouts: in NCHW it walks each channel plane
# separately and records the index of every maximum, and on many CPUs it takes a large share of the
# time; its `channels_last` kernel vectorises across channels. Whether the *convolutions* run faster
# in `channels_last` on this CPU is a separate question the `Conv2d` row answers. Then compare the
# pruned column with the dense one, kind by kind. A kind whose pruned rounds are all slower than
# every dense round did not merely fail to shrink, it grew; pooling is the usual candidate: in
# `channels_last` its kernel runs along the channels of each pixel, and with half the channels each
# pixel fills fewer vector lanes, so the fixed work per pixel stays while the useful work halves.
# That is a hypothesis the table cannot prove (a profiler of the kernels could). The speed-up of a
# structural change depends on which layers dominate *on your machine*: measure it in the layout
# you will deploy. The claim below judges the whole network's speed-up:

# %% tags=["nbval-ignore-output"]
dense_by_kind, pruned_by_kind = layer_times["dense, channels_last"], layer_times["pruned, channels_last"]
flop_shrink = count_flops(dense, one_digit) / count_flops(finetuned, one_digit)
round_range = by_kind.agg(["min", "max"])
slowest_dense = round_range.xs("dense, channels_last", level="network")["max"]
fastest_pruned = round_range.xs("pruned, channels_last", level="network")["min"]
grew = [kind for kind in fastest_pruned.index if fastest_pruned[kind] > slowest_dense[kind]]
# a strict test: a kind is named only when every pruned round was slower than every dense round
print("kinds slower in the pruned network in every round than in the dense one in any:", ", ".join(grew) or "none")
layer_reading = (f"The network's FLOPs shrank {flop_shrink:.2f}x; how far each kind of layer shrank is in the "
                 "per-layer table above, and exercise 2 asks you to read it.")
prune_claim = make_claim(2, "channel_pruning_50_2x", "Pruning 50% of the channels makes the digits CNN at least 2x "
                         "faster at batch 64 in channels_last.", threshold=2.0,
                         ratio=timing_ratio(prune_timings["dense, channels_last"],
                                            prune_timings["pruned 50%, channels_last"]), hardware=hw.cpu_label)
claims.append(prune_claim)
report_claim(prune_claim, holds=f"Pruning pays here. {layer_reading} Time does not follow the FLOPs even within "
                                "one network: each kind shrinks by its own factor.",
             does_not_hold=f"{layer_reading} On this machine the kinds that fell furthest short of the FLOPs keep "
                           "too large a share of the time.",
             inconclusive=f"The threshold lies inside the interval: this run cannot tell. {layer_reading}")

# %% [markdown]
# ### Explore: the pruning ratio
# Each change prunes fold 0's dense network at that ratio (BN-scaled criterion, every layer alike),
# recalibrates, fine-tunes it for the same two epochs and measures it (latency in `channels_last`;
# a few seconds; a ratio already trained, such as the arms' 0 and 0.5, is reused). Where does
# accuracy start to fall?

# %%
def conv_channels(net: nn.Sequential) -> tuple[int, ...]:
    """The output channels of each convolution of a plain stack."""
    return tuple(layer.out_channels for layer in net if isinstance(layer, nn.Conv2d))


fold0_runs = {0.0: (arm_nets["unpruned"][0], arm_accuracy["unpruned"].iloc[0]),
              0.5: (arm_nets["BN-scaled L1, 50%"][0], arm_accuracy["BN-scaled L1, 50%"].iloc[0])}


def fold0_run(ratio: float) -> tuple[nn.Sequential, pd.Series | dict]:
    """Fold 0's network pruned at ratio, recalibrated and fine-tuned, with its accuracies: trained once, then reused."""
    if ratio not in fold0_runs:
        fold0_runs[ratio] = prune_recalibrate_finetune(0, ratio, CRITERION)
    return fold0_runs[ratio]


def pruning_point(ratio: float) -> dict:
    """Fold 0's network at ratio (see fold0_run): its size, latency in channels_last and test accuracy."""
    net, accuracy = fold0_run(ratio)
    net = copy.deepcopy(net).eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        latency = measure_latency(lambda: net(test_batch_cl), min_run_time=0.3)
    return {"ratio": ratio, "channels": conv_channels(net), "parameters": count_parameters(net),
            "MFLOPs": count_flops(net, one_digit) / 1e6, "latency_ms (batch 64)": latency.median_ms,
            "accuracy": accuracy["final"]}


# %% tags=["nbval-ignore-output"]
live_control(lambda ratio: pd.DataFrame([pruning_point(ratio)]).set_index("ratio").round(3),
             ratio=widgets.FloatSlider(value=0.5, min=0.0, max=0.9, step=0.1, description="ratio",
                                       continuous_update=False))

# %% [markdown]
# The whole sweep, as a static figure for the book (ratios 0 and 0.5 are the arms trained above).
# The networks are timed together, in alternating rounds, so that each ratio's latency meets the
# same machine:

# %% tags=["nbval-ignore-output"]
ratios = [0.0, 0.25, 0.5, 0.75, 0.9]
sweep_runs = {ratio: fold0_run(ratio) for ratio in ratios}
sweep_nets = {ratio: copy.deepcopy(sweep_runs[ratio][0]).eval().to(memory_format=torch.channels_last)
              for ratio in ratios}

# %% tags=["nbval-ignore-output"]
with torch.inference_mode():
    sweep_timings = measure_interleaved(
        {ratio: (lambda net=net: net(test_batch_cl)) for ratio, net in sweep_nets.items()}, min_run_time=0.4)
prune_sweep = pd.DataFrame({
    "channels": [conv_channels(net) for net in sweep_nets.values()],
    "parameters": [count_parameters(net) for net in sweep_nets.values()],
    "MFLOPs": [count_flops(net, one_digit) / 1e6 for net in sweep_nets.values()],
    "latency_ms (batch 64)": [sweep_timings[ratio].median_ms for ratio in ratios],
    "validation accuracy": [sweep_runs[ratio][1]["final, validation"] for ratio in ratios],
    "test accuracy": [sweep_runs[ratio][1]["final"] for ratio in ratios]}, index=pd.Index(ratios, name="ratio"))
prune_sweep.round(3)

# %%
plot_sweep(ratios, {"parameters": prune_sweep["parameters"], "latency": prune_sweep["latency_ms (batch 64)"],
                    "accuracy": prune_sweep["test accuracy"]},
           xlabel="pruning ratio", ylabels={"latency": "latency, batch 64 (ms)", "accuracy": "test accuracy"},
           hardware=hw.cpu_label, title="Channel pruning: smaller, faster, until accuracy gives way", logx=False)

# %% [markdown]
# Look at the `channels` column too: a ratio such as 0.9 leaves channel counts such as (3, 6, 13),
# not multiples of 8 or 16, the widths that vector units (8 or 16 float32 lanes with AVX2 or
# AVX-512) and GPU tensor cores work in; kernels then run partly empty lanes. Libraries round for
# this (Torch-Pruning's `round_to=8`, MobileNet's multiples of 8).
#
# ### Masks are not pruning
# `torch.nn.utils.prune` zeroes weights through a mask. After `prune.remove` the zeros are baked
# in, but the tensors keep their shape: the same bytes are stored and the same dense arithmetic runs.

# %%
masked = copy.deepcopy(dense)
for layer in masked:
    if isinstance(layer, (nn.Conv2d, nn.Linear)):
        torch_prune.l1_unstructured(layer, name="weight", amount=0.5)
        torch_prune.remove(layer, "weight")
zeros = sum((layer.weight == 0).sum().item() for layer in masked if isinstance(layer, (nn.Conv2d, nn.Linear)))
print(f"weights set to zero: {zeros}; parameters still stored: {count_parameters(masked)}; "
      f"serialized size unchanged: {serialized_size_bytes(masked) == serialized_size_bytes(dense)}")

# %% tags=["nbval-ignore-output"]
masked.eval()
with torch.inference_mode():
    mask_timings = measure_interleaved({"dense": lambda: dense(test_batch), "50% masked": lambda: masked(test_batch)},
                                       rounds=8, min_run_time=0.4)
mask_claim = make_claim(2, "masked_pruning_no_speedup", "Zeroing 50% of the weights with a mask makes the digits "
                        "CNN at most 1.1x faster at batch 64.", threshold=1.1, direction="at most",
                        ratio=timing_ratio(mask_timings["dense"], mask_timings["50% masked"]), hardware=hw.cpu_label)
claims.append(mask_claim)
display(timing_table(mask_timings).round(3))
report_claim(mask_claim, holds="Dense kernels multiply zeros as fast as any other number: no gain worth the name.",
             does_not_hold="Surprising: the masked network ran faster here. Look for a cause other than the "
                           "zeros (denormal inputs, a cache effect) before you believe it.")

# %% [markdown]
# Sparse weights pay only with sparse kernels and hardware that skips zeros (for example 2:4
# structured sparsity on recent NVIDIA GPUs); removing whole channels pays everywhere.
#
# ### Folding batch norm into the convolution
# At inference, batch norm is a fixed per-channel scale and shift, so it can be folded into the
# convolution before it: with $g = \gamma / \sqrt{\sigma^2 + \epsilon}$ per output channel,
# $W' = g \, W$ and $b' = \beta + g\,(b - \mu)$ ($b = 0$ for our convolutions, which have no bias).
# One layer and one pass over the activations disappear, and nothing is lost but rounding.
#
# **Predict first**, as chapter 1 does: folding removes the batch norms' time and nothing else, so
# if batch norm takes a share $p$ of the network's time, folding can make it at most $1/(1-p)$ times
# faster. The per-layer table above gives $p$:

# %% tags=["nbval-ignore-output"]
bn_share = dense_by_kind["BatchNorm2d"] / dense_by_kind["total"]
folding_ceiling = 1 / (1 - bn_share)
whole_share = dense_by_kind["BatchNorm2d"] / whole_network_ms["dense, channels_last"]
print(f"batch norm: {bn_share:.0%} of the dense network's channels_last time (per-layer table), so folding can "
      f"make it at most {folding_ceiling:.2f}x faster; as a share of the network timed whole, {whole_share:.0%}, "
      f"a ceiling of {1 / (1 - whole_share):.2f}x. The first divides two numbers measured the same way, so the "
      "reading below uses it.")

# %% [markdown]
# `torch.nn.utils.fusion.fuse_conv_bn_eval` folds one pair:

# %%
def fold_batch_norms(model: nn.Sequential) -> nn.Sequential:
    """A copy of an eval-mode conv/BN stack with each batch norm folded into the convolution before it."""
    layers = []
    for layer in copy.deepcopy(model).eval():
        if isinstance(layer, nn.BatchNorm2d) and layers and isinstance(layers[-1], nn.Conv2d):
            layers[-1] = fuse_conv_bn_eval(layers[-1], layer)
        else:
            layers.append(layer)
    return nn.Sequential(*layers).eval()


# %%
folded = fold_batch_norms(dense)
with torch.inference_mode():
    folding_error = (folded(test_batch) - dense(test_batch)).abs().max().item()
print(f"layers: {len(dense)} -> {len(folded)}; largest difference in the logits: "
      f"{'below 1e-4' if folding_error < 1e-4 else f'{folding_error:.2e}'}")

# %% [markdown]
# The claim's threshold is fixed before the measurement, and set well under the ceiling printed
# above: batch norm is a small share of the time, so a threshold close to the ceiling could only
# hold if the whole interval cleared it, which a gain at the ceiling with any noise around it cannot
# do. At least 1.05x asks for part of the batch norms' time back: a real saving delivers it, noise
# alone does not.

# %% tags=["nbval-ignore-output"]
folded_cl = copy.deepcopy(folded).to(memory_format=torch.channels_last)
with torch.inference_mode():
    folding_timings = measure_interleaved({"with batch norm": lambda: dense_cl(test_batch_cl),
                                           "folded": lambda: folded_cl(test_batch_cl)}, rounds=8, min_run_time=0.6)

# %% tags=["nbval-ignore-output"]
folding_claim = make_claim(2, "conv_bn_folding", "Folding batch norm into the convolutions makes the digits CNN at "
                           "least 1.05x faster at batch 64 in channels_last.", threshold=1.05,
                           ratio=timing_ratio(folding_timings["with batch norm"], folding_timings["folded"]),
                           hardware=hw.cpu_label)
claims.append(folding_claim)
folding = folding_claim.ratio
ceiling_reading = ("the whole interval lies within the ceiling, as it must if folding saves the batch norms' own "
                   "time and nothing else." if folding.high <= folding_ceiling else
                   "the whole interval lies above the ceiling: something beside the batch norms' own time was saved "
                   "(one pass fewer over the activations between two layers, for example), which a table of layers "
                   "timed one by one cannot show." if folding.low > folding_ceiling else
                   f"the interval straddles the ceiling, with its median "
                   f"{'above' if folding.median > folding_ceiling else 'below'} it: this run cannot tell whether "
                   "folding saved more than the batch norms' own time.")
against_ceiling = (f"Measured {folding} against a ceiling of {folding_ceiling:.2f}x from batch norm's share of the "
                   f"time: {ceiling_reading}"
                   + (f" The ceiling itself lies under the claim's {folding_claim.threshold:g}x, so the claim could "
                      "only hold by saving more than the batch norms' time."
                      if folding_ceiling < folding_claim.threshold else ""))
report_claim(folding_claim, holds=against_ceiling,
             does_not_hold=f"{against_ceiling} Batch norm was too small a share of the time here for folding to "
                           "pay much; it still costs nothing in accuracy.",
             inconclusive=f"The threshold lies inside the interval: this run cannot tell. {against_ceiling}")

# %% tags=["nbval-ignore-output"]
dense_ms_before, dense_ms_here = (prune_timings["dense, channels_last"].median_ms,
                                  folding_timings["with batch norm"].median_ms)
print(f"the same dense channels_last network: {dense_ms_before:.2f} ms in the pruning rounds, {dense_ms_here:.2f} ms "
      f"here ({dense_ms_here / dense_ms_before - 1:+.0%})")

# %% [markdown]
# The same network, timed whole in two cells, gives two times (line above). A machine's speed
# drifts from one measurement to the next: other processes, the clock, what the caches hold. Each
# claim's ratio comes from rounds in which both of its variants ran alternately, so a slow spell hits both
# sides of the ratio and cancels; milliseconds from two different cells do not cancel, so never
# divide one cell's time by another's. This is why section 4 timed each whole network in the same
# rounds as its layers before comparing the two, and why each ledger entry keeps the baseline it
# was measured against in its own rounds.
#
# `torch.compile` with `freezing=True` folds batch norm this way on its own (chapter 3), and ONNX
# Runtime does it when it optimises a graph (chapter 7): when you deploy through either, do not fold
# by hand as well. Folding removes layers at inference; structural re-parameterisation (RepVGG,
# MobileOne) takes the idea further by training with extra parallel branches (3x3, 1x1, identity)
# that are then merged, like batch norm here, into one plain convolution for deployment.

# %% [markdown]
# ### Deeper (optional): which layers can lose channels, a sensitivity scan
# *This section and the next go beyond the chapter's core; skip them on a first reading (about
# 20 minutes together).* A uniform ratio treats every layer alike, but layers differ in how much they
# can give, and which one can give most is a measurement, not something the widths tell you. The
# practice is to scan each layer alone (prune only that layer, recalibrate, evaluate on validation
# images, no fine-tuning), then give each layer its own ratio. Each fold scans its own dense network
# on its own validation images. Fold $k$'s validation images come from its training set, which is
# made of the *other* folds' test images: a choice made on one fold's validation images and judged on
# another fold's test images would have seen the test.

# %% tags=["nbval-ignore-output"]
SCAN_RATIOS = (0.25, 0.5, 0.75)
layer_names = [f"conv {i + 1} ({width} ch)" for i, width in enumerate(conv_channels(dense))]


def layer_sensitivity(k: int, layer: int, ratio: float) -> float:
    """Fold k's validation accuracy after pruning one convolution alone at ratio and recalibrating batch norm."""
    ratios = [0.0] * len(layer_names)
    ratios[layer] = ratio
    net = prune_channels(dense_nets[k], ratios, criterion=CRITERION)
    update_bn(calibration_loader(k), net)
    return evaluate_accuracy(net, *validation[k])


sensitivity = pd.concat({k: pd.DataFrame({name: [layer_sensitivity(k, i, r) for r in SCAN_RATIOS]
                                          for i, name in enumerate(layer_names)},
                                         index=pd.Index(SCAN_RATIOS, name="ratio"))
                         for k in range(len(folds))}, names=["fold"])
dense_validation = [evaluate_accuracy(net, *validation[k]) for k, net in enumerate(dense_nets)]
by_ratio = sensitivity.groupby(level="ratio")
scan_mean = by_ratio.mean()
print(f"validation accuracy, mean of the folds (unpruned: {sum(dense_validation) / len(dense_validation):.3f})")
scan_mean.round(3)

# %%
plot_together(list(SCAN_RATIOS), {name: scan_mean[name] for name in layer_names},
              xlabel="pruning ratio of one layer (the others untouched)", ylabel="validation accuracy, mean of folds",
              hardware=hw.cpu_label, title="Each layer pruned alone, no fine-tuning (bars: lowest to highest fold)",
              logx=False, intervals={name: (by_ratio.min()[name], by_ratio.max()[name]) for name in layer_names},
              reference=("unpruned, mean of folds", sum(dense_validation) / len(dense_validation)))

# %% tags=["nbval-ignore-output"]
at_half = scan_mean.loc[0.5]
print(f"pruned alone at 0.5: most sensitive {at_half.idxmin()} ({at_half.min():.1%}), "
      f"least sensitive {at_half.idxmax()} ({at_half.max():.1%})")

# %% [markdown]
# Now spend the budget of uniform 50% differently: among all per-layer choices of the scanned ratios
# that cost no more, take the one whose layers lose the fewest validation images in the scan, added
# up (ties go to uniform: no reason to deviate without evidence). The sum is only a proxy, since the
# errors of several pruned layers interact.
#
# **Which budget?** The budget here is FLOPs, in the chapter whose lesson is that FLOPs are not
# latency. Practitioners' methods (NetAdapt, AMC) budget *latency*, from a table of each layer's
# measured time at each width on the target device. FLOPs are used here for a plain reason: they are
# exact and the same on every machine, so each fold's choice is reproducible, whereas a latency table
# is re-measured on every run and its noise could change the choice from one run to the next. The
# chosen network's latency is then measured, not assumed.

# %% tags=["nbval-ignore-output"]
uniform = (0.5,) * len(layer_names)
flop_budget = count_flops(prune_channels(dense, list(uniform)), one_digit)
candidates = list(itertools.product((0.0, *SCAN_RATIOS), repeat=len(layer_names)))
affordable = [c for c in candidates if count_flops(prune_channels(dense, list(c)), one_digit) <= flop_budget]


def lost_images(k: int, choice: tuple[float, ...]) -> int:
    """Validation images fold k's scan loses, added up over the layers, each pruned alone at its ratio."""
    n_images = len(validation[k][1])
    return sum(round((dense_validation[k] - sensitivity.loc[(k, ratio), name]) * n_images)
               for name, ratio in zip(layer_names, choice) if ratio > 0)


scan_rows = []
for k in range(len(folds)):
    ranked = sorted(affordable, key=lambda choice: (lost_images(k, choice), choice != uniform))
    closest = uniform if ranked[0] != uniform else ranked[1]
    scan_rows.append({"fold": k, "chosen": ranked[0], "images lost (scan)": lost_images(k, ranked[0]),
                      "closest other": closest, "its images lost": lost_images(k, closest)})
scan_choices = pd.DataFrame(scan_rows).set_index("fold")
scan_choices["margin (images)"] = scan_choices["its images lost"] - scan_choices["images lost (scan)"]
print(f"{len(affordable)} of {len(candidates)} allocations cost at most uniform 50%'s {flop_budget / 1e6:.2f} MFLOPs; "
      f"each fold's scan evaluates {len(validation[0][1])} validation images per setting")
scan_choices

# %% [markdown]
# Read the margin before the choice: a choice that beats its closest alternative by a handful of
# images out of a few hundred rests on noise (section 4's intervals on a few hundred test images
# span several points). Where a fold's scan chose uniform 50% itself, the "scan's choice" arm *is*
# the uniform arm on that fold, the same network with the same accuracy and latency: nothing is
# trained or timed twice. Where it chose otherwise, that fold's allocation is pruned, recalibrated and
# fine-tuned like the other arms, compared digit by digit with uniform, and timed against it:

# %% tags=["nbval-ignore-output"]
differs = [k for k in range(len(folds)) if scan_choices.loc[k, "chosen"] != uniform]
if not differs:
    print("On every fold the scan chose uniform 50% itself: the scan's choice is the uniform arm, so there is no "
          "second arm to train, test or time.")
else:
    scan_nets = list(arm_nets["BN-scaled L1, 50%"])
    for k in differs:
        scan_nets[k] = prune_recalibrate_finetune(k, list(scan_choices.loc[k, "chosen"]), CRITERION)[0]
    change = paired_prediction_change(predictions["BN-scaled L1, 50%"], pooled_predictions(scan_nets), pooled_labels)
    print(f"folds {differs} chose another allocation (on the others the two arms are the same network). Pooled "
          f"over all folds: {change['only the candidate right']} digits only the scan's choice gets right, "
          f"{change['only the reference right']} only uniform 50% (McNemar p = {change['McNemar p']:.2g}).")
    # latency depends on the shape only: one network per distinct allocation
    chosen_cl = {scan_choices.loc[k, "chosen"]: copy.deepcopy(scan_nets[k]).eval().to(memory_format=torch.channels_last)
                 for k in differs}
    scan_variants = {"uniform 50%": lambda: finetuned_cl(test_batch_cl)} | {
        f"scan's choice {choice}": (lambda net=net: net(test_batch_cl)) for choice, net in chosen_cl.items()}
    with torch.inference_mode():
        scan_timings = measure_interleaved(scan_variants, rounds=5, min_run_time=0.3)
    for name in list(scan_variants)[1:]:
        ratio = timing_ratio(scan_timings["uniform 50%"], scan_timings[name])
        reading = ("faster than uniform" if ratio.low > 1 else "slower than uniform" if ratio.high < 1
                   else "not told apart from uniform")
        print(f"{name} against uniform 50%, channels_last, batch 64: {ratio}: {reading} at the same FLOP budget")

# %% [markdown]
# ### Deeper (optional): networks with shortcuts, a dependency graph
# `prune_channels` refuses a residual network, because a ResNet's shortcut adds two tensors whose
# channels must stay aligned. Torch-Pruning traces the model, groups layers that must be pruned
# together, and prunes each group consistently. On ResNet-18 at ratio 0.5, keeping the classifier.
# The weights are random (nothing can be downloaded here), so the ranking means nothing: this shows
# the *structure* a dependency-aware pruner produces and what it costs, not an accuracy.

# %%
resnet = build_architecture("resnet18")
resnet_before = model_cost(resnet, image)
resnet_pruned = copy.deepcopy(resnet)
pruner = tp.pruner.BasePruner(resnet_pruned, image, importance=tp.importance.MagnitudeImportance(p=1),
                              pruning_ratio=0.5, ignored_layers=[resnet_pruned.fc])
pruner.step()
resnet_after = model_cost(resnet_pruned, image)
print("output shape after pruning:", tuple(resnet_pruned(image).shape))
pd.DataFrame({"before": resnet_before, "after": resnet_after}).assign(
    ratio=lambda t: t["before"] / t["after"]).round(2)

# %% tags=["nbval-ignore-output"]
with torch.inference_mode():
    resnet_timings = measure_interleaved({"resnet18": lambda: resnet(image),
                                          "resnet18 pruned 50%": lambda: resnet_pruned(image)},
                                         rounds=5, min_run_time=0.6)
resnet_ratio = timing_ratio(resnet_timings["resnet18"], resnet_timings["resnet18 pruned 50%"])
print(f"pruned ResNet-18 against the original, batch 1: {resnet_ratio}: {resnet_ratio.gain}")
timing_table(resnet_timings).round(3)

# %% [markdown]
# ### Where to go from here
# This chapter pruned once, by hand, a small network on a CPU. In 2026 practice:
# - **Iterative (gradual) pruning**: remove a few channels, fine-tune, repeat, instead of half of
#   every layer at once; it costs more training and usually loses less accuracy than one shot.
# - **Hardware-aligned widths**: `tp.pruner.BasePruner(..., round_to=8)` keeps every pruned width a
#   multiple of 8 (the sweep's `channels` column shows what a ratio leaves without it).
# - **Other importance criteria**: Torch-Pruning ships `tp.importance.BNScaleImportance`, network
#   slimming's $|\gamma|$ score, next to the magnitude (`MagnitudeImportance`) and gradient-based
#   (`TaylorImportance`) ones; the hand-written `bn_scaled_l1` above folds $\gamma/\sqrt{\sigma^2+\epsilon}$
#   into the filter's L1 norm instead.
# - **Structural re-parameterisation** (RepVGG, MobileOne): train with extra branches, deploy one
#   plain convolution, as folding did with batch norm.
# - **Transformers and LLMs**: structured pruning of heads, MLP width and layers followed by
#   distillation (NVIDIA's Minitron recipe), or 2:4 semi-structured sparsity chosen by SparseGPT or
#   Wanda, which recent GPUs run with sparse tensor cores.
# - **The runtimes light networks were designed for**: MobileNet's home is a phone, where XNNPACK
#   (through ExecuTorch or LiteRT, formerly TensorFlow Lite) runs depthwise convolutions far better
#   than eager PyTorch on an x86 server does. Measure on the runtime you deploy.
# - **Newer architectures**: MobileNetV3 was found by platform-aware neural architecture search
#   (latency measured on the target phone inside the search loop, then refined by NetAdapt);
#   EfficientNet-B0's search optimised FLOPs instead, the very proxy this chapter warns about, and
#   its family scales depth, width and resolution together (compound scaling). MobileNetV4
#   and hybrid convolution-attention networks (EfficientViT, FastViT; all in `timm`) followed the
#   2019 zoo above. In transformers, the structural choices that decide cost are grouped-query or
#   multi-query attention (fewer key/value heads), mixture-of-experts layers (parameters that are not
#   all used per token) and sliding-window attention.

# %% [markdown]
# ## 5. ShuffleNet V2's four guidelines, checked against this chapter
# ShuffleNet V2 (Ma et al., ECCV 2018) argued that FLOPs are an indirect measure and gave four
# practical guidelines from measurements on GPUs and ARM CPUs. Where this chapter measured
# something related, it is named; where it did not, say so:
# 1. **Equal channel widths minimise memory access cost.** For a fixed number of multiply-adds, a
#    1x1 convolution moves the fewest bytes when its input and output widths are equal. This
#    chapter did not vary the width ratio; it is a bytes-moved argument of the roofline kind
#    (section 3), which also showed that bytes moved are not the whole story below the roof.
# 2. **Group convolutions raise memory access cost.** The depthwise convolution is the extreme case
#    (one group per channel): its intensity is $k^2/4$ whatever the width, and section 3 placed it
#    on this machine's roofline.
# 3. **Fragmentation reduces parallelism.** Many small operators each pay a fixed cost. The
#    `ms per GFLOP` column of section 2 is consistent with it, but cannot separate it from guideline
#    2: the light networks have both more layers and depthwise convolutions.
# 4. **Element-wise operations are not free.** FLOP counters give batch norm and ReLU zero, yet the
#    per-layer table of section 4 measures their share of the layers' summed time (pooling is not
#    element-wise, but is also counted as zero):

# %% tags=["nbval-ignore-output"]
for layout in ("dense, NCHW", "dense, channels_last"):
    column = layer_times[layout]
    shares = {group: column.reindex(kinds).sum() / column["total"]
              for group, kinds in {"batch norm + ReLU": ["BatchNorm2d", "ReLU"],
                                   "pooling": ["MaxPool2d", "AdaptiveAvgPool2d"]}.items()}
    print(f"{layout}: " + ", ".join(f"{group} {share:.0%}" for group, share in shares.items())
          + " of the time, all counted as zero FLOPs")

# %% [markdown]
# ## 6. What the source article got wrong
# The article's `DepthwiseSeparableConv` hard-codes `padding=1`. That is right only for a 3x3
# kernel with dilation 1; with any other kernel the output shrinks or grows, and the block no longer
# fits where a standard convolution stood:

# %%
def article_depthwise_separable(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """The article's block (NOT to copy): padding=1 whatever the kernel size."""
    return nn.Sequential(nn.Conv2d(in_channels, in_channels, kernel_size, padding=1, groups=in_channels),
                         nn.Conv2d(in_channels, out_channels, 1))


pd.DataFrame([{"kernel": k, "article": tuple(article_depthwise_separable(16, 32, k)(probe).shape),
               "corrected": tuple(DepthwiseSeparableConv(16, 32, k)(probe).shape)} for k in (1, 3, 5, 7)])

# %% [markdown]
# The corrected block derives the padding, `dilation * (k - 1) // 2`, and adds batch norm and ReLU
# after each convolution as MobileNet does (without the nonlinearity between them, the two linear
# layers collapse into one constrained linear layer). The article also errs in its text:
# - It lists **modularity and interpretability** among the principles of an *efficient* design.
#   Modularity is a property of how a design is built and coded; interpretability is a property of
#   a model (whether one can tell why it decides as it does). Neither makes a model cheaper to run.
# - It says the light networks keep **high accuracy while greatly cutting compute cost**. FLOPs are
#   not cost (sections 2 and 3 measured the gap), and whether accuracy is "kept" depends on the
#   reference, and on the training recipe as much as on the architecture (below).
# - It splits channel pruning into **gradient-based and importance-based** methods. That is a false
#   split: gradient-based scores (Taylor expansion of the loss) *are* importance criteria, as are the
#   magnitude and BN-scaled ones measured here.
# - It says nothing about **fine-tuning and BN recalibration** (compare the `pruned` and `final`
#   columns of section 4), nor about **structural dependencies** (shortcuts, concatenations) that
#   force layers to be pruned together.
#
# On recipes: torchvision ships newer weights for some architectures, trained longer and with more
# regularisation than the first ones. The same network gains this much from the recipe alone:

# %%
pd.DataFrame([{"architecture": name, "weights": weights, "top-1 (%)": top1,
               "gain over its first weights (points)": top1 - published_top1(name)}
              for name in ARCHITECTURES for weights, top1 in weights_top1(name).items()
              if weights != FIRST_WEIGHTS]).set_index(["architecture", "weights"]).round(2)

# %% [markdown]
# Comparing one architecture's newer weights with another's first ones would credit the first with a
# recipe. This chapter quotes every architecture's first weights (`IMAGENET1K_V1`); even so, the first
# recipes differ between architectures, so read small differences below as recipe-sized:

# %%
light = ["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "shufflenet_v2_x1_0"]
top1 = static["published top-1 (%)"]
pd.DataFrame({"top-1 (%)": top1[light], "against resnet50 (points)": top1[light] - top1["resnet50"],
              "against resnet18 (points)": top1[light] - top1["resnet18"],
              "FLOPs / resnet50": static.loc[light, "flops"] / static.loc["resnet50", "flops"]}).round(2)

# %% [markdown]
# ## 7. Exercises
# **Exercise 1.** In a depthwise separable convolution with 128 output channels and a 5x5 kernel,
# what fraction of the block's FLOPs does the *depthwise* half do? (Work it out from the two halves'
# multiply-adds per output pixel; the check builds the block and counts.)

# %%
depthwise_share_answer = ...

check_number("Exercise 1", depthwise_share_answer, depthwise_flop_share(128, 5), rtol=0.01,
             hint="Per output pixel and input channel: the depthwise half does k*k multiply-adds, the pointwise N.")

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution"]
depthwise_share_answer = 5**2 / (5**2 + 128)
check_number("Exercise 1", depthwise_share_answer, depthwise_flop_share(128, 5), rtol=0.01)

# %% [markdown]
# **Exercise 2 (predict, then compare).** (a) From the per-layer table `layer_times`, column
# `"dense, channels_last"`, predict the pruned network's time if pruning 50% divided the time of
# every convolution by 4 and of every other layer by 2 (leave out the `total` row). (b) Then compare
# with the measured `"pruned, channels_last"` column, kind by kind: write `shortfall(kind)`, the
# factor you assumed for that kind divided by the factor it really shrank (dense time / pruned
# time). 1.0 means it shrank as assumed, above 1 that it fell short. The check tries the kinds that
# take at least 10% of the dense time (`big_kinds`); which of them fell short, and by how much, is
# then read from your numbers.

# %%
big_kinds = big_layer_kinds(layer_times["dense, channels_last"])  # the kinds 2b is checked on
predicted_pruned_ms = ...


def shortfall(kind: str) -> float:
    """Assumed shrink / measured shrink of one layer kind (dense against pruned, channels_last)."""
    return ...


check_number("Exercise 2a", predicted_pruned_ms, expected_pruned_ms(layer_times["dense, channels_last"]),
             rtol=0.01, hint="Take each layer kind's time from the dense column and divide it by its assumed factor.")
check_function("Exercise 2b", shortfall,
               [((kind,), kind_shortfall(layer_times["dense, channels_last"], layer_times["pruned, channels_last"],
                                         kind)) for kind in sorted(big_kinds, key=lambda kind: kind != "Conv2d")],
               rtol=0.01, hint="Measured shrink = dense time / pruned time; divide the assumed factor (4 or 2) by it.")

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution", "nbval-ignore-output"]
dense_ms, pruned_ms = layer_times["dense, channels_last"], layer_times["pruned, channels_last"]
assumed = pd.Series({kind: 4.0 if kind == "Conv2d" else 2.0 for kind in dense_ms.index.drop("total")})
predicted_pruned_ms = (dense_ms.drop("total") / assumed).sum()


def shortfall(kind: str) -> float:
    """Assumed shrink / measured shrink of one layer kind (dense against pruned, channels_last)."""
    return assumed[kind] / (dense_ms[kind] / pruned_ms[kind])


check_number("Exercise 2a", predicted_pruned_ms, expected_pruned_ms(dense_ms), rtol=0.01)
check_function("Exercise 2b", shortfall, [((kind,), kind_shortfall(dense_ms, pruned_ms, kind)) for kind in big_kinds],
               rtol=0.01)
print(f"predicted {predicted_pruned_ms:.2f} ms; measured {pruned_ms['total']:.2f} ms layer by layer, "
      f"{prune_table.loc['pruned 50%, channels_last', 'median_ms']:.2f} ms as a whole network; shortfall: "
      + ", ".join(f"{kind} {shortfall(kind):.2f}" for kind in big_kinds))

# %% [markdown]
# **Exercise 3 (choose).** You may lose at most 3 points of *validation* accuracy against the
# unpruned network (ratio 0). Using the sweep table `prune_sweep`, which uniform ratio gives the
# lowest measured latency within that budget? Then read its *test* accuracy: is the choice still
# within 3 points on the test images, and what does the interval printed in section 4 say about it?

# %%
chosen_ratio = ...

check_number("Exercise 3", chosen_ratio, best_ratio_within(prune_sweep, 3.0), rtol=0,
             hint="Keep the rows within the budget first, then take the lowest latency among them.")

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution", "nbval-ignore-output"]
budget = prune_sweep.loc[0.0, "validation accuracy"] - 0.03
within_budget = prune_sweep[prune_sweep["validation accuracy"] >= budget]
chosen_ratio = float(within_budget["latency_ms (batch 64)"].idxmin())
check_number("Exercise 3", chosen_ratio, best_ratio_within(prune_sweep, 3.0), rtol=0)
print(f"ratio {chosen_ratio}: test accuracy {prune_sweep.loc[chosen_ratio, 'test accuracy']:.1%} against "
      f"{prune_sweep.loc[0.0, 'test accuracy']:.1%} unpruned")

# %% [markdown]
# ## 8. Summary

# %% tags=["nbval-ignore-output"]
pruned_accuracy = arm_accuracy["BN-scaled L1, 50%"]["final"]
entries = [
    make_entry(2, "depthwise_separable_conv", metric="latency, 256 ch, 14x14, batch 8", unit="ms",
               baseline=ds_timings["standard 3x3"].round_median_ms,
               optimized=ds_timings["depthwise separable"].round_median_ms, higher_is_better=False,
               hardware=hw.cpu_label, claim=ds_claim, compared_with="a standard 3x3 convolution, same shape",
               extras={"flops_ratio": count_flops(standard, feature_map) / count_flops(separable, feature_map),
                       "theory_ratio": ds_theory}),
    make_entry(2, "channel_pruning_50", metric="latency, batch 64, channels_last", unit="ms",
               baseline=prune_timings["dense, channels_last"].round_median_ms,
               optimized=prune_timings["pruned 50%, channels_last"].round_median_ms,
               higher_is_better=False, hardware=hw.cpu_label, claim=prune_claim,
               compared_with="the unpruned digits CNN, channels_last, same rounds",
               extras={"params_ratio": count_parameters(dense) / count_parameters(finetuned),
                       "flops_ratio": flop_shrink,
                       "accuracy_unpruned_mean": float(arm_accuracy["unpruned"]["final"].mean()),
                       "accuracy_pruned_mean": float(pruned_accuracy.mean()),
                       "accuracy_pruned_std": float(pruned_accuracy.std()),
                       "accuracy_from_scratch_mean": float(arm_accuracy["from scratch"]["final"].mean()),
                       "mcnemar_p_pruned_vs_unpruned": float(paired.loc[("unpruned", "BN-scaled L1, 50%"),
                                                                        "McNemar p"]),
                       "mcnemar_p_pruned_vs_from_scratch": float(control["McNemar p"]), "folds": len(folds)}),
    make_entry(2, "conv_bn_folding", metric="latency, batch 64, channels_last", unit="ms",
               baseline=folding_timings["with batch norm"].round_median_ms,
               optimized=folding_timings["folded"].round_median_ms,
               higher_is_better=False, hardware=hw.cpu_label, claim=folding_claim,
               compared_with="the same digits CNN with its batch norms, channels_last, same rounds",
               extras={"predicted_ceiling": folding_ceiling}),
]
record_chapter(2, entries, claims)
ledger_table(entries).round(3)

# %%
print("chapter 2 techniques in the ledger:", sorted(e["technique"] for e in load_ledger() if e["chapter"] == 2))

# %% [markdown]
# **Take-aways**
# 1. Choose architectures by *measured* latency on the target hardware: time per FLOP differs from
#    one architecture to the next, and published "FLOPs" are often multiply-adds.
# 2. Depthwise separable convolutions cut FLOPs *to* $1/N + 1/k^2$ of a standard convolution's,
#    exactly; how much time they save depends on where their two halves sit on *this* machine's
#    roofline and how close to their roofs they get.
# 3. Structured pruning builds a smaller dense network, and it is judged against the control: that
#    small network trained from scratch with the same budget (section 4's paired table says which
#    won in your run; Liu et al. found the control often matches or beats the pruned network). Masking
#    weights to zero builds no smaller network: its claim says what your run measured, and it has
#    no ledger entry. Judge pruning fairly: equal budgets, a baseline whose extra epochs change
#    little, the same architecture trained from scratch as a control, a paired test over all folds'
#    test images, and choices on validation data. Recalibrate batch norm after the surgery, and fold
#    it for inference; for networks with shortcuts, prune along a dependency graph.
