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
# **Estimated time:** ~60 min · **Hardware:** Any CPU; a GPU adds GPU latency columns

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
import copy

import ipywidgets as widgets
import pandas as pd
import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils import prune as torch_prune

from helpers import (
    ARCHITECTURES, DepthwiseSeparableConv, build_architecture, check_number, compare_variants, count_flops,
    count_parameters, evaluate_accuracy, l1_filter_ranking, ledger_table, live_control, load_digits_split,
    load_ledger, make_claim, make_entry, measure_interleaved, measure_latency, model_cost, plot_sweep, plot_tradeoff,
    prune_channels, published_top1, record_chapter, report_claim, separable_cost_ratio, serialized_size_bytes,
    setup_chapter, show_source, small_cnn, tensor_loader, time_layers, timing_ratio, timing_table, train_epochs,
)
from helpers.pruning import keep_batch_norm_channels

hw = setup_chapter(2)
claims = []  # this chapter's speed claims, judged on this machine; recorded in the summary

# %% [markdown]
# ## 1. Why structure matters
# A standard convolution with $C_\text{in}$ input channels, $N$ output channels and a $k \times k$
# kernel has $k^2 C_\text{in} N$ weights and, on an $H \times W$ output, does $2 H W k^2 C_\text{in} N$
# FLOPs. Every factor multiplies: doubling the channels of two consecutive layers quadruples the cost
# of the second. Lightweight architectures attack the $k^2 N$ product; pruning attacks $C_\text{in}$ and $N$.
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
static.assign(params_M=static["parameters"] / 1e6, GFLOPs=static["flops"] / 1e9,
              size_MB=static["size_bytes"] / 1e6)[["params_M", "GFLOPs", "size_MB", "published top-1 (%)"]].round(3)

# %% [markdown]
# The accuracies are the published ImageNet-1K top-1 figures of torchvision's pretrained weights,
# read from the weight enums' metadata (`models.get_model_weights(name).DEFAULT.meta`); they are quoted,
# not measured here. The latencies below *are* measured, at batch size 1, in alternating rounds:

# %% tags=["nbval-ignore-output"]
with torch.inference_mode():
    cpu_timings = measure_interleaved({name: (lambda net=net: net(image)) for name, net in zoo.items()},
                                      min_run_time=1.0)
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

# %%
plot_tradeoff({n: (static.loc[n, "flops"] / 1e9, static.loc[n, "cpu latency (ms)"]) for n in ARCHITECTURES},
              xlabel="GFLOPs per image", ylabel="measured latency (ms)", hardware=hw.cpu_label,
              title="FLOPs against latency: not a straight line")

# %% [markdown]
# **Why FLOPs are not latency.** The lightweight networks do a fraction of ResNet's arithmetic, yet
# their latency falls by much less. Their depthwise convolutions do very little arithmetic per byte
# they move (chapter 1's roofline: low arithmetic intensity), so they run at memory speed, not at
# compute speed; they also have many more, smaller layers, each paying a fixed overhead per call.
# Compare `ms per GFLOP`:

# %% tags=["nbval-ignore-output"]
(static["cpu latency (ms)"] / (static["flops"] / 1e9)).rename("ms per GFLOP").sort_values().round(1)

# %% [markdown]
# ## 3. Depthwise separable convolution
# A depthwise separable convolution splits a $k \times k$ convolution in two: a **depthwise** one that
# filters each channel on its own (`groups = in_channels`), then a $1 \times 1$ **pointwise** one that
# mixes channels. Its cost relative to the standard convolution is
#
# $$\frac{k^2 C_\text{in} + C_\text{in} N}{k^2 C_\text{in} N} = \frac{1}{N} + \frac{1}{k^2}.$$
#
# The module, as `helpers.layers` defines it (padding derived from the kernel size and dilation):

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
# Measured at 256 channels, 14x14, batch 8, against the theoretical 8.7x:

# %% tags=["nbval-ignore-output"]
with torch.inference_mode():
    ds_timings = measure_interleaved({"standard 3x3": lambda: standard(feature_map),
                                      "depthwise separable": lambda: separable(feature_map)}, rounds=6, min_run_time=1.5)
ds_table = timing_table(ds_timings)
ds_table.round(3)

