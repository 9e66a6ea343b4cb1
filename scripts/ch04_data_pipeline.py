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
# # Chapter 4 — Data pipeline: image files, DataLoader workers, pinned memory, caching
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dl-perf-course/dl-performance-workbook/blob/main/notebooks/ch04_data_pipeline.ipynb) [![Launch Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/dl-perf-course/dl-performance-workbook/main?labpath=notebooks/ch04_data_pipeline.ipynb)
#
# A fast model is wasted if it waits for data. This chapter writes a real image dataset to disk,
# reads it the way training code does (decode, augment, batch), and measures where the time goes:
# the loader against the model, worker processes against the core count, the price of moving a batch
# between processes, cold and warm reads, small files against shards, and decoding every epoch against
# decoding once, in RAM or on disk. You will see what `num_workers` really starts (processes, not
# threads), what forked workers copy, and when a faster loader makes training faster at all.
#
# **Estimated time:** ~85 min · **Hardware:** Any CPU (2+ cores); a CUDA GPU adds the pinned-memory and GPU-decoding measurements

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
import gc
import io
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import ipywidgets as widgets
import PIL.Image
import numpy as np
import pandas as pd
import psutil
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, default_collate, default_convert
from torchvision.transforms import v2

from helpers.core.claims import make_claim, paired_ratio, report_claim, timing_ratio
from helpers.core.hardware import pick_device
from helpers.core.measure import measure_interleaved, timing_table
from helpers.workload.models import small_cnn
from helpers.support.chapter import setup_chapter
from helpers.support.ledger import ledger_table, make_entry, record_chapter
from helpers.support.plots import plot_sweep
from helpers.support.source import show_source
from helpers.support.widgets import live_control
from helpers.ch04_data_pipeline.exercises import check_pipeline_choice, check_throughput_prediction
from helpers.ch04_data_pipeline.gpu import compare_pinned_epochs
from helpers.ch04_data_pipeline.images import (
    BatchedCache, DecodedCache, ObjectListCache, PerImage, RecordArrays, RecordList, ShardImages, cache_root,
    decode_stacked, file_index, image_folder, read_bytes, time_cache_loads, time_reads_interleaved,
    write_digit_images, write_shard,
)
from helpers.ch04_data_pipeline.loading import (
    WorkerPids, child_pids, first_batch_table, held_batch_loader, loader_ratio, loader_table, make_loader,
    make_train_step, measure_loader, measure_loaders, measure_training, new_child_processes, start_method,
    time_data_wait, training_throughput, worker_private_memory_bytes,
)

hw = setup_chapter(4)
cores = hw.cpu_cores
claims = []  # this chapter's speed claims, judged on this machine; recorded in the summary

# %% [markdown]
# ## 1. A real dataset on disk
# The course writes its own dataset, so nothing is downloaded: the 1,797 scikit-learn digits,
# upsampled to 128x128, tinted in a colour of their class on a noisy background, saved twice each as
# JPEG files in the `ImageFolder` layout (`<root>/<class>/<n>.jpg`). The folder is a cache, not part
# of the repository; a second call finds it complete and writes nothing.

# %% tags=["nbval-ignore-output"]
root, written = write_digit_images(size=128, copies=2)
print(f"{root}: {'written now' if written else 'already there, reused'}")

# %%
root_again, written_again = write_digit_images(size=128, copies=2)
print("second call reuses the files:", root_again == root and not written_again)

# %% [markdown]
# torchvision's `ImageFolder` finds the files and their classes; each item is read and decoded
# (with Pillow, ImageFolder's loader), turned into a `uint8` tensor and randomly cropped to 112x112
# (a fresh crop every epoch: that is augmentation). The crop stays `uint8`; conversion to floats
# and normalisation happen once per *batch* in the training step, so what crosses from the workers
# to the main process (and to a GPU) is `uint8`, 4x fewer bytes than `float32`:

# %%
augment = v2.RandomCrop(112)
files = image_folder(root, transform=augment)
image, label = files[0]
print(f"{len(files)} files, {len(files.classes)} classes; one item: "
      f"{tuple(image.shape)} {image.dtype}, label {label}")

# %%
show_source(image_folder)

# %% [markdown]
# ## 2. Find the bottleneck
# The article states that data loading is often the bottleneck of training. That is a claim about a
# pair of rates, so measure both: the loader alone, the training step alone (on a batch already in
# memory), and both together. With `num_workers=0` the main process loads a batch, then trains on it;
# with worker processes, loading the next batches can run while the current one trains. Exercise 1
# asks what each case means for the combined rate.

# %% tags=["nbval-ignore-output"]
device = pick_device()
torch.manual_seed(0)
model = small_cnn((16, 32), in_channels=3)
section2_loaders = {**{f"loader alone, num_workers={w}": make_loader(files, num_workers=w) for w in (0, 2)},
                    **{f"loader + training, num_workers={w}": make_loader(files, num_workers=w) for w in (0, 2)},
                    "training step alone": held_batch_loader(files, batches=10)}
section2 = measure_training(section2_loaders, model, device=device, rounds=1, max_batches=10,
                            loader_only=[name for name in section2_loaders if name.startswith("loader alone")])
step_alone = section2["training step alone"][0]
bottleneck = pd.DataFrame({column: {f"num_workers={w}": section2[f"{column}, num_workers={w}"][0] for w in (0, 2)}
                           for column in ("loader alone", "loader + training")})
print(f"training step alone (one batch held in memory, measured once): {step_alone:.0f} images/s")
bottleneck.round(0)

# %% [markdown]
# Read the table in images per second: if *loader alone* is far above the *training step alone*
# (printed once above the table: it is the same step for both rows), the model is the bottleneck and
# more loading speed buys nothing; if it is below, the model is starved by that factor. Every rate
# leaves the same first 4 batches off the clock (the two workers' head start: the batches they
# prepare while the main process waits for the first one), for every row, and times the 6 after them,
# one pass each (`measure_training`, which section 6 uses with more rounds). Expect noise: on a busy
# or shared machine the same loader measured in different cells of one run can differ by more than
# the rounds within one cell vary, because another process's load comes and goes between cells
# (section 3 prints how far this run's `num_workers=0` loader drifted). That is why every comparison
# this chapter judges is measured in one set of alternating rounds; lines that set numbers from two
# cells side by side say so, and only where the gap is many times the drift. The verdict on
# the article's sentence, for this model on this machine:

# %% tags=["nbval-ignore-output"]
row = bottleneck.loc["num_workers=0"]
verdict = ("the model is the bottleneck, not the loader" if row["loader alone"] > step_alone
           else f"the loader is the bottleneck: the model could train {step_alone / row['loader alone']:.1f}x faster")
print(f"Loading on the CPU, training on {device.type}: {verdict}.")

# %% [markdown]
# ### Workers against the training step's threads
# Compare the two rows' *loader + training*. Each DataLoader worker runs torch on one thread (the
# DataLoader sets that in every worker), but the main process trains on torch's full thread pool.
# With two workers on a 2-core CPU, four busy threads share two cores: the workers' decoding takes
# cores away from the convolutions, so when the model is the bottleneck, workers cannot help and can
# cost (oversubscription, as in chapter 1). On a machine with spare cores, or a GPU doing the
# training, the workers run beside the training step instead of against it.

# %% tags=["nbval-ignore-output"]
training_threads = torch.get_num_threads()
print(f"{cores} cores; threads that want a core with 2 workers: {training_threads} (training) "
      f"+ 2 x 1 (workers) = {training_threads + 2}")

# %% [markdown]
# ### When the loader is the bottleneck
# A GPU trains a small network many times faster than a 2-core CPU, which can turn the same loader into
# the bottleneck. To see that case on any machine, the
# chapter uses a model so light that a CPU trains it faster than the loader decodes: average-pool each
# image to 14x14, then one linear layer. Same loader, same measurement:

# %% tags=["nbval-ignore-output"]
torch.manual_seed(0)
light_model = nn.Sequential(nn.AvgPool2d(8), nn.Flatten(), nn.Linear(3 * 14 * 14, 10))
light_rates = training_throughput(make_loader(files), light_model, device=device, max_batches=16)
light = pd.Series(light_rates, name="light model, num_workers=0")
light.round(0)

# %% tags=["nbval-ignore-output"]
starved_by = light["training step alone"] / light["loader alone"]
loader_bound = starved_by > 1
light_verdict = "the loader is the bottleneck" if loader_bound else "the model is still the bottleneck"
print(f"light model: the loader delivers {light['loader alone']:.0f} images/s, the step could take "
      f"{light['training step alone']:.0f}: {light_verdict}.")

# %% [markdown]
# Section 6 removes this bottleneck with workers and with a cache, and measures the training, not
# only the loader.
#
# ## 3. Workers are processes
# The article calls `num_workers` "multi-threaded" loading. It is not: each worker is a separate
# **process**, started when iteration begins, each holding its own copy of the Dataset object.
# Processes sidestep the GIL, which serialises threads while they run Python code. Threads are not
# hopeless for loading, though: Pillow releases the GIL while it decodes, so thread-based pipelines
# (`torchdata.nodes` can map a function over threads) and free-threaded Python (3.14t, no GIL) make
# threads a real option for decode-bound pipelines, without the crossing between processes measured
# below. Count the processes while a loader runs,
# and ask the workers themselves: `WorkerPids` is a Dataset whose every item is `os.getpid()` of the
# process that produced it, so each batch says which process made it:

# %%
show_source(WorkerPids)

# %%
pid_loader = make_loader(WorkerPids(8 * 64), num_workers=2)
before = child_pids()
iterator = iter(pid_loader)
seen = set(next(iterator).tolist())
started = {process.pid for process in new_child_processes(before)}
for batch in iterator:
    seen |= set(batch.tolist())
del iterator
gone = not (seen & child_pids())
print(f"start method: {start_method(pid_loader)}; processes that produced batches: {len(seen)}, "
      f"none of them this kernel: {os.getpid() not in seen}")
print(f"they are among the new processes found while the loader ran: {seen <= started}; other new "
      f"processes: {len(started - seen)}; gone once the epoch ended: {gone}")

# %% [markdown]
# ### Explore: the workers widget
# Each change measures two epochs (16 timed batches each, at most): the time to the first batch of
# each (worker start-up, which `persistent_workers=True` pays only once; the cells after the sweep
# store one such pair) and the steady throughput. `pin_memory` only matters when
# batches go to a GPU; on a GPU machine this box measures only the cost of pinning, since this loader
# copies nothing to the GPU (section 5's pinned-memory cell does the copy). Try more workers than cores:

# %%
max_workers = min(2 * cores, 8)  # more costs start-up time (each spawned worker re-imports torch)


def loader_report(num_workers: int, batch_size: int, pin_memory: bool, persistent_workers: bool,
                  prefetch_factor: int) -> pd.DataFrame:
    """Measure two epochs of the dataset with these DataLoader settings."""
    loader = make_loader(files, batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory,
                         persistent_workers=persistent_workers, prefetch_factor=prefetch_factor)
    # leave the workers' head start off the clock, but keep at least one timed batch per epoch
    skip = max(1, min(num_workers * prefetch_factor, len(loader) - 1))
    timing = measure_loader(loader, epochs=2, skip_batches=skip, max_batches=skip + 16)
    for message in timing.warnings:
        print("DataLoader warned:", message)
    row = {"images/s": timing.images_per_s, "first batch, epoch 1 (ms)": timing.first_batch_s[0] * 1e3,
           "first batch, epoch 2 (ms)": timing.first_batch_s[1] * 1e3}
    return pd.DataFrame([row], index=[f"num_workers={num_workers}"]).round(1)


# %% tags=["nbval-ignore-output"]
wide = {"description_width": "initial"}
live_control(loader_report,
             num_workers=widgets.IntSlider(value=0, min=0, max=max_workers, description="num_workers",
                                           continuous_update=False, style=wide),
             batch_size=widgets.Dropdown(options=[16, 64, 256], value=64, description="batch_size",
                                         style=wide),
             pin_memory=widgets.Checkbox(value=False, description="pin_memory", style=wide),
             persistent_workers=widgets.Checkbox(value=False, description="persistent_workers", style=wide),
             prefetch_factor=widgets.IntSlider(value=2, min=1, max=4, description="prefetch_factor",
                                               continuous_update=False, style=wide))

# %% [markdown]
# A sweep from 0 to twice the core count, at most 8 (every count up to 4, then half, all and twice
# the cores), in three alternating rounds, as a static figure. Each epoch's first
# `max(num_workers) * prefetch_factor` batches (those the workers can prepare while the main process
# waits) are left off the clock for every loader, `num_workers=0` included, so no loader gets a head
# start; 16 batches are timed.
#
# From here on, ratios between two variants are printed as a median with an interval, and end with a
# reading: *gain* or *loss* when the whole interval lies on one side of 1.0, *no gain* when it straddles
# 1.0 (this run cannot tell the two apart). With fewer than 8 rounds the interval is the range of the
# rounds ("range of 3 rounds"), not a 95% interval: the ratios of all rounds lie in it.

# %% tags=["nbval-ignore-output"]
worker_counts = sorted(w for w in {0, 1, 2, 3, 4, cores // 2, cores, 2 * cores} if w <= max_workers)
worker_runs = measure_loaders({w: make_loader(files, num_workers=w) for w in worker_counts}, rounds=3,
                              max_batches=16 + 2 * max(worker_counts))
worker_sweep = loader_table(worker_runs)
worker_sweep.index.name = "num_workers"
worker_sweep.round(1)

# %%
sweep_figure = plot_sweep(worker_counts,
                          {"throughput": worker_sweep["images_per_s"], "start-up": worker_sweep["first_batch_ms"]},
                          xlabel="num_workers",
                          ylabels={"throughput": "images/s", "start-up": "time to first batch (ms)"},
                          hardware=hw.cpu_label, title="DataLoader workers: throughput and start-up", logx=False)
for axis in sweep_figure.axes:
    axis.set_ylim(bottom=0)  # from zero, so that a dip looks as large as it is
sweep_figure

# %% [markdown]
# Look at one worker first. For the loader alone, as here, it does the decoding the main process did,
# plus moving every batch across processes, so it cannot beat none by much and is often slower; the
# next subsection measures part of why. In training it is another matter: with the step running on a GPU or on
# spare cores, one worker decodes the next batch *while* the step runs, and pays at once. Two
# workers decode on two cores at once; with more workers than cores, the processes (and the main
# process) take turns on the same cores and PyTorch warns: the gain shrinks or turns into a loss,
# unless the workers also spend time waiting (on files, on the crossing, on the main process taking
# their batches), which other workers can fill; the line after the claim says which case this run
# shows for three workers against two. The time to the first batch grows with the worker count,
# because each worker is a new process that must start before it can deliver. On Python 3.12 and
# newer, the *warnings* column may also show "This process is multi-threaded, use of fork() may lead
# to deadlocks": the notebook's process already runs threads (torch's thread pool, CUDA's) when the
# workers are forked. The workers run, but section 4's `forkserver` and `spawn` start methods are the
# way to avoid the risk.

# %% tags=["nbval-ignore-output"]
if cores >= 2:
    workers_claim = make_claim(4, "two_workers_1.3x", "With two DataLoader workers the loader (alone, "
                               "no training) delivers at least 1.3x the images per second of loading in the "
                               "main process.", threshold=1.3,
                               ratio=loader_ratio(worker_runs, 0, 2), hardware=hw.cpu_label,
                               condition="a CPU with at least 2 cores")
    claims.append(workers_claim)
    display(report_claim(workers_claim, holds="Two processes decode on two cores while the main process only "
                                              "receives finished batches.",
                         does_not_hold="Start-up is left off the clock, so it is not the cause: on this "
                                       "machine moving each batch between processes, and the main process "
                                       "competing with both workers for 2 cores, eat what the second core "
                                       "adds."))
else:
    print(f"{cores} core: workers can only take turns with the main process here, so no gain is claimed.")

# %% tags=["nbval-ignore-output"]
if {2, 3} <= set(worker_counts):
    three_workers = loader_ratio(worker_runs, 2, 3)
    beyond = "more workers than cores" if 3 > cores else "a worker for each core"
    print(f"three workers against two ({cores} cores, so three is {beyond}): {three_workers}: "
          f"{three_workers.gain}.")
    if three_workers.gain == "gain" and 3 > cores:
        print("The third worker paid although the cores were taken: the two workers spent part of their time "
              "waiting (the crossing, the main process taking their batches), and the third filled it.")
    elif three_workers.gain == "loss":
        print("The third worker cost more than it added: the processes took turns on the cores.")
    else:
        print("This run cannot tell three workers from two: whatever waiting a third worker can fill is about "
              "what sharing the cores costs.")

# %% [markdown]
# ### Start-up, paid once: `persistent_workers`
# Without `persistent_workers`, every epoch starts its workers anew and shuts them down at its end;
# with it, the workers wait between epochs. Two whole epochs of each (of a 320-image part of the
# dataset, to keep it short), two workers, in alternating rounds, timing the first batch of each epoch.
# Whole epochs matter: a persistent worker must first finish the batches it prefetched for an epoch
# that was cut short.

# %% tags=["nbval-ignore-output"]
startup_set = torch.utils.data.Subset(files, range(5 * 64))
startup_runs = {f"persistent_workers={keep}": [] for keep in (False, True)}
for round_index in range(3):  # new loaders each round: a persistent loader would keep its workers across rounds
    names = list(startup_runs)[::1 if round_index % 2 == 0 else -1]
    pair = {name: make_loader(startup_set, num_workers=2, persistent_workers=name.endswith("True")) for name in names}
    for name, runs in measure_loaders(pair, rounds=1, epochs=2).items():
        startup_runs[name] += runs
    del pair  # shuts the persistent workers down
startup = first_batch_table(startup_runs)
display(startup.round(1))
epoch_two = paired_ratio([t.first_batch_s[1] for t in startup_runs["persistent_workers=False"]],
                         [t.first_batch_s[1] for t in startup_runs["persistent_workers=True"]])
print(f"time to the first batch of epoch 2, persistent against new workers: {epoch_two}: {epoch_two.gain}")

# %% [markdown]
# Epoch 1 is alike in both rows: the workers must start. In epoch 2, new workers pay the start-up
# again while persistent ones only produce a batch; the line reads the difference. With `spawn` or
# `forkserver` (each worker re-imports torch) start-up costs seconds rather than milliseconds, and
# persistence matters more. `prefetch_factor` (batches each worker prepares ahead, 2 by default) can
# be tried in the widget above: it only helps when batch times vary, since it cannot raise the
# workers' steady rate.
#
# ### What it costs to move a batch between processes
# With `num_workers=0` the main process builds each batch and uses it. With one worker, the worker
# builds the batch (the same decoding), collates it straight into a *shared-memory* segment, pickles a
# handle to it and sends that through a pipe, passing the segment's file descriptor (the
# `file_descriptor` sharing strategy on Linux). The main process waits on the result queue, unpickles
# the handle and maps the segment. One worker therefore does all the work that the main process did,
# plus the crossing: for the loader alone it only pays once a second worker decodes at the same time
# (in training, as said above, one worker already overlaps decoding with the step). To see the
# crossing alone, take batches that cost almost nothing to produce (zeros of the same shape, slicing
# one tensor), and time them in the main process and through one worker. In the same rounds, the JPEG
# loader in the main process and through one worker, so that the decoding time and the crossing that
# the sum adds up are measured beside the one-worker rate it is compared with:

# %% tags=["nbval-ignore-output"]
free_batches = TensorDataset(torch.zeros(16 * 64, 3, 112, 112, dtype=torch.uint8), torch.zeros(16 * 64))
crossing_runs = measure_loaders({"free batches, main process": make_loader(free_batches, num_workers=0),
                                 "free batches, one worker": make_loader(free_batches, num_workers=1),
                                 "decode, main process": make_loader(files, num_workers=0),
                                 "decode, one worker": make_loader(files, num_workers=1)},
                                rounds=3, max_batches=16)
crossing = loader_table(crossing_runs).drop(columns="warnings")
crossing["ms per batch"] = 64e3 / crossing["images_per_s"]
del free_batches
crossing.round(2)

# %% tags=["nbval-ignore-output"]
ms_per_batch = crossing["ms per batch"]
crossing_ms = ms_per_batch["free batches, one worker"] - ms_per_batch["free batches, main process"]
decode_ms, one_worker_ms = ms_per_batch["decode, main process"], ms_per_batch["decode, one worker"]
extra_ms = one_worker_ms - decode_ms
print(f"sharing strategy: {torch.multiprocessing.get_sharing_strategy()}; one batch is "
      f"{64 * 3 * 112 * 112 / 2**20:.1f} MB.")
if crossing_ms <= 0:
    print("In this run the worker delivered free batches faster than the main process itself, so no crossing "
          "cost can be read from it: a busy machine slows the main process's thread pool most. Re-run on an "
          "idle machine.")
elif extra_ms <= 0:
    print(f"The crossing costs about {crossing_ms:.1f} ms per batch, yet one worker delivered JPEG batches no "
          f"slower than the main process ({one_worker_ms:.1f} against {decode_ms:.1f} ms): here the worker's "
          "decoding overlapped the main process's receiving.")
else:
    share = crossing_ms / extra_ms
    print(f"The crossing costs about {crossing_ms:.1f} ms per batch. JPEG batches: {decode_ms:.1f} ms each in "
          f"the main process, {one_worker_ms:.1f} ms through one worker: {extra_ms:.1f} ms more, of which the "
          f"crossing explains about {share:.0%}.")
    if share < 0.8:
        print("The rest is time that free batches do not show: with JPEG batches, decoding and receiving run at "
              "once, on cores that the two processes (and anything else this machine runs) share.")
    elif share > 1.2:
        print("The crossing is more than the difference: part of it overlaps the worker's decoding (the main "
              "process maps one batch while the worker decodes the next).")
    else:
        print("Decoding plus crossing accounts for the one-worker rate, within a fifth.")

# %% tags=["nbval-ignore-output"]
same_loader = {"section 2, small CNN's loader alone": bottleneck.loc["num_workers=0", "loader alone"],
               "section 2, light model's loader alone": light["loader alone"],
               "the sweep": worker_sweep.loc[0, "images_per_s"],
               "this subsection": crossing.loc["decode, main process", "images_per_s"]}
within = [t.images_per_s for t in worker_runs[0]]
print("the same loader (JPEG files, num_workers=0, alone), images/s: "
      + "; ".join(f"{name} {rate:.0f}" for name, rate in same_loader.items()))
between, within_spread = max(same_loader.values()) / min(same_loader.values()) - 1, max(within) / min(within) - 1
if max(between, within_spread) < 0.15:
    reading = "both small: a quiet machine, in this run."
elif between > within_spread:
    reading = ("the drift between cells is the larger, so the cells below measure what they compare in one call, "
               "and say so where they set numbers from two cells side by side.")
else:
    reading = ("one cell's own rounds already vary this much, so a single round proves little; the cells below "
               "compare medians of rounds taken in turn, and say so where they set numbers from two cells side "
               "by side.")
print(f"between cells the highest is {between:.0%} above the lowest; within the sweep's {len(within)} rounds, "
      f"{within_spread:.0%}: {reading}")

# %% [markdown]
# The difference between the two free rows is the price of the crossing per batch, paid for every
# batch whatever the dataset; the printed lines say how much of the one-worker loader's extra time it
# explains in this run. When producing a batch is cheap (a cache in RAM), the crossing can cost more
# than the work it moves off the main process, and `num_workers=0` is the right setting. The last
# lines say whether, in this run, the same loader's rate moved between cells by more than its rounds
# varied within one cell; on a busy machine it does, which is why the prediction above uses only
# numbers measured in the same rounds.
#
# ## 4. Where the Dataset lives
# `ImageFolder` lives in torchvision and the caches below in `helpers/ch04_data_pipeline/images.py`,
# not in this notebook, on purpose. A worker started
# with the *spawn* or *forkserver* method is a fresh Python interpreter: it receives the Dataset by
# pickling, and unpickling needs to import the class's module. A class defined in a notebook lives
# in `__main__`, which the new interpreter cannot import, so the workers fail with an
# `AttributeError: Can't get attribute ...`. On Linux the default start method is *fork* (which
# copies the parent, classes included) up to Python 3.13, and *forkserver* from Python 3.14; macOS
# and Windows use spawn. Keep Datasets in an importable module.

# %% [markdown]
# ## 5. Caching, done right
# Decoding the same JPEGs every epoch repeats work. Decode each image once into one contiguous
# `uint8` tensor and keep the random crop on the fly, per item, so augmentation survives:

# %%
show_source(DecodedCache)

# %% [markdown]
# The article promises a cache on disk but never shows one. Here it is: the first run decodes every
# file and saves the tensor next to the dataset; every later run (or a second training job) loads it
# instead of decoding. A cache must record the settings it was made with, or a changed dataset is
# served stale: here the file's name holds the folder's name (image size, number of copies) and the
# Pillow version that decoded it, but not the seed or the JPEG quality of `write_digit_images`: after
# changing those, delete the file. `torch.load(..., mmap=True)` maps the file instead of reading it
# into RAM: pages are read when first touched, and the operating system can drop them again under
# memory pressure (on a 2 GB Binder machine that matters). A later run may find the file in the page
# cache or not, so the load is timed both ways, in rounds: cold (the file evicted from the page cache
# first, as for the JPEG files below) and warm (read again at once). `time_cache_loads` does both
# with `torch.load(..., mmap=True)` and reads every page.

# %%
decoder = f"pillow{PIL.__version__}"
cache_file = cache_root() / f"{root.name}-{decoder}-decoded.pt"
cache_written = not cache_file.exists()
if cache_written:
    saved = {"images": decode_stacked(files), "labels": torch.tensor(files.targets)}
    unfinished = cache_file.with_suffix(".partial")
    torch.save(saved, unfinished)
    unfinished.replace(cache_file)  # appears whole or not at all, even if the kernel dies while saving
    del saved
# On a re-run, the previous run's objects still map the file, and the kernel keeps mapped pages: drop them,
# or the "cold" load below would read from RAM.
for stale in ("saved", "cache", "article_cache", "array_items", "tensor_items", "batch_variants", "fetch_loaders",
              "end_to_end_loaders"):
    globals().pop(stale, None)
gc.collect()
cache_loads = time_cache_loads(cache_file, rounds=3) if hasattr(os, "posix_fadvise") else None
saved = torch.load(cache_file, weights_only=True, mmap=True)
cache = DecodedCache(saved["images"], saved["labels"], transform=augment)

# %% tags=["nbval-ignore-output"]
print(f"{cache_file.name}: {'decoded and saved now; ' if cache_written else ''}"
      f"{cache_file.stat().st_size / 2**20:.0f} MB on disk, {cache.nbytes / 2**20:.0f} MB of pixels for "
      f"{len(cache)} images ({cache.nbytes / len(cache) / 1024:.1f} KB each, uint8)")
if cache_loads is not None:
    cold_load_s, warm_load_s = (statistics.median(cache_loads[kind]) for kind in ("cold", "warm"))
    print(f"loaded (mmap) and read every page: cold {cold_load_s:.2f} s, warm {warm_load_s:.2f} s "
          f"(medians of {len(cache_loads['cold'])} rounds)")
else:
    print("This system has no os.posix_fadvise (it is Linux-only), so the cache cannot be evicted: "
          "cold loads are skipped.")

# %%
plain_files = image_folder(root)
print("the cache holds the decoded files:", torch.equal(cache.images[7], plain_files[7][0]))
torch.manual_seed(0)
crops = {cache[0][0].numpy().tobytes() for _ in range(8)}
print(f"cached items are still augmented: 8 reads of item 0 gave {len(crops)} different crops")

# %% [markdown]
# Decoding from disk against reading the decoded cache, both with the same random crop, 24 batches
# each, in alternating rounds. This is the loader alone; section 6 measures what it does to training.

# %% tags=["nbval-ignore-output"]
cache_runs = measure_loaders({"decode from disk": make_loader(files), "decoded cache": make_loader(cache)},
                             rounds=4, max_batches=24)
cache_table = loader_table(cache_runs)
decode_rate = cache_table.loc["decode from disk", "images_per_s"]
# the claims' estimator: the median of the rounds' ratios (so the column agrees with the claim below)
cache_table["speedup (median of round ratios)"] = [loader_ratio(cache_runs, "decode from disk", name).median
                                                   for name in cache_table.index]
cache_table.drop(columns="warnings").round(2)

# %% [markdown]
# What the disk cache saves a later run: loading the saved tensor (timed above, cold and warm, reading
# every page) against decoding every file once (an epoch of the decoding loader, from the rate just
# measured; it includes the crop and the collation, which a decoding pass would not). Both are
# one-off costs per run; the next subsection adds what reading the JPEG files cold costs.

# %% tags=["nbval-ignore-output"]
loads = (f"cold {cold_load_s:.2f} s, warm {warm_load_s:.2f} s" if cache_loads is not None
         else "not timed cold here")
print(f"load the decoded cache: {loads}; decode every file once: about "
      f"{len(files) / decode_rate:.2f} s ({len(files)} images at {decode_rate:.0f} images/s)")

# %% tags=["nbval-ignore-output"]
cache_claim = make_claim(4, "decoded_cache_3x", "Reading the decoded cache makes an epoch of the loader "
                         "(alone, no training) at least 3x faster than decoding the JPEG files.",
                         threshold=3.0,
                         ratio=loader_ratio(cache_runs, "decode from disk", "decoded cache"),
                         hardware=hw.cpu_label)
claims.append(cache_claim)
report_claim(cache_claim,
             holds="JPEG decoding was most of the loader's work; the random crop on a uint8 tensor is cheap.",
             does_not_hold="On this machine decoding is fast relative to the crop and the collation that "
                           "both loaders still do.")

# %% [markdown]
# ### A cold read: the first epoch
# "Decode from disk" above did not read the disk: the files were read moments ago, so the operating
# system served them from its *page cache* in RAM. A real first epoch (after a reboot, or over a
# dataset larger than RAM) reads cold. On Linux, `os.posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)`
# asks the kernel to drop a file's cached pages, so the next read goes to the disk. The same bytes,
# read cold (just after eviction) and warm, in rounds; first as the dataset's small files, then as one
# *shard*:
# every file's bytes end to end in one file, with an index of offsets, the idea behind WebDataset's tar
# shards and TFRecord files (one open and one sequential read for many samples):
#
# Small files and shard alternate within each round, so that their rounds can be paired:

# %% tags=["nbval-ignore-output"]
file_paths = [Path(path) for path, _ in files.samples]
shard, shard_written = write_shard(file_paths, cache_root() / f"{root.name}.shard")
if hasattr(os, "posix_fadvise"):
    reads = time_reads_interleaved({"small files": file_paths, "one shard": [shard]}, rounds=3)
    read_table = pd.DataFrame({name: {"cold (ms)": 1e3 * statistics.median(r["cold"]),
                                      "warm (ms)": 1e3 * statistics.median(r["warm"])}
                               for name, r in reads.items()}).T
    read_table["files"] = [len(file_paths), 1]
    read_table["MB"] = [read_bytes(file_paths) / 2**20, shard.stat().st_size / 2**20]
    display(read_table.round(1))
else:
    reads = None
    print("This system has no os.posix_fadvise (it is Linux-only), so files cannot be evicted: "
          "cold reads are skipped.")

# %% tags=["nbval-ignore-output"]
if reads is not None:
    small = reads["small files"]
    eviction = paired_ratio(small["cold"], small["warm"])
    sharding = paired_ratio(small["cold"], reads["one shard"]["cold"])
    decode_epoch_s = len(files) / cache_table.loc["decode from disk", "images_per_s"]
    extra_s = statistics.median(small["cold"]) - statistics.median(small["warm"])
    if eviction.gain == "no gain":
        print(f"Evicting made no measurable difference here ({eviction}): on this filesystem the cold read "
              "cannot be shown (an overlay or network filesystem may ignore the advice, or cache below it).")
    else:
        print(f"warm against cold, small files: {eviction}. A first epoch pays about {extra_s:.2f} s more "
              f"for reading, on top of {decode_epoch_s:.2f} s of decoding from the page cache.")
        print(f"one shard against small files, both cold: {sharding}")

# %% [markdown]
# Which one does your training see? The first epoch after the files were written or copied in (the
# course just wrote them) and every epoch of a dataset that fits in free RAM read warm; the first epoch
# after a reboot, on a fresh cloud machine or from network storage, and every epoch of a dataset much
# larger than RAM read cold. Per-file costs (open, metadata, a seek) are what the shard removes, and
# they grow on network filesystems and object stores, where each small file is a request. The cold
# read measured here is a lower bound: `POSIX_FADV_DONTNEED` drops the files' data pages, not the
# directory entries and inodes that the kernel also caches, so each small file's lookup stayed warm.
# After a reboot, or on network storage, every small file also pays its metadata lookups.

# %% [markdown]
# ### Reading the shard: an `IterableDataset`
# A shard is read as a stream, not by index, so its Dataset is an `IterableDataset`: DataLoader calls
# its `__iter__` once in every worker, and each worker must take its own part, or every worker would
# serve the whole shard. `torch.utils.data.get_worker_info()` tells a worker its `id` and the number of
# workers. `ShardImages` cuts the shard into blocks of 64 consecutive images, permutes the blocks each
# epoch (the same permutation in every worker), and lets worker `k` take every `num_workers`-th block,
# each block one sequential read. Consecutive images in the shard are alike (here: one class), so the
# items pass through a *shuffle buffer* of 256 decoded items, from which a random one leaves each time
# a new one enters (WebDataset's approach; the buffer costs RAM and mixes only within its size):

# %%
show_source(ShardImages.__iter__)

# %% tags=["nbval-ignore-output"]
shard_loader = DataLoader(ShardImages(shard, files.targets, transform=augment, return_index=True),
                          batch_size=64, num_workers=2, generator=torch.Generator().manual_seed(0))
start = time.perf_counter()
shard_batches = [(labels, indexes) for _images, labels, indexes in shard_loader]
shard_epoch_s = time.perf_counter() - start
print(f"one epoch from the shard, two workers: {len(files) / shard_epoch_s:.0f} images/s (one epoch, "
      f"worker start-up included, not a comparison)")

# %%
served = torch.cat([indexes for _labels, indexes in shard_batches])
classes_in_order = statistics.mean(len(set(files.targets[i:i + 64])) for i in range(0, len(files), 64))
classes_served = statistics.mean(len(set(labels.tolist())) for labels, _indexes in shard_batches)
print(f"every image served exactly once this epoch: {sorted(served.tolist()) == list(range(len(files)))}")
print(f"classes per batch of 64: {classes_in_order:.1f} in the shard's own order, {classes_served:.1f} as "
      f"served (blocks permuted, then the shuffle buffer)")
del shard_batches, served

# %% [markdown]
# ### When *not* to cache decoded images
# The decoded cache bought the largest gain of this chapter, and it has costs that the JPEG files do
# not. This run's numbers:

# %% tags=["nbval-ignore-output"]
jpeg_mb = read_bytes(file_paths) / 2**20
cache_mb = cache.nbytes / 2**20
ram_gb = psutil.virtual_memory().total / 2**30
print(f"bytes: the decoded cache holds {cache_mb:.0f} MB, the JPEG files {jpeg_mb:.0f} MB: "
      f"{cache_mb / jpeg_mb:.1f}x the bytes (and they are 128x128; decoded bytes grow with the pixel count).")
print(f"RAM: this machine has {ram_gb:.1f} GB; at this ratio, JPEG files of more than "
      f"{ram_gb / (cache_mb / jpeg_mb):.1f} GB decode to more than all of it.")
imagenet_train_images = 1_281_167  # ImageNet-1k's training set
print(f"ImageNet-1k's {imagenet_train_images:,} training images, decoded even at 224x224 (smaller than most "
      f"originals): {imagenet_train_images * 3 * 224 * 224 / 1e9:.0f} GB.")
if reads is not None and cache_loads is not None:
    cold_files_s = statistics.median(reads["small files"]["cold"])
    print(f"first epoch after a reboot: the JPEG files read cold in {cold_files_s:.2f} s, plus about "
          f"{decode_epoch_s:.2f} s of decoding; the decoded cache loads cold in {cold_load_s:.2f} s "
          f"({cache_mb / cold_load_s:.0f} MB/s, against {jpeg_mb / cold_files_s:.0f} MB/s for the small files).")

# %% [markdown]
# So decode once only when the decoded set fits: in RAM, or on a disk fast enough that reading the
# larger decoded bytes cold costs less than decoding (the last line compares the two on this machine).
# Three more limits:
# - **Fixed size.** One `uint8` tensor needs every image at the same size (`decode_stacked` refuses
#   otherwise). Real datasets have images of many sizes, and `RandomResizedCrop` crops from the original
#   image: a cache of resized images changes the augmentation, since a crop can no longer reach the
#   pixels the resize threw away.
# - **Memory per worker.** Build the cache before the workers start, and keep it one tensor (or a
#   memory-mapped file), so that forked workers share its pages instead of copying them (the copy-on-write
#   measurements below).
# - **Stale caches.** The cache must be rebuilt when the data or the decoder changes (its name records
#   what it was made with).
#
# The options in between: a **pre-resized cache** (images stored once at a little more than the
# training resolution, still as JPEG or as raw pixels: most of the decoding saved, far fewer bytes);
# **decoded shards** (the cache split into shard files that are streamed and shuffled like the shard
# above, so that no single file must fit in RAM; FFCV and similar formats work this way); and
# **decoding on the GPU** (keep the JPEG bytes, 1x the size, and let nvJPEG decode them, measured at
# the end of this section when a GPU is present; NVIDIA DALI runs whole decode-and-augment pipelines
# on the GPU).

# %% [markdown]
# ### Copy-on-write in forked workers
# A worker started with `fork` (Linux's default start method up to Python 3.13) is a copy of this
# kernel that shares every memory page with it until one side writes to that page, which then gets
# copied and becomes the worker's private memory (copy-on-write). Under spawn and forkserver (macOS,
# Windows, Linux from Python 3.14) there is no such sharing of the parent's objects: each worker
# unpickles its own copy of the Dataset, so everything below, `gc.freeze()` included, concerns forked
# workers only, and the cells run only on Linux. Two things write to pages that look read-only:
# - **reference counts**: reading a Python object (`records[i]`, then its `"path"` string) increments
#   its reference count, which lives in the object itself, so the page holding it is copied;
# - **the garbage collector**: a collection writes into the header of every container it scans,
#   so one full collection in a worker can copy much of the notebook's heap, once per worker.
#
# A real dataset index has hundreds of thousands to millions of entries. Take 150,000 file paths and
# labels, kept two ways: one dict per sample (the common pattern), and two NumPy arrays (one of
# fixed-width path bytes, one of labels: two Python objects in all). One forked worker serves a whole
# epoch and runs one full collection as it starts: the worst case. Whether and when a worker runs a
# full collection by itself depends on what it allocates: CPython runs one only after enough
# long-lived objects have accumulated since the last (and 3.14's incremental collector scans the old
# objects in steps instead), so a worker may run one late, or never within an epoch. The
# "before gc.freeze()" column is what one full collection in a worker costs:

# %%
show_source(RecordList)

# %% tags=["nbval-ignore-output"]
can_fork = sys.platform == "linux"
paths, labels = file_index(150_000)
indexes = {"list of dicts": RecordList(paths, labels), "NumPy arrays": RecordArrays(paths, labels)}
del paths, labels
private_mb = pd.DataFrame(index=list(indexes))
if can_fork:
    private_mb["before gc.freeze()"] = [
        worker_private_memory_bytes(index, num_workers=1, batch_size=1024, run_gc=True) / 2**20
        for index in indexes.values()]
else:
    print(f"This is {sys.platform}, not Linux: workers do not fork here (fork is unavailable on Windows and "
          "unsafe on macOS), so the copy-on-write measurements are skipped.")

# %% [markdown]
# Now `gc.freeze()`, which moves every object alive now into a permanent generation that the
# collector never scans. The `gc` documentation's recipe for a process that forks is: `gc.disable()`
# early in the parent, `gc.freeze()` right before the fork, `gc.enable()` early in the child; it warns
# that a collection just before the fork can leave freed holes in memory pages, which the children
# then copy anyway. A common shortcut, used here because the notebook has long been running with the
# collector on, is to collect, then freeze: `gc.collect()` first so that garbage is not frozen with
# the rest, with that caveat. The freeze lasts for the whole process until `gc.unfreeze()` puts the
# frozen objects back under the collector, which this section does once it has measured.

# %% tags=["nbval-ignore-output"]
if can_fork:
    gc.collect()
    gc.freeze()
    private_mb["after gc.freeze()"] = [
        worker_private_memory_bytes(index, num_workers=1, batch_size=1024, run_gc=True) / 2**20
        for index in indexes.values()]
    print(f"private memory (MB) of one forked worker after one epoch; {gc.get_freeze_count():,} objects "
          "were frozen")
    gc.unfreeze()  # the kernel must not stay frozen
    display(private_mb.round(1))

# %% tags=["nbval-ignore-output"]
if can_fork:
    collector_mb = private_mb["before gc.freeze()"] - private_mb["after gc.freeze()"]
    frozen = private_mb["after gc.freeze()"]
    refcount_mb = frozen["list of dicts"] - frozen["NumPy arrays"]
    if collector_mb.min() > 0:
        print(f"gc.freeze() saved {collector_mb.min():.0f} to {collector_mb.max():.0f} MB per worker: "
              "the collector's scans no longer copied the frozen heap.")
    else:
        print(f"gc.freeze() did not reduce the private memory of every index here (change: "
              f"{-collector_mb.max():.0f} to {-collector_mb.min():.0f} MB): the collector's copying "
              "cannot be read from this run.")
    if refcount_mb > 0:
        print(f"After freezing, the worker with the dicts still copied {refcount_mb:.0f} MB more than the "
              "one with the arrays: freezing stops the collector, not the reference counts.")
    else:
        print("After freezing, the dicts cost no more private memory than the arrays in this run.")

# %% [markdown]
# Read the table by its columns (the printed lines say whether this run showed each effect). Before
# the freeze both indexes pay for the collector scanning the whole notebook heap in every worker.
# After it, what is left for the list of dicts is the reference
# counting: the worker touches all 150,000 records, and the pages they live on are copied. It scales
# with the number of objects and is paid once per worker: with millions of samples and 8 workers it
# reaches gigabytes, the situation PyTorch's DataLoader documentation warns about. The fix for
# reference counts is no per-sample objects at all: NumPy arrays or tensors, one buffer each with one
# reference count.

# %%
del indexes

# %% [markdown]
# ### Collation, measured
# The article's `MemoryDataset` keeps a Python list with one object per image. A DataLoader then
# calls `__getitem__` 64 times and `default_collate` stacks the 64 results into one batch (converting
# NumPy arrays to tensors on the way). A tensor cache can instead return the batch with one operation,
# written two ways: `images[indices]` (advanced indexing) and `images.index_select(0, indices)`. The
# four ways to make the same batch of 64 images, in alternating rounds:

# %% tags=["nbval-ignore-output"]
article_cache = ObjectListCache([image.numpy() for image in cache.images], cache.labels.tolist())
batch_indices = torch.randperm(len(cache), generator=torch.Generator().manual_seed(0))[:64]
array_items = [article_cache[i] for i in batch_indices.tolist()]
tensor_items = [(cache.images[i], cache.labels[i]) for i in batch_indices.tolist()]
batch_variants = {
    "default_collate, 64 NumPy arrays": lambda: default_collate(array_items),
    "default_collate, 64 tensors": lambda: default_collate(tensor_items),
    "images[indices]": lambda: cache.images[batch_indices],
    "images.index_select(0, indices)": lambda: cache.images.index_select(0, batch_indices),
}
collation = measure_interleaved(batch_variants, rounds=3, min_run_time=0.5)
timing_table(collation).round(3)

# %% tags=["nbval-ignore-output"]
one_op_ms = collation["images.index_select(0, indices)"].median_ms
arrays_ms = collation["default_collate, 64 NumPy arrays"].median_ms - one_op_ms
tensors_ms = collation["default_collate, 64 tensors"].median_ms - one_op_ms
cache_batch_ms = 64e3 / cache_table.loc["decoded cache", "images_per_s"]
print(f"this cell, per batch: default_collate costs {arrays_ms:.2f} ms more than one index_select for 64 NumPy "
      f"arrays (the article's list), {tensors_ms:.2f} ms more for 64 tensors (what DecodedCache collates).")
print(f"Set beside two other cells (measured at other moments, so a rough share): the arrays' extra against "
      f"decoding a batch in the main process ({decode_ms:.1f} ms, section 3's crossing cell): "
      f"{arrays_ms / decode_ms:.1%}; the tensors' extra against a batch of the decoded cache "
      f"({cache_batch_ms:.1f} ms, section 5's cache-against-decoding cell): {tensors_ms / cache_batch_ms:.1%}.")

# %% [markdown]
# All four copy the same 64 x 48 KB of pixels; what differs is the work around the copy, visible in
# the speedup column. Advanced indexing is a general gather (it supports any index shape, element by
# element), while `index_select` along the first dimension copies whole rows, so the two "one
# operation" rows need not be alike. The last line sets each loader's own collation beside its batch
# time: the article's 64 arrays beside decoding a batch, and the 64 tensors that `DecodedCache`
# collates beside a batch of the decoded cache. Those batch times come from the two cells it names,
# so the percentages are rough shares, not paired measurements: they say how much of each loader's
# time collating in one operation could save on this machine.
#
# ### Batched fetching and batched transforms
# DataLoader calls a Dataset's `__getitems__(indices)`, when it has one, instead of one `__getitem__`
# per index: the same idea as chapter 1's `BatchSampler` with `batch_size=None`, but keeping
# `batch_size=64` and the usual sampler. The batch comes back already stacked, so pass
# `collate_fn=default_convert` to the loader (it converts without stacking; the default collate would
# take the (images, labels) pair for two samples). A transform can then run once per batch:
# `RandomCrop` on a (64, 3, 128, 128) tensor crops all 64 images at the same random place, one random
# draw per batch instead of per image, less augmentation diversity within a batch, for less work.
# Those are two changes, so the measurement separates them: a middle row fetches the batch with
# `__getitems__` but still crops each image on its own (`PerImage` applies the crop image by image and
# stacks the results), the same augmentation as the per-item row:

# %%
show_source(BatchedCache)

# %% tags=["nbval-ignore-output"]
fetch_rows = ("per item: 64 crops, default_collate", "per batch: __getitems__, 64 crops",
              "per batch: __getitems__, one crop")
fetch_loaders = [make_loader(cache),
                 make_loader(BatchedCache(cache.images, cache.labels, transform=PerImage(augment)),
                             collate_fn=default_convert),
                 make_loader(BatchedCache(cache.images, cache.labels, transform=augment), collate_fn=default_convert)]
fetch_runs = measure_loaders(dict(zip(fetch_rows, fetch_loaders)), rounds=3)
fetch_table = loader_table(fetch_runs).drop(columns="warnings")
fetch_api = loader_ratio(fetch_runs, fetch_rows[0], fetch_rows[1])
fetch_crop = loader_ratio(fetch_runs, fetch_rows[1], fetch_rows[2])
fetch_ratio = loader_ratio(fetch_runs, fetch_rows[0], fetch_rows[2])
print(f"__getitems__ against per item, both with 64 crops (same augmentation): {fetch_api}: {fetch_api.gain}")
print(f"one crop per batch against 64, both with __getitems__ (less augmentation): {fetch_crop}: {fetch_crop.gain}")
print(f"both changes together: {fetch_ratio}: {fetch_ratio.gain}")
if fetch_crop.median > fetch_api.median:
    print("Most of the batched gain came from cropping once per batch, a change in what the model sees, not from "
          "fetching with __getitems__" + (" (whose own effect could not be told apart from none here; likely "
                                          "because it still copies the 64 whole images before cropping them)."
                                          if fetch_api.gain != "gain" else "."))
else:
    print("Most of the batched gain came from fetching with __getitems__, with the same augmentation.")
fetch_table.round(1)

# %% [markdown]
# Each printed ratio ends with its reading (*gain*, *loss* or *no gain*, over the range of the rounds,
# as explained before the sweep in section 3). The first line prices the API alone, the second the change of
# augmentation; if the second is the larger, most of the batched gain comes from cropping less, a change
# in what the model sees, not from a cheaper way to fetch the same thing.
#
# ### Pinned memory
# With a GPU, `pin_memory=True` makes the loader place each batch in page-locked (pinned) memory. What
# that buys is overlap, and it takes three things at once:
# - **workers**, so that a separate *pin-memory thread* of the main process copies each finished batch
#   into pinned memory beside the training loop (with `num_workers=0` the main process pins each batch
#   itself, an extra copy on the critical path);
# - **`non_blocking=True`** on the copy to the GPU, so that the host queues the copy and goes on, instead
#   of waiting for it (from pageable memory the copy is staged through a driver buffer and the host waits);
# - **GPU work to overlap with**: a training step. On one CUDA stream the copy and the step still take
#   turns; the copy of the *next* batch overlaps the step only when it is issued on a second stream
#   (chapter 3's `copy_beside_compute`), which is what a prefetcher does.
#
# The cell below feeds the GPU from a batched-cache loader (batch 256, workers, persistent). It first
# measures, per batch, the pinned loader alone (the crossing from a worker and the pin-memory thread's
# copy included) and one batch's pageable copy, and sizes the GPU step (matrix products) to 1.5x the
# larger of the two, so that the loader is off the critical path and the copy is what the variants
# differ in; then it times that step directly. Whole epochs, four ways, in alternating rounds: the
# pinned loader alone, for reference; pageable with a blocking copy; pinned with `non_blocking` on one
# stream; pinned with the next batch copied on a side stream while the step runs.

# %% tags=["nbval-ignore-output"]
pin_workers = max(1, min(4, cores - 1))
if device.type == "cuda":
    pinning, pin_facts = compare_pinned_epochs(BatchedCache(cache.images, cache.labels), batch_size=256,
                                               num_workers=pin_workers, rounds=5)
    print("per batch, measured: " + ", ".join(f"{name} {value:.2f}" for name, value in pin_facts.items()))
    display(timing_table(pinning, baseline="pageable, blocking copy", items_per_call=len(cache)).round(2))
    pin_same_stream = timing_ratio(pinning["pageable, blocking copy"], pinning["pinned, non_blocking copy"])
    pin_overlap = timing_ratio(pinning["pinned, non_blocking copy"],
                               pinning["pinned, next batch copied beside the step"])
    pin_prefetch = timing_ratio(pinning["pageable, blocking copy"],
                                pinning["pinned, next batch copied beside the step"])
    print(f"pinned + non_blocking against pageable + blocking (DMA speed and a free host): {pin_same_stream}: "
          f"{pin_same_stream.gain}")
    print(f"next batch copied beside the step against pinned + non_blocking on one stream (the overlap alone): "
          f"{pin_overlap}: {pin_overlap.gain}")
    print(f"both together, against pageable + blocking: {pin_prefetch}: {pin_prefetch.gain}")
    loader_bound_gpu = (pinning["loader alone (pinned)"].median_s
                        >= 0.9 * pinning["pinned, next batch copied beside the step"].median_s)
    copy_share = pin_facts["copy, pinned (ms)"] / pin_facts["GPU step (ms)"]
    if loader_bound_gpu:
        print("The loader alone took about as long as the fastest epoch despite the longer step: the workers "
              "and the pin-memory thread set the pace, so no copy was on the critical path. More workers "
              "would show the copy.")
    elif pin_overlap.gain == "gain":
        print("The copy on a second stream hid behind the step: the overlap that pinned memory and "
              "non_blocking make possible, measured on its own.")
    else:
        print(f"The overlap itself was not measurable here: a pinned copy takes {copy_share:.0%} of a step, "
              "so hiding it can save at most about that share of each batch.")
else:
    batch_mb = 256 * cache.images[0].numel() / 2**20
    print(f"No CUDA GPU here (device={device.type}), so this is skipped (make_loader refuses pin_memory=True "
          f"with a sentence that says why). On a GPU it would time, per batch of 256 images ({batch_mb:.0f} MB) "
          f"from {pin_workers} worker(s), the pinned loader alone and the pageable copy, size a GPU step to 1.5x "
          "the larger, and time whole epochs: pageable with a blocking copy, pinned with non_blocking on one "
          "stream, and pinned with the next batch copied beside the step; the ratio of the last two is the "
          "overlap that pinning exists for.")

# %% [markdown]
# Read the three ratios in turn. The first (pageable and blocking against pinned and `non_blocking`,
# one stream) mixes two things: the faster DMA from pinned memory and a host that no longer waits; the
# copy and the step still follow each other on the GPU. The second isolates the overlap: the same
# pinned batches, with the next one copied on a second stream while the step runs, the case that
# pinning exists for; it can save at most the pinned copy's share of a step (printed in the facts).
# The third is what the two bring together. When the loader alone is as slow as the epochs, the loader
# is the bottleneck and pinning cannot show; that is the everyday case of a decoding loader, which is
# why this cell uses the batched cache and a step longer than the loader's batch time.

# %% [markdown]
# ### Decoding on the GPU
# A GPU can decode JPEG files itself (NVIDIA's nvJPEG): the loader then only reads bytes, and the CPU
# cores that decoding starved are free. torchvision offers it as
# `torchvision.io.decode_jpeg(data, device="cuda")`, which torchvision 0.29 deprecates (with all its
# image decoders) in favour of TorchCodec, not part of this course's software stack; it still works.
# The call the deprecation points to (torchcodec 0.16 or newer) takes a list of sources and decodes
# the whole batch in one nvJPEG call:
#
# ```python
# from torchcodec.decoders import decode_jpeg
# images = decode_jpeg(jpeg_bytes, device="cuda")  # a list of bytes in, a list of (3, H, W) CUDA tensors out
# ```
#
# The cell below calls torchvision's inside a `warnings.catch_warnings()` block that ignores exactly that
# DeprecationWarning (and TorchCodec's as well, when it is installed), and times a batch of 64 of the
# chapter's JPEG files decoded on the GPU against the same bytes decoded by Pillow on the CPU
# (ImageFolder's decoder), in alternating rounds. It runs only with a CUDA GPU. The comparison is not
# like for like: Pillow decodes on **one** CPU thread, nvJPEG uses a whole GPU, so the cell also scales
# the CPU rate by the core count (what as many workers as cores could reach if they scaled perfectly,
# an upper bound). The two decoders' pixels are compared with a tolerance: nvJPEG and libjpeg compute
# the inverse DCT and the colour upsampling differently, so a few levels of difference are normal. (Run
# with `COURSE_STRICT_WARNINGS=1`, as the course's tests do, this chapter treats an escaping
# deprecation warning as an error; without it, Python shows the warning.)

# %% tags=["nbval-ignore-output"]
if hw.device == "cuda":
    from torchvision.io import decode_jpeg

    jpeg_bytes = [Path(path).read_bytes() for path, _ in files.samples[:64]]
    encoded = [torch.from_numpy(np.frombuffer(bytearray(data), dtype=np.uint8)) for data in jpeg_bytes]

    def decode_on_cpu() -> list[torch.Tensor]:
        return [v2.functional.pil_to_tensor(PIL.Image.open(io.BytesIO(data)).convert("RGB"))
                for data in jpeg_bytes]

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning,
                                message="The image decoding and encoding capabilities of TorchVision are "
                                        "deprecated")
        on_gpu, on_cpu = decode_jpeg(encoded[0], device="cuda").cpu(), decode_on_cpu()[0]
        gpu_decoding = measure_interleaved({"Pillow on the CPU, one thread": decode_on_cpu,
                                            "nvJPEG on the GPU": lambda: decode_jpeg(encoded, device="cuda")},
                                           rounds=3, min_run_time=1.5)
    if on_gpu.shape == on_cpu.shape:
        difference = (on_gpu.int() - on_cpu.int()).abs()
        print(f"both decoders give {tuple(on_cpu.shape)}; pixels differ by {difference.float().mean():.2f} levels "
              f"on average, at most {difference.max()} (of 255): "
              + ("the same image, within the decoders' rounding." if difference.float().mean() <= 2
                 else "more than rounding: look at both images."))
    else:
        print(f"the decoders disagree on the shape: {tuple(on_gpu.shape)} on the GPU, {tuple(on_cpu.shape)} by Pillow")
    display(timing_table(gpu_decoding, items_per_call=64).round(2))
    gpu_ratio = timing_ratio(gpu_decoding["Pillow on the CPU, one thread"], gpu_decoding["nvJPEG on the GPU"])
    print(f"GPU against CPU decoding, a batch of 64: {gpu_ratio}: {gpu_ratio.gain}")
    cpu_rate = 64 / gpu_decoding["Pillow on the CPU, one thread"].median_s
    gpu_rate = 64 / gpu_decoding["nvJPEG on the GPU"].median_s
    print(f"Pillow decoded {cpu_rate:.0f} images/s on one thread; {cores} workers, one per core, could reach at "
          f"most about {cores * cpu_rate:.0f} (perfect scaling), against {gpu_rate:.0f} on the GPU: "
          + (f"the GPU still decodes {gpu_rate / (cores * cpu_rate):.1f}x faster than all the cores would."
             if gpu_rate > cores * cpu_rate else "all the cores together could match the GPU here, "
             "though they would then have none left for the rest of the pipeline."))
    try:
        from torchcodec.decoders import decode_jpeg as torchcodec_decode_jpeg  # torchcodec 0.16 or newer
    except ImportError:
        print("TorchCodec is not installed here, so its decode_jpeg (the call shown above) is not run.")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from_torchcodec = torchcodec_decode_jpeg(jpeg_bytes[:1], device="cuda")[0].cpu()
        print("TorchCodec's decode_jpeg against torchvision's on the GPU: largest pixel difference "
              f"{int((from_torchcodec.int() - on_gpu.int()).abs().max())} levels")
else:
    print(f"No CUDA GPU here (device={hw.device}): GPU decoding is skipped.")

# %% [markdown]
#
# ## 6. End to end: when the loader is the bottleneck
# Every speed-up so far was the loader's alone. Training sees a loader speed-up only when the loader is
# the bottleneck: the light model of section 2. Four pipelines train it, in alternating rounds, 16
# batches each (the first 4, the two workers' head start, off the clock for all): decoding in
# the main process; decoding in two workers; the same, with the training
# step on one torch thread instead of all of them (so that 2 workers + 1 thread fit 2 cores more
# closely); and the decoded cache. In the same rounds, three rows that Exercise 1 combines: the two
# decoding loaders alone (no training) and the training step alone (one batch held in memory).

# %% tags=["nbval-ignore-output"]
end_to_end_loaders = {"decode, num_workers=0": make_loader(files),
                      "decode, num_workers=2": make_loader(files, num_workers=2),
                      "decode, num_workers=2, training on 1 thread": make_loader(files, num_workers=2),
                      "decoded cache, num_workers=0": make_loader(cache),
                      "loader alone: decode, num_workers=0": make_loader(files),
                      "loader alone: decode, num_workers=2": make_loader(files, num_workers=2),
                      "training step alone": held_batch_loader(files, batches=16)}
end_to_end = measure_training(end_to_end_loaders, light_model, device=device, rounds=4, max_batches=16,
                              num_threads={"decode, num_workers=2, training on 1 thread": 1},
                              loader_only=[name for name in end_to_end_loaders if name.startswith("loader alone")])
end_to_end_table = pd.Series({name: statistics.median(rates) for name, rates in end_to_end.items()},
                             name="images/s (light model)")
end_to_end_table.round(0)

# %% tags=["nbval-ignore-output"]
e2e_workers = paired_ratio(end_to_end["decode, num_workers=0"], end_to_end["decode, num_workers=2"],
                           higher_is_better=True)
if loader_bound and cores >= 2:
    e2e_workers_claim = make_claim(4, "two_workers_training_1.2x", "When the loader is the bottleneck, two "
                                   "DataLoader workers make training at least 1.2x faster.", threshold=1.2,
                                   ratio=e2e_workers, hardware=hw.cpu_label,
                                   condition="a loader-bound model; at least 2 cores")
    claims.append(e2e_workers_claim)
    display(report_claim(
        e2e_workers_claim, holds="The workers decode on both cores while the main process trains.",
        does_not_hold="On this machine the two workers and the training step share the same cores: the "
                      "step takes time from the decoding, and each batch pays the crossing between "
                      "processes."))
else:
    print(f"Not judged: the claim is about a loader-bound model on at least 2 cores; here the light model "
          f"is {'loader-bound' if loader_bound else 'not loader-bound'} on {cores} core(s). Measured: "
          f"{e2e_workers}.")

# %% tags=["nbval-ignore-output"]
e2e_cache = paired_ratio(end_to_end["decode, num_workers=0"], end_to_end["decoded cache, num_workers=0"],
                         higher_is_better=True)
if loader_bound:
    e2e_cache_claim = make_claim(4, "decoded_cache_training_1.5x", "When the loader is the bottleneck, the "
                                 "decoded cache makes training at least 1.5x faster.", threshold=1.5,
                                 ratio=e2e_cache, hardware=hw.cpu_label, condition="a loader-bound model")
    claims.append(e2e_cache_claim)
    display(report_claim(
        e2e_cache_claim,
        holds="Without decoding, the loader outruns the model, which becomes the bottleneck.",
        does_not_hold="Decoding was not the main cost of this pipeline here."))
else:
    print(f"Not judged: the claim is about a loader-bound model, and here the light model is not "
          f"loader-bound. Measured: {e2e_cache}.")

# %% tags=["nbval-ignore-output"]
one_thread = paired_ratio(end_to_end["decode, num_workers=2"],
                          end_to_end["decode, num_workers=2, training on 1 thread"], higher_is_better=True)
print(f"two workers, training on 1 thread against {training_threads}: {one_thread}: {one_thread.gain}")

# %% [markdown]
# How to read these results. The cache removes the decoding itself, so it helps whatever the core
# count. Workers only move the decoding to other processes: they help end to end when there are cores
# for them besides the training step, and each batch still pays the crossing measured in section 3. On
# a 2-core machine the main process needs a core too (to train, and to receive every batch), and
# torch's intra-op threads may take cycles from the workers even between operations: OpenMP threads
# spin-wait for a while before they sleep (libgomp's default; `OMP_WAIT_POLICY=passive`, set before
# torch starts, makes them sleep at once). This chapter did not measure that part separately.
# The last printed line reads the one-thread comparison: *gain* means the training step's extra
# threads were costing the workers more than they gave the step; *loss* means the step needed them;
# *no gain* means this run cannot tell. Exercise 1 compares these measurements with predictions.
#
# ### The everyday diagnostic: how long does the loop wait for data?
# Outside a course, nobody measures the loader alone on every run. The cheap check is a timer in the
# training loop itself: the time spent in `next()` on the loader (waiting for data) against the time
# in the step. `time_data_wait` splits one pass of 16 batches of the light model that way, for three
# of the pipelines above (one pass each, a diagnostic rather than a comparison):

# %%
show_source(time_data_wait)

# %% tags=["nbval-ignore-output"]
light_step = make_train_step(light_model, device)
waits = {name: time_data_wait(end_to_end_loaders[name], light_step, max_batches=16)
         for name in ("decode, num_workers=0", "decode, num_workers=2", "decoded cache, num_workers=0")}
pd.DataFrame({"waiting for data (ms/batch)": {n: 1e3 * w.wait_s / w.batches for n, w in waits.items()},
              "training step (ms/batch)": {n: 1e3 * w.step_s / w.batches for n, w in waits.items()},
              "share waiting": {n: w.wait_share for n, w in waits.items()}}).round(2)

# %% tags=["nbval-ignore-output"]
step_ms = {name: 1e3 * w.step_s / w.batches for name, w in waits.items()}
if step_ms["decode, num_workers=2"] > 1.5 * step_ms["decode, num_workers=0"]:
    print(f"With two workers the loop waited less, but the step itself slowed from "
          f"{step_ms['decode, num_workers=0']:.1f} to {step_ms['decode, num_workers=2']:.1f} ms per batch: the "
          "workers took its cores. A low share of waiting is not by itself a fast loop.")
else:
    print("The two workers cut the waiting without slowing the step much: they decoded beside it.")

# %% [markdown]
# A loop that waits for data most of its time is loader-bound, whatever the GPU's utilisation figure
# says; a share near zero means the loader keeps up and tuning it buys nothing. With `num_workers=0`
# the "wait" is the main process decoding the batch itself. Log this share every few hundred steps in
# real training (on a GPU, synchronise before reading the step's clock, as `time_data_wait` does).
#
# ### Beyond this chapter's measurements
# - `DataLoader(..., in_order=False)` (PyTorch 2.6+) hands out batches as workers finish them instead of
#   in sampler order, so one slow sample (a huge image, a slow read) no longer stalls the batches behind
#   it; the price is a run that is not reproducible batch for batch.
# - Mid-epoch resumption: a `DataLoader` restarts its epoch after a crash. `torchdata`'s
#   `StatefulDataLoader` is a drop-in replacement with `state_dict()` and `load_state_dict()` that save
#   the sampler's and workers' position with the checkpoint, which matters when one epoch takes hours.
# - Data that is not a fixed-size image: variable-size images and sequences (text, audio) cannot be
#   stacked as they come. A `collate_fn` pads each batch to its own longest item (not the dataset's),
#   a *bucketing* sampler groups items of similar length so that little is padding, and *packing*
#   concatenates short sequences into one row with a mask that keeps them apart. A compiled or
#   CUDA-graph step wants one shape: `drop_last=True` drops the last, smaller batch (otherwise one more
#   compilation, or no graph replay), and an `IterableDataset` split across workers can end an epoch
#   with a partial batch from each worker (up to one per worker; with `ShardImages` and 2 workers, from
#   the worker holding the last, short block), which `drop_last` drops too. On a multi-GPU node every
#   rank starts its own loader: the cores are shared by all of them, so size `num_workers` to about the
#   cores divided by the ranks, less one for each rank's main process; an `IterableDataset` must then
#   split its shards by rank as well as by worker (`DistributedSampler` applies only to map-style
#   datasets), and a worker can be kept on one NUMA node's cores with `os.sched_setaffinity` in its
#   `worker_init_fn`. Data that lives in object storage is streamed shard by shard by libraries built
#   for it (MosaicML Streaming, the Amazon S3 connector for PyTorch), with the same worker and rank
#   splitting.
# - Augmentation on the GPU: with the decoding moved to the GPU (nvJPEG, above), random crops, flips
#   and colour changes can run on whole batches there too (torchvision's v2 transforms accept CUDA
#   tensors; NVIDIA DALI builds the whole read-decode-augment pipeline on the GPU), leaving the CPU
#   workers only the reading.

# %% [markdown]
# Compare with section 2's small CNN: where the model is the slower side (section 2's verdict, on a
# CPU), a faster loader has little to give it; Exercise 1's serial formula, applied to section 2's
# rates, says how little (the exercise itself measures the light model). Measure the model and the
# loader alone first; then speed up the slower one.
#
# ## 7. What the source article got wrong
# - "Data loading is often the bottleneck" is stated, not measured. Here it was measured in section 2:
#   for the small CNN on this machine the verdict printed there applies, and a loader speed-up only
#   reaches training when the loader is the slower side (section 6).
# - `DataLoader(dataset, batch_size=64, shuffle=True, num_workers=4)` with the comment "multi-threaded
#   loading": workers are processes (section 3), and 4 is a guess; measure from 0 to the core count.
# - `MemoryDataset(data, targets)` returns stored items unchanged: augmentation is lost unless it is
#   applied per item. Its list of per-sample arrays is fetched item by item and collated from 64
#   pieces per batch; section 5 measured what that costs against one `index_select` of a contiguous
#   tensor (`DecodedCache` also fetches item by item: `BatchedCache` is the one that does not). Per-sample
#   Python objects also cost worker memory when workers fork: section 5 showed it for an index of
#   150,000 dicts, not for the few thousand arrays of this dataset. It is also PyTorch's own
#   `TensorDataset` written again, as the two `__getitem__` methods show (TensorDataset indexes each of
#   its tensors; the article's class indexes its two lists):

# %%
show_source(TensorDataset.__getitem__)

# %%
show_source(ObjectListCache.__getitem__)

# %% [markdown]
# - The article credits a cache with avoiding repeated *reads* from disk. The operating system's page
#   cache already does that for a dataset that fits in RAM (section 5's warm reads); what the cache
#   saves is the *decoding*. This run's numbers:

# %% tags=["nbval-ignore-output"]
if reads is not None:
    print(f"reading all {len(file_paths)} files warm: {1e3 * statistics.median(reads['small files']['warm']):.0f} "
          f"ms; decoding them: about {decode_epoch_s:.2f} s (section 5)")
else:
    print(f"decoding all {len(files)} files: about {len(files) / decode_rate:.2f} s (section 5); warm and cold "
          "reads were not measured on this system")

# %% [markdown]
# - The article promises a disk cache and never shows one: section 5 saves the decoded tensor once and
#   loads it in later runs, and says when not to cache.
# - Neither snippet mentions `pin_memory`, `persistent_workers` or `prefetch_factor`, nor where the
#   Dataset class must live for spawn-based platforms (section 4).

# %% [markdown]
# ## 8. Exercises
# **Exercise 1 (predict, then measure).** A loader alone delivers `loader_rate` images/s and the training
# step alone consumes `step_rate` images/s. Write the throughput of the two together, when they run one
# after the other (`overlapped=False`, as with `num_workers=0`) and when loading fully overlaps training
# (`overlapped=True`, workers on idle cores). The check tries several rates.

# %%
def predict_throughput(loader_rate: float, step_rate: float, overlapped: bool) -> float:
    """Images/s of loading and training together."""
    ...  # your formula


check_throughput_prediction("Exercise 1", predict_throughput)


# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution"]
def predict_throughput(loader_rate: float, step_rate: float, overlapped: bool) -> float:
    """Images/s of loading and training together."""
    if overlapped:
        return min(loader_rate, step_rate)
    return 1 / (1 / loader_rate + 1 / step_rate)


check_throughput_prediction("Exercise 1", predict_throughput)

# %% [markdown]
# Now the measurement. Your formula's predictions for the light model, from the rates measured alone,
# against the training throughput measured end to end, all from section 6's rounds (the loaders alone
# and the step alone were measured beside the training rows). Explain each gap: what does the serial
# formula leave out, and which assumption of the overlapped one fails on this machine (count the cores)?

# %% tags=["nbval-ignore-output"]
step_rate = end_to_end_table["training step alone"]
predicted = [predict_throughput(end_to_end_table["loader alone: decode, num_workers=0"], step_rate, False),
             predict_throughput(end_to_end_table["loader alone: decode, num_workers=2"], step_rate, True)]
measured = [end_to_end_table["decode, num_workers=0"], end_to_end_table["decode, num_workers=2"]]
prediction_table = pd.DataFrame({"predicted": predicted, "measured": measured},
                                index=["num_workers=0 (serial)", "num_workers=2 (overlapped)"])
prediction_table["measured / predicted"] = prediction_table["measured"] / prediction_table["predicted"]
prediction_table.round(2)

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution"]
# A discussion (read it after your own). The serial formula adds the loader's time and the step's
# time per image and leaves out what the loop adds around them: moving each batch to the device, the
# Python loop, and the caches that the decoding and the step evict from each other, so the measured
# rate tends to fall a little short of it. The overlapped formula assumes that the workers decode on
# cores the step does not use. On a machine with fewer cores than workers plus training threads that
# fails twice: the step runs slower than it did alone, because the workers take its cores (section 6's
# diagnostic above prints the step's time per batch with no worker and with two workers: compare the
# two), and the workers decode slower than they did alone, because the step takes theirs. The
# two-worker row's measured/predicted ratio is the price of that sharing on this machine; on a GPU, or
# with spare cores, it moves towards 1.

# %% [markdown]
# **Exercise 2 (predict, then measure: a pipeline nobody has run).** Choose a number of DataLoader
# workers and of torch threads for the training step that section 6 did not run (one worker and one
# training thread; or, where there are cores for them, more workers), predict the rate at which it
# trains the light model from decoded JPEG files on this machine, in images/s, and only then measure.
# Build the prediction the way Exercise 1 does: the loaders' rates from one call (the one-worker and
# main-process loaders of the crossing measurement in section 3), the training step alone from section
# 6 (many times faster than the loaders, so its drift between cells matters little), and the core
# count. The check refuses a pair section 6 ran (its rate is in the table), trains your
# pair and the fastest of section 6's decoding rows (it picks that row itself, and does not print it)
# in 8 alternating rounds, each timed over 16 batches after both loaders' head start, and passes when
# your prediction is within 30% of the rate your pair measured. It also judges a claim, with its
# interval and verdict: your pair's rate is at least the fastest's. Was it worth trying?

# %%
my_prediction = ...  # images/s you expect your choice to train at
my_workers = ...  # your choice: num_workers
my_threads = ...  # your choice: torch threads for the training step
decoding_rows = {"decode, num_workers=0": (0, training_threads), "decode, num_workers=2": (2, training_threads),
                 "decode, num_workers=2, training on 1 thread": (2, 1)}
check_pipeline_choice("Exercise 2", my_workers, my_threads, my_prediction, dataset=files, model=light_model,
                      measured=end_to_end, configurations=decoding_rows, device=device)

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution", "nbval-ignore-output"]
# One worker decodes on one core while the step trains on one thread on the other: the two overlap, so
# the slower of them sets the rate. The light step alone is many times faster than decoding, so the
# prediction is about the one-worker loader's rate (section 3's crossing measurement). That rate drifts
# between cells like any other (section 3 printed how far), which the 30% allows for.
my_workers, my_threads = 1, 1
my_prediction = crossing.loc["decode, one worker", "images_per_s"]
check_pipeline_choice("Exercise 2", my_workers, my_threads, my_prediction, dataset=files, model=light_model,
                      measured=end_to_end, configurations=decoding_rows, device=device)

# %% [markdown]
# ## 9. Summary
# The ledger records what training gained, end to end, in the loader-bound case; the loader-alone
# speed-ups stay in the claims above, named as the loader's. Each entry names its baseline (decoding
# the JPEG files in the main process, the same model and batches), its kind (a time ratio over section
# 6's rounds, with the range of those rounds, and the verdict of its claim) and that it is one
# technique, not a combination. Two workers with a one-thread training step would be a combination
# (two knobs at once), which a guide must not rank against single techniques, so it stays out.

# %% tags=["nbval-ignore-output"]
end_to_end_metric = "training throughput end to end, loader-bound light model, batch 64"
decode_baseline = "decoding the JPEG files in the main process (num_workers=0), same light model and batches"
entries = [
    make_entry(4, "dataloader_workers", metric=end_to_end_metric, unit="images/s",
               baseline=end_to_end_table["decode, num_workers=0"],
               optimized=end_to_end_table["decode, num_workers=2"], higher_is_better=True,
               hardware=hw.cpu_label, compared_with=decode_baseline, combination=False,
               **({"claim": e2e_workers_claim} if loader_bound and cores >= 2 else {"ratio": e2e_workers}),
               extras={"num_workers": 2, "cores": cores}),
    make_entry(4, "memory_cache", metric=end_to_end_metric, unit="images/s",
               baseline=end_to_end_table["decode, num_workers=0"],
               optimized=end_to_end_table["decoded cache, num_workers=0"], higher_is_better=True,
               hardware=hw.cpu_label, compared_with=decode_baseline, combination=False,
               **({"claim": e2e_cache_claim} if loader_bound else {"ratio": e2e_cache}),
               extras={"cache_MB": cache.nbytes / 2**20}),
]
record_chapter(4, entries, claims)
for entry in entries:
    print(f"{entry.technique}: baseline and optimized are the medians of section 6's rounds; the speedup is the "
          f"median of the rounds' ratios (the claims' estimator): {entry.speedup:.2f}, where optimized / baseline "
          f"gives {entry.optimized / entry.baseline:.2f}.")
ledger_table(entries).round(2)

# %% [markdown]
# **Take-aways**
# 1. Measure the loader and the model separately before tuning either: a loader speed-up reaches
#    training only when the loader is the slower side.
# 2. `num_workers` starts processes; each batch then crosses between processes, and workers compete
#    with the training step for the same cores. Keep the Dataset in an importable module, keep its
#    index in arrays rather than per-sample objects, and, when workers fork, freeze the parent's heap
#    (`gc.freeze()`) before they start.
# 3. When decoding is the loader's cost and the decoded images fit (in RAM, or on a disk that reads
#    them cold faster than they decode; fixed-size images only), decode once, as one contiguous tensor
#    or on disk, and keep random augmentation on the fly; otherwise pre-resize, shard, or decode on the
#    GPU. Fetch and transform whole batches where per-batch randomness is acceptable, and know whether
#    your first epoch reads cold.
