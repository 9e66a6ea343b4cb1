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
# # Chapter 5 — Parallel and distributed training: torchrun, DDP, FSDP2, faults and the cost of communication
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dl-perf-course/dl-performance-workbook/blob/main/notebooks/ch05_distributed.ipynb) [![Launch Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/dl-perf-course/dl-performance-workbook/main?labpath=notebooks/ch05_distributed.ipynb)
#
# Training on several workers is the one optimisation whose cost is mostly *communication*: every
# step, the workers must agree on one gradient. This chapter launches real jobs with `torchrun`, the
# launcher clusters use, from the notebook: data parallelism with DDP (proved correct, then measured),
# a cost model of the all-reduce fitted to this machine and extrapolated to 64 workers, FSDP2 for a
# model that does not fit one worker, a job that loses a process and resumes without losing a step,
# and the same job on two "nodes". On a 2-core laptop, several processes share the same cores, so the
# speed-ups of a cluster cannot appear here; the chapter measures why and predicts where they would.
#
# **Estimated time:** ~60 min · **Hardware:** Any CPU with 2 or more cores (gloo); CUDA GPUs run the same jobs on NCCL

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
import math
import statistics
from dataclasses import asdict
import tempfile
import warnings

import ipywidgets as widgets
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DistributedSampler

from helpers.core.claims import make_claim, paired_ratio, report_claim
from helpers.core.memory import process_tree_memory_bytes, track_peak_memory
from helpers.support.chapter import setup_chapter
from helpers.support.ledger import ledger_table, make_entry, record_chapter
from helpers.support.source import show_source
from helpers.support.widgets import live_control
from helpers.ch05_distributed.comm_model import (
    AlphaBeta, LARGEST_WORLD, PUBLISHED_LINKS_BYTES_PER_S, fit_alpha_beta, predict_step, scaling_table,
)
from helpers.ch05_distributed.exercises import check_bucketed_allreduce_ms, check_gpu_count
from helpers.ch05_distributed.jobs.common import process_group
from helpers.ch05_distributed.launch import launch, launch_nodes, torchrun_command
from helpers.ch05_distributed.plots import plot_allreduce_fit, plot_scaling
from helpers.ch05_distributed.sharding_memory import OPTIMIZER_STATES, STAGES, bytes_per_parameter
import helpers.ch05_distributed.jobs.ddp as job_ddp
import helpers.ch05_distributed.jobs.fsdp as job_fsdp
import helpers.ch05_distributed.jobs.resume as job_resume

JOBS = "helpers.ch05_distributed.jobs"  # the modules torchrun runs in each process

hw = setup_chapter(5)
print(f"gloo available: {dist.is_gloo_available()}, NCCL available: {dist.is_nccl_available()}, "
      f"CUDA GPUs: {torch.cuda.device_count()}")
claims = []  # this chapter's speed claims, judged on this machine; recorded in the summary

# %% [markdown]
# ## 1. Why distributed training costs communication
# In **data parallelism** each of N workers holds a full copy of the model, trains on its own slice
# of the batch, and before the optimizer step the workers average their gradients with an
# **all-reduce**. A step then costs
#
# $$t_\text{step}(N) = t_\text{compute} + t_\text{exposed comm}(N), \qquad
# t_\text{all-reduce}(S, N) = 2(N-1)\,\alpha + \frac{2(N-1)}{N}\,\frac{S}{\beta}$$
#
# for S bytes of gradients, a link latency α and bandwidth β (the ring all-reduce: a reduce-scatter
# and an all-gather of 2(N−1) steps, each moving S/N bytes). The bytes per worker approach 2S as N
# grows: adding workers does not make the message cheaper, it only adds latency steps. So the
# question for every model and cluster is whether the exposed communication stays small next to the
# compute, which shrinks as the per-worker batch does. The other strategies change *what* travels:
# FSDP shards the parameters themselves and gathers them layer by layer (more traffic, much less
# memory); pipeline and tensor parallelism, which split the model across devices, are beyond this
# chapter.
#
# ## 2. Launching a job the way a cluster does
# A distributed program runs as N processes, one per worker. `torchrun` (the module
# `torch.distributed.run`) starts them, gives each its `RANK`, `LOCAL_RANK`, `WORLD_SIZE` and the
# address of a rendezvous store in the environment, watches them, and restarts the group if asked.
# The course's jobs are ordinary modules in `helpers/ch05_distributed/jobs/` (`ddp`, `allreduce`,
# `fsdp`, `resume`), so the same command runs them in a terminal, under SLURM or in a Kubernetes
# pod. From the notebook, `launch` (in `helpers/ch05_distributed/launch.py`) runs `torchrun` as a
# subprocess, shows every rank's lines as they arrive (torchrun's `--tee` prefixes them
# `[default0]:`), reads the result that rank 0 writes to a JSON file, and ends every process it
# started when the job ends, fails, times out or when you interrupt the kernel. The command it runs:

# %%
print(" ".join(torchrun_command(f"{JOBS}.ddp", nproc_per_node=2, args=["--result", "out.json"]))
      .replace(sys.executable, "python"))

# %% [markdown]
# Two environment choices are made on purpose. `OMP_NUM_THREADS`: each process would otherwise start
# as many compute threads as the machine has cores, and two processes on 2 cores would run 4 threads;
# torchrun sets it to 1 only when it starts several processes on one node (with a notice), so the
# launcher sets it explicitly (section 7 measures what happens without it). And the backend: gloo on
# the CPU, NCCL where each rank has a GPU. Every job enters its process group through one context
# manager, which leaves the group (`destroy_process_group`) however the job ends:

# %%
show_source(process_group)

# %% [markdown]
# ## 3. Data parallelism with DDP, correct and measured
# ### 3.1 Each rank its own data: `DistributedSampler` and `set_epoch`
# The sampler gives rank r every N-th index of one shuffled order, so the ranks' slices never
# overlap. It shuffles with a seed plus the epoch number, and the epoch only changes when you call
# `set_epoch`: forget it and every epoch repeats the first epoch's order. No process group is needed to
# see this; the sampler takes the rank and world size as arguments:

# %%
def first_indices(rank: int, epoch: int | None) -> list[int]:
    """The first 8 indices rank `rank` of 2 would train on in `epoch` (None: set_epoch never called)."""
    sampler = DistributedSampler(range(1797), num_replicas=2, rank=rank, shuffle=True, seed=0)
    if epoch is not None:
        sampler.set_epoch(epoch)
    return list(sampler)[:8]


pd.DataFrame({"rank 0, epoch 0": first_indices(0, 0), "rank 1, epoch 0": first_indices(1, 0),
              "rank 0, epoch 1 with set_epoch(1)": first_indices(0, 1),
              "rank 0, 'epoch 1' without set_epoch": first_indices(0, None)})

# %%
rank_slices = [set(DistributedSampler(range(1797), num_replicas=2, rank=r, shuffle=True, seed=0)) for r in (0, 1)]
print(f"indices per rank: {len(rank_slices[0])} and {len(rank_slices[1])}; shared by both ranks: "
      f"{len(rank_slices[0] & rank_slices[1])} (1,797 is odd: the sampler pads with one repeated index so that "
      f"both ranks run the same number of steps; drop_last=True drops it instead)")

# %% [markdown]
# ### 3.2 The DDP job
# The training step is the ordinary one; DDP hooks into `backward()` and averages the gradients
# across ranks bucket by bucket while backward is still running. `zero_grad` comes first in every
# step, because gradients accumulate by design (section 8 shows what happens without it):

# %%
show_source(job_ddp.train_step)

# %% [markdown]
# The job trains the digits MLP (64 → 4 × 512 → 10, 0.83 M parameters) for 20 steps on 2 processes
# at 32 images each, and rank 0 also trains the same model alone on the union of both ranks' 64 images
# per step. Then it times the step in interleaved rounds and tries DDP's knobs. Every process of a
# job loads PyTorch for itself, which costs memory (about 280 MB of its own for `import torch` alone):
# the cell reports the kernel's memory and the peak with the job's processes (torchrun's agent and 2
# workers). This is why chapter 5 has a larger memory budget than the other chapters, 2 GB, Binder's
# limit. `launch` also sets `MALLOC_MMAP_THRESHOLD_` for the job: without it glibc's allocator keeps the
# memory of freed tensors in each worker's heap, where it fragments and is never given back.

# %% tags=["nbval-ignore-output"]
kernel_bytes = process_tree_memory_bytes()
with track_peak_memory(interval_s=0.5) as job_memory:
    ddp_run = launch(f"{JOBS}.ddp", nproc=2)
ddp = ddp_run.result
print(f"job finished in {ddp_run.wall_s:.1f} s; memory: this kernel {kernel_bytes / 1e6:.0f} MB, with torchrun's agent "
      f"and the 2 workers {job_memory.peak_bytes / 1e6:.0f} MB at the peak")

# %% [markdown]
# **Is it correct?** After k steps, 2 ranks at 32 images should hold what 1 process at 64 holds: the
# averaged gradient of two means over 32 equals the mean over 64. Only the order of the additions
# differs, so the parameters can differ by rounding. How much rounding is normal? The job measures it:
# the single process trained once more on each batch in another order (the same images, added up in
# another order) gives the **reordering floor**. In float64 the test tolerance is a million times
# the float64 resolution of the largest parameter, still far below anything that matters; float32 is
# shown beside it:

# %% tags=["nbval-ignore-output"]
correctness = pd.DataFrame({dtype: {"largest |DDP - one process|": ddp["correctness"][dtype]["max_abs_diff_ddp_vs_single"],
                                    "reordering floor (one process, batch reordered)":
                                        ddp["correctness"][dtype]["max_abs_diff_reordered_batch"],
                                    "largest |parameter|": ddp["correctness"][dtype]["max_abs_parameter"]}
                            for dtype in ("float64", "float32")})
correctness.map(lambda v: f"{v:.2e}")

# %%
fp64 = ddp["correctness"]["float64"]
tolerance = 1e6 * torch.finfo(torch.float64).eps * fp64["max_abs_parameter"]
print(f"after {ddp['correctness']['steps']} steps, float64: DDP equals one process within {tolerance:.0e}: "
      f"{fp64['max_abs_diff_ddp_vs_single'] <= tolerance}")
print(f"the two ranks hold bitwise-identical parameters: float64 {fp64['ranks_bitwise_equal']}, "
      f"float32 {ddp['correctness']['float32']['ranks_bitwise_equal']}")

# %% tags=["nbval-ignore-output"]
fp32 = ddp["correctness"]["float32"]
if fp32["max_abs_diff_ddp_vs_single"] > 100 * fp32["max_abs_diff_reordered_batch"]:
    print(f"In float32 the gap ({fp32['max_abs_diff_ddp_vs_single']:.1e}) is far above the reordering floor "
          f"({fp32['max_abs_diff_reordered_batch']:.1e}): a rounding difference flipped a ReLU (a unit whose input "
          "was within rounding of 0), and from then on the two runs follow slightly different paths. That is "
          "float32 arithmetic, not a bug: float64 above agrees to its rounding level.")
else:
    print(f"In float32 the gap ({fp32['max_abs_diff_ddp_vs_single']:.1e}) is of the order of the reordering floor "
          f"({fp32['max_abs_diff_reordered_batch']:.1e}): rounding only.")

# %% [markdown]
# ### 3.3 Does it pay here? 2 processes against 1
# The fair comparison keeps the global batch (64 images per step) and the cores (2): one process
# with 2 threads, against DDP with 2 processes of 1 thread and 32 images each. The job alternates the
# variants in 8 rounds, in reversed order every other round.

# %% tags=["nbval-ignore-output"]
scaling = ddp["scaling"]["step_s"]
ddp_ratio = paired_ratio(scaling["1 process x 2 threads"], scaling["2 processes x 1 thread (DDP)"])
ddp_claim = make_claim(5, "ddp_two_processes", "DDP on 2 processes x 1 thread trains the MLP at least as fast as "
                       "1 process x 2 threads at the same global batch of 64", threshold=1.0, ratio=ddp_ratio,
                       hardware=hw.cpu_label)
claims.append(ddp_claim)
pd.Series({name: f"{statistics.median(times) * 1e3:.2f}" for name, times in scaling.items()},
          name="median step (ms)").to_frame()

# %% tags=["nbval-ignore-output"]
report_claim(ddp_claim,
             holds="Two processes won here: the all-reduce cost less than the threading overhead it replaced.",
             inconclusive="The rounds disagree (look at the medians above: one process is usually far faster); "
             "a busy spell during one round can stretch the interval. Re-run on an idle machine.",
             does_not_hold="Two processes lose here, as they must on one small machine: they share the same 2 "
             "cores that one process already used, so there is no extra compute, and each step now also "
             f"all-reduces {4 * ddp['parameters'] / 1e6:.1f} MB of gradients through the loopback network. Data parallelism pays when each "
             "worker brings its *own* compute (a GPU, a node); section 4 predicts when.")

# %% [markdown]
# ### 3.4 DDP's knobs, measured on the same job
# * **`bucket_cap_mb`** (default 25 MiB; the first bucket is kept to 1 MiB so that communication
#   starts early, but only while `bucket_cap_mb` is left at its default: given a cap, every bucket has
#   it): gradients are packed into buckets and each bucket is all-reduced as soon as all
#   its gradients are ready. Smaller buckets start earlier but each pays the latency α.
# * **`gradient_as_bucket_view=True`**: the `.grad` tensors become views into the buckets, so the
#   gradients are not stored twice (once per parameter, once per bucket). Only while they live: zero
#   them in place (`zero_grad(set_to_none=False)`), because setting them to `None` drops the views and
#   DDP allocates fresh gradients at the next backward. The job does that for this variant.
# * **A communication hook**: `bf16_compress_hook` casts each bucket to bfloat16 before the
#   all-reduce and back after: half the bytes, at the price of rounding each gradient to 8
#   significant bits (7 stored mantissa bits).
#
# The all-reduce calls and bytes per step come from the profiler's record of each collective (its
# shape and dtype), not from a formula:

# %%
knobs = ddp["knobs"]
base_name = "default (25 MiB buckets)"
pd.DataFrame({name: {"all-reduce calls per step": k["calls"], "bytes per step": k["bytes"],
                     "dtype on the wire": ", ".join(k["dtypes"]).replace("c10::", ""),
                     "gradient storages": k["gradient_storages"]} for name, k in knobs.items()}).T

# %% tags=["nbval-ignore-output"]
knob_ratios = {name: paired_ratio(knobs[base_name]["step_s"], k["step_s"]) for name, k in knobs.items()
               if name != base_name}
pd.DataFrame({name: {"median step (ms)": f"{statistics.median(k['step_s']) * 1e3:.2f}",
                     "against default (> 1: faster)": str(knob_ratios[name]) if name in knob_ratios else "baseline"}
              for name, k in knobs.items()}).T

# %% [markdown]
# Read the first table: the 1 MiB cap splits the same bytes into more calls (a 1 MiB weight matrix
# cannot be split, so each gets its own bucket); the view leaves one gradient storage per bucket
# instead of one per parameter; the bf16 hook sends exactly half the bytes. Whether any of that makes
# the step faster is the second table's business, read here:

# %% tags=["nbval-ignore-output"]
for name, ratio in knob_ratios.items():
    reading = {"gain": "faster than the default", "loss": "slower than the default",
               "no gain": "not distinguishable from the default"}[ratio.gain]
    print(f"{name}: {ratio.median:.2f}x, {reading} on this machine")
if knob_ratios["bf16_compress_hook"].gain != "gain":
    print("Half the bytes did not buy time here. A likely reason: on a loopback link between two processes "
          "that share the same cores, the all-reduce is limited by the CPU work of copying and summing rather "
          "than by bytes on a wire, and the hook adds a cast to bf16 and back (gloo then sums bf16 on the CPU). "
          "Compression pays where the link, not the CPU, is the bottleneck: many workers on a slow network.")

# %% [markdown]
# What bf16 costs in accuracy, from the same step's gradient all-reduced both ways:

# %% tags=["nbval-ignore-output"]
bf16_bytes_ratio = knobs[base_name]["bytes"] / knobs["bf16_compress_hook"]["bytes"]
rounding = ddp["bf16_rounding"]
print(f"bytes per all-reduce, fp32 / bf16: {bf16_bytes_ratio:.2f}x")
print(f"gradient error of bf16 compression: median relative {rounding['median_relative_error']:.1e}; "
      f"bf16 keeps 8 significant bits, so each rounding errs by at most 2^-8 = {2 ** -8:.1e} relative, and the hook "
      f"rounds twice (the cast, then the sum); largest absolute {rounding['max_abs_error']:.1e} for gradients up to "
      f"{rounding['max_abs_gradient']:.1e}")

# %% [markdown]
# **`no_sync()` for gradient accumulation.** To train with a global batch larger than memory allows,
# a rank runs several micro-batches and steps the optimizer once. Without care DDP all-reduces after
# every micro-batch; inside `with model.no_sync():` it only accumulates locally, and the last
# micro-batch's backward all-reduces the sum once:

# %%
show_source(job_ddp.accumulation_step)

# %%
accumulation = ddp["no_sync"]
print(f"all-reduce calls per optimizer step of 4 micro-batches: {accumulation['without no_sync']['calls']} without "
      f"no_sync, {accumulation['with no_sync']['calls']} with it")
print("the accumulated gradients agree (to 1e-6 of the largest): "
      f"{accumulation['max_abs_gradient_difference'] <= 1e-6 * accumulation['max_abs_gradient']}")

# %% [markdown]
# Fewer calls by the accumulation factor, and the same gradient. What does it buy in time? The job
# timed the optimizer step both ways in alternating rounds, and summed the time each bucket's
# all-reduce took from its start to its end (those intervals overlap backward and each other, and
# include waiting for the other rank, so the sum is a measure of communication activity, not a slice
# of the step).

# %% tags=["nbval-ignore-output"]
accumulation_timing = ddp["no_sync_timing"]
no_sync_ratio = paired_ratio(accumulation_timing["without no_sync"]["step_s"],
                             accumulation_timing["with no_sync"]["step_s"])
no_sync_claim = make_claim(5, "no_sync_accumulation", "no_sync() over 4 micro-batches makes the optimizer step at "
                           "least 1.5x faster", threshold=1.5, ratio=no_sync_ratio, hardware=hw.cpu_label)
claims.append(no_sync_claim)
pd.DataFrame({name: {"optimizer step (ms)": f"{statistics.median(a['step_s']) * 1e3:.1f}",
                     "summed bucket all-reduce time (ms)": f"{statistics.median(a['summed_allreduce_s']) * 1e3:.1f}"}
              for name, a in accumulation_timing.items()}).T

# %% tags=["nbval-ignore-output"]
report_claim(no_sync_claim,
             holds="Three of the four all-reduces are gone from every optimizer step, and the step time with them: "
             "here communication was a large part of the step.",
             does_not_hold="The calls fell by the accumulation factor, but the step did not get 1.5x faster on this "
             "run: communication was a smaller part of the step than the compute of 4 micro-batches.")

# %% [markdown]
# ## 4. A cost model, measured
# ### 4.1 Latency and bandwidth of this machine's all-reduce
# The next job times `all_reduce` of fp32 tensors from 8 bytes to 32 MB between 2 processes, the sizes
# visited in turn in each of 3 rounds. Small messages measure α (the time to say anything at all);
# large ones measure β.

# %% tags=["nbval-ignore-output"]
sweep = launch(f"{JOBS}.allreduce", nproc=2).result
sizes = sweep["sizes_bytes"]
median_times = [statistics.median(t) for t in sweep["seconds"]]
loopback = fit_alpha_beta(sizes, median_times, world=2)
print(f"{sweep['backend']} on this machine: alpha = {loopback.latency_s * 1e6:.0f} us per message step, "
      f"beta = {loopback.bandwidth_bytes_per_s / 1e9:.2f} GB/s")

# %% tags=["nbval-ignore-output"]
plot_allreduce_fit(sizes, sweep["seconds"], loopback, world=2, hardware=hw.cpu_label)

# %% [markdown]
# Below roughly N·α·β bytes (the knee of the curves) a message costs its latency whatever its size;
# above it, its bytes. That is why DDP packs gradients into buckets of megabytes instead of sending
# each small tensor alone, and why the bandwidth a benchmark reports depends on the message size.

# %% tags=["nbval-ignore-output"]
small, large = sizes.index(2048), len(sizes) - 1
small_bw, large_bw = (2 * (2 - 1) / 2 * sizes[i] / median_times[i] for i in (small, large))
print(f"bus bandwidth at 2 KB: {small_bw / 1e6:.1f} MB/s; at {sizes[large] / 2 ** 20:.0f} MB: {large_bw / 1e9:.2f} GB/s "
      f"({large_bw / small_bw:.0f}x more of the link used)")

# %% [markdown]
# ### 4.2 From this machine to a cluster
# Now the measured pieces go into the model. Compute time: the DDP job timed one process with one
# thread at the per-rank batch (32 images) for the full step and for the forward pass alone, so the
# backward and optimizer step (what communication can hide behind, slightly generously) are their
# difference. Gradient bytes: 0.83 M fp32
# parameters. Links: this machine's loopback with the α and β fitted above, and three published
# bandwidths (10 and 100 Gb/s Ethernet, NVLink 4 on an H100 SXM) with **no latency at all**: we have
# not measured those links, and borrowing gloo's α from a loopback socket would charge NVLink a
# software latency it does not have. Their lines are therefore the best case; a real link adds its
# latency 2(N−1) times per bucket (the widget below lets you add it). Workers scale *weakly*: each
# keeps 32 images, so the global batch grows with N.

# %% tags=["nbval-ignore-output"]
compute_s = statistics.median(scaling["1 process x 1 thread, per-rank batch"])
forward_s = statistics.median(scaling["1 process x 1 thread, forward only"])
step_inputs = dict(compute_s=compute_s, backward_s=compute_s - forward_s, gradient_bytes=4 * ddp["parameters"],
                   bucket_bytes=25 * 2 ** 20)
links = {"loopback (measured)": loopback,
         **{f"{name}, no latency": AlphaBeta(0.0, rate) for name, rate in PUBLISHED_LINKS_BYTES_PER_S.items()}}
largest = {f"{name}, no latency": cap for name, cap in LARGEST_WORLD.items()}
worlds = [1, 2, 4, 8, 16, 32, 64]
predictions = {overlap: scaling_table(worlds, links, overlap=overlap, largest_world=largest, **step_inputs)
               for overlap in (True, False)}
measured_points = {1: compute_s, 2: statistics.median(scaling["2 processes x 1 thread (DDP)"])}
predicted_two = predict_step(world=2, link=loopback, overlap=True, **step_inputs).step_s
print(f"compute per step {compute_s * 1e3:.2f} ms (backward and update {step_inputs['backward_s'] * 1e3:.2f} ms); "
      f"2 workers on loopback: predicted {predicted_two * 1e3:.2f} ms, measured {measured_points[2] * 1e3:.2f} ms")

# %% tags=["nbval-ignore-output"]
plot_scaling({"with overlap": predictions[True], "without overlap": predictions[False]}, measured_points,
             hardware=hw.cpu_label)

# %% tags=["nbval-ignore-output"]
miss = measured_points[2] / predicted_two
print(f"The measured 2-process step is {miss:.2f}x the prediction. "
      + ("The model is close: the all-reduce is the whole story here." if 0.67 < miss < 1.5 else
         "The model misses here by more than 1.5x. The likely reason: on 2 shared cores each process's compute "
         "competes with the other process and with gloo's threads, which the model (a core per worker, a "
         "dedicated link) leaves out."))
with_overlap = predictions[True]
print("Predicted efficiency with overlap, at 2 workers and at the most each link joins (NVLink: 8): "
      + "; ".join(f"{link} {rows['efficiency'].iloc[1]:.0%} and {rows['efficiency'].iloc[-1]:.0%}"
                  for link, rows in with_overlap.groupby("link", sort=False)))

# %% [markdown]
# Read the efficiency panel: with bandwidth alone, efficiency drops most from N = 1 to 2 and then
# keeps sliding slowly, as the bytes per worker grow from S (N = 2) towards 2S; what grows with N
# without limit is the latency term, 2(N−1)α per bucket, which is why the measured loopback line,
# with the α of a software socket, falls to the bottom. (Libraries such as NCCL switch to tree
# algorithms at scale, whose latency grows like log N: the ring's latency is the pessimistic case.)
# NVLink's line stops at 8 workers, the GPUs one HGX board connects. This small MLP computes only a
# few milliseconds per step, so it needs a fast link; a model with more compute per byte of gradient
# (a CNN, a larger batch per worker) tolerates a slower one.
#
# The widget scales a model like this MLP from 0.1 M to 1 B parameters (about 6 FLOPs per parameter
# per sample for forward and backward, as for a transformer per token), at the FLOP rate this machine
# reached on the MLP, and applies the latency you set to the link you pick.
#
# ### 4.3 Explore: model size, link, workers, buckets, overlap

# %% tags=["nbval-ignore-output"]
flops_per_s = 6 * ddp["parameters"] * ddp["correctness"]["per_rank_batch"] / compute_s
backward_share = step_inputs["backward_s"] / compute_s


bandwidths = {"loopback (measured)": loopback.bandwidth_bytes_per_s, **PUBLISHED_LINKS_BYTES_PER_S}


def predicted_step(parameters_m: float, link: str, latency_us: float, workers: int, bucket_mb: int, overlap: bool,
                   per_worker_batch: int = 32) -> pd.DataFrame:
    """The model's step for these settings, with compute scaled from this machine's measured FLOP rate."""
    if workers > LARGEST_WORLD.get(link, workers):
        raise ValueError(f"{link} joins at most {LARGEST_WORLD[link]} GPUs (one board): choose fewer workers")
    compute = 6 * parameters_m * 1e6 * per_worker_batch / flops_per_s
    first_bucket = 2 ** 20 if bucket_mb == 25 else bucket_mb * 2 ** 20  # DDP's 1 MiB first bucket: default cap only
    p = predict_step(world=workers, compute_s=compute, backward_s=backward_share * compute,
                     gradient_bytes=4e6 * parameters_m, link=AlphaBeta(latency_us * 1e-6, bandwidths[link]),
                     bucket_bytes=bucket_mb * 2 ** 20, overlap=overlap, first_bucket_bytes=first_bucket)
    return pd.DataFrame(index=["predicted"], data={
        "step (ms)": [f"{p.step_s * 1e3:.1f}"], "compute (ms)": [f"{p.compute_s * 1e3:.1f}"],
        "all-reduce (ms)": [f"{p.comm_s * 1e3:.1f}"], "efficiency": [f"{p.efficiency:.0%}"],
        "communication share": [f"{p.comm_share:.0%}"]})


live_control(predicted_step,
             parameters_m=widgets.FloatLogSlider(value=25, base=10, min=-1, max=3, description="params (M)"),
             link=widgets.Dropdown(options=list(bandwidths), value="10 Gb/s Ethernet", description="link"),
             latency_us=widgets.FloatSlider(value=round(loopback.latency_s * 1e6), min=0, max=500, step=1,
                                            description="latency (us)"),
             workers=widgets.SelectionSlider(options=[2, 4, 8, 16, 32, 64, 128, 256], value=8, description="workers"),
             bucket_mb=widgets.IntSlider(value=25, min=1, max=200, description="bucket (MiB)"),
             overlap=widgets.Checkbox(value=True, description="overlap"))

# %% [markdown]
# The latency starts at the α measured here (a software socket's: set your network's own if you know
# it). Things to try: at 25 M parameters on 10 Gb/s Ethernet,
# compare 8 and 64 workers; then switch the link to NVLink and set the latency to a few
# microseconds. Shrink the buckets to 1 MiB with many workers and watch the latency term grow.
# Without a kernel (in the book), here is the widget's default setting:

# %% tags=["nbval-ignore-output"]
predicted_step(25, "10 Gb/s Ethernet", round(loopback.latency_s * 1e6), 8, 25, True)

# %% [markdown]
# ## 5. When the model does not fit: FSDP2
# DDP replicates everything on every worker. **Fully sharded data parallelism** stores each parameter,
# its gradient and its optimizer state only once across the workers: `fully_shard` turns every
# parameter into a `DTensor` sharded on its first dimension. Before a layer runs, its full weight is
# all-gathered; after backward, its gradient is reduce-scattered so each rank keeps only its shard;
# the optimizer then updates only that shard. The job wraps each Linear, then the model:

# %%
show_source(job_fsdp.sharded_model)

# %% tags=["nbval-ignore-output"]
fsdp_runs = {n: launch(f"{JOBS}.fsdp", nproc=n).result for n in (1, 2)}

# %%
fsdp_table = pd.DataFrame({f"{n} rank{'s' if n > 1 else ''}": {
    "parameters in the model": r["parameters"], "parameters are DTensors": r["is_dtensor"],
    "placement": r["placements"], "parameter bytes per rank": r["parameter_bytes"],
    "gradient bytes per rank": r["gradient_bytes"], "Adam state bytes per rank": r["optimizer_bytes"]}
    for n, r in fsdp_runs.items()})
fsdp_table

# %%
def held_bytes(run: dict) -> int:
    """Parameter, gradient and optimizer bytes that one rank holds."""
    return run["parameter_bytes"] + run["gradient_bytes"] + run["optimizer_bytes"]


fsdp_memory_ratio = held_bytes(fsdp_runs[1]) / held_bytes(fsdp_runs[2])
print(f"training state per rank, 1 rank / 2 ranks: {fsdp_memory_ratio:.2f}x (target: at least 1.9x): "
      f"{'met' if fsdp_memory_ratio >= 1.9 else 'missed'}")

# %%
print(f"held only for a moment: the largest layer's gathered weights, {fsdp_runs[2]['largest_gathered_layer_bytes']:,} "
      "bytes, while that layer runs (FSDP2 frees them again after forward, and re-gathers for backward)")

# %% [markdown]
# The price is communication. Each launch also trained the same model under DDP, alternating with
# FSDP2 in every round (64 images per rank, Adam), so the two can be compared at the same world size:

# %% tags=["nbval-ignore-output"]
fsdp_price = {n: paired_ratio(r["step_s"]["DDP"], r["step_s"]["FSDP2"]) for n, r in fsdp_runs.items()}
pd.DataFrame({f"{n} rank{'s' if n > 1 else ''}": {
    "DDP step (ms)": f"{statistics.median(r['step_s']['DDP']) * 1e3:.1f}",
    "FSDP2 step (ms)": f"{statistics.median(r['step_s']['FSDP2']) * 1e3:.1f}",
    "FSDP2 against DDP (> 1: faster)": str(fsdp_price[n])} for n, r in fsdp_runs.items()})

# %% tags=["nbval-ignore-output"]
alone, price = fsdp_price[1], fsdp_price[2]
print(f"With 1 rank, where nothing travels, FSDP2 runs at {alone.median:.2f}x DDP's speed: that is the cost of its "
      "per-layer hooks and DTensor bookkeeping on a model this small. With 2 ranks it runs at "
      f"{price.median:.2f}x; the part not explained by that overhead, about {price.median / alone.median:.2f}x, "
      "is its extra communication: it all-gathers every layer's weights in forward and again in backward and "
      "reduce-scatters the gradients, where DDP only all-reduces the gradients. The memory it saves is paid "
      "for in time." if price.gain == "loss" else
      f"With 2 ranks FSDP2 runs at {price.median:.2f}x DDP's speed ({alone.median:.2f}x with 1 rank): not "
      "clearly slower on this run.")

# %% [markdown]
# ### 5.1 The memory arithmetic that decides a real job
# Bytes per parameter, before activations, for each precision and sharding stage (ZeRO's stages 1
# to 3; FSDP's full sharding is stage 3), on 8 workers:

# %%
pd.DataFrame({stage: {precision: bytes_per_parameter(precision, stage, 8) for precision in OPTIMIZER_STATES}
              for stage in STAGES}).T.rename(columns=lambda c: f"{c} (bytes/param, 8 workers)")

# %% [markdown]
# At 16 bytes per parameter, one 80 GB GPU holds the training state of at most 5 billion parameters
# with plain DDP, whatever the number of GPUs, because DDP replicates. Fully sharded over N GPUs the
# limit grows N-fold, minus the activations and the gathered layer that each GPU still needs.

# %%
pd.DataFrame({f"{n} x 80 GB": {stage: f"{80e9 / bytes_per_parameter('mixed-precision Adam', stage, n) / 1e9:.1f} B"
                               for stage in STAGES} for n in (1, 8, 64)}).rename_axis("largest model (mixed-precision Adam)")

# %% [markdown]
# ## 6. Faults: a restart that loses nothing
# On a cluster, a process dies: a node reboots, the out-of-memory killer strikes. The job that
# survives it saves checkpoints as it goes and resumes from the last one. `torch.distributed.checkpoint`
# (DCP) saves each rank's part in parallel and writes a `.metadata` file last, so a checkpoint
# interrupted half-way is recognisable and ignored. `torchrun --max-restarts=1` restarts the whole
# group once when a rank fails. The data order depends only on the step number (the sampler and
# `set_epoch`), so the resumed job sees exactly the batches the lost one would have:

# %%
show_source(job_resume.save_checkpoint)

# %%
show_source(job_resume.load_checkpoint)

# %% [markdown]
# Rank 1 kills itself with SIGKILL at step 12 of 30 (checkpoints every 5 steps). Rank 0, waiting for
# it inside an all-reduce, fails with "Connection reset by peer" (the last line of its traceback is
# shown below); torchrun reports the failure, ends rank 0, starts both again, and they resume from
# step 10:

# %% tags=["nbval-ignore-output"]
with tempfile.TemporaryDirectory(prefix="course-ckpt-") as checkpoints:
    resumed_run = launch(f"{JOBS}.resume", nproc=2, max_restarts=1, echo=False,
                         args=["--checkpoint-dir", checkpoints, "--kill-rank", 1, "--kill-at-step", 12])
resumed = resumed_run.result
for line in resumed_run.lines:  # rank 0's traceback shortened to its last line
    if "[rank0]:" not in line or "Error:" in line:
        print(line)

# %%
print(f"the job finished on attempt {resumed['attempt']} (0 is the first), resuming from step "
      f"{resumed['resumed_from_step']} of {resumed['steps']}")

# %% [markdown]
# Are its final parameters those of a run that was never interrupted? The same job once more, without
# the kill. (After training, this run also times a DDP step with 2 threads per process against 1, for
# section 7.)

# %% tags=["nbval-ignore-output"]
default_threads = max(torch.get_num_threads(), 2)  # this kernel started without OMP_NUM_THREADS: the default
with tempfile.TemporaryDirectory(prefix="course-ckpt-") as checkpoints:
    uninterrupted = launch(f"{JOBS}.resume", nproc=2,
                           args=["--checkpoint-dir", checkpoints, "--time-threads", default_threads]).result

# %%
print(f"interrupted-then-resumed and uninterrupted runs end with bitwise-identical parameters: "
      f"{uninterrupted['parameters_sha256'] == resumed['parameters_sha256']}")

# %% [markdown]
# Bitwise, not approximately: the resumed run loaded exactly the state of step 10 (weights and the
# optimizer's momentum) and replayed steps 10 to 29 on the same batches. A job that instead resumed
# from the weights alone, or re-shuffled its data on restart, would end elsewhere.
#
# ## 7. Beyond one machine
# ### 7.1 Threads per process
# torchrun sets `OMP_NUM_THREADS=1` when it starts several processes on one node, and leaves it alone
# when it starts one. Each process without the setting starts as many compute threads as the machine
# has cores, which is right for one process per machine, and wrong as soon as processes share a
# machine outside that default: two "nodes" on one host (section 7.2), one process per GPU started by
# a scheduler instead of torchrun, `mp.spawn`. The uninterrupted run above timed what that costs on
# this machine: each of its 2 processes with the thread count a process gets here by default against
# 1 thread each.

# %% tags=["nbval-ignore-output"]
threads = uninterrupted["threads"]
omp_ratio = paired_ratio(threads["many_threads_s"], threads["one_thread_s"])
omp_claim = make_claim(5, "omp_one_thread_per_process", "1 thread per process makes the 2-process DDP step at least "
                       f"1.2x faster than {threads['threads']} threads per process on this machine", threshold=1.2,
                       ratio=omp_ratio, hardware=hw.cpu_label)
claims.append(omp_claim)
report_claim(omp_claim,
             holds=f"With {threads['threads']} threads in each of 2 processes, {2 * threads['threads']} threads share "
             f"{hw.cpu_cores} cores and wait for each other at every parallel region; one thread per process ends "
             "the contention. Set OMP_NUM_THREADS to (cores per node) / (processes per node) in every launch.",
             does_not_hold="The oversubscription cost little on this run: check how many cores this machine "
             "really gives you (a container may allow fewer than it reports), and re-run.")

# %% [markdown]
# ### 7.2 Two nodes on 127.0.0.1, the same job unchanged
# On a cluster each node runs one `torchrun` agent; the agents meet at a **rendezvous** endpoint
# (`--rdzv-backend=c10d --rdzv-endpoint=HOST:PORT`), agree on the ranks, and start their workers.
# Here both "nodes" can be this machine, meeting on a free port chosen at run time, each running one
# process with `OMP_NUM_THREADS` left unset as on a real node. It is **opt-in**: its two agents and
# two workers each load PyTorch, one process more than the jobs above, and the chapter must stay
# within its memory budget on small machines (the cell below estimates the peak from the DDP launch's
# measurement). Set `RUN_TWO_NODES = True` to run it; the course's tests run it on every `make test`
# and check that it ends with the same parameters.

# %% tags=["nbval-ignore-output"]
RUN_TWO_NODES = False
per_process_mb = (job_memory.peak_bytes - kernel_bytes) / 3 / 1e6
# This chapter's memory budget, as book.toml states it (four PyTorch processes at once); a test keeps both equal.
budget_gb = 2.0
two_node_peak_gb = (kernel_bytes + 4 * per_process_mb * 1e6) / 1e9
print(f"measured above: this kernel {kernel_bytes / 1e6:.0f} MB, and about {per_process_mb:.0f} MB for each process "
      f"of a job; two nodes would peak near {two_node_peak_gb:.2f} GB, "
      + (f"{two_node_peak_gb - budget_gb:.2f} GB over" if two_node_peak_gb > budget_gb else
         f"{budget_gb - two_node_peak_gb:.2f} GB under")
      + f" the chapter's budget of {budget_gb} GB")
if RUN_TWO_NODES:
    with tempfile.TemporaryDirectory(prefix="course-ckpt-") as checkpoints:
        two_nodes = launch_nodes(f"{JOBS}.resume", nodes=2, threads_per_process=None,
                                 args=["--checkpoint-dir", checkpoints, "--time-threads", default_threads]).result
    print(f"two nodes: same parameters as the one-node runs: "
          f"{two_nodes['parameters_sha256'] == uninterrupted['parameters_sha256']}; each process started with "
          f"OMP_NUM_THREADS={two_nodes['threads']['omp_num_threads']} and {two_nodes['threads']['started_with']} "
          f"threads; {paired_ratio(two_nodes['threads']['many_threads_s'], two_nodes['threads']['one_thread_s'])} "
          "faster with 1 thread each")
else:
    print("Two-node run skipped (opt-in: set RUN_TWO_NODES = True). Its two agents run:")
    for node in range(2):
        print("  " + " ".join(torchrun_command(f"{JOBS}.resume", nproc_per_node=1, nnodes=2,
                                               rdzv_endpoint="127.0.0.1:PORT", args=["--checkpoint-dir", "ckpt"]))
              .replace(sys.executable, "python"))

# %% [markdown]
# ### 7.3 The same job on a real cluster
# Nothing in the job changes; only the launch does. **Two hosts by hand** (run the same line on
# each, with `node0.example` reachable from the other on port 29500; 8 GPUs per host, and 8 threads
# per process for hosts with 64 cores):
# ```bash
# OMP_NUM_THREADS=8 torchrun --nnodes=2 --nproc-per-node=8 \
#     --rdzv-backend=c10d --rdzv-endpoint=node0.example:29500 --rdzv-id=job42 \
#     -m helpers.ch05_distributed.jobs.resume --device cuda --checkpoint-dir /shared/ckpt --result /shared/result.json
# ```
# **SLURM**: one task per node; `srun` starts torchrun on each node, and the first node of the
# allocation hosts the rendezvous. A batch script (`sbatch job.sh`):

# %%
print("""#!/bin/bash
#SBATCH --nodes=2 --ntasks-per-node=1 --gpus-per-node=8 --cpus-per-task=64
export OMP_NUM_THREADS=$((SLURM_CPUS_PER_TASK / 8))   # cores per task / processes per node
head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
srun --cpus-per-task="$SLURM_CPUS_PER_TASK" torchrun --nnodes="$SLURM_NNODES" --nproc-per-node=8 \\
    --rdzv-backend=c10d --rdzv-endpoint="$head:29500" --rdzv-id="$SLURM_JOB_ID" --max-restarts=1 \\
    -m helpers.ch05_distributed.jobs.resume --device cuda --checkpoint-dir /shared/ckpt --result /shared/result.json""")

# %% [markdown]
# **Kubernetes** with Kubeflow Trainer (v2): a `TrainJob` that uses the cluster's `torch-distributed`
# runtime, which sets up the rendezvous and torchrun's arguments on every node. The checkpoint folder
# must be a volume every pod mounts (a shared PersistentVolumeClaim, configured in the runtime):
# ```yaml
# apiVersion: trainer.kubeflow.org/v1alpha1
# kind: TrainJob
# metadata: {name: digits-ddp}
# spec:
#   runtimeRef: {name: torch-distributed}
#   trainer:
#     image: registry.example/dl-course:latest
#     command: [torchrun, -m, helpers.ch05_distributed.jobs.resume, --device, cuda, --checkpoint-dir, /shared/ckpt,
#               --result, /shared/result.json]
#     numNodes: 2
#     resourcesPerNode: {limits: {nvidia.com/gpu: 8}}
# ```
# Clusters still on the older Kubeflow Training Operator (v1) describe the same job as a
# `PyTorchJob` (`apiVersion: kubeflow.org/v1`, with `pytorchReplicaSpecs` and an `elasticPolicy`); the
# Trainer's migration guide maps one to the other.
#
# ### 7.4 Where Horovod went
# The article names Horovod beside DDP as a common framework for multi-machine training. Horovod has
# had no release since 0.28.1 (June 2023). What it provided is now in PyTorch itself: `torchrun`
# launches and restarts (Horovod had `horovodrun`), DDP averages gradients with overlapped, bucketed
# all-reduce (`hvd.DistributedOptimizer`), FSDP2 shards what does not fit, and DCP checkpoints in
# parallel. DeepSpeed and Ray Train are other engines built on the same collectives. The article shows
# no Horovod code; for readers who meet it in older projects, a typical Horovod set-up beside its
# PyTorch equivalent:
# ```python
# # Horovod (no release since June 2023)              # PyTorch today, launched by torchrun
# hvd.init()                                           # dist.init_process_group()   (backend by device)
# torch.cuda.set_device(hvd.local_rank())              # torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
# optimizer = hvd.DistributedOptimizer(                # model = DDP(model, device_ids=[local_rank])
#     optimizer, named_parameters=model.named_parameters())
# hvd.broadcast_parameters(model.state_dict(), 0)      # (DDP broadcasts rank 0's weights at construction)
# ```

# %% [markdown]
# ## 8. What the source article got wrong
# The article's DDP snippet, and what each line needs:
#
# 1. **`dist.init_process_group(backend='nccl')` with no launcher and no device.** The default
#    `env://` method reads `RANK`, `WORLD_SIZE`, `MASTER_ADDR` and `MASTER_PORT` from the environment,
#    which `torchrun` sets; run as a plain script it fails at once. Each process must also select its
#    own GPU before it joins (`torch.cuda.set_device(local_rank)`, or `device_id=` in
#    `init_process_group`), which the snippet never does. And NCCL only moves GPU tensors: on a CPU the
#    backend is gloo. Run here, in this kernel, without a launcher:

# %%
try:
    dist.init_process_group(backend="nccl")  # the article's call, without torchrun (was wrong)
except ValueError as error:
    print(f"{type(error).__name__}: {error}")

# %% [markdown]
# 2. **`DDP(model, device_ids=[device])` with no `LOCAL_RANK`** (was wrong). Each process picks *its* GPU,
#    `device_ids=[int(os.environ["LOCAL_RANK"])]`; a fixed device puts every rank on the same GPU.
#    On the CPU, `device_ids` must be left out. A one-process group in this kernel is enough to see
#    the error, and the warning that the deprecated `broadcast_buffers` now gives (read its caveat:
#    the new `forward_sync_buffers=False` still synchronises buffers once, at construction):

# %%
dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
try:
    DDP(nn.Linear(4, 2), device_ids=[0])  # the article's device_ids on a CPU model (was wrong)
except ValueError as error:
    print(f"{type(error).__name__}: {str(error)[:150]}...")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    DDP(nn.Linear(4, 2), broadcast_buffers=False)  # deprecated name (PyTorch 2.13+), shown for its warning
print(f"{caught[0].category.__name__}: {caught[0].message}" if caught else
      f"no warning from torch {torch.__version__}: the name is deprecated from PyTorch 2.13 on")
dist.destroy_process_group()

# %% [markdown]
# 3. **No `DistributedSampler`.** Without it every rank traverses the whole dataset every epoch: N
#    ranks do N times the work of one for the same epoch (and with the same shuffling seed, they even
#    compute the same gradients). Section 3.1 shows the sampler and its `set_epoch`.
# 4. **No `optimizer.zero_grad()`.** PyTorch adds each backward's gradient to `.grad`; without zeroing,
#    step k applies the sum of all k gradients so far:

# %%
layer = nn.Linear(3, 1)
for step in range(3):
    layer(torch.ones(1, 3)).sum().backward()  # no zero_grad between steps (was wrong)
    print(f"after backward {step + 1}: weight gradient {layer.weight.grad.tolist()[0]}")

# %% [markdown]
# 5. **No `destroy_process_group()`.** The process group holds sockets and threads; leave it at the
#    end (the course's jobs do, in `process_group()`'s `finally`), or the job may hang at exit or
#    print a warning about resources never released.
# 6. **`DataParallel` offered as the single-machine choice** (the article even runs the two class
#    names together, `torch.nn.DataParallelDistributedDataParallel`). `DataParallel`'s own
#    documentation recommends DistributedDataParallel instead, even on one machine: `DataParallel` is
#    one process with one thread per GPU, it copies the model to every GPU at every step and gathers
#    the outputs on GPU 0, and its threads contend for Python's GIL.
# 7. **Horovod as a current framework**: no release since June 2023 (section 7.4). And one current
#    name the snippet does not need but readers will meet: `python -m torch.distributed.launch` is
#    deprecated in favour of `torchrun`, which the course uses throughout.
#
# ## 9. On a GPU
# The same job modules run on NCCL with `--device cuda`: each rank takes the GPU of its `LOCAL_RANK`
# and DDP gets `device_ids=[local_rank]`. The cell starts one process per GPU. On one GPU the world size
# is 1 (nothing to all-reduce: DDP's overhead only, and the job's thread comparisons mean nothing on
# a GPU); with more GPUs, the all-reduce sweep measures the GPUs' own link.

# %% tags=["nbval-ignore-output"]
if torch.cuda.is_available():
    gpu_world = torch.cuda.device_count()
    gpu_run = launch(f"{JOBS}.ddp", nproc=gpu_world, args=["--device", "cuda", "--rounds", 4])
    gpu_fp64 = gpu_run.result["correctness"]["float64"]
    gpu_step = statistics.median(next(v for k, v in gpu_run.result["scaling"]["step_s"].items() if "(DDP)" in k))
    print(f"{gpu_world} GPU(s), backend nccl: DDP step {gpu_step * 1e3:.2f} ms; float64 DDP matches one process: "
          f"{gpu_fp64['max_abs_diff_ddp_vs_single'] <= 1e6 * torch.finfo(torch.float64).eps * gpu_fp64['max_abs_parameter']}")
    if gpu_world > 1:
        gpu_sweep = launch(f"{JOBS}.allreduce", nproc=gpu_world, args=["--device", "cuda"]).result
        gpu_link = fit_alpha_beta(gpu_sweep["sizes_bytes"], [statistics.median(t) for t in gpu_sweep["seconds"]],
                                  world=gpu_world)
        print(f"NCCL all-reduce: alpha {gpu_link.latency_s * 1e6:.1f} us, "
              f"beta {gpu_link.bandwidth_bytes_per_s / 1e9:.1f} GB/s")
else:
    print("No CUDA GPU here: the NCCL runs of these jobs are skipped. On a machine with GPUs, this cell "
          "launches the same job modules with one process per GPU.")

# %% [markdown]
# ## 10. Exercises
# **Exercise 1 (will it fit?).** A 13-billion-parameter model is to be trained with mixed-precision
# Adam and full sharding (FSDP) on GPUs of 80 GB. Ignoring activations and everything else, how many
# GPUs at least hold its training state?

# %%
my_gpu_count = ...  # your answer: a whole number of GPUs
check_gpu_count("Exercise 1", my_gpu_count)

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution"]
my_gpu_count = math.ceil(13e9 * (2 + 2 + 12) / 80e9)
check_gpu_count("Exercise 1", my_gpu_count)

# %% [markdown]
# **Exercise 2 (predict a cluster's communication).** ResNet-50 has 25.6 million parameters. It trains
# with DDP on 64 workers joined by 10 Gb/s Ethernet; assume a latency α of 50 µs per message step.
# DDP sends the fp32 gradients in buckets: the first of 1 MiB, then 25 MiB each, the last holding what
# remains. Predict, in milliseconds, the total time of all the buckets' ring all-reduces in one step
# (section 1's formula, per bucket). Within 5% passes.

# %%
my_allreduce_ms = ...  # your prediction, in ms
check_bucketed_allreduce_ms("Exercise 2", my_allreduce_ms)

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution"]
gradient_bytes, workers, alpha, beta, mib = 4 * 25.6e6, 64, 50e-6, 10e9 / 8, 2 ** 20
full_buckets, last = divmod(gradient_bytes - mib, 25 * mib)
buckets = [mib] + [25 * mib] * int(full_buckets) + [last]
my_allreduce_ms = 1e3 * sum(2 * (workers - 1) * alpha + 2 * (workers - 1) / workers * size / beta for size in buckets)
print(f"{len(buckets)} buckets: latency {1e3 * len(buckets) * 2 * (workers - 1) * alpha:.1f} ms of {my_allreduce_ms:.1f} ms")
check_bucketed_allreduce_ms("Exercise 2", my_allreduce_ms)

# %% [markdown]
# Nearly 200 ms of communication per step, a sixth of it latency. Whether that is affordable depends on
# the compute it can hide behind: with overlap, only what backward cannot cover is added to the step.
# Try it in the widget of section 4.3 (choose 25 M parameters, 10 Gb/s Ethernet, 64 workers, 50 µs):
# the widget's compute comes from this machine's rate for an MLP-like model, so read its efficiency
# as an example, not a forecast for a GPU cluster.
#
# %% [markdown]
# ## 11. Summary
# The results this run measured, recorded into the course's ledger for chapter 8:

# %% tags=["nbval-ignore-output"]
entries = [
    make_entry(5, "allreduce_bandwidth", metric="all-reduce bus bandwidth: one small tensor's 2 KB message against "
               "a 32 MB bucket (why DDP buckets)", unit="GB/s", baseline=small_bw / 1e9, optimized=large_bw / 1e9,
               higher_is_better=True, hardware=hw.cpu_label,
               extras={"latency_us": loopback.latency_s * 1e6, "bandwidth_GBps": loopback.bandwidth_bytes_per_s / 1e9,
                       "backend": sweep["backend"], "world_size": 2}),
    make_entry(5, "ddp_two_processes", metric="training step, global batch 64, 1 process x 2 threads against "
               "2 processes x 1 thread", unit="ms", baseline=statistics.median(scaling["1 process x 2 threads"]) * 1e3,
               optimized=statistics.median(scaling["2 processes x 1 thread (DDP)"]) * 1e3, higher_is_better=False,
               hardware=hw.cpu_label, ratio=ddp_ratio),
    make_entry(5, "fsdp2_memory", metric="parameter, gradient and Adam bytes per rank, 1 against 2 ranks",
               unit="MB", baseline=held_bytes(fsdp_runs[1]) / 1e6, optimized=held_bytes(fsdp_runs[2]) / 1e6,
               higher_is_better=False, hardware=hw.cpu_label,
               extras={"fsdp2_against_ddp_step_2_ranks": asdict(fsdp_price[2])}),
    make_entry(5, "no_sync_accumulation", metric="summed bucket all-reduce time per optimizer step, 4 micro-batches",
               unit="ms", baseline=statistics.median(accumulation_timing["without no_sync"]["summed_allreduce_s"]) * 1e3,
               optimized=statistics.median(accumulation_timing["with no_sync"]["summed_allreduce_s"]) * 1e3,
               higher_is_better=False, hardware=hw.cpu_label,
               ratio=paired_ratio(accumulation_timing["without no_sync"]["summed_allreduce_s"],
                                  accumulation_timing["with no_sync"]["summed_allreduce_s"]),
               extras={"calls": [accumulation["without no_sync"]["calls"], accumulation["with no_sync"]["calls"]],
                       "optimizer_step": asdict(no_sync_ratio)}),
    make_entry(5, "bf16_compress_hook", metric="bytes per all-reduce of the gradients", unit="bytes",
               baseline=knobs[base_name]["bytes"], optimized=knobs["bf16_compress_hook"]["bytes"],
               higher_is_better=False, hardware=hw.cpu_label,
               extras={"median_relative_error": rounding["median_relative_error"],
                       "step_time_against_default": asdict(knob_ratios["bf16_compress_hook"])}),
    make_entry(5, "omp_one_thread_per_process", metric="2-process DDP step, default threads against 1 per process",
               unit="ms", baseline=statistics.median(threads["many_threads_s"]) * 1e3,
               optimized=statistics.median(threads["one_thread_s"]) * 1e3, higher_is_better=False,
               hardware=hw.cpu_label, ratio=omp_ratio),
]
record_chapter(5, entries, claims)
ledger_table(entries).round(3)

# %% [markdown]
# **Take-aways**
# 1. Launch distributed code as modules with `torchrun`, as a cluster will: it sets the ranks, restarts
#    failed groups, and the same job then runs on one laptop, two hosts, SLURM or Kubernetes. Set
#    `OMP_NUM_THREADS` to cores per process yourself.
# 2. DDP is exact (float64 agrees to rounding; the ranks stay bitwise identical), but it pays only when
#    each worker brings its own compute: processes that share one machine's cores only add
#    communication (section 3.3 reads what yours measured). The alpha-beta model, fitted in seconds,
#    says how a step scales on a real link before you rent it.
# 3. FSDP2 divides the training state by the number of ranks at the price of more communication;
#    checkpoint with DCP and let torchrun restart, and a killed rank costs minutes, not the run.