# %% tags=["nbval-ignore-output"]
ds_claim = make_claim(2, "depthwise_separable_3x", "At 256 channels, 14x14, batch 8, a depthwise separable 3x3 "
                      "convolution is at least 3x faster than a standard one.", threshold=3.0,
                      ratio=timing_ratio(ds_timings["standard 3x3"], ds_timings["depthwise separable"]),
                      hardware=hw.cpu_label)
claims.append(ds_claim)
report_claim(ds_claim, holds="A large part of the 8.7x fewer FLOPs turns into time saved.",
             does_not_hold="On this machine the separable block saves less time than the claim expects: its "
                           "depthwise half does little arithmetic per byte, so memory, not the FLOP count, sets "
                           "its speed.")

# %% [markdown]
# The measured ratio falls short of 8.7x: the depthwise half is memory-bound and runs far below the
# machine's compute peak. Across sizes, the gap between theory and measurement changes:

# %% tags=["nbval-ignore-output"]
def separable_speedup(channels: int, size: int, kernel: int = 3, batch: int = 8) -> dict:
    """Measured standard/separable latency ratio at one shape, next to the theoretical one."""
    x = torch.randn(batch, channels, size, size)
    std = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=False).eval()
    sep = DepthwiseSeparableConv(channels, channels, kernel, norm=False).eval()
    with torch.inference_mode():
        table = compare_variants({"standard": lambda: std(x), "separable": lambda: sep(x)}, min_run_time=0.4)
    return {"channels": channels, "size": size, "kernel": kernel, "measured": table.loc["separable", "speedup"],
            "theory": 1 / separable_cost_ratio(channels, kernel)}


points = pd.DataFrame([separable_speedup(c, s) for c, s in [(32, 56), (64, 28), (128, 28), (256, 14), (512, 7)]])
points.round(2)

# %%
plot_sweep(points["channels"].tolist(), {"measured": points["measured"], "theory": points["theory"]},
           xlabel="channels (resolution shrinks as channels grow)",
           ylabels={"measured": "measured speed-up (x)", "theory": "theoretical speed-up (x)"},
           hardware=hw.cpu_label, title="Depthwise separable against standard 3x3 convolution")

# %% [markdown]
# ### Explore: channels and kernel size
# Larger kernels make the theory more generous ($1/k^2$ shrinks); watch whether the measurement follows.

# %% tags=["nbval-ignore-output"]
live_control(lambda channels, kernel: pd.DataFrame([separable_speedup(channels, 14, kernel)]).round(2),
             channels=widgets.SelectionSlider(options=[32, 64, 128, 256, 512], value=256, description="channels",
                                              continuous_update=False),
             kernel=widgets.SelectionSlider(options=[3, 5, 7], value=3, description="kernel", continuous_update=False))

# %% [markdown]
# ## 4. Channel pruning that really removes channels
# Train the chapter's small CNN on the real handwritten digits, upsampled to 32x32 so the
# convolutions have work to do:

# %% tags=["nbval-ignore-output"]
digits = load_digits_split(image_size=32)
train_loader = tensor_loader(digits.x_train, digits.y_train, batch_size=64, shuffle=True)
torch.manual_seed(0)
dense = small_cnn()
train_epochs(dense, train_loader, epochs=8, lr=3e-3)
accuracy_dense = evaluate_accuracy(dense, digits.x_test, digits.y_test)
print(f"test accuracy of the trained network: {accuracy_dense:.1%}")

# %% [markdown]
# Rank each convolution's filters by the L1 norm of their weights (small filters contribute little),
# keep the largest, and build a **new** network in which each convolution, its batch norm and the
# next layer's inputs are physically smaller:

# %%
show_source(prune_channels)

# %% [markdown]
# The surgery on each batch norm keeps the statistics and the affine parameters of the kept channels:

# %%
show_source(keep_batch_norm_channels)

# %% tags=["nbval-ignore-output"]
dense_state = copy.deepcopy(dense.state_dict())
pruned = prune_channels(dense, 0.5)
accuracy_pruned = evaluate_accuracy(pruned, digits.x_test, digits.y_test)
finetuned = prune_channels(dense, 0.5)
train_epochs(finetuned, train_loader, epochs=3, lr=1e-3)
accuracy_finetuned = evaluate_accuracy(finetuned, digits.x_test, digits.y_test)
print(f"accuracy: {accuracy_dense:.1%} dense, {accuracy_pruned:.1%} right after pruning, "
      f"{accuracy_finetuned:.1%} after 3 epochs of fine-tuning")

