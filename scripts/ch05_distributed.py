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
# a cost model of the all-reduce fitted to this machine and extrapolated to a cluster, FSDP2 (which
# shards what one worker cannot hold; shown on a small model, and taken apart step by step), tensor
# parallelism on two processes, a job that loses a process and resumes without changing its result
# (on one node here; across two nodes in the tests, and here if you opt in), and what a hang looks like.
#
# The chapter is long. Sections marked *(reference, optional on a first reading)* hold the material a
# practitioner looks up later: the other kinds of parallelism in depth, the tools for a hang, and the
# launch recipes for clusters. Their cells run all the same.
# On a 2-core laptop, several processes share the same cores, so the speed-ups of a cluster cannot
# appear here; the chapter measures why and predicts where they would.
#
# **Estimated time:** ~120 min · **Hardware:** Any CPU with 2 or more cores (gloo); CUDA GPUs run the same jobs on NCCL

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
import contextlib
import statistics
import tempfile
import warnings
from collections.abc import Iterator
from functools import partial

import ipywidgets as widgets
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.distributed.constants import default_pg_nccl_timeout, default_pg_timeout
from torch.utils.data import DistributedSampler

from helpers.core.claims import make_claim, paired_ratio, report_claim
from helpers.core.memory import process_tree_memory_bytes, track_peak_memory
from helpers.support.chapter import setup_chapter
from helpers.support.ledger import ledger_table, make_entry, record_chapter
from helpers.support.source import show_source, show_source_unimported
from helpers.support.widgets import live_control
from helpers.ch05_distributed.bucket_timeline import overlapped_share, plot_bucket_timeline
from helpers.ch05_distributed.comm_model import (
    COMPUTE_CHOICES, DEFAULT_MFU, LARGEST_WORLD, THIS_CPU, achieved_flops_per_s, fit_alpha_beta,
    link_menu, model_step_inputs, predict_step, predicted_step_table, published_link, scaling_table,
)
from helpers.ch05_distributed.exercises import check_bucketed_allreduce, check_least_sharded_stage
from helpers.ch05_distributed.jobs.common import process_group, train_step
from helpers.ch05_distributed.launch import launch, launch_nodes, torchrun_command
from helpers.ch05_distributed.plots import plot_allreduce_fit, plot_scaling
from helpers.ch05_distributed.sharding_memory import OPTIMIZER_STATES, STAGES, bytes_per_parameter
import helpers.ch05_distributed.jobs.ddp as job_ddp
import helpers.ch05_distributed.jobs.overlap as job_overlap

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
# memory); tensor, pipeline, context and expert parallelism split the model itself, and send
# activations instead of gradients (section 6 says what each splits and sends, and runs one).
#
# ## 2. Launching a job the way a cluster does
# A distributed program runs as N processes, one per worker. `torchrun` (the module
# `torch.distributed.run`) starts them, gives each its `RANK`, `LOCAL_RANK`, `WORLD_SIZE` and the
# address of a rendezvous store in the environment, watches them, and restarts the group if asked.
# The course's jobs are ordinary modules in `helpers/ch05_distributed/jobs/` (`ddp`, `allreduce`,
# `fsdp`, `tensor_parallel`, `hang`, `resume`), so the same command runs them in a terminal, under SLURM or in a Kubernetes
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
# launcher sets it explicitly (section 8 measures what happens without it). And
# `TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`: without it, torchrun's agents keep one key-value store
# across restarts, and a restart across nodes can hang (section 7.2 shows why). The backend: gloo
# on the CPU, NCCL where each rank has a GPU. Every job enters its process group through one
# context manager, the plain `init_process_group`, which leaves the group
# (`destroy_process_group`) however the job ends:

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
# step, because gradients accumulate by design (section 9, item 4 shows what happens without it):

# %%
show_source(train_step)

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
# another order) gives the **reordering floor**. In float64 the test accepts 100 times that floor
# (or 100 times float64's resolution at the largest parameter, if the floor happens to be smaller):
# a wrong gradient, a missed bucket or an unaveraged sum would miss it by many orders of magnitude.
# float32 is shown beside it:

# %% tags=["nbval-ignore-output"]
correctness = pd.DataFrame({dtype: {"largest |DDP - one process|": ddp["correctness"][dtype]["max_abs_diff_ddp_vs_single"],
                                    "reordering floor (one process, batch reordered)":
                                        ddp["correctness"][dtype]["max_abs_diff_reordered_batch"],
                                    "largest |parameter|": ddp["correctness"][dtype]["max_abs_parameter"]}
                            for dtype in ("float64", "float32")})
correctness.map(lambda v: f"{v:.2e}")

