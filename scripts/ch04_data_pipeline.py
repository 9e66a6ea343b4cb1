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
# the loader against the model, worker processes against the core count, and decoding every epoch
# against decoding once into memory. You will see what `num_workers` really starts (processes, not
# threads) and why the article's `MemoryDataset` is the wrong way to cache.
#
# **Estimated time:** ~50 min · **Hardware:** Any CPU (2+ cores); a CUDA GPU adds the pinned-memory measurement

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
import gc
import time

import ipywidgets as widgets
import numpy as np
import pandas as pd
import psutil
import torch
from torchvision.transforms import v2

from helpers import (
    DecodedCache, ObjectListCache, check_number, child_pids, compare_variants, image_folder, ledger_table, live_control,
    loader_ratio, loader_table, make_claim, make_entry, make_loader, measure_loader, measure_loaders, new_child_processes,
    paired_ratio, pick_device, plot_sweep, record_chapter, report_claim, setup_chapter, show_source,
    small_cnn, training_throughput, worker_private_memory_bytes, write_digit_images,
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
# and normalisation happen once per *batch* in the training step, which is cheaper than once per
# image in the workers:

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
# Time the loader alone, the training step alone (on a batch already in memory), and both together.
# With `num_workers=0` the main process loads, then trains, so the two costs add up; with worker
# processes, loading the next batches overlaps with training the current one.

# %% tags=["nbval-ignore-output"]
device = pick_device()
torch.manual_seed(0)
model = small_cnn((16, 32), in_channels=3)
bottleneck = pd.DataFrame({f"num_workers={w}": training_throughput(make_loader(files, num_workers=w), model,
                                                                   device=device, max_batches=20)
                           for w in (0, 2)}).T
bottleneck["serial prediction"] = 1 / (1 / bottleneck["loader alone"] + 1 / bottleneck["training step alone"])
bottleneck.round(0)

# %% [markdown]
# Read the table in images per second: if *loader alone* is far above *training step alone*, the
# model is the bottleneck and more loading speed buys nothing; if it is below, the model is starved
# by that factor. The loader always runs on the CPU; the training step runs on the chosen device. A
# GPU trains this small network many times faster than a 2-core CPU, which turns the same loader
# into the bottleneck: the reference GPU run (in the book) shows it. The *serial prediction* is what adding the two
# costs gives; the measured `num_workers=0` row should be close to it. On a shared or busy machine,
# rows that should match can differ by 10-20 % from run to run: re-run the cell to see the noise.

# %% tags=["nbval-ignore-output"]
row = bottleneck.loc["num_workers=0"]
verdict = ("the model is the bottleneck" if row["loader alone"] > row["training step alone"]
           else f"the model is starved: it could train {row['training step alone'] / row['loader alone']:.1f}x faster")
print(f"Loading on the CPU, training on {hw.label}: {verdict}.")

# %% [markdown]
# ## 3. Workers are processes
# The article calls `num_workers` "multi-threaded" loading. It is not: each worker is a separate
# **process** (Python's GIL would serialise threads doing Python work), started when iteration
# begins, each holding its own copy of the Dataset object. Count the processes while a loader runs:

# %%
before = child_pids()
iterator = iter(make_loader(files, num_workers=2))
next(iterator)
workers = new_child_processes(before)
print(f"new processes while the loader runs: {len(workers)}; all children of this kernel's process: "
      f"{all(w.ppid() == psutil.Process().pid for w in workers)}")
del iterator

# %% [markdown]
# On Linux the workers start with `fork`: each is a copy of this kernel that shares every memory page
# with it until one side writes to that page, which then gets copied (copy-on-write). Python's garbage
# collector writes into the header of every object it scans, so a collection inside a worker can copy
# much of the notebook's heap, once per worker. `gc.freeze()` moves every object alive now into a
# generation the collector never scans (the `gc` module's documentation recommends it before forking).
# The private memory of one worker over one epoch, running one full collection as it starts
# (as a long-running worker eventually does by itself), before and after freezing:

# %% tags=["nbval-ignore-output"]
private_before = worker_private_memory_bytes(files, num_workers=1, run_gc=True)
gc.collect()
gc.freeze()
private_after = worker_private_memory_bytes(files, num_workers=1, run_gc=True)
print(f"private memory of 1 worker: {private_before / 1e6:.0f} MB before gc.freeze(), "
      f"{private_after / 1e6:.0f} MB after")

# %% [markdown]
# The recipe is *collect, freeze, then fork*: `gc.collect()` first, so that garbage is not frozen
# with the rest; then `gc.freeze()`; then start the workers. The freeze lasts for the whole process
# (this kernel, from now on): objects created later are collected as usual, the frozen ones never,
# until `gc.unfreeze()` puts them back under the collector.

# %% [markdown]
# ### Explore: the workers widget
# Each change measures two epochs: the time to the first batch of each (worker start-up, which
# `persistent_workers=True` pays only once) and the steady throughput. `pin_memory` only matters when
# batches go to a GPU. Try more workers than cores:

# %%
def loader_report(num_workers: int, batch_size: int, pin_memory: bool, persistent_workers: bool,
                  prefetch_factor: int) -> pd.DataFrame:
    """Measure two epochs of the dataset with these DataLoader settings."""
    loader = make_loader(files, batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory,
                         persistent_workers=persistent_workers, prefetch_factor=prefetch_factor)
    timing = measure_loader(loader, epochs=2)
    for message in timing.warnings:
        print("DataLoader warned:", message)
    return pd.DataFrame([{"images/s": timing.images_per_s, "first batch, epoch 1 (ms)": timing.first_batch_s[0] * 1e3,
                          "first batch, epoch 2 (ms)": timing.first_batch_s[1] * 1e3}],
                        index=[f"num_workers={num_workers}"]).round(1)


# %% tags=["nbval-ignore-output"]
wide = {"description_width": "initial"}
live_control(loader_report,
             num_workers=widgets.IntSlider(value=0, min=0, max=2 * cores, description="num_workers",
                                           continuous_update=False, style=wide),
             batch_size=widgets.Dropdown(options=[16, 64, 256], value=64, description="batch_size", style=wide),
             pin_memory=widgets.Checkbox(value=False, description="pin_memory", style=wide),
             persistent_workers=widgets.Checkbox(value=False, description="persistent_workers", style=wide),
             prefetch_factor=widgets.IntSlider(value=2, min=1, max=4, description="prefetch_factor",
                                               continuous_update=False, style=wide))

# %% [markdown]
# A sweep from 0 to twice the core count (every count up to 4, then half, all and twice the cores),
# in alternating rounds, as a static figure:

# %% tags=["nbval-ignore-output"]
worker_counts = sorted({0, 1, 2, 3, 4, cores // 2, cores, 2 * cores})
worker_runs = measure_loaders({w: make_loader(files, num_workers=w) for w in worker_counts}, rounds=5)
worker_sweep = loader_table(worker_runs)
worker_sweep.index.name = "num_workers"
worker_sweep.round(1)

# %%
plot_sweep(worker_counts, {"throughput": worker_sweep["images_per_s"], "start-up": worker_sweep["first_batch_ms"]},
           xlabel="num_workers", ylabels={"throughput": "images/s", "start-up": "time to first batch (ms)"},
           hardware=hw.cpu_label, title="DataLoader workers: throughput and start-up", logx=False)

# %% [markdown]
# Throughput grows while there are idle cores to give the workers. With more workers than cores,
# the processes (and the main process) take turns on the same cores and PyTorch warns: the gain
# shrinks or turns into a loss, unless the workers also spend time waiting (on files, say), which
# other workers can fill. The sweep shows which case this machine is. The time to the first batch grows with the worker count, because each worker is a
# new process that must start before it can deliver. On Python 3.12 and newer, the *warnings* column
# may also show "This process is multi-threaded, use of fork() may lead to deadlocks": the notebook's
# process already runs threads (torch's thread pool, CUDA's) when the workers are forked. The
# workers run, but section 4's `forkserver` and `spawn` start methods are the way to avoid the risk.

# %% tags=["nbval-ignore-output"]
if cores >= 2:
    workers_claim = make_claim(4, "two_workers_1.3x", "With two DataLoader workers the loader delivers at least 1.3x "
                               "the images per second of loading in the main process.", threshold=1.3,
                               ratio=loader_ratio(worker_runs, 0, 2), hardware=hw.cpu_label,
                               condition="a CPU with at least 2 cores")
    claims.append(workers_claim)
    display(report_claim(workers_claim, holds="Two processes decode on two cores while the main process only "
                                              "receives finished batches.",
                         does_not_hold="On this machine the cost of starting workers and moving each batch "
                                       "between processes eats what the second core adds."))
else:
    print(f"{cores} core: workers can only take turns with the main process here, so no gain is claimed.")

# %% [markdown]
# ### Pinned memory
# With a GPU, `pin_memory=True` makes the loader place each batch in page-locked memory, so the copy
# to the GPU can use DMA and overlap with compute (`.to(device, non_blocking=True)`; chapter 3
# measured the copy itself). Whether an epoch gets faster depends on how long the copy takes beside
# the time to *produce* the batch: the cell measures the copy of one batch both ways, bounds what
# pinning can save, then times whole epochs copied to the GPU, pinned and not, in alternating rounds.

# %% tags=["nbval-ignore-output"]
if device.type == "cuda":
    batch_images, _ = next(iter(make_loader(files)))
    pinned_images = batch_images.pin_memory()
    copies = compare_variants({"pageable": lambda: batch_images.to(device),
                               "pinned, non_blocking": lambda: pinned_images.to(device, non_blocking=True)})
    display(copies.round(3))
    saved_ms = copies.loc["pageable", "median_ms"] - copies.loc["pinned, non_blocking", "median_ms"]
    produce_ms = 1e3 * len(batch_images) / worker_sweep.loc[2, "images_per_s"]
    print(f"One batch is {batch_images.nbytes / 2**20:.1f} MB: pinning saves {saved_ms:.3f} ms of its copy, while two "
          f"workers take {produce_ms:.1f} ms to produce it, so pinning can shorten this epoch by at most "
          f"{max(saved_ms, 0) / produce_ms:.1%}.")
else:
    print(f"No CUDA GPU here (device={device.type}): pinned memory has no GPU to copy to, so this measurement "
          "is skipped; make_loader refuses pin_memory=True with a sentence that says why.")

# %% tags=["nbval-ignore-output"]
if device.type == "cuda":
    def epoch_to_gpu(loader) -> float:
        """Images/s of one epoch of the loader, each batch copied to the GPU as the loader's setting suggests."""
        torch.cuda.synchronize()
        start, images = time.perf_counter(), 0
        for inputs, _targets in loader:
            images += len(inputs.to(device, non_blocking=loader.pin_memory))
        torch.cuda.synchronize()
        return images / (time.perf_counter() - start)

    to_gpu = {pin: make_loader(files, num_workers=2, pin_memory=pin) for pin in (False, True)}
    rates = {pin: [] for pin in to_gpu}
    for round_index in range(4):
        for pin in (to_gpu if round_index % 2 == 0 else reversed(to_gpu)):
            rates[pin].append(epoch_to_gpu(to_gpu[pin]))
    pin_ratio = paired_ratio(rates[False], rates[True], higher_is_better=True)
    print(f"epoch copied to the GPU, pinned against pageable: {pin_ratio}: {pin_ratio.gain}. Decoding JPEG files "
          "dominates this loader; pinning pays where batches are large and produced fast (a decoded cache of "
          "float tensors feeding a GPU that waits for them).")
else:
    print("No CUDA GPU here: the epoch-level comparison of pinned and pageable batches is skipped.")

# %% [markdown]
# ## 4. Where the Dataset lives
# `ImageFolder` lives in torchvision and the caches below in `helpers/images.py`, not in this
# notebook, on purpose. A worker started
# with the *spawn* or *forkserver* method is a fresh Python interpreter: it receives the Dataset by
# pickling, and unpickling needs to import the class's module. A class defined in a notebook lives
# in `__main__`, which the new interpreter cannot import, so the workers fail with an
# `AttributeError: Can't get attribute ...`. Linux has used *fork* (which copies the parent, classes
# included) by default; macOS and Windows use spawn, and Python 3.14 makes forkserver the default on
# Linux too. Keep Datasets in an importable module.

# %% [markdown]
# ## 5. Caching, done right
# Decoding the same JPEGs every epoch repeats work. The article caches with a `MemoryDataset` that
# keeps whatever list it is given and returns items unchanged. Three problems: the random crop
# would have to happen once (every epoch would see the same crops, so no augmentation), a Python
# list of per-image objects is slow to collate, and every worker touches those objects. The course's
# `DecodedCache` decodes each image once into one contiguous `uint8` tensor and keeps the random
# crop on the fly:

# %%
show_source(DecodedCache)

# %% tags=["nbval-ignore-output"]
cache = DecodedCache(files, transform=augment)
article_cache = ObjectListCache(files)
print(f"RAM held by the decoded cache: {cache.nbytes / 2**20:.0f} MB for {len(cache)} images "
      f"({cache.nbytes / len(cache) / 1024:.1f} KB each, uint8)")

# %%
print("cached items are still augmented (two reads of item 0 differ):", not torch.equal(cache[0][0], cache[0][0]))
print("the article's cache serves item 0 unchanged every time (two reads are equal):",
      np.array_equal(article_cache[0][0], article_cache[0][0]))

# %% [markdown]
# One epoch, decoding from disk against reading the decoded cache, both with the same random crop,
# in alternating rounds:

# %% tags=["nbval-ignore-output"]
cache_runs = measure_loaders({"decode from disk": make_loader(files), "decoded cache": make_loader(cache)}, rounds=3)
cache_table = loader_table(cache_runs)
cache_table["speedup"] = cache_table["images_per_s"] / cache_table.loc["decode from disk", "images_per_s"]
cache_table.drop(columns="warnings").round(2)

# %% tags=["nbval-ignore-output"]
cache_claim = make_claim(4, "decoded_cache_3x", "Reading the decoded cache makes an epoch of the loader at least 3x "
                         "faster than decoding the JPEG files.", threshold=3.0,
                         ratio=loader_ratio(cache_runs, "decode from disk", "decoded cache"), hardware=hw.cpu_label)
claims.append(cache_claim)
report_claim(cache_claim, holds="JPEG decoding was most of the loader's work; the random crop on a uint8 tensor is cheap.",
             does_not_hold="On this machine decoding is fast relative to the crop and the collation that both "
                           "loaders still do.")

# %% [markdown]
# ### Copy-on-write in forked workers
# A forked worker shares the parent's memory pages until it writes to one; then the page is copied
# and becomes the worker's private memory. Reading a Python object *writes* its reference count, so
# a worker that walks a list of Python objects gradually copies the pages holding them. Measured:
# the private memory (USS) of two forked workers after one epoch over each cache:

# %% tags=["nbval-ignore-output"]
private_mb = {name: worker_private_memory_bytes(dataset) / 2**20
              for name, dataset in {"one uint8 tensor (DecodedCache)": cache,
                                    "list of NumPy arrays (article)": article_cache}.items()}
pd.Series(private_mb, name="private MB, 2 workers").round(1)

# %% [markdown]
# With NumPy arrays the pixels live in separate buffers that nobody writes, so only the pages
# holding the small array headers are copied: the difference is modest here, and it grows with the
# number of Python objects. It becomes gigabytes when the list holds millions of small objects
# (paths as strings, per-sample dicts or lists), the situation PyTorch's documentation warns about
# in its DataLoader notes on memory. One tensor (or one NumPy array) holds everything in a single
# buffer with one reference count.
#
# When *not* to cache: when the decoded dataset does not fit comfortably in RAM (the size is printed
# above; ImageNet's 1.28 million images would take 1.28e6 x 224 x 224 x 3 bytes, about 193 GB), or when each
# worker would build its own copy (build the cache in the main process before the workers fork, as here).

# %% [markdown]
# ## 6. What the source article got wrong
# - `DataLoader(dataset, batch_size=64, shuffle=True, num_workers=4)` with the comment "multi-threaded
#   loading": workers are processes (section 3), and 4 is a guess; measure from 0 to the core count.
#   On this machine the best count was measured above.
# - `MemoryDataset(data, targets)` returns stored items unchanged: augmentation is lost unless it is
#   applied per item, and a list of Python objects costs collation time and worker memory (section 5).
# - Neither snippet mentions `pin_memory`, `persistent_workers` or `prefetch_factor`, nor where the
#   Dataset class must live for spawn-based platforms (section 4).

# %% [markdown]
# ## 7. Exercises
# **Exercise 1.** The decoded cache stores each 128x128 RGB image as `uint8`. How many bytes does the whole
# cache need for the images alone? (Check: `cache.images.numel()`.)

# %%
cache_bytes = ...  # your answer: an integer
check_number("Exercise 1", cache_bytes, cache.images.numel(), rtol=0)

# %% jupyter={"source_hidden": true} tags=["solution"]
cache_bytes = len(files) * 3 * 128 * 128
check_number("Exercise 1", cache_bytes, cache.images.numel(), rtol=0)

# %% [markdown]
# **Exercise 2.** With `num_workers=0`, loading and training run one after the other. If the loader alone
# delivers L images/s and the training step alone consumes T images/s, what throughput do you expect
# together? Compute it from this run's `bottleneck` table (row `num_workers=0`).

# %%
serial_throughput = ...  # your answer, from bottleneck.loc["num_workers=0"]
check_number("Exercise 2", serial_throughput, bottleneck.loc["num_workers=0", "serial prediction"], rtol=1e-6)

# %% jupyter={"source_hidden": true} tags=["solution"]
loader_rate, step_rate = bottleneck.loc["num_workers=0", ["loader alone", "training step alone"]]
serial_throughput = 1 / (1 / loader_rate + 1 / step_rate)
check_number("Exercise 2", serial_throughput, bottleneck.loc["num_workers=0", "serial prediction"], rtol=1e-6)

# %% [markdown]
# ## 8. Summary

# %% tags=["nbval-ignore-output"]
best_workers = int(worker_sweep["images_per_s"].idxmax())
entries = [
    make_entry(4, "dataloader_workers", metric="loader throughput, batch 64", unit="images/s",
               baseline=worker_sweep.loc[0, "images_per_s"], optimized=worker_sweep.loc[best_workers, "images_per_s"],
               higher_is_better=True, hardware=hw.cpu_label, ratio=loader_ratio(worker_runs, 0, best_workers),
               extras={"best_num_workers": best_workers, "cores": cores}),
    make_entry(4, "memory_cache", metric="epoch time, decode from disk vs decoded cache", unit="s",
               baseline=len(files) / cache_table.loc["decode from disk", "images_per_s"],
               optimized=len(files) / cache_table.loc["decoded cache", "images_per_s"], higher_is_better=False,
               hardware=hw.cpu_label, ratio=cache_claim.ratio, extras={"cache_MB": cache.nbytes / 2**20}),
]
record_chapter(4, entries, claims)
ledger_table(entries).round(2)

# %% [markdown]
# **Take-aways**
# 1. Measure the loader and the model separately before tuning either: speeding up the one that
#    is not the bottleneck buys nothing.
# 2. `num_workers` starts processes; throughput rises until the cores are busy, and each worker
#    costs start-up time (`persistent_workers` pays it once). Keep the Dataset in an importable module,
#    and call `gc.freeze()` before forking workers so that the collector does not copy the parent's heap.
# 3. Cache decoded data as one contiguous tensor, keep random augmentation on the fly, and cache
#    only what fits in RAM.