# %%
one_digit = digits.x_test[:1]
sizes = pd.DataFrame({name: model_cost(net, one_digit) for name, net in {"dense": dense, "pruned 50%": pruned}.items()}).T
sizes = sizes.astype(float)
sizes.loc["ratio"] = sizes.loc["dense"] / sizes.loc["pruned 50%"]
sizes.round(2)

# %% [markdown]
# Latency at batch 64. PyTorch's default memory layout, NCHW, stores each channel as its own plane;
# `channels_last` (NHWC) puts a pixel's channels side by side, which vectorised kernels can use
# (chapter 3 measures the layout on its own). Which layers gain from it is a measurement, not a rule:
# the per-layer table further down shows it for this CPU. Each network is timed in both layouts, and
# each pruned network is compared with the dense one in the same layout:

# %% tags=["nbval-ignore-output"]
test_batch = digits.x_test[:64]
test_batch_cl = test_batch.contiguous(memory_format=torch.channels_last)
for net in (dense, finetuned):
    net.eval()
dense_cl, finetuned_cl = (copy.deepcopy(net).to(memory_format=torch.channels_last) for net in (dense, finetuned))
with torch.inference_mode():
    prune_timings = measure_interleaved({
        "dense, NCHW": lambda: dense(test_batch), "pruned 50%, NCHW": lambda: finetuned(test_batch),
        "dense, channels_last": lambda: dense_cl(test_batch_cl),
        "pruned 50%, channels_last": lambda: finetuned_cl(test_batch_cl)}, rounds=6, min_run_time=1.5)
prune_table = timing_table(prune_timings, items_per_call=64)
same_layout_dense = prune_table["median_ms"].loc[["dense, NCHW"] * 2 + ["dense, channels_last"] * 2].to_numpy()
prune_table["speedup, same layout"] = same_layout_dense / prune_table["median_ms"]
prune_table.round(3)

# %% [markdown]
# Halving every layer's channels divides a convolution's work by about 4 ($C_\text{in}$ and $N$ both
# halve), but batch norm, ReLU and max pooling touch each value once: their work only halves. Where
# does the time go, layer kind by layer kind?

# %% tags=["nbval-ignore-output"]
networks = {"dense, NCHW": (dense, test_batch), "pruned, NCHW": (finetuned, test_batch),
            "dense, channels_last": (dense_cl, test_batch_cl), "pruned, channels_last": (finetuned_cl, test_batch_cl)}
layer_times = pd.DataFrame({name: time_layers(net, batch).groupby("kind")["median_ms"].sum()
                            for name, (net, batch) in networks.items()})
layer_times.loc["total"] = layer_times.sum()
layer_times.round(3)

# %% [markdown]
# The convolutions shrink by roughly the factor the arithmetic predicts; the memory-bound layers by
# about 2x. In NCHW, max pooling is slow (it walks each channel plane separately and records the
# index of every maximum), so it can take a large share of the pruned network's time and cap the
# speed-up. In `channels_last` max pooling is vectorised across channels and becomes cheap, so the
# convolutions dominate both networks. The speed-up of a structural change depends on which layers
# dominate *on your machine*: measure it in the layout you will deploy.

# %% tags=["nbval-ignore-output"]
prune_claim = make_claim(2, "channel_pruning_50_2x", "Pruning 50% of the channels makes the digits CNN at least 2x "
                         "faster at batch 64 in channels_last.", threshold=2.0,
                         ratio=timing_ratio(prune_timings["dense, channels_last"],
                                            prune_timings["pruned 50%, channels_last"]), hardware=hw.cpu_label)
claims.append(prune_claim)
report_claim(prune_claim, holds="The convolutions, which dominate in channels_last, shrink about 4x.",
             does_not_hold="On this machine layers whose work only halves (batch norm, ReLU, pooling) keep too "
                           "large a share of the time: the per-layer table above shows which.")

# %%
print("Fine-tuned accuracy within 1.5 points of the dense network:", accuracy_finetuned >= accuracy_dense - 0.015)
print("Input model untouched:", all(torch.equal(dense_state[k], v) for k, v in dense.state_dict().items()))

# %% [markdown]
# ### Explore: the pruning ratio
# Each change prunes the trained network at that ratio, fine-tunes it for one epoch and measures it
# (latency in `channels_last`; a few seconds). Where does accuracy start to fall?