# %%
fp64 = ddp["correctness"]["float64"]
tolerance = job_ddp.float64_tolerance(fp64)
print(f"after {ddp['correctness']['steps']} steps, float64: DDP equals one process within 100x the floor: "
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
#
# **Predict before you read the result.** Both variants use the same 2 cores on the same 64 images.
# What does the second one add, and what does it save? Write down which you expect to be faster, and
# by roughly how much, then read the claim below.

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
#   its gradients are ready. Smaller buckets start earlier but each pays the latency α. At the far
#   end, a cap smaller than any gradient gives **one bucket per gradient tensor**: one all-reduce per
#   parameter tensor, what data parallelism costs without buckets.
# * **`gradient_as_bucket_view=True`**: the `.grad` tensors become views into the buckets, so the
#   gradients are not stored twice (once per parameter, once per bucket). Only while they live: zero
#   them in place (`zero_grad(set_to_none=False)`), because setting them to `None` drops the views and
#   DDP allocates fresh gradients at the next backward. The job does that for this variant.
# * **A communication hook**: `bf16_compress_hook` casts each bucket to bfloat16 before the
#   all-reduce and back after: half the bytes, at the price of rounding each gradient to 8
#   significant bits (7 stored mantissa bits). A hook is Python code that DDP calls for every bucket,
#   while the default all-reduce runs in C++ inside DDP. To time the compression and not the hook's
#   own overhead, the job also runs the same fp32 all-reduce registered as a Python hook
#   (`allreduce_hook`), and times bf16 against that.
#   (`fp16_compress_hook` does the same in fp16: more mantissa, less range. PowerSGD,
#   `powerSGD_hook`, sends a low-rank approximation of each gradient matrix instead, with an error
#   feedback that carries what it left out into the next step. And a bf16 *sum* rounds once per
#   addition: over N workers its error grows with N, so compression that is harmless on 2 workers
#   needs checking on 256.)
#
# Every variant names the one it is timed against (`compare_with`). The all-reduce calls and bytes per
# step come from the profiler's record of each collective (its shape and dtype), not from a formula:

# %%
knobs = ddp["knobs"]
base_name = "default (25 MiB buckets)"
pd.DataFrame({name: {"all-reduce calls per step": k["calls"], "bytes per step": k["bytes"],
                     "dtype on the wire": ", ".join(k["dtypes"]).replace("c10::", ""),
                     "gradient storages": k["gradient_storages"],
                     "timed against": k["compare_with"] or "(baseline)"} for name, k in knobs.items()}).T

# %% [markdown]
# Read the table: the 1 MiB cap splits the same bytes into more calls (a 1 MiB weight matrix cannot
# be split, so each gets its own bucket), and one bucket per gradient tensor makes one call per
# parameter tensor; the view leaves one gradient storage per bucket instead of one per parameter;
# the Python hook sends exactly what the default sends, and the bf16 hook exactly half of it.
# Whether any of that makes the step faster, in the same interleaved rounds (a ratio above 1: the
# variant is faster than the one it is timed against):

# %% tags=["nbval-ignore-output"]
knob_ratios = {name: paired_ratio(knobs[k["compare_with"]]["step_s"], k["step_s"])
               for name, k in knobs.items() if k["compare_with"]}
pd.DataFrame({name: {"median step (ms)": f"{statistics.median(k['step_s']) * 1e3:.2f}",
                     "timed against": k["compare_with"] or "(baseline)",
                     "ratio (> 1: faster)": str(knob_ratios[name]) if name in knob_ratios else ""}
              for name, k in knobs.items()}).T

# %% [markdown]
# The default row times the same 2-process step as section 3.3's DDP row, but in another phase of
# the job (the knob rounds run after the scaling rounds), so its median differs from 3.3's by the
# machine's noise between the two phases. Each ratio pairs variants timed in the same rounds only:

# %% tags=["nbval-ignore-output"]
scaling_default_ms = statistics.median(scaling["2 processes x 1 thread (DDP)"]) * 1e3
print(f"the default 2-process DDP step, median: {scaling_default_ms:.2f} ms in the scaling rounds (3.3), "
      f"{statistics.median(knobs[base_name]['step_s']) * 1e3:.2f} ms in the knob rounds")

# %% [markdown]
# Two of these ratios answer the questions the knobs raise, and are the ones this chapter records:
# * **Does bf16 compression pay?** `bf16_compress_hook` against the same fp32 all-reduce as a Python
#   hook: only the compression differs (the hook's overhead is in both). The Python hook against
#   the default shows that overhead on its own.
# * **Does bucketing pay?** DDP's default buckets against one all-reduce per gradient tensor (read
#   the other way round from the table: > 1 means the buckets are faster).

# %% tags=["nbval-ignore-output"]
GAIN_WORDS = {"gain": "faster", "loss": "slower", "no gain": "not distinguishable"}
bf16_ratio = knob_ratios["bf16_compress_hook"]
hook_overhead_ratio = knob_ratios["allreduce_hook (Python)"]
bucketing_ratio = paired_ratio(knobs["one bucket per gradient tensor"]["step_s"], knobs[base_name]["step_s"])
print(f"bf16 compression against the fp32 Python hook: {bf16_ratio} -> {GAIN_WORDS[bf16_ratio.gain]}")
print(f"the fp32 Python hook against DDP's built-in all-reduce: {hook_overhead_ratio} -> "
      f"{GAIN_WORDS[hook_overhead_ratio.gain]}")
print(f"default buckets ({knobs[base_name]['calls']} all-reduces) against one per gradient tensor "
      f"({knobs['one bucket per gradient tensor']['calls']}): {bucketing_ratio} -> {GAIN_WORDS[bucketing_ratio.gain]}")

# %% tags=["nbval-ignore-output"]
bf16_claim = make_claim(5, "bf16_compression", "bf16 compression makes the 2-process DDP step faster than the same "
                        "fp32 all-reduce in a Python hook", threshold=1.0, ratio=bf16_ratio, hardware=hw.cpu_label)
claims.append(bf16_claim)
report_claim(bf16_claim,
             holds="Half the bytes bought time even here: on this machine the all-reduce's bytes cost more than the "
             "casts to bf16 and back.",
             does_not_hold="Half the bytes did not buy time here. Two processes share the same cores over a loopback "
             "link, so an all-reduce is limited by the CPU work of copying and summing, not by bytes on a wire, and "
             "the hook adds a cast to bf16 and back. Compression pays where the link is the bottleneck: many "
             "workers on a slow network.",
             inconclusive="This run cannot tell the two apart. Compression pays where the link is the bottleneck: "
             "many workers on a slow network.")

# %% tags=["nbval-ignore-output"]
bucketing_claim = make_claim(5, "ddp_buckets", "DDP's default buckets make the 2-process step faster than one "
                             "all-reduce per gradient tensor", threshold=1.0, ratio=bucketing_ratio,
                             hardware=hw.cpu_label)
claims.append(bucketing_claim)
report_claim(bucketing_claim,
             holds="Buckets pay by the calls they save: every all-reduce costs its latency alpha and the fixed work "
             "of starting it, however small its message; the calls column above says how many each variant paid.",
             does_not_hold="One call per tensor was not slower here: at this model's size the latency of the extra "
             "calls was lost in the noise of the shared cores. Section 4.1 measures the latency itself.",
             inconclusive="The rounds cannot tell the two apart on this run: the extra calls' latency is small next "
             "to the step on shared cores. Section 4.1 measures the latency itself.")

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
# **Buffers are not gradients.** A BatchNorm layer keeps running statistics in *buffers*, which
# backward never touches, so the all-reduce cannot keep them equal. By default DDP copies rank 0's
# buffers to every rank at the start of each forward (`broadcast_buffers=True`, a name deprecated
# in PyTorch 2.13). A model without buffers, like this MLP, can turn that off; the warning below
# says what the new name does (read its caveat: it still synchronises once, at construction). What
# a broadcast cannot fix is that each rank *normalises* with the statistics of its own small batch:
# `nn.SyncBatchNorm.convert_sync_batchnorm(model)` computes them over all ranks' batches, at the
# price of one more collective per BatchNorm layer, which pays when the per-GPU batch is small
# (detection, segmentation). Section 9 shows the warning the old name gives: it needs a process
# group in this kernel, which costs the kernel about as much memory as one more job process, so the
# chapter creates it only after its last job.

# %% [markdown]
# ### 3.5 Overlap, observed: DDP's bucket timeline
# **Why communication can hide behind backward.** Backward computes the gradients from the last
# layer to the first. DDP packs them into buckets in that order and registers a hook on every
# parameter: as soon as every gradient in a bucket is ready, DDP starts that bucket's all-reduce,
# from inside backward, while autograd goes on computing the earlier layers' gradients. So the first
# buckets' all-reduces can run while backward still computes. The last bucket holds the first
# layer's gradients, the last to be ready: its all-reduce can only start when backward has finished
# computing, and nothing is left to hide it. Smaller buckets start the first all-reduce earlier and
# leave a smaller last bucket, at the price of one latency α per bucket. This is the overlap that
# section 4's cost model assumes ("every bucket but the last can hide").
#
# **How the job sees it.** It wraps DDP's own all-reduce in a communication hook that notes when each
# bucket's all-reduce started and when it finished (on gloo a bucket's future completes when its
# all-reduce has finished; with NCCL it would complete once the GPU work is queued, so on a GPU a
# profiler trace is the tool). A second hook on every parameter (`register_post_accumulate_grad_hook`)
# notes when autograd accumulated its gradient: the last of these is where backward stops computing.
# `loss.backward()` itself returns only after DDP has waited for every bucket, so its end is not it.
# After a few warm-up steps (DDP settles its buckets after the first), the job records a few steps
# with 1 MiB buckets and a few with the default ones, on both ranks, each time relative to that
# rank's step start. The figures show the first recorded step of each:

# %%
show_source(job_overlap.timed_allreduce_hook)

# %%
show_source(job_overlap.traced_step)

# %% tags=["nbval-ignore-output"]
timelines = ddp["bucket_timeline"]
plot_bucket_timeline(timelines["bucket_cap_mb=1"], hardware=hw.cpu_label)

# %% tags=["nbval-ignore-output"]
plot_bucket_timeline(timelines["default"], hardware=hw.cpu_label)

# %% [markdown]
# Read each rank's lanes from the top. Each orange bar is one bucket's all-reduce, from the moment
# DDP started it to the moment it finished; the dotted line is the last gradient computed. Every bar
# but the last starts left of the line: launched while backward still computed. The last bucket's
# bar starts at the line, and the light part of the backward lane after it is the step waiting for
# communication that nothing hid. The share of all-reduce time that ran while backward was still
# computing, over both ranks and all recorded steps (time with at least one bucket in flight):

# %% tags=["nbval-ignore-output"]
for setting, timeline in timelines.items():
    steps = [step for rank_steps in timeline["ranks"] for step in rank_steps]
    waits_ms = [(step["backward"][1] - step["last_gradient"]) * 1e3 for step in steps]
    print(f"{setting}: {len(steps[0]['allreduces'])} buckets, {len(timeline['ranks'][0])} steps on each of "
          f"{len(timeline['ranks'])} ranks "
          f"after {timeline['warmup_steps']} warm-up steps; {overlapped_share(timeline):.0%} of the all-reduce time "
          f"overlapped backward's computation; backward then waited a median {statistics.median(waits_ms):.2f} ms "
          f"for the rest (backward's computation: a median "
          f"{statistics.median((s['last_gradient'] - s['backward'][0]) * 1e3 for s in steps):.2f} ms)")

# %% [markdown]
# Overlap in time is not free time here. On this machine the all-reduce is CPU work too: gloo's
# threads copy and sum the buckets on the same 2 cores that compute the gradients, so a bucket
# in flight during backward slows backward down, and an all-reduce also waits for the other rank to
# reach the same bucket. On a GPU the all-reduce runs on the network and the copy engines while the
# streaming multiprocessors compute, which is where this overlap hides most of the communication.
# Compare the two figures: with 1 MiB buckets the first all-reduce starts as early as with the
# default ones (the default also keeps its first bucket to 1 MiB), and the last bucket is smaller
# (the MB in the lane labels), so in the cost model less is left to wait for after backward; but
# four buckets also pay four latencies, on the cores that backward needs. The printed waits show
# which effect won on this run. The two settings were recorded one after the other, not in
# interleaved rounds: compare the shapes of the figures, not small differences in milliseconds.

# %% [markdown]
# ### 3.6 Gradient accumulation with `no_sync()`
# To train with a global batch larger than memory allows, a rank runs several micro-batches and
# steps the optimizer once. Without care DDP all-reduces after
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
# Fewer calls by the accumulation factor, and the same gradient. What does it buy in time? **Predict
# first**: from the timeline of section 3.5, how much of a step was the wait for communication? Four
# micro-batches without `no_sync` pay it four times, with it once. The job timed the optimizer step
# both ways in alternating rounds, and summed the time each bucket's all-reduce took from its start
# to its end (those intervals overlap backward and each other, and include waiting for the other
# rank, so the sum is a measure of communication activity, not a slice of the step).

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
             holds="Three quarters of the all-reduces are gone from every optimizer step, and the step time with them: "
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
# Now the measured pieces go into the model. **Compute time:** the DDP job timed one process with one
# thread at the per-rank batch for the full step and for the forward pass alone, so the backward and
# optimizer step (what communication can hide behind, slightly generously) are their difference.
# **Gradient bytes:** the MLP's fp32 parameters, 4 bytes each.
#
# A prediction needs compute and link from the same kind of machine. Pairing this CPU's compute with
# NVLink would say that a step of this CPU's pace scales perfectly on a GPU link, a machine that does
# not exist. So the chart has two rows:
# - **this CPU's measured compute** with the links a CPU cluster uses: this machine's loopback, with
#   the α and β fitted above, and Ethernet;
# - **an H100's compute**, its published bf16 peak times a model FLOPs utilisation (MFU: the fraction of
#   the peak a real training job reaches), with the links GPU clusters use: NVLink inside an 8-GPU board,
#   and 400 Gb/s InfiniBand NDR or RoCE between boards, one NIC per GPU. The MLP's parameters would take
#   an H100 microseconds, so this row is a small transformer with a batch of tokens per GPU (the next
#   cell sets both); a dense model does about 6 FLOPs per parameter per token for forward and backward.
#
# The published links carry a *typical* latency per ring step, not one measured here: NCCL's own cost
# model for NVLink and InfiniBand, tens of µs for TCP over Ethernet (the values and their sources are in
# `comm_model.py`). A zero latency would hide the one term that grows with N.
#
# Workers scale *weakly*: each keeps its batch, so the global batch grows with N. That is not free for
# the optimizer: a larger global batch needs a learning rate scaled with it and a warm-up (Goyal et al.,
# 2017), and beyond the *critical batch size* (McCandlish et al., 2018), which depends on the task, more
# samples per step stop buying proportionally fewer steps. The model predicts time per step, not time
# to a given accuracy.

# %% tags=["nbval-ignore-output"]
compute_s = statistics.median(scaling["1 process x 1 thread, per-rank batch"])
forward_s = statistics.median(scaling["1 process x 1 thread, forward only"])
step_inputs = dict(compute_s=compute_s, backward_s=compute_s - forward_s, gradient_bytes=4 * ddp["parameters"],
                   bucket_bytes=25 * 2 ** 20)
per_rank_batch = ddp["correctness"]["per_rank_batch"]
cpu_flops_per_s = 6 * ddp["parameters"] * per_rank_batch / compute_s
backward_share = step_inputs["backward_s"] / compute_s
worlds = [1, 2, 4, 8, 16, 32, 64]
OVERLAP = {"with overlap": True, "without overlap": False}

cpu_links = {"loopback's alpha, beta (measured at N = 2, extrapolated)": loopback,
             **{name: published_link(name) for name in ("10 Gb/s Ethernet", "100 Gb/s Ethernet")}}
cpu_predictions = {label: scaling_table(worlds, cpu_links, overlap=overlap, **step_inputs)
                   for label, overlap in OVERLAP.items()}

GPU, NVLINK = "NVIDIA H100 SXM (bf16)", "NVLink 4 (H100 SXM)"
INFINIBAND = "400 Gb/s InfiniBand NDR / RoCE (one NIC per GPU)"
gpu_parameters, gpu_tokens = 25e6, 4096  # a small transformer, 2 sequences of 2,048 tokens per GPU
gpu_inputs = model_step_inputs(gpu_parameters, gpu_tokens, GPU, backward_share=backward_share, mfu=DEFAULT_MFU)
gpu_links = {name: published_link(name) for name in (NVLINK, INFINIBAND)}
gpu_predictions = {label: scaling_table(worlds, gpu_links, overlap=overlap, largest_world=LARGEST_WORLD, **gpu_inputs)
                   for label, overlap in OVERLAP.items()}

measured_points = {1: compute_s, 2: statistics.median(scaling["2 processes x 1 thread (DDP)"])}
predicted_two = predict_step(world=2, link=loopback, overlap=True, **step_inputs).step_s
print(f"this CPU: {cpu_flops_per_s / 1e9:.0f} GFLOP/s measured, {compute_s * 1e3:.2f} ms per step "
      f"(backward and update {step_inputs['backward_s'] * 1e3:.2f} ms)")
print(f"{GPU} at {DEFAULT_MFU:.0%} MFU: {gpu_inputs['compute_s'] * 1e3:.2f} ms per step for "
      f"{gpu_parameters / 1e6:.0f} M parameters x {gpu_tokens:,} tokens, "
      f"{achieved_flops_per_s(GPU) / cpu_flops_per_s:,.0f}x this CPU's FLOP rate")

# %% tags=["nbval-ignore-output"]
plot_scaling(cpu_predictions, measured_points, hardware=hw.cpu_label,
             title=f"this CPU, measured: the {ddp['parameters'] / 1e6:.2f} M-parameter MLP, "
                   f"{per_rank_batch} samples per worker",
             gpu_tables=gpu_predictions,
             gpu_title=f"{GPU} at {DEFAULT_MFU:.0%} MFU (published peak, not measured): "
                       f"{gpu_parameters / 1e6:.0f} M-parameter transformer, {gpu_tokens:,} tokens per GPU")

# %% tags=["nbval-ignore-output"]
miss = measured_points[2] / predicted_two
print(f"2 processes on loopback: measured {measured_points[2] * 1e3:.2f} ms, predicted {predicted_two * 1e3:.2f} ms: "
      f"{miss:.2f}x the prediction, {'within' if 0.67 < miss < 1.5 else 'outside'} a factor of 1.5")
efficiency = pd.concat([cpu_predictions["with overlap"].assign(compute=THIS_CPU),
                        gpu_predictions["with overlap"].assign(compute=f"{GPU}, {DEFAULT_MFU:.0%} MFU")])
(efficiency.pivot_table(index=["compute", "link"], columns="workers", values="efficiency", sort=False)
 .style.format("{:.0%}", na_rep="-").set_caption("Predicted scaling efficiency with overlap, by number of workers"))

# %% [markdown]
# First, the one point the model can be checked against: two processes here. When the model misses by
# more than 1.5x, the likely reason is that on 2 shared cores each process's compute competes with the
# other process and with gloo's threads, which the model (a core per worker, a dedicated link) leaves out.
#
# Then read the efficiency columns. With bandwidth alone, efficiency drops most from N = 1 to 2 and then
# slides slowly, as the bytes each worker sends grow from S (N = 2) towards 2S; what grows without limit
# is the latency term, 2(N−1)α per bucket, which is why the loopback line, with the α of a software
# socket, falls furthest. (NCCL switches to trees at scale, whose latency grows like log N, and on
# NVSwitch systems to NVLink SHARP: the ring's latency is the pessimistic case.)
#
# **Why the H100 needs NVLink, when this CPU gets by on Ethernet.** Each parameter brings 4 bytes of
# gradient to all-reduce and 6 FLOPs per sample of compute, so a step does 1.5 FLOPs per gradient byte
# per sample of the batch, *whatever the model's size*. What decides whether a link suffices is that
# compute per byte against the ratio of the compute rate to the link's bandwidth. An H100 computes many
# times faster than this CPU (the first cell of this section printed how many), so at the same batch it
# needs a link that many times faster, or a batch that many times larger, to keep the same efficiency.
# The table below gives, for a few pairings, the batch per worker at which compute takes as long as the
# all-reduce; below it, a worker waits more than it computes unless overlap hides the difference.
#
# Two limits of the GPU row. NVLink's line stops at 8 workers, the GPUs of one HGX board (a GB200 NVL72
# rack puts 72 GPUs in one NVLink domain: the limit belongs to the system). And the InfiniBand line is a
# flat ring of one GPU per NIC, a floor: on 8-GPU boards NCCL's rings cross the network once per board
# and spread over the board's 8 NICs, so a real cluster's bus bandwidth can be several times higher.

# %% tags=["nbval-ignore-output"]
widget_step = partial(predicted_step_table, links=link_menu(loopback), cpu_flops_per_s=cpu_flops_per_s,
                      backward_share=backward_share)
# the small transformer of the GPU row, at its tokens per worker, on three machines
pairings = {f"{THIS_CPU}, 10 Gb/s Ethernet, 8 workers": (THIS_CPU, "10 Gb/s Ethernet", 8),
            f"{GPU}, NVLink, 8 workers": (GPU, NVLINK, 8),
            f"{GPU}, InfiniBand, 64 workers": (GPU, INFINIBAND, 64)}
pd.concat({name: widget_step(parameters_m=gpu_parameters / 1e6, compute=compute, mfu=DEFAULT_MFU, link=link,
                             latency_us=published_link(link).latency_s * 1e6, workers=workers, bucket_mb=25,
                             overlap=True, per_worker_batch=gpu_tokens)
           for name, (compute, link, workers) in pairings.items()}).droplevel(1)[
    ["compute (ms)", "all-reduce (ms)", "efficiency (%)", "per-worker batch where compute = all-reduce"]]

# %% [markdown]
# ### 4.3 Explore: model size, compute, link, workers, buckets, overlap
# The widget predicts one step for the settings you choose. **Compute** is this CPU at the FLOP rate it
# reached on the MLP, or an accelerator's published dense peak times the **MFU** you set (the MFU does
# not apply to this CPU, whose rate is measured). The **latency** jumps to the chosen link's typical
# value when you change the link; set it to what you measured on your cluster. Pairings that do not
# exist are refused with a message: no CPU sits on NVLink, and this machine's loopback carries only its
# own processes. The **batch** is per worker, in samples (or tokens, for a transformer); the last
# column says how large it must be for compute to last as long as the all-reduce.

# %% tags=["nbval-ignore-output"]
menu = link_menu(loopback)
controls = dict(
    parameters_m=widgets.FloatLogSlider(value=gpu_parameters / 1e6, base=10, min=-1, max=3, description="params (M)"),
    compute=widgets.Dropdown(options=COMPUTE_CHOICES, value=GPU, description="compute"),
    mfu=widgets.FloatSlider(value=DEFAULT_MFU, min=0.05, max=1, step=0.05, description="MFU"),
    link=widgets.Dropdown(options=list(menu), value=NVLINK, description="link"),
    latency_us=widgets.FloatLogSlider(value=menu[NVLINK].latency_s * 1e6, base=10, min=-1, max=4,
                                      description="latency (us)"),
    workers=widgets.SelectionSlider(options=[1, 2, 4, 8, 16, 32, 64, 128, 256], value=8, description="workers"),
    bucket_mb=widgets.IntSlider(value=25, min=1, max=200, description="bucket (MiB)"),
    overlap=widgets.Checkbox(value=True, description="overlap"),
    per_worker_batch=widgets.SelectionSlider(options=[2 ** k for k in range(17)], value=gpu_tokens,
                                             description="batch/worker"),
)
# a new link brings its own typical latency (registered before live_control, so the prediction sees both)
controls["link"].observe(lambda change: setattr(controls["latency_us"], "value", menu[change["new"]].latency_s * 1e6),
                         names="value")
live_control(widget_step, **controls)

# %% [markdown]
# The widget starts with an 8-GPU H100 board training the small transformer above at the chart's
# tokens per GPU: read how the all-reduce compares with the compute. Things to try:
# - lower the batch per worker to 32 (the MLP's batch here) and watch the efficiency collapse; then
#   find the batch at which it passes one half, and compare with the last column;
# - switch the link to InfiniBand and the workers to 64: how much larger must the batch be now?
# - choose this CPU and 10 Gb/s Ethernet: a slow worker makes a slow link look good;
# - shrink the buckets to 1 MiB with many workers and watch the latency term grow.
#
# Without a kernel (in the book), here is the widget's starting setting:

# %% tags=["nbval-ignore-output"]
widget_step(**{name: control.value for name, control in controls.items()})

# %% [markdown]
# **The take-away of this section.** Given a link's α and β, measured with nccl-tests
# (`all_reduce_perf`, time against message size, fitted as in section 4.1) on the target cluster, and a
# compute rate you trust (measured, or a peak times a realistic MFU), the model says how a step scales:
# how much of it is communication, how much overlap can hide, and how large a batch per worker keeps a
# fast accelerator busy. It does not say whether the larger global batch still trains as well; that is
# the learning-rate and critical-batch question above.

# %% [markdown]
# ## 5. When the model does not fit: FSDP2
# ### 5.1 The memory wall
# DDP keeps a full copy of the parameters, the gradients and Adam's two moment buffers on every
# worker. How much is that? Per parameter, before activations, in the layout of ZeRO (Rajbhandari et
# al. 2020): fp32 Adam stores 4 + 4 + 8 bytes (weight, gradient, two moments); mixed-precision Adam
# 2 + 2 + 12 (bf16 weight and gradient, an fp32 master weight and fp32 moments): 16 bytes either way.
# Sharding divides a part by the number of workers N: ZeRO-1 the optimizer state, ZeRO-2 also the
# gradients, ZeRO-3 (FSDP's full sharding) everything. On 8 workers:

# %%
pd.DataFrame({stage: {precision: bytes_per_parameter(precision, stage, 8) for precision in OPTIMIZER_STATES}
              for stage in STAGES}).T.rename(columns=lambda c: f"{c} (bytes/param, 8 workers)")

# %% [markdown]
# At 16 bytes per parameter, one 80 GB GPU holds the training state of at most 5 billion parameters
# with plain DDP, whatever the number of GPUs, because DDP replicates. Fully sharded over N GPUs the
# limit grows N-fold, minus the activations and the gathered layer that each GPU still needs:

# %%
pd.DataFrame({f"{n} x 80 GB": {stage: f"{80e9 / bytes_per_parameter('mixed-precision Adam', stage, n) / 1e9:.1f} B"
                               for stage in STAGES} for n in (1, 8, 64)}).rename_axis("largest model (mixed-precision Adam)")

# %% [markdown]
# The 16 bytes are a bookkeeping, and frameworks keep them differently: FSDP2 stores fp32 shards of
# the parameters and gradients and makes only its transient gathered copy bf16 (section 5.6), and
# Megatron-LM keeps its gradients in fp32 as well, 18 bytes per parameter. The totals differ by little;
# where each byte lives decides what a sharding stage saves.
#
# ### 5.2 Sharding with `fully_shard`
# **Fully sharded data parallelism** keeps each part once across the workers: `fully_shard` turns every
# parameter into a `DTensor` cut along its first dimension, one piece per rank. Before a layer runs, its
# full weight is *all-gathered*. After backward, its gradient is *reduce-scattered*, so each rank keeps only
# the part that matches its piece. The optimizer then updates only that piece.
#
# **The mesh comes first.** `fully_shard` shards over a `DeviceMesh`: which ranks there are and which
# device they compute on. If you leave it out, FSDP2 builds one on torch's accelerator. On a machine with
# a visible GPU that is a CUDA mesh, even for this CPU job on gloo. FSDP2 would then move the parameters to
# the GPU while the labels stay on the CPU. So the job builds the mesh from its own device and passes it to
# every call:

# %%
show_source_unimported(f"{JOBS}.fsdp", "data_parallel_mesh")

# %% [markdown]
# **Two settings change what a step sends and stores:**
# - `reshard_after_forward=True` (the default for every module except the root) frees a layer's
#   gathered weights as soon as its forward is done. Backward must all-gather them again, so a step makes
#   two all-gathers per layer. Only one layer's full weights exist at a time. This is ZeRO stage 3.
# - `reshard_after_forward=False` keeps the gathered weights from forward to backward. One all-gather per
#   layer is enough, but every layer's full weights stay in memory until backward reaches it. During the
#   step this is like ZeRO stage 2, which keeps full parameters on every rank. Between steps the
#   parameters are still sharded.
# - `MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)` leaves the stored
#   pieces in fp32. It casts them to bf16 before the all-gather, so forward and backward compute with
#   bf16 weights and half the bytes travel. The gradients are reduced in fp32.
#
# The job wraps each Linear layer, then the whole model, with the same settings:

# %%
show_source_unimported(f"{JOBS}.fsdp", "sharded_model")

# %% [markdown]
# The job runs once with 1 rank and once with 2 (64 images per rank, Adam). Each run first trains
# FSDP2 and DDP for a few Adam steps
# from the same seed on the same batches and compares their parameters. It then times DDP and both reshard
# settings in interleaved rounds, and profiles steps of each, plus steps with bf16 parameters.

# %% tags=["nbval-ignore-output"]
fsdp_jobs = {n: launch(f"{JOBS}.fsdp", nproc=n) for n in (1, 2)}
fsdp_runs = {n: job.result for n, job in fsdp_jobs.items()}
for n, job in fsdp_jobs.items():
    print(f"{n} rank{'s' if n > 1 else ''}: the job took {job.wall_s:.1f} s from launch to exit")

# %% [markdown]
# ### 5.3 What each rank holds
# These bytes are **accounted**, not measured. They are the sizes of the DTensor pieces each rank
# holds: parameters, gradients, and Adam's two buffers. The table shows where sharding puts the training
# state. It does not show how much memory a process uses. That also includes FSDP2's gathered weights,
# which exist only while a layer runs. The largest of those is the biggest all-gather in the trace. It
# appears below the table.

# %%
def accounted_mb(run: dict) -> dict:
    """One rank's accounted bytes in MB, and their sum."""
    parts = {name: b / 1e6 for name, b in run["accounted_bytes"].items()}
    return parts | {"sum": sum(parts.values())}


pd.DataFrame({f"{n} rank{'s' if n > 1 else ''}": {
    "parameters (DTensors)": f"{r['parameters']:,} ({r['is_dtensor']})", "placement": r["placements"],
    "mesh device": r["mesh_device_type"],
    **{f"{part} (MB per rank)": f"{mb:.2f}" for part, mb in accounted_mb(r).items()}}
    for n, r in fsdp_runs.items()})

# %% tags=["nbval-ignore-output"]
fsdp = fsdp_runs[2]
fsdp_unsharded_bytes, fsdp_rank_bytes = (sum(fsdp_runs[n]["accounted_bytes"].values()) for n in (1, 2))
held_ratio = fsdp_unsharded_bytes / fsdp_rank_bytes
largest = fsdp_runs[2]["breakdown"]["FSDP2"]["collectives"]["all_gather"]["largest_bytes"]
print(f"accounted training state per rank, 1 rank / 2 ranks: {held_ratio:.2f}x")
print(f"largest all-gather seen in a 2-rank step: {largest / 1e6:.2f} MB, a full layer held while it runs")

# %% [markdown]
# ### 5.4 What a step costs
# *Predict first:* with 2 ranks, which is faster, DDP or FSDP2? And how does FSDP2 with
# `reshard_after_forward=False` compare with the default?
#
# The ratios are DDP's step time divided by the variant's, paired round by round. A value below 1 means
# the variant is slower than DDP. With 1 rank nothing travels, so that column shows only FSDP2's own
# overhead: its hooks, its copies, and the optimizer working on DTensors.

# %% tags=["nbval-ignore-output"]
def step_table(run: dict) -> pd.DataFrame:
    """Median step time per timed variant, and its paired ratio against DDP in the same rounds."""
    ddp = run["step_s"]["DDP"]
    return pd.DataFrame({name: {
        "median step (ms)": f"{statistics.median(times) * 1e3:.1f}",
        "DDP / variant (> 1: faster than DDP)": "" if name == "DDP" else paired_ratio(ddp, times).text()}
        for name, times in run["step_s"].items()}).T


fsdp_price = paired_ratio(fsdp["step_s"]["DDP"], fsdp["step_s"]["FSDP2"])
pd.concat({f"{n} rank{'s' if n > 1 else ''}": step_table(r) for n, r in fsdp_runs.items()})

# %% [markdown]
# ### 5.5 Where FSDP2's step goes
# The job profiled two steps of each variant and kept the shorter one, so a step that lost its core for a
# while does not decide the table. It split that step's wall time into parts that add up to the step:
# - **collectives**: time during which at least one collective was under way, from its launch to its end.
#   gloo runs collectives on threads of its own, so this is wall time, not a sum. DDP keeps computing
#   backward during its all-reduces. FSDP2 on the CPU waits for each collective to finish.
# - **copies**: FSDP2 copying the pieces into the all-gather's buffer, the gathered buffer out into each
#   layer's weights, and the gradients into the reduce-scatter's buffer.
# - **optimizer**: Adam's step. For FSDP2 it works on DTensors, and each operation goes through
#   DTensor's Python dispatch.
# - **rest**: forward and backward compute, autograd, the hooks of FSDP2 and DDP.
#
# The profiler slows a step down, so these steps take longer than the timed ones. Compare the shares
# within a step rather than comparing them with the table above.

# %% tags=["nbval-ignore-output"]
def breakdown_table(run: dict) -> pd.DataFrame:
    """Each profiled step split into collectives, copies, optimizer and the rest, in ms and as shares."""
    rows = {}
    for name, b in run["breakdown"].items():
        parts = {"collectives": b["collectives_s"], "copies": b["copies_s"], "optimizer": b["optimizer_s"],
                 "rest": b["rest_s"]}
        rows[name] = {"step (ms)": f"{b['step_s'] * 1e3:.1f}",
                      **{f"{p} (ms, share)": f"{s * 1e3:.1f} ({s / b['step_s']:.0%})" for p, s in parts.items()}}
    return pd.DataFrame(rows).T


breakdown_table(fsdp_runs[2])

# %% tags=["nbval-ignore-output"]
step = fsdp_runs[2]["breakdown"]["FSDP2"]
kinds = step["collectives"]
calls = sum(k["calls"] for k in kinds.values())
megabytes = sum(k["bytes"] for k in kinds.values()) / 1e6
print(f"Of the {step['step_s'] * 1e3:.1f} ms FSDP2 step (2 ranks, profiled), collectives were under way for "
      f"{step['collectives_s'] * 1e3:.1f} ms ({calls} calls, {megabytes:.1f} MB of full tensors), "
      f"FSDP2's copies took {step['copies_s'] * 1e3:.1f} ms, Adam {step['optimizer_s'] * 1e3:.1f} ms, "
      f"and the rest (compute, autograd, hooks) {step['rest_s'] * 1e3:.1f} ms.")

# %% [markdown]
# **Where the gap to DDP went.** The same parts for DDP's profiled step, subtracted from FSDP2's:

# %% tags=["nbval-ignore-output"]
fsdp_parts, ddp_parts = (fsdp_runs[2]["breakdown"][name] for name in ("FSDP2", "DDP"))
gap_ms = {part: (fsdp_parts[f"{part}_s"] - ddp_parts[f"{part}_s"]) * 1e3
          for part in ("step", "collectives", "copies", "optimizer", "rest")}
print(f"FSDP2 - DDP, profiled 2-rank step: {gap_ms['step']:.1f} ms = collectives {gap_ms['collectives']:+.1f} ms, "
      f"copies {gap_ms['copies']:+.1f} ms, optimizer {gap_ms['optimizer']:+.1f} ms, rest {gap_ms['rest']:+.1f} ms")

# %% [markdown]
# **Collectives by kind, with the α–β prediction.** The α and β come from the all-reduce fit in section 4.
# In a ring, an all-gather is half of an all-reduce: (N−1) steps, each rank sending (N−1)/N of the full
# tensor. gloo runs a reduce-scatter as a whole all-reduce. It copies the full gradient buffer, all-reduces
# the copy and keeps this rank's part, so on gloo a reduce-scatter costs as much as an all-reduce. The
# "measured" column sums the communication threads' records. They include the time a rank waits for the
# other rank to arrive.
#
# *Theory to check:* with L sharded layers and 2 ranks, FSDP2 makes L all-gathers in forward and, with
# `reshard_after_forward=True`, L more in backward. With `False` it makes none in backward. Either way it
# makes L reduce-scatters. The root holds no parameter of its own, so it adds no collective.

# %% tags=["nbval-ignore-output"]
def alpha_beta_s(kind: str, calls: int, total_bytes: int, world: int) -> float:
    """The fitted alpha-beta model's time for these collectives: an all-gather is half a ring all-reduce, gloo's
    reduce-scatter and an all-reduce a whole one."""
    phases = 1 if kind == "all_gather" else 2
    return phases * (world - 1) * (calls * loopback.latency_s + total_bytes / world / loopback.bandwidth_bytes_per_s)


layers, world = fsdp_runs[2]["sharded_layers"], fsdp_runs[2]["world_size"]
expected = {"FSDP2": {"all_gather": 2 * layers, "reduce_scatter": layers},
            "FSDP2, reshard_after_forward=False": {"all_gather": layers, "reduce_scatter": layers},
            "FSDP2, bf16 param_dtype": {"all_gather": 2 * layers, "reduce_scatter": layers}}
rows = []
for name, b in fsdp_runs[2]["breakdown"].items():
    for kind, k in b["collectives"].items():
        rows.append({"variant": name, "collective": kind, "calls": k["calls"],
                     "theory": expected.get(name, {}).get(kind, ""), "MB (full tensors)": f"{k['bytes'] / 1e6:.2f}",
                     "dtype": k["dtype"], "measured (ms)": f"{k['time_s'] * 1e3:.1f}",
                     "alpha-beta (ms)": f"{alpha_beta_s(kind, k['calls'], k['bytes'], world) * 1e3:.1f}"})
pd.DataFrame(rows).set_index(["variant", "collective"])

# %%
counts_match = all({kind: k["calls"] for kind, k in fsdp_runs[2]["breakdown"][name]["collectives"].items()} == predicted
                   for name, predicted in expected.items())
print(f"every FSDP2 variant made the collectives theory predicts for {layers} sharded layers: {counts_match}")

# %% [markdown]
# How to read these tables: compare the measured collective times with the α–β column. Then compare
# the collectives' share of the step with the shares of the copies, the optimizer and the rest. Where
# measured and modelled agree, the bytes on the wire explain the cost. Where measured is far above the
# model, the collectives spent their time waiting: for the other rank, or for a core, since two ranks,
# their gloo threads and the training threads all share two cores here. A model that counts bytes cannot
# see that cost. The 1-rank column of 5.4 shows what FSDP2 costs without any collective at all.

# %% [markdown]
# ### 5.6 Mixed precision: what is stored, what is gathered, what computes
# ZeRO's 2 + 2 + 12 bytes per parameter is DeepSpeed's bookkeeping: bf16 parameters and gradients, plus
# fp32 master weights and Adam's two buffers. FSDP2 with `MixedPrecisionPolicy(param_dtype=bf16,
# reduce_dtype=fp32)` divides the same 16 bytes differently. It stores the sharded parameters and
# gradients in fp32, so there is no separate master copy. Only the transient gathered weights are bf16.
# A forward pre-hook on the first layer recorded the weight it was about to use:

# %%
mixed = fsdp_runs[2]["mixed_precision"]
bf16_gather = fsdp_runs[2]["breakdown"]["FSDP2, bf16 param_dtype"]["collectives"]["all_gather"]
fp32_gather = fsdp_runs[2]["breakdown"]["FSDP2"]["collectives"]["all_gather"]
pd.DataFrame({"dtype": {
    "sharded parameters (stored)": mixed["sharded_parameter_dtype"],
    "sharded gradients (stored)": mixed["sharded_gradient_dtype"],
    "weight during forward (gathered)": mixed["forward_weight_dtype"],
    "all-gather on the wire": bf16_gather["dtype"]}, "shape": {
    "sharded parameters (stored)": str(mixed["sharded_weight_shape"]), "sharded gradients (stored)": "",
    "weight during forward (gathered)": str(mixed["forward_weight_shape"]), "all-gather on the wire": ""}})

# %%
print(f"bytes all-gathered per step, bf16 / fp32 parameters: {bf16_gather['bytes'] / fp32_gather['bytes']:.2f}")

# %% [markdown]
# ### 5.7 Does FSDP2 train like DDP?
# Sharding must not change the result. The job trained FSDP2 and DDP for the same Adam steps from the same
# seed on the same batches, gathered FSDP2's parameters with `DTensor.full_tensor()`, and compared. How
# large a difference counts as rounding? The job also trained DDP with each rank's images in reverse order.
# That is the same arithmetic summed in another order, so their difference is the **rounding floor**. If
# FSDP2 differs from DDP by no more than that floor, the two trained the same model.

# %% tags=["nbval-ignore-output"]
check = fsdp_runs[2]["fsdp2_vs_ddp"]
print(f"after {check['adam_steps']} Adam steps on 2 ranks: largest |FSDP2 - DDP| = "
      f"{check['max_abs_diff_fsdp2_vs_ddp']:.3g}, rounding floor (DDP, images reordered) = "
      f"{check['max_abs_diff_reordered_ddp']:.3g}, largest |parameter| = {check['max_abs_parameter']:.3g}")

# %%
print(f"FSDP2 trains like DDP (difference within the rounding floor): "
      f"{check['max_abs_diff_fsdp2_vs_ddp'] <= check['max_abs_diff_reordered_ddp']}")

# %% [markdown]
# ### 5.8 What else a real FSDP2 job sets *(reference, optional on a first reading)*
# - **Prefetching.** On a GPU, FSDP2 issues all-gathers on a stream of their own, so the next layer's
#   gather overlaps the current layer's compute (implicit prefetching; on the CPU with gloo, as here,
#   FSDP2 waits for each collective before going on). `set_modules_to_forward_prefetch` and
#   `set_modules_to_backward_prefetch` on a wrapped module name modules to fetch further ahead: more
#   overlap, one more gathered layer in memory for each.
# - **Accumulation.** `model.set_requires_gradient_sync(False)` on the micro-batches that should not
#   communicate is FSDP2's counterpart of DDP's `no_sync()` (section 3.6); gradients then accumulate
#   unsharded until the last micro-batch reduce-scatters them.
# - **HSDP.** Given a 2D mesh, `init_device_mesh("cuda", (nodes, 8), mesh_dim_names=("replicate", "shard"))`,
#   `fully_shard` shards within a node and replicates across nodes: the all-gathers stay on NVLink
#   and only the gradient all-reduce crosses the network (section 6 says how meshes compose).
# - **Activation checkpointing** (`torch.utils.checkpoint`, or `checkpoint_wrapper` around each block)
#   recomputes a block's activations in backward instead of storing them: roughly one more forward of
#   compute for most of the activation memory, which section 5.1's table leaves out.
# - **`torch.compile`** works on the wrapped model (compile each block, or the whole model after
#   `fully_shard`); DDP also accepts a compiled model, and its bucketing then follows the compiled
#   graph.

# %% [markdown]
# ## 6. The other kinds of parallelism *(reference, optional on a first reading, except 6.1)*
#
# DDP and FSDP2 both split the *batch*: every rank runs the whole model on its own examples, and they
# differ only in whether each rank keeps a full copy of the training state. That stops working in two
# situations. A single layer may be too large, or too slow, for one device even when sharded, because
# FSDP still gathers each layer whole before running it. Or the batch per device becomes so small that
# the matrix multiplies stop using the hardware well. The remaining strategies split something else:
# the layers' matrices, the stack of layers, the sequence, or a set of experts.
#
# **Data parallelism (DDP).** Every rank holds the full model and optimizer state and processes its own
# slice of the global batch. Once per step the gradients are averaged with an all-reduce, in buckets that
# overlap with the backward pass. The bytes sent depend on the number of parameters, not on the batch.
#
# **Fully sharded data parallelism (FSDP, ZeRO stage 3).** Still one slice of the batch per rank, but
# parameters, gradients and optimizer state are split into N pieces. Before a layer runs, its weights are
# all-gathered, and dropped again afterwards; gradients are reduce-scattered so that each rank receives
# only the piece it updates. In a ring, that is about one and a half times DDP's traffic (an all-gather in
# forward, another in backward, a reduce-scatter, against DDP's all-reduce, which is one reduce-scatter plus
# one all-gather), traded for memory that shrinks with N. ZeRO stages 1 and 2 shard only the optimizer
# state, or the optimizer state and the gradients.
#
# **Tensor parallelism (TP).** The weight matrices themselves are split. In a transformer's MLP, the first
# Linear is split by its *output* features (column-parallel): each rank computes a slice of the hidden
# activations, and the elementwise GELU works on that slice without talking to anyone. The second Linear is
# split by its *input* features (row-parallel): each rank multiplies its slice and obtains a partial sum of
# the full output, which an all-reduce completes. Attention is split the same way, by heads: the Q, K, V
# projections are column-parallel, the output projection row-parallel. So a transformer block needs two
# all-reduces in forward (after attention, after the MLP) and two in backward (for the gradients of the
# block's input at the two column-parallel layers). Each one carries the activations, batch × sequence ×
# hidden, and sits on the critical path: the next layer cannot start until it is done. That is why TP is
# kept inside one NVLink domain (typically the 8 GPUs of a node), where these frequent, blocking messages
# are cheap; across a network they would dominate the step. *Sequence parallelism* in the Megatron sense
# goes with TP: the parts of the block that TP replicates (LayerNorm, dropout) are split along the sequence,
# and each all-reduce becomes a reduce-scatter plus an all-gather of the same total size.
#
# **Pipeline parallelism (PP).** The stack of layers is cut into p stages, one per rank or group of ranks.
# Activations go forward from stage to stage and their gradients come back, point to point between
# neighbours only, which tolerates slower links. The catch is idle time: the last stage has nothing to do
# until the first micro-batch reaches it, and the first stage idles at the end while the backward passes
# drain. With the batch cut into m micro-batches, the idle share of the step ("bubble") is (p − 1)/(m + p − 1)
# for both GPipe (all forwards, then all backwards) and 1F1B (alternating one forward, one backward); 1F1B
# keeps far fewer micro-batches' activations alive at once. Interleaved schedules give each rank several
# smaller stages to shrink the bubble further, at the cost of more messages.
#
# **Context (sequence) parallelism (CP).** For very long sequences, the activations of one example no longer
# fit, and attention's cost grows with the square of the length. Each rank keeps a contiguous chunk of the
# sequence. Everything but attention is local to a token; attention needs every key and value, so in *ring
# attention* the ranks pass their K/V blocks around a ring, each computing its queries against one block
# while the next one is in transit. (DeepSpeed-Ulysses instead uses all-to-alls to switch from a split by
# sequence to a split by attention heads and back.)
#
# **Expert parallelism (EP).** In a mixture-of-experts layer, a router sends each token to one or a few of
# many expert MLPs, and the experts live on different ranks. Every MoE layer therefore does an all-to-all
# to dispatch tokens to their experts' ranks and another to bring the results back (and the same pair again
# in backward). The volume depends on how many tokens are routed, and an unbalanced router makes one rank the
# straggler for everyone.
#
# | Strategy | What each rank holds | What it sends | Typical use |
# |---|---|---|---|
# | DDP | the whole model, a slice of the batch | one all-reduce of the gradients per step | the model fits one device |
# | FSDP / ZeRO-3 | 1/N of params, grads, optimizer state | all-gather of each layer's weights (forward and backward), reduce-scatter of grads | the training state does not fit one device |
# | Tensor | a slice of each weight matrix | all-reduce of activations, 2 per block forward, 2 backward | huge layers, inside an NVLink domain |
# | Pipeline | a contiguous group of layers | activations and their gradients, point to point | very deep models, across nodes |
# | Context | a chunk of every sequence | K/V blocks around a ring (or all-to-all) | sequences of 100k tokens and more |
# | Expert | some of the experts | all-to-all of tokens, twice per MoE layer each way | mixture-of-experts models |
#
# **Composing them.** Large jobs combine several on a `DeviceMesh`, an n-dimensional grid of ranks where each
# dimension is one kind of parallelism: `init_device_mesh("cuda", (nodes, 8), mesh_dim_names=("dp", "tp"))`
# makes a 2D mesh whose rows are the 8 GPUs of a node (TP, over NVLink) and whose columns link the same GPU
# position across nodes (FSDP, over the network). `mesh["tp"]` is the 1D sub-mesh that `parallelize_module`
# takes; `fully_shard(model, mesh=mesh["dp"])` shards over the other dimension. The usual rule puts the
# chattiest, most latency-sensitive strategy on the fastest links: TP inside a node; PP and FSDP across nodes
# (PP only talks to neighbours, FSDP's large transfers overlap with compute). A 3D job adds a PP dimension;
# context and expert parallelism add further ones. HSDP (hybrid sharding) is a 2D mesh for data parallelism
# alone: the model is *sharded* within a group of GPUs (a node, say) and *replicated* across groups, so the
# frequent all-gathers stay on fast links and only a gradient all-reduce crosses the network; FSDP2 does this
# when `fully_shard` gets a 2D mesh (placements `(Replicate(), Shard(0))`).
#
# **Where to go next.** `torch.distributed.tensor.parallel` (`parallelize_module`, `ColwiseParallel`,
# `RowwiseParallel`, `SequenceParallel`, `loss_parallel`); `torch.distributed.pipelining` (`pipeline`,
# `PipelineStage`, `ScheduleGPipe`, `Schedule1F1B`, `ScheduleInterleaved1F1B`);
# `torch.distributed.tensor.experimental.context_parallel`; and torchtitan, PyTorch's reference code that
# combines FSDP2, TP, PP and CP for Llama-style models and shows how each is configured.
#
# **Three newer refinements** worth knowing by name: *zero-bubble* pipeline schedules split each
# backward into its input-gradient and weight-gradient halves and fill the bubble with the latter
# (`ScheduleInterleavedZeroBubble`, `ScheduleZBVZeroBubble` in `torch.distributed.pipelining`);
# *asynchronous tensor parallelism*: in the sequence-parallel form of TP, where each all-reduce
# becomes an all-gather before a matrix multiply and a reduce-scatter after one, `torch.compile` fuses
# each pair and cuts it into pieces, so the communication of one piece overlaps the multiply of the
# next (on CUDA); and
# *float8 training* (torchao) computes the large matrix multiplies in fp8 and, with FSDP2, can
# all-gather the weights in fp8 too, a quarter of fp32's bytes.
#
# The pipeline bubble for a few shapes, from the formula above:

# %%
pd.DataFrame({f"m = {m} micro-batches": {f"p = {p} stages": f"{(p - 1) / (m + p - 1):.0%}" for p in (2, 4, 8)}
              for m in (1, 4, 16, 64)})

# %% [markdown]
# ### 6.1 Tensor parallelism on two processes
# The job below builds a transformer's MLP block, Linear(d, 4d) → GELU → Linear(4d, d), and hands it to
# `parallelize_module(block, mesh, {"0": ColwiseParallel(), "2": RowwiseParallel()})` on a 1D mesh of the two
# ranks. It runs one forward and one backward on the same input on both ranks (TP needs every rank to see the
# whole batch), compares everything with the unsharded block, and reads the collectives from the profiler.
# It runs on gloo: DTensor and the TP styles do not need a GPU.

# %% tags=["nbval-ignore-output"]
tp = launch(f"{JOBS}.tensor_parallel", nproc=2, args=["--batch", 64, "--rounds", 3]).result

# %% [markdown]
# **Is it the same computation?** The largest difference from the unsharded block, over both ranks, next to
# the largest value (the scale). The row-parallel layer adds its 4d products in two halves and then adds the
# halves, so float32 rounding may differ in the last bits, nothing more:

# %% tags=["nbval-ignore-output"]
pd.DataFrame({name: {"largest |TP - whole|": f"{c['max_abs_diff']:.2e}", "largest |whole|": f"{c['max_abs']:.2e}",
                     "relative": f"{c['max_abs_diff'] / c['max_abs']:.1e}"}
              for name, c in tp["correctness"].items()}).T

# %%
# float32 keeps 24 bits (eps 1.2e-7); a reordered sum moves by a few eps of its terms. 1e-5 of the scale (about 80
# eps) leaves room for that, and a wrong shard (an error of the size of the values) misses it by far.
print("TP equals the whole block within 1e-5 of the scale, output and every gradient: "
      f"{all(c['max_abs_diff'] <= 1e-5 * c['max_abs'] for c in tp['correctness'].values())}")

# %% [markdown]
# **What each rank stores.** The column-parallel layer keeps half of its output features (rows of its weight,
# `Shard(dim=0)`, and half its bias); the row-parallel layer keeps half of its input features (columns,
# `Shard(dim=1)`). Its bias is added once to the summed output, so every rank keeps all of it (`Replicate()`):

# %%
pd.DataFrame({name: {"full shape": s["full"], "stored on each rank": s["local"], "placement": s["placement"]}
              for name, s in tp["stored"].items()}).T

# %% [markdown]
# **What travels.** Each collective of one forward and one backward, as the profiler recorded it:

# %%
pd.DataFrame([{"pass": pass_name, "collective": c["kind"], "shape": c["shape"], "dtype": c["dtype"],
               "bytes": c["bytes"]} for pass_name, calls in tp["collectives"].items() for c in calls])

# %%
traffic = tp["traffic"]
print(f"batch {tp['batch']}, d = {tp['dim']}: TP all-reduces {traffic['tp_bytes_per_step']:,} bytes per step (the "
      f"activations, twice); DDP of the same block would all-reduce {traffic['ddp_bytes_per_step']:,} (every "
      f"gradient of its {traffic['parameters']:,} parameters). TP's bytes grow with the batch, DDP's do not: they "
      f"would be equal at a batch of about {traffic['equal_at_batch']:.0f} rows.")

# %% [markdown]
# Reading: one all-reduce of the activations (batch × d) in forward, after the row-parallel layer, and one in
# backward, for the gradient of the block's input at the column-parallel layer, exactly as the theory says;
# the weight gradients stay local, because each rank owns its slice. TP's bytes grow with the tokens per step,
# DDP's with the parameters only. The count matters as much as the size: a transformer with L blocks makes 4L
# of these all-reduces per step, each blocking the next layer, where DDP makes one large, overlapped one. In a
# real model the per-step activation traffic is often *larger* than the gradients, which is acceptable only
# on NVLink.
#
# The same launch timed a forward and backward step of the TP block (both ranks together, each doing half the
# multiplies) against the whole block on each rank alone, alternating in each round:

# %% tags=["nbval-ignore-output"]
tp_speed = paired_ratio(tp["step_s"]["whole block on each rank"], tp["step_s"]["tensor parallel"])
pd.DataFrame({name: {"median step (ms)": f"{statistics.median(times) * 1e3:.2f}"}
              for name, times in tp["step_s"].items()}).T

# %% tags=["nbval-ignore-output"]
print(f"TP against the whole block (> 1: TP faster): {tp_speed}")

# %% [markdown]
# No claim rests on this ratio: two processes on one shared CPU, a block this small, three rounds. It
# shows what TP adds (two blocking all-reduces and DTensor's bookkeeping per step) against what it
# saves (half the multiplies on each rank); TP is used for layers far larger than this one, on GPUs
# joined by NVLink, where the balance is the other way.

# %% [markdown]
# ## 7. Faults: a restart that changes nothing
# ### 7.1 Checkpoint, die, resume
# On a cluster, a process dies: a node reboots, the out-of-memory killer strikes. The job that
# survives it saves checkpoints as it goes and resumes from the last one. `torch.distributed.checkpoint`
# (DCP) saves each rank's part in parallel and writes a `.metadata` file last, so a checkpoint
# interrupted half-way is recognisable and ignored. `torchrun --max-restarts=1` restarts the whole
# group once when a rank fails. The data order depends only on the step number (the sampler and
# `set_epoch`), so the resumed job sees exactly the batches the lost one would have:

# %%
show_source_unimported(f"{JOBS}.resume", "save_checkpoint")

# %%
show_source_unimported(f"{JOBS}.resume", "load_checkpoint")

# %% [markdown]
# Rank 1 kills itself with SIGKILL at step 12 of 30 (checkpoints every 5 steps). Rank 0, waiting for
# it inside an all-reduce, either fails first with gloo's "Connection reset by peer" or is stopped by
# torchrun before it notices, whichever comes first (the cell says which happened); torchrun reports
# the failure, ends rank 0, starts both again, and they resume from step 10:

# %% tags=["nbval-ignore-output"]
with tempfile.TemporaryDirectory(prefix="course-ckpt-") as checkpoints:
    resumed_run = launch(f"{JOBS}.resume", nproc=2, max_restarts=1, echo=False,
                         args=["--checkpoint-dir", checkpoints, "--kill-rank", 1, "--kill-at-step", 12])
resumed = resumed_run.result
for line in resumed_run.lines:  # rank 0's traceback shortened to its last line
    if "[rank0]:" not in line or "Error:" in line:
        print(line)
rank0_failed = any("[rank0]:" in line and "Error:" in line for line in resumed_run.lines)
print("rank 0 " + ("failed first, with the error above" if rank0_failed else "was stopped by torchrun before it noticed"))

# %%
print(f"the job finished on attempt {resumed['attempt']} (0 is the first), resuming from step "
      f"{resumed['resumed_from_step']} of {resumed['steps']}")

# %% [markdown]
# Are its final parameters those of a run that was never interrupted? The same job once more, without
# the kill. (After training, this run also times a DDP step with 2 threads per process against 1, for
# section 8.1.)

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
# optimizer's momentum) and replayed steps 10 to 29 on the same batches. Steps 10 and 11 ran twice
# (the checkpoint was two steps old), which costs time, not accuracy. A job that instead resumed from
# the weights alone, or re-shuffled its data on restart, would end elsewhere.
#
# ### 7.2 Restarts across nodes
# On several nodes each node's torchrun agent counts its own restarts, and hands the count to its
# workers as `TORCHELASTIC_RESTART_COUNT`. When a worker dies, its agent counts a restart and goes
# back to the rendezvous; the other nodes' agents see a node waiting to join and restart their
# workers too, but a *membership change* does not count as a retry. Whether a surviving node counts
# depends on how its ranks notice the loss: on gloo they usually fail at once ("Connection reset by
# peer"), so their agent counts a failure; with NCCL they block inside the collective, and
# only the membership change restarts them. The nodes then come back with different restart counts.
#
# Two things go wrong from there. Anything keyed on that count splits the ranks: this chapter's
# first edition prefixed the process group's keys with it (PyTorch's own launcher once did the same
# and removed it: pytorch/pytorch#135712, #108158), and the two nodes then waited for keys the
# other wrote under another prefix until the store's timeout. And the store itself: by default the
# agents share one key-value store across restarts, in which the failed attempt's keys remain
# (#167288). `TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`, set by `launch` and by every command line in
# this chapter, makes worker rank 0 host a fresh store on a new port in every rendezvous round, so
# the plain `init_process_group` of section 2 is enough.
#
# The course's tests (`tests/unit/test_ch05_distributed.py`) run both cases on two nodes: rank 1
# killed at step 7, and its peer either failing at once or busy for a minute, as an NCCL rank stuck in
# a collective would be. Both finish with the uninterrupted run's parameters, the second with node 0
# at restart count 0 and node 1 at 1; with the first edition's prefixed store the second hung until
# the test's time limit. Section 8.2 runs the second case here if you opt in.
#
# ### 7.3 What a real job must also save
# This job resumes bitwise because everything it depends on is in the checkpoint or is a function
# of the step: its only random choice is the sampler's order, and the batches are computed from the
# step number. A real job must also save:
# - the **random-number states** (`torch.get_rng_state()`, each GPU's `torch.cuda.get_rng_state()`,
#   NumPy's and Python's), or dropout and augmentation draw other numbers after a restart;
# - the **learning-rate scheduler** and, with fp16, the **GradScaler** (`state_dict()` of each);
# - the **data loader's position** inside the epoch: a plain `DataLoader` restarts the epoch;
#   `torchdata`'s `StatefulDataLoader` has a `state_dict()` that includes its workers' positions.
#
# `torch.distributed.checkpoint` also offers `dcp.async_save`, which copies the state to CPU memory
# and writes it in the background while training continues, and loading onto a different number of
# ranks than saved it (the checkpoint records each shard's place, and `dcp.load` reshards). How often
# to save? Each checkpoint costs time C, and a failure loses on average half an interval;
# with a mean time between failures M (a large job's M is hours), the interval that wastes least is
# about $\sqrt{2CM}$ (Young 1974; Daly 2006 refines it).

# %% [markdown]
# ### 7.4 When it hangs *(the table: reference, optional on a first reading)*
# Every collective needs *every* rank of its group. When one rank calls something else, or nothing at all,
# the others wait. How long is the process group's timeout, `init_process_group(..., timeout=timedelta(...))`;
# the defaults in this PyTorch:

# %% tags=["nbval-ignore-output"]
print(f"torch {torch.__version__}: gloo and other backends wait {default_pg_timeout}, "
      f"NCCL {default_pg_nccl_timeout if default_pg_nccl_timeout is not None else '(not built with NCCL)'}")

# %% [markdown]
# The job `hang` makes the two ranks disagree, under a short timeout. In the *mismatch* case rank 0 calls
# `all_reduce` while rank 1 calls `broadcast` (ranks taking different code paths). In the *missing* case rank 1
# never calls the `all_reduce` that rank 0 waits in (it is busy elsewhere for longer than the timeout, as a rank
# stuck in its data loader would be). The missing case runs plain: this is what a hang looks like. The
# mismatch runs with `TORCH_DISTRIBUTED_DEBUG=DETAIL`, which wraps the process group so that before every
# collective the ranks compare what they are about to call (kind, shapes, dtypes), after waiting for each
# other at a *monitored barrier* that reports which rank did not arrive. (Without DETAIL the mismatch looks
# like the missing case: a wait for the timeout and a transport error; with DETAIL the missing case names the
# rank that did not arrive. The course's tests run all four.) Each rank catches the error and prints it, so
# the job ends and we can read it.

# %% tags=["nbval-ignore-output"]
HANG_TIMEOUT_S = 3
hang_runs = {(case, debug): launch(f"{JOBS}.hang", nproc=2, echo=False, env={"TORCH_DISTRIBUTED_DEBUG": debug},
                                   args=["--case", case, "--timeout-s", HANG_TIMEOUT_S])
             for case, debug in (("missing", "OFF"), ("mismatch", "DETAIL"))}
for (case, debug), run in hang_runs.items():
    print(f"--- {case}, TORCH_DISTRIBUTED_DEBUG={debug} (launch took {run.wall_s:.1f} s)")
    print("\n".join(run.lines))

# %% tags=["nbval-ignore-output"]
pd.DataFrame({f"{case}, {debug}": {
    "rank 0 called": run.result["rank0"]["called"],
    "what it raised": run.result["rank0"]["error_type"],
    "its key line": run.result["rank0"]["key_line"],
    "waited (s)": f"{run.result['rank0']['waited_s']:.2f}",
    "timeout (s)": run.result["timeout_s"]} for (case, debug), run in hang_runs.items()}).T

# %%
named, missing = hang_runs[("mismatch", "DETAIL")].result["rank0"], hang_runs[("missing", "OFF")].result["rank0"]
print(f"DETAIL named the mismatch before the timeout: {'differ' in named['key_line'] and named['waited_s'] < HANG_TIMEOUT_S}; "
      f"the missing rank cost the whole timeout: {missing['waited_s'] >= HANG_TIMEOUT_S - 0.05}")

# %% [markdown]
# Reading: without DETAIL, a rank that never arrives costs the full timeout and then a transport error
# that says nothing about the cause. With DETAIL, the mismatch is named at once, with both ranks' calls. DETAIL costs an
# extra synchronisation and an all-gather of fingerprints before *every* collective: turn it on to find a bug,
# not for training. On gloo every rank gets a Python exception. Without the short timeout, the same job would
# have waited for the default shown above.
#
# **On NCCL it looks different.** NCCL collectives are queued on a CUDA stream and return at once; the GPU
# kernels spin waiting for the missing peer, and the CPU only blocks later, at the next synchronisation
# (`.item()`, a copy to the CPU, a checkpoint). A stuck NCCL job therefore shows no error and 100 % GPU
# utilisation. ProcessGroupNCCL's watchdog thread notices when a collective has run past the timeout and then,
# by default, tears the whole process down (the Python code gets no exception to catch); torchrun sees a
# worker die and stops or restarts the others. What to set and use:
#
# | Setting or tool | What it does |
# |---|---|
# | `init_process_group(timeout=timedelta(minutes=...))` | How long a collective may wait before the watchdog (NCCL) or the transport (gloo) gives up. Long enough for your slowest legitimate step, e.g. a checkpoint on rank 0 while the others wait in a barrier |
# | `TORCH_DISTRIBUTED_DEBUG=DETAIL` (or `INFO`) | Checks that all ranks call the same collective with the same shapes, and names the rank that did not arrive (the course's tests run that case); it works on NCCL too, the checks travel over a helper gloo group. `INFO` only adds logging (DDP's, for instance) |
# | `NCCL_DEBUG=INFO`, `NCCL_DEBUG_SUBSYS=INIT,NET` | NCCL's own log: version, which network and interfaces it chose, rings and trees; `WARN` is the quiet setting for production |
# | `TORCH_NCCL_ASYNC_ERROR_HANDLING` | What the watchdog does on a timeout or NCCL error: 3 (ProcessGroupNCCL's default) tears the process down without aborting the communicator, 1 aborts the communicator and then tears down, 2 only aborts, 0 does nothing (the job hangs). torchrun sets 1 for its workers when the variable is not set |
# | `TORCH_NCCL_DUMP_ON_TIMEOUT=1` (and `TORCH_FR_DUMP_TEMP_FILE`, older name `TORCH_NCCL_DEBUG_INFO_TEMP_FILE`, for the file prefix) | The flight recorder: every rank keeps its last collectives (sequence number, kind, sizes, state: scheduled, started, completed) in a ring buffer, on by default in this PyTorch with 2,000 entries (`TORCH_FR_BUFFER_SIZE`, older name `TORCH_NCCL_TRACE_BUFFER_SIZE`; 0 turns it off); this setting writes each rank's buffer to a file when the watchdog fires |
# | `python -m torch.distributed.flight_recorder.fr_trace DIR` (also installed as `torchfrtrace`) | Merges every rank's dump and reports where they diverge: the first collective that some ranks reached and others did not, or where sizes differ. `-j` prints the raw entries |
# | `NCCL_SOCKET_IFNAME=eth0` (`GLOO_SOCKET_IFNAME` for gloo) | Which network interface to use for bootstrap and sockets; a wrong guess (a docker bridge, a down interface) is a classic cause of hangs at initialisation |
# | `NCCL_IB_HCA=mlx5_0,mlx5_1` | Which InfiniBand adapters (and ports) to use; if NCCL finds none it quietly falls back to TCP sockets, and `NCCL_DEBUG=INFO` shows `NET/Socket` instead of `NET/IB` |
# | `py-spy dump --pid PID` (add `--native` for C++ frames) | The Python stack of a stuck rank without stopping it: shows which line each rank is blocked in (for NCCL, usually a synchronisation after the collective, not the collective itself) |
# | nccl-tests' `all_reduce_perf -b 8 -e 4G -f 2 -g 1` (with `mpirun` or `srun` across nodes) | Times all-reduces from 8 bytes to 4 GB on the real cluster. Its `busbw` column is the bus bandwidth of section 4.1 (it already includes the 2(N−1)/N factor): read β from the plateau at large sizes and α from the time of the smallest ones, then feed them to `AlphaBeta` instead of the published numbers |
#
# The usual order when a job hangs: look at which rank stopped printing, `py-spy dump` it and one healthy rank,
# read the flight recorder dumps (or rerun with `TORCH_DISTRIBUTED_DEBUG=DETAIL` on a small scale), and check
# `NCCL_DEBUG=INFO` for the network that was chosen.

# %% [markdown]
# ## 8. Beyond one machine
# ### 8.1 Threads per process
# torchrun sets `OMP_NUM_THREADS=1` when it starts several processes on one node, and leaves it alone
# when it starts one. Each process without the setting starts as many compute threads as the machine
# has cores, which is right for one process per machine, and wrong as soon as processes share a
# machine outside that default: two "nodes" on one host (section 8.2), one process per GPU started by
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
# ### 8.2 Two nodes on 127.0.0.1, the same job unchanged
# On a cluster each node runs one `torchrun` agent; the agents meet at a **rendezvous** endpoint
# (`--rdzv-backend=c10d --rdzv-endpoint=HOST:PORT`), agree on the ranks, and start their workers.
# Here both "nodes" can be this machine, meeting on a free port chosen at run time, each running one
# process with `OMP_NUM_THREADS` left unset as on a real node. It is **opt-in**: its two agents and
# two workers each load PyTorch, one process more than the jobs above, and the chapter must stay
# within its memory budget on small machines (the cell below estimates the peak from the DDP launch's
# measurement). Set `RUN_TWO_NODES = True` to run it: rank 1 (node 1) kills itself at step 12, and
# rank 0 (node 0) is busy for a minute at that step instead of failing at once, as an NCCL rank blocked in
# a collective would be (section 7.2). The course's tests run this case and the fast-failing one on
# every `make test`, and check that both end with the uninterrupted run's parameters.

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
        two_node_run = launch_nodes(f"{JOBS}.resume", nodes=2, max_restarts=1, threads_per_process=None, echo=False,
                                    args=["--checkpoint-dir", checkpoints, "--kill-rank", 1, "--kill-at-step", 12,
                                          "--survivors-busy-s", 60, "--time-threads", default_threads])
    two_nodes = two_node_run.result
    for node in range(2):
        print(f"node {node}: " + "; ".join(line.strip() for line in two_node_run.rank_lines(0, node=node)
                                           if "attempt" in line))
    print(f"finished in {two_node_run.wall_s:.0f} s (rank 0 would have been busy for 60 s); same parameters as the "
          f"uninterrupted run: {two_nodes['parameters_sha256'] == uninterrupted['parameters_sha256']}")
    print(f"each process started with OMP_NUM_THREADS={two_nodes['threads']['omp_num_threads']} and "
          f"{two_nodes['threads']['started_with']} threads; 1 thread each against that: "
          f"{paired_ratio(two_nodes['threads']['many_threads_s'], two_nodes['threads']['one_thread_s'])}")
else:
    print("Two-node run skipped (opt-in: set RUN_TWO_NODES = True). Its two agents run:")
    for node in range(2):
        print("  " + " ".join(torchrun_command(f"{JOBS}.resume", nproc_per_node=1, nnodes=2,
                                               rdzv_endpoint="127.0.0.1:PORT", args=["--checkpoint-dir", "ckpt"]))
              .replace(sys.executable, "python"))

# %% [markdown]
# ### 8.3 The same job on a real cluster *(reference, optional on a first reading)*
# Nothing in the job changes; only the launch does. **Two hosts by hand** (run the same line on
# each, with `node0.example` reachable from the other on port 29500; 8 GPUs per host, and 8 threads
# per process for hosts with 64 cores):
# ```bash
# export OMP_NUM_THREADS=8 TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1   # section 7.2
# torchrun --nnodes=2 --nproc-per-node=8 \
#     --rdzv-backend=c10d --rdzv-endpoint=node0.example:29500 --rdzv-id=job42 \
#     -m helpers.ch05_distributed.jobs.resume --device cuda --checkpoint-dir /shared/ckpt --result /shared/result.json
# ```
# **SLURM**: one task per node; `srun` starts torchrun on each node, and the first node of the
# allocation hosts the rendezvous. A batch script (`sbatch job.sh`):

# %%
print("""#!/bin/bash
#SBATCH --nodes=2 --ntasks-per-node=1 --gpus-per-node=8 --cpus-per-task=64
export OMP_NUM_THREADS=$((SLURM_CPUS_PER_TASK / 8))   # cores per task / processes per node
export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1            # a fresh store per restart (section 7.2)
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
#     env: [{name: TORCH_DISABLE_SHARE_RDZV_TCP_STORE, value: "1"}]
#     numNodes: 2
#     resourcesPerNode: {limits: {nvidia.com/gpu: 8}}
# ```
# Clusters still on the older Kubeflow Training Operator (v1) describe the same job as a
# `PyTorchJob` (`apiVersion: kubeflow.org/v1`, with `pytorchReplicaSpecs` and an `elasticPolicy`); the
# Trainer's migration guide maps one to the other.
#
# **Who restarts what.** `--max-restarts` restarts workers inside a running allocation. It cannot
# bring back a lost *node*: Slurm ends the whole job step when one of its nodes fails (resubmit,
# or `sbatch --requeue`), and on Kubernetes a lost pod is replaced by the controller (the JobSet
# under a TrainJob, with its failure policy), which starts a fresh torchrun there. torchrun can also
# run **elastically**, `--nnodes=MIN:MAX` (for example `1:4`): the job continues with fewer nodes
# when one leaves and takes in new ones at the next rendezvous, which only works if the job can
# change its world size (resharding its checkpoint on load, rescaling batch and learning rate).
# Trainer v2's `numNodes` is a fixed number today.
#
# ### 8.4 Where Horovod went *(reference, optional on a first reading)*
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
# ## 9. What the source article got wrong
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
#    the error, and the warning of section 3.4's deprecated `broadcast_buffers` (read its caveat: the
#    new name still synchronises buffers once, at construction). One small context manager makes
#    sure the group is left however the cell ends:

# %% tags=["nbval-ignore-output"]
@contextlib.contextmanager
def group_of_one() -> Iterator[None]:
    """A one-process gloo group in this kernel, destroyed however the block ends."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


with group_of_one():
    try:
        DDP(nn.Linear(4, 2), device_ids=[0])  # the article's device_ids on a CPU model (was wrong)
    except ValueError as error:
        print(f"{type(error).__name__}: {str(error)[:150]}...")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DDP(nn.Linear(4, 2), broadcast_buffers=False)  # the deprecated name, shown for its warning
print(f"{caught[0].category.__name__}: {caught[0].message}" if caught else
      f"no warning from torch {torch.__version__}: the name is deprecated from PyTorch 2.13 on")

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
#    end, however the code ends (the course's jobs do, in `process_group()`'s `finally`, as does
#    `group_of_one` in this kernel), or the job may hang at exit or print a warning about resources
#    never released.
# 6. **The two classes run together**: the article writes `torch.nn.DataParallelDistributedDataParallel(DDP)`,
#    which names no class; it most likely means DDP. `DataParallel`, if that was meant for one machine,
#    is not the choice either: its own documentation recommends DistributedDataParallel even on one
#    machine, because `DataParallel` is one process with one thread per GPU, it copies the model to
#    every GPU at every step and gathers the outputs on GPU 0, and its threads contend for Python's GIL.
# 7. **Horovod as a current framework**: no release since June 2023 (section 8.4). And one current
#    name the snippet does not need but readers will meet: `python -m torch.distributed.launch` is
#    deprecated in favour of `torchrun`, which the course uses throughout.
#
# ## 10. On a GPU
# The same job modules run on NCCL with `--device cuda`: each rank takes the GPU of its `LOCAL_RANK`,
# DDP gets `device_ids=[local_rank]`, and FSDP2's mesh is built on CUDA. The cell starts one process
# per GPU. On one GPU the world size is 1 (nothing to all-reduce: DDP's and FSDP2's overhead only,
# and the job's thread comparisons mean nothing on a GPU); with more GPUs, the all-reduce sweep
# measures the GPUs' own link. **This cell has never run in the course's checks** (no GPU was at
# hand when this edition was written); the CPU jobs above are the tested path.

# %% tags=["nbval-ignore-output"]
if torch.cuda.is_available():
    gpu_world = torch.cuda.device_count()
    gpu_run = launch(f"{JOBS}.ddp", nproc=gpu_world, args=["--device", "cuda", "--rounds", 4])
    gpu_fp64 = gpu_run.result["correctness"]["float64"]
    gpu_step = statistics.median(next(v for k, v in gpu_run.result["scaling"]["step_s"].items() if "(DDP)" in k))
    print(f"{gpu_world} GPU(s), backend nccl: DDP step {gpu_step * 1e3:.2f} ms; float64 DDP matches one process: "
          f"{gpu_fp64['max_abs_diff_ddp_vs_single'] <= job_ddp.float64_tolerance(gpu_fp64)}")
    gpu_fsdp = launch(f"{JOBS}.fsdp", nproc=gpu_world, args=["--device", "cuda"]).result
    print("FSDP2 on the GPU(s), median step (ms): "
          + ", ".join(f"{name} {statistics.median(times) * 1e3:.2f}" for name, times in gpu_fsdp["step_s"].items()))
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
# ## 11. Exercises
# The solutions are in the collapsed cells after each exercise; they use their own names, so running
# every cell does not overwrite your answers.
#
# **Exercise 1 (which sharding fits?).** A 13-billion-parameter model trains with mixed-precision
# Adam on 8 GPUs of 80 GB each. With activation checkpointing, its activations still take 30 GB on
# every GPU. Which is the *least* sharding that fits, counting the training state of section 5.1
# and the activations (and nothing else)? ZeRO-1 and ZeRO-2 send what DDP sends; ZeRO-3 sends about
# half as much again, since it gathers the weights in every step: take the first stage that fits.
# Answer with one of the stage names of section 5.1's table, e.g. `"ZeRO-1"`.

# %%
my_stage = ...  # one of: "DDP (replicated)", "ZeRO-1", "ZeRO-2", "ZeRO-3 / FSDP full shard"
check_least_sharded_stage("Exercise 1", my_stage)

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution"]
# Per GPU: 13e9 x bytes per parameter on 8 workers (section 5.1), plus 30e9 of activations, within 80e9.
solution_totals_gb = {stage: 13 * bytes_per_parameter("mixed-precision Adam", stage, 8) + 30 for stage in STAGES}
solution_stage = next(stage for stage, total in solution_totals_gb.items() if total <= 80)
check_least_sharded_stage("Exercise 1", solution_stage)

# %% [markdown]
# **Exercise 2 (predict a cluster's communication).** ResNet-50 has 25.6 million parameters. It trains
# with DDP on 64 workers joined by 10 Gb/s Ethernet; assume a latency α of 50 µs per message step.
# DDP sends the fp32 gradients in buckets: the first of 1 MiB, then 25 MiB each, the last holding what
# remains. How many buckets are there, and what is the total time of all the buckets' ring
# all-reduces in one step, in milliseconds (section 1's formula, per bucket)? The time must be
# within 1%. Work it out by hand: the widget of section 4.3 computes the same model, so use it
# afterwards, to check your number and then to decide how much of that time overlap could hide.

# %%
my_bucket_count = ...  # a whole number
my_allreduce_ms = ...  # your prediction, in ms
check_bucketed_allreduce("Exercise 2", my_bucket_count, my_allreduce_ms)

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution"]
solution_gradient_bytes, solution_workers, solution_alpha, solution_beta = 4 * 25.6e6, 64, 50e-6, 10e9 / 8
solution_full, solution_rest = divmod(solution_gradient_bytes - 2 ** 20, 25 * 2 ** 20)
solution_buckets = [2 ** 20] + [25 * 2 ** 20] * int(solution_full) + [solution_rest]
solution_ms = 1e3 * sum(2 * (solution_workers - 1) * solution_alpha
                        + 2 * (solution_workers - 1) / solution_workers * size / solution_beta
                        for size in solution_buckets)
# With overlap, every bucket but the last can hide behind the backward pass that is still running, if backward
# lasts that long; the last bucket is always exposed. Try it in the widget of section 4.3 (25 M parameters,
# 10 Gb/s Ethernet, 64 workers, 50 us) with this CPU's compute and then with a GPU's.
check_bucketed_allreduce("Exercise 2", len(solution_buckets), solution_ms)

# %% [markdown]
# ## 12. Summary
# The results this run measured, recorded into the course's ledger for chapter 8:

# %% tags=["nbval-ignore-output"]
def median_ms(times_s: list[float]) -> float:
    """The median of a variant's round times, in ms (the numbers its ratio was paired from)."""
    return statistics.median(times_s) * 1e3


python_hook, per_tensor = "allreduce_hook (Python)", "one bucket per gradient tensor"
entries = [
    make_entry(5, "ddp_two_processes", metric="training step, global batch 64 on 2 cores", unit="ms",
               baseline=median_ms(scaling["1 process x 2 threads"]),
               optimized=median_ms(scaling["2 processes x 1 thread (DDP)"]), higher_is_better=False,
               hardware=hw.cpu_label, claim=ddp_claim,
               compared_with="1 process x 2 threads at the same global batch"),
    make_entry(5, "ddp_buckets", metric="2-process DDP training step", unit="ms",
               baseline=median_ms(knobs[per_tensor]["step_s"]), optimized=median_ms(knobs[base_name]["step_s"]),
               higher_is_better=False, hardware=hw.cpu_label, claim=bucketing_claim,
               compared_with="one all-reduce per gradient tensor",
               extras={"allreduce_calls": [knobs[per_tensor]["calls"], knobs[base_name]["calls"]],
                       "fitted_latency_us": loopback.latency_s * 1e6,
                       "fitted_bandwidth_GBps": loopback.bandwidth_bytes_per_s / 1e9}),
    make_entry(5, "bf16_compress_hook", metric="2-process DDP training step", unit="ms",
               baseline=median_ms(knobs[python_hook]["step_s"]), optimized=median_ms(knobs["bf16_compress_hook"]["step_s"]),
               higher_is_better=False, hardware=hw.cpu_label, claim=bf16_claim,
               compared_with="the same fp32 all-reduce as a Python comm hook",
               extras={"bytes_per_step": [knobs[python_hook]["bytes"], knobs["bf16_compress_hook"]["bytes"]],
                       "median_relative_error": rounding["median_relative_error"]}),
    make_entry(5, "no_sync_accumulation", metric="optimizer step over 4 micro-batches, 2 processes", unit="ms",
               baseline=median_ms(accumulation_timing["without no_sync"]["step_s"]),
               optimized=median_ms(accumulation_timing["with no_sync"]["step_s"]), higher_is_better=False,
               hardware=hw.cpu_label, claim=no_sync_claim, compared_with="the same micro-batches without no_sync()",
               extras={"allreduce_calls": [accumulation["without no_sync"]["calls"], accumulation["with no_sync"]["calls"]],
                       "summed_allreduce_ms": [median_ms(accumulation_timing[name]["summed_allreduce_s"])
                                               for name in ("without no_sync", "with no_sync")]}),
    make_entry(5, "fsdp2_memory", metric="parameter, gradient and Adam bytes per rank, accounted from the DTensor "
               "shards (not a measured peak)", unit="MB", baseline=fsdp_unsharded_bytes / 1e6,
               optimized=fsdp_rank_bytes / 1e6, higher_is_better=False, hardware=hw.cpu_label,
               compared_with="the same state unsharded (DDP replicates it on every rank)", extras={"world_size": 2}),
    make_entry(5, "fsdp2_step", metric="2-rank training step (Adam)", unit="ms",
               baseline=median_ms(fsdp["step_s"]["DDP"]), optimized=median_ms(fsdp["step_s"]["FSDP2"]),
               higher_is_better=False, hardware=hw.cpu_label, ratio=fsdp_price, compared_with="DDP at the same world size"),
    make_entry(5, "omp_one_thread_per_process", metric="2-process DDP training step", unit="ms",
               baseline=median_ms(threads["many_threads_s"]), optimized=median_ms(threads["one_thread_s"]),
               higher_is_better=False, hardware=hw.cpu_label, claim=omp_claim,
               compared_with=f"{threads['threads']} threads per process (this machine's default)"),
]
record_chapter(5, entries, claims)
ledger_table(entries).round(3)

# %% [markdown]
# **Take-aways**
# 1. Launch distributed code as modules with `torchrun`, as a cluster will: it sets the ranks and
#    restarts failed groups, and the same job then runs on one laptop, two hosts, SLURM or
#    Kubernetes. Set `OMP_NUM_THREADS` to cores per process, and `TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`
#    so that a restart across nodes meets in a fresh store.
# 2. DDP is exact (float64 agrees to rounding; the ranks stay bitwise identical), and it pays only when
#    each worker brings its own compute (section 3.3 reads what yours measured). Whether a link is fast
#    enough depends on the compute per byte of gradient: given a link's α and β, measured on the target
#    cluster with nccl-tests, and a compute rate you trust, the α-β model predicts how a step scales;
#    the faster the accelerator, the faster the link it needs.
# 3. FSDP2 divides the training state by the number of ranks, at a price in step time that section 5
#    measured and took apart; tensor, pipeline, context and expert parallelism split the model
#    itself and send activations instead. Checkpoint with DCP everything the next step depends on,
#    give collectives a timeout, and a killed rank costs the steps since the last checkpoint, not
#    the run.