# %%
def pruning_point(ratio: float) -> dict:
    """Prune the trained network, fine-tune one epoch, and measure size, speed and accuracy."""
    torch.manual_seed(0)
    net = prune_channels(dense, ratio)
    train_epochs(net, train_loader, epochs=1, lr=1e-3, progress=False)
    net.eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        latency = measure_latency(lambda: net(test_batch_cl), min_run_time=0.3)
    return {"ratio": ratio, "parameters": count_parameters(net), "MFLOPs": count_flops(net, one_digit) / 1e6,
            "latency_ms (batch 64)": latency.median_ms, "accuracy": evaluate_accuracy(net, digits.x_test, digits.y_test)}


# %% tags=["nbval-ignore-output"]
live_control(lambda ratio: pd.DataFrame([pruning_point(ratio)]).set_index("ratio").round(3),
             ratio=widgets.FloatSlider(value=0.5, min=0.0, max=0.9, step=0.1, description="ratio",
                                       continuous_update=False))

# %% [markdown]
# The whole sweep, as a static figure for the book:

# %% tags=["nbval-ignore-output"]
ratios = [0.0, 0.25, 0.5, 0.75, 0.9]
prune_sweep = pd.DataFrame([pruning_point(r) for r in ratios]).set_index("ratio")
prune_sweep.round(3)

# %%
plot_sweep(ratios, {"parameters": prune_sweep["parameters"], "latency": prune_sweep["latency_ms (batch 64)"],
                    "accuracy": prune_sweep["accuracy"]},
           xlabel="pruning ratio", ylabels={"latency": "latency, batch 64 (ms)", "accuracy": "test accuracy"},
           hardware=hw.cpu_label, title="Channel pruning: smaller, faster, until accuracy gives way", logx=False)

# %% [markdown]
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
                                       rounds=4, min_run_time=1.0)
mask_ratio = timing_ratio(mask_timings["dense"], mask_timings["50% masked"])
print(f"masked against dense: {mask_ratio}: {mask_ratio.gain}")
timing_table(mask_timings).round(3)

# %% [markdown]
# The speed-up is close to 1, and where its interval includes 1 the ledger records it as no gain: dense kernels multiply zeros as fast as any other number. Sparse
# weights pay only with sparse kernels and hardware that skips zeros (e.g. 2:4 structured sparsity on
# recent NVIDIA GPUs); removing whole channels pays everywhere.
#
# ### Networks with shortcuts: a dependency graph
# `prune_channels` refuses a residual network, because a ResNet's shortcut adds two tensors whose
# channels must stay aligned. Torch-Pruning traces the model, groups layers that must be pruned
# together, and prunes each group consistently. On ResNet-18 at ratio 0.5, keeping the classifier:

# %%
resnet = build_architecture("resnet18")
resnet_before = model_cost(resnet, image)
torch.manual_seed(0)
resnet_pruned = build_architecture("resnet18")
pruner = tp.pruner.MetaPruner(resnet_pruned, image, importance=tp.importance.MagnitudeImportance(p=1),
                              pruning_ratio=0.5, ignored_layers=[resnet_pruned.fc])
pruner.step()
resnet_after = model_cost(resnet_pruned, image)
print("output shape after pruning:", tuple(resnet_pruned(image).shape))
pd.DataFrame({"before": resnet_before, "after": resnet_after}).assign(
    ratio=lambda t: t["before"] / t["after"]).round(2)

# %% tags=["nbval-ignore-output"]
with torch.inference_mode():
    resnet_table = compare_variants({"resnet18": lambda: resnet(image), "resnet18 pruned 50%": lambda: resnet_pruned(image)},
                                    min_run_time=1.0)
resnet_table.round(3)

# %% [markdown]
# ## 5. What the source article got wrong
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
# layers collapse into one constrained linear layer). The article's channel pruning section names
# gradient- and importance-based criteria but shows no code; section 4 above is that code, measured.

# %% [markdown]
# ## 6. Exercises
# **Exercise 1.** What fraction of a standard convolution's FLOPs does a depthwise separable one need
# with 128 output channels and a 5x5 kernel?

# %%
cost_fraction = ...

check_number("Exercise 1", cost_fraction, separable_cost_ratio(128, 5), rtol=0.01,
             hint="Use 1/N + 1/k^2 with N output channels and a k x k kernel.")

# %% jupyter={"source_hidden": true} tags=["solution"]
cost_fraction = 1 / 128 + 1 / 5**2
check_number("Exercise 1", cost_fraction, separable_cost_ratio(128, 5), rtol=0.01)

# %% [markdown]
# **Exercise 2.** In `small_cnn()` the second convolution maps 32 to 64 channels with a 3x3 kernel
# and no bias. After pruning 50% of every convolution's output channels, how many weights does it keep?
# (Check against the real pruned network: `pruned[4].weight.numel()`.)

# %%
weights_kept = ...

check_number("Exercise 2", weights_kept, pruned[4].weight.numel(), rtol=0,
             hint="Both its input channels (from the previous layer) and its output channels are halved.")

# %% jupyter={"source_hidden": true} tags=["solution"]
weights_kept = 16 * 32 * 3 * 3
check_number("Exercise 2", weights_kept, pruned[4].weight.numel(), rtol=0)

# %% [markdown]
# **Exercise 3.** Rank the filters of a convolution by L1 norm, most important first, and compare your
# ranking with `l1_filter_ranking`:

# %%
probe_conv = nn.Conv2d(8, 16, 3)


def my_l1_ranking(conv: nn.Conv2d) -> torch.Tensor:
    """Output-channel indices, largest L1 norm first."""
    ...


ranking = my_l1_ranking(probe_conv)
check_number("Exercise 3", None if ranking is None else float(torch.equal(ranking, l1_filter_ranking(probe_conv))),
             1.0, rtol=0, hint="Sum |w| over (in_channels, kh, kw) for each filter, then argsort descending.")


# %% jupyter={"source_hidden": true} tags=["solution"]
def my_l1_ranking(conv: nn.Conv2d) -> torch.Tensor:
    """Output-channel indices, largest L1 norm first."""
    return conv.weight.detach().abs().sum(dim=(1, 2, 3)).argsort(descending=True)


check_number("Exercise 3", float(torch.equal(my_l1_ranking(probe_conv), l1_filter_ranking(probe_conv))), 1.0, rtol=0)

# %% [markdown]
# ## 7. Summary

# %% tags=["nbval-ignore-output"]
entries = [
    make_entry(2, "depthwise_separable_conv", metric="latency, 256 ch, 14x14, batch 8", unit="ms",
               baseline=ds_table.loc["standard 3x3", "median_ms"], optimized=ds_table.loc["depthwise separable", "median_ms"],
               higher_is_better=False, hardware=hw.cpu_label, ratio=ds_claim.ratio,
               extras={"flops_ratio": count_flops(standard, feature_map) / count_flops(separable, feature_map),
                       "theory_ratio": 1 / separable_cost_ratio(channels, k)}),
    make_entry(2, "channel_pruning_50", metric="latency, batch 64, channels_last", unit="ms",
               baseline=prune_table.loc["dense, channels_last", "median_ms"],
               optimized=prune_table.loc["pruned 50%, channels_last", "median_ms"],
               higher_is_better=False, hardware=hw.cpu_label, ratio=prune_claim.ratio,
               extras={"params_ratio": count_parameters(dense) / count_parameters(finetuned),
                       "accuracy_before": accuracy_dense, "accuracy_after_finetune": accuracy_finetuned}),
    make_entry(2, "unstructured_pruning_50", metric="latency, batch 64", unit="ms",
               baseline=mask_timings["dense"].median_ms, optimized=mask_timings["50% masked"].median_ms,
               higher_is_better=False, hardware=hw.cpu_label, ratio=mask_ratio),
]
record_chapter(2, entries, claims)
ledger_table(entries).round(3)

# %%
print("chapter 2 techniques in the ledger:", sorted(e["technique"] for e in load_ledger() if e["chapter"] == 2))

# %% [markdown]
# **Take-aways**
# 1. Choose architectures by *measured* latency on the target hardware: the Pareto front on a
#    2-core CPU is not the one a FLOP count predicts.
# 2. Depthwise separable convolutions cut FLOPs by $1/N + 1/k^2$ exactly, but their depthwise half is
#    memory-bound, so the time saved is smaller than the FLOPs saved.
# 3. Structured pruning pays because it builds a smaller dense network; masking weights to zero
#    changes neither size nor speed. Its speed-up depends on which layers dominate: convolutions
#    shrink quadratically with width, memory-bound layers only linearly. For networks with shortcuts, prune along a dependency graph.
