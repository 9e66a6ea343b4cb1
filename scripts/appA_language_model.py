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
# # Appendix A — Beyond the article: a small language model, from prefill to batching
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dl-perf-course/dl-performance-workbook/blob/main/notebooks/appA_language_model.ipynb) [![Launch Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/dl-perf-course/dl-performance-workbook/main?labpath=notebooks/appA_language_model.ipynb)
#
# The source article and the eight chapters optimise convolutional networks. Much of a practitioner's
# performance work in 2026 is on transformers instead, and above all on *generating* tokens, where the
# costs have a different shape: a prompt is read in one pass (**prefill**), then every new token is one
# more pass (**decode**) that multiplies a single position by every weight. This appendix trains a small
# GPT-style decoder here, on text that ships with Python, and applies the course's method to it:
# chapter 1's roofline places prefill and decode, chapter 7's profiler finds why generation without a
# **KV cache** slows down, chapter 6's weight-only quantization meets the case it was made for, and
# batching shows what a server trades. Every speed-up is measured in interleaved rounds with an interval
# and a verdict, and every precision change is scored on held-out text.
#
# **Estimated time:** ~75 min · **Hardware:** Any CPU (bf16 pays with AVX512-BF16 or AMX); a CUDA GPU adds the flash and memory-efficient attention kernels and a CUDA graph of the decode step

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
import ipywidgets as widgets
import pandas as pd
import torch
import torch.nn.functional as F

from helpers.appA_language_model.decode_step import (  # first: it quietens torchao's import
    WEIGHT_FORMATS, decode_call, decoder_in_format, matmul_ms_profiled,
)
from helpers.core.claims import make_claim, paired_ratio, report_claim, timing_ratio
from helpers.core.cost import count_parameters
from helpers.core.hardware import last_level_cache_bytes
from helpers.core.memory import release_freed_memory
from helpers.core.measure import measure_interleaved, timing_table
from helpers.core.roofs import roof_operations, roofs_from_seconds
from helpers.support.chapter import setup_chapter
from helpers.support.ledger import ledger_table, make_entry, record_chapter
from helpers.support.plots import plot_roofline
from helpers.support.source import show_source
from helpers.support.widgets import live_control
from helpers.ch03_hardware.gpu import cuda_graph_replay
from helpers.ch06_compression.weight_only import FAST_PATHS, matmul_operators, weight_bytes
from helpers.appA_language_model.attention import (
    IMPLEMENTATIONS, attention_by_hand, attention_inputs, operators_and_peak, score_matrix_bytes,
)
from helpers.appA_language_model.batching import continuous_batches, request_lengths, static_batches
from helpers.appA_language_model.corpus import docstring_corpus, text_of, tokens_of
from helpers.appA_language_model.exercises import check_cached_tokens, check_ridge_batch, check_step_prediction
from helpers.appA_language_model.generate import (
    GENERATORS, generate_cached, generate_recomputing, generation_clock, generation_report, token_times_s,
)
from helpers.appA_language_model.kv_profile import positions_per_step
from helpers.appA_language_model.model import CausalSelfAttention, DecoderConfig, KVCache, decoder
from helpers.appA_language_model.plots import plot_attention, plot_batching, plot_decode_against_bytes, plot_token_times
from helpers.appA_language_model.token_costs import (
    H100_SXM_TBPS, SERVED_MODELS, decode_cost, matrix_weights, prefill_cost,
)
from helpers.appA_language_model.training import (
    Recipe, agreement, bits_per_byte, paired_loss_change, trained_decoder, validation_loss,
)

hw = setup_chapter(9)
torch._inductor.config.compile_threads = 1  # compile in this process: less memory, and faster here (chapter 8)
claims = []  # this appendix's speed claims, judged on this machine; recorded in the summary

# %% [markdown]
# ## 1. Two phases with two different costs
# A decoder-only model turns a prompt of $P$ tokens into logits for the next token. **Prefill** runs
# all $P$ positions through the network in one pass: every weight matrix multiplies a $P$-row matrix,
# about $2N$ FLOPs per position for $N$ weights, and the weights are read from memory once for all $P$
# rows. **Decode** then produces one token per pass: a one-row matrix times every weight, still about
# $2N$ FLOPs, but now every weight is read for just 2 FLOPs. Chapter 1's roofline says what follows:
# FLOPs per byte of about $P/2$ in fp32 for prefill (compute-bound once $P$ is past the ridge) and
# about $0.5$ for decode (deep in the memory-bound region), whatever the model. Hence the two numbers
# every serving system reports: **time to first token** (TTFT, mostly prefill) and **time per output
# token** (TPOT, decode), with tokens per second its inverse.

# %% [markdown]
# ## 2. The workload: a small decoder trained here
# ### 2.1 Text that ships with Python
# The training text is the docstrings of 63 standard-library modules. Tokens are bytes (256 of them),
# so nothing needs a tokenizer. Whole modules are held out for validation, so the held-out text is prose
# the model never saw. (Docstrings change between Python versions, so the sizes printed here do too.)

# %% tags=["nbval-ignore-output"]
corpus = docstring_corpus()
print(f"training text: {len(corpus.train):,} bytes from {len(corpus.train_modules)} modules; "
      f"held out: {len(corpus.validation):,} bytes from {len(corpus.validation_modules)} modules "
      f"({', '.join(corpus.validation_modules[:5])}, ...)")

# %% [markdown]
# ### 2.2 The model
# A GPT-style decoder: byte embeddings plus learned positions, pre-norm blocks of attention and a
# 4x-wide MLP, and a head that shares the embedding matrix. Attention is the part generation changes, so
# here it is whole; `KVCache.store` is the cache: it writes this step's keys and values after the
# positions already filled and hands attention all of them.

# %%
show_source(CausalSelfAttention)

# %%
show_source(KVCache.store)

# %% [markdown]
# ### 2.3 Training, within the notebook's budget
# 200 steps of AdamW on 16 windows of 128 bytes each: about 20 seconds on two cores, once (the weights are
# kept in `.cache/`, named by the recipe and the corpus, so a second run loads them). The quality
# measure is the held-out cross-entropy in **bits per byte**: 8 would be a model that knows nothing, and
# a model that only knows how often each byte occurs (a unigram model fitted to the training text)
# is the bar to clear.

# %% tags=["nbval-ignore-output"]
SMALL = DecoderConfig(context=256, width=128, layers=4, heads=4)
RECIPE = Recipe(steps=200, batch=16, length=128, learning_rate=3e-3)
small, losses, from_cache = trained_decoder(SMALL, corpus, RECIPE)
print(f"{count_parameters(small):,} parameters; "
      f"{'loaded from the cache' if from_cache else f'trained {RECIPE.steps} steps'}; "
      f"training loss {losses[0]:.2f} -> {sum(losses[-20:]) / 20:.2f} nats per byte (mean of the last 20 steps)")

# %% tags=["nbval-ignore-output"]
counts = torch.bincount(corpus.train.long(), minlength=256).double() + 1  # add-one smoothing
unigram_bits = -(counts / counts.sum()).log2()[corpus.validation.long()].mean().item()
fp32_loss = validation_loss(small, corpus.validation)
print(f"held-out bits per byte: the decoder {bits_per_byte(fp32_loss):.2f}, a unigram model {unigram_bits:.2f}, "
      "knowing nothing 8.00")
with torch.no_grad():
    next_byte = small(tokens_of("Return the number of "))[0, -1].softmax(-1).topk(5)
print("most likely next bytes after 'Return the number of ':",
      ", ".join(f"{chr(int(i))!r} {float(p):.0%}" for p, i in zip(*next_byte)))

# %% [markdown]
# Twenty seconds of training on two cores buys a model that predicts bytes well below the unigram
# bar (it has learned which letters follow which, and common short words) but not meaning: left to
# itself, greedy decoding from so small a model soon repeats a short word or a space. That is enough for this appendix. What matters is that the model is real, its outputs
# are checked, and every speed change below is scored on the same held-out text.

# %% [markdown]
# ## 3. Prefill and decode on the roofline
# ### 3.1 This machine's roofs
# Chapter 1's probes, measured again here: a large matrix product for the compute roof and a sum over a
# 64 MiB vector for the read bandwidth a decode step depends on. The decode steps below also run in
# bf16, whose matrix products have a roof of their own on a CPU with native bf16: it is measured in the
# same rounds.

# %% tags=["nbval-ignore-output"]
BF16_PROBE = "matmul 1024 bf16"
bf16_a, bf16_b = torch.randn(1024, 1024, dtype=torch.bfloat16), torch.randn(1024, 1024, dtype=torch.bfloat16)
roof_timings = measure_interleaved({**roof_operations(), BF16_PROBE: lambda: bf16_a @ bf16_b}, rounds=3,
                                   min_run_time=0.3)
roofs = roofs_from_seconds({name: timing.median_s for name, timing in roof_timings.items()})
bf16_gflops = 2 * 1024**3 / roof_timings[BF16_PROBE].median_s / 1e9
print(roofs.summary())
print(f"bf16 matrix product (1024 x 1024): {bf16_gflops:.0f} GFLOP/s")
print(roofs.cache_note())

# %% [markdown]
# ### 3.2 Decode reads every weight, once per token
# The trained model's weights (about 3 MB) fit in this CPU's caches, so its decode step measures the
# cache and Python's overhead, not memory. To see memory, the same code is built at four widths, up to
# 28 M parameters (114 MB in fp32), with random weights: speed does not depend on what the weights are.
# Each decode step runs at position 64 of the sequence, the cache filled by a prefill, batch 1.

# %% tags=["nbval-ignore-output"]
POSITION = 64
SWEEP_WIDTHS = (192, 384, 576, 768)
sweep_models = {width: decoder(DecoderConfig(width=width, layers=4, heads=width // 64)) for width in SWEEP_WIDTHS}
sweep_timings = measure_interleaved({width: decode_call(model, batch=1, position=POSITION)
                                     for width, model in sweep_models.items()}, rounds=3, min_run_time=0.6)
sweep = pd.DataFrame({
    "weights (MB)": [4 * matrix_weights(m.config) / 1e6 for m in sweep_models.values()],
    "ms per token": [sweep_timings[w].round_median_ms for w in SWEEP_WIDTHS],
}, index=pd.Index(SWEEP_WIDTHS, name="width"))
sweep["GB/s of weights read"] = sweep["weights (MB)"] / sweep["ms per token"]
sweep["share of the read roof (MBU)"] = sweep["GB/s of weights read"] / roofs.read_gbps
sweep.round(2)

# %% tags=["nbval-ignore-output"]
llc = last_level_cache_bytes()
plot_decode_against_bytes(list(sweep["weights (MB)"]), list(sweep["ms per token"]), read_gbps=roofs.read_gbps,
                          cache_mb=None if llc is None else llc / 1e6, hardware=hw.cpu_label)

# %% [markdown]
# The dashed line is what the read roof allows: the time to stream the weights once. The measured steps
# lie above it: a one-row matrix product on two threads, plus the step's LayerNorms, attention and
# Python dispatch, reaches only part of the bandwidth a plain sum reaches (the last column). The steps
# grow with the bytes, though, and that is the point: at batch 1, decode time is bought in bytes of
# weights, which is why the sections below shrink the bytes.

# %% [markdown]
# ### 3.3 Prefill and decode as points on the roofline
# The 768-wide model (28 M parameters), a 192-token prompt in one prefill pass against one decode step after it. FLOPs and
# bytes are counted from the shapes (`token_costs`); bytes are the weights read once (a lower bound),
# plus, for decode, the cache it reads.

# %% tags=["nbval-ignore-output"]
WIDE_WIDTH = 768  # 114 MB of fp32 weights: far more than the caches hold, and room in memory for its copies
WIDE = sweep_models.pop(WIDE_WIDTH)
WIDE_CONFIG = WIDE.config
del sweep_models  # the other widths are done with: free their memory
release_freed_memory()
PROMPT = 192
prefill_prompt = torch.randint(0, 256, (1, PROMPT), generator=torch.Generator().manual_seed(0))
with torch.inference_mode():
    phase_timings = measure_interleaved({
        "prefill": lambda: WIDE(prefill_prompt, KVCache(WIDE_CONFIG, 1)),
        "decode": decode_call(WIDE, batch=1, position=PROMPT),
    }, rounds=3, min_run_time=0.9)
costs = {"prefill, 192 tokens": (prefill_cost(WIDE_CONFIG, prompt=PROMPT), phase_timings["prefill"].round_median_ms),
         "decode step at position 192": (decode_cost(WIDE_CONFIG, position=PROMPT), phase_timings["decode"].round_median_ms)}
phase_table = pd.DataFrame({name: {"GFLOP": cost.flops / 1e9, "MB read (at least)": cost.bytes / 1e6,
                                   "FLOP per byte": cost.flop_per_byte, "ms": ms,
                                   "achieved GFLOP/s": cost.flops / ms / 1e6,
                                   "share of its roof": cost.flops / ms / 1e6 / roofs.attainable_gflops(
                                       cost.flop_per_byte, "read"),
                                   "side of the read ridge": roofs.side(cost.flop_per_byte, "read")}
                            for name, (cost, ms) in costs.items()}).T
phase_table

# %% tags=["nbval-ignore-output"]
plot_roofline(roofs, {name: (float(row["FLOP per byte"]), float(row["achieved GFLOP/s"]))
                      for name, row in phase_table.iterrows()}, hardware=hw.cpu_label)

# %% [markdown]
# The two phases sit on opposite sides of the ridge by their FLOPs per byte alone: prefill does
# about a hundred FLOPs per weight byte, decode half of one. "Share of its roof" compares each with
# the roof above its own intensity (serving engineers call these MFU and MBU, model FLOPs and
# bandwidth utilisation): the compute roof for prefill, the read bandwidth times its
# intensity for decode. Prefill's matrix products are large enough to keep the cores busy; decode's
# one-row products reach a smaller share of the bandwidth (Exercise 1 asks why). The decode step's
# time is this model's time per output token, and its inverse is tokens per second: everything that follows either reads fewer bytes per token or
# shares each byte among more tokens.

# %% [markdown]
# ### 3.4 The clock a user sees: TTFT and TPOT
# (Tokens here are bytes. A BPE tokenizer's token is about four bytes of English text, and its vocabulary
# in recent models (Llama 3: 128k entries, Qwen2.5: 152k) makes the head and its logits a large share of a small model's decode step,
# which this model's 256-entry head hides.)
# On the trained model, generating 96 tokens after a 64-byte prompt, with the cache:

# %% tags=["nbval-ignore-output"]
prompt = tokens_of(text_of(corpus.validation[:64]))
clock = generation_clock(token_times_s(generate_cached, small, prompt, 96))
print(f"time to first token {clock.first_token_ms:.1f} ms, time per output token {clock.per_token_ms:.2f} ms "
      f"= {clock.tokens_per_s:.0f} tokens/s")

# %% [markdown]
# ## 4. The KV cache: diagnose, fix, measure
# ### 4.1 Diagnosis with chapter 7's profiler
# Generation written the obvious way calls the model on the whole sequence at every step and keeps the
# last position's logits. The profiler records every call's input shapes, so it can say how many
# positions each step sent through the first block's query-key-value projection:

# %%
short_prompt = prompt[:, :16]
steps_without = positions_per_step(small, lambda: generate_recomputing(small, short_prompt, 12))
steps_with = positions_per_step(small, lambda: generate_cached(small, short_prompt, 12))
print("positions per forward pass, recomputing:", steps_without)
print("positions per forward pass, with a cache:", steps_with)
print(f"positions computed for 12 tokens: {sum(steps_without)} against {sum(steps_with)}")

# %% [markdown]
# Each step recomputes every earlier position's keys and values, which never change: the work per
# token grows with the position, and the total with its square. The fix keeps them (the cache above):
# one prefill pass over the prompt, then one position per step. Attention still reads every cached
# key and value, so a step's cost still grows with the position, but by a cache read, not a forward
# pass over the prefix.
#
# ### 4.2 Same tokens, and the measured gain
# The two ways compute the same logits up to rounding (a unit test checks them position by position),
# so greedy decoding picks the same tokens unless two candidates tie to within that rounding.

# %% tags=["nbval-ignore-output"]
recomputed, cached = (generate(small, prompt, 32) for generate in GENERATORS.values())
print("the two ways generate identical tokens:", torch.equal(recomputed, cached))

# %% tags=["nbval-ignore-output"]
NEW_TOKENS = 64
token_times = {name: 1e3 * token_times_s(generate, small, prompt, NEW_TOKENS) for name, generate in GENERATORS.items()}
plot_token_times(token_times, prompt=prompt.shape[1], hardware=hw.cpu_label)

# %% tags=["nbval-ignore-output"]
generation_timings = measure_interleaved({name: lambda g=generate: g(small, prompt, NEW_TOKENS)
                                          for name, generate in GENERATORS.items()}, rounds=8, min_run_time=0.8, warmup=1)
kv_claim = make_claim(9, "kv_cache_2x", f"Generating {NEW_TOKENS} tokens after a {prompt.shape[1]}-byte prompt with "
                      "a KV cache is at least 2x faster than recomputing the prefix at every step.", threshold=2.0,
                      ratio=timing_ratio(*generation_timings.values()), hardware=hw.cpu_label)
claims.append(kv_claim)
report_claim(kv_claim,
             holds="The recomputing curve above climbs with the position (its step is a forward pass over the whole "
                   "prefix) while the cached one stays nearly flat; the ratio would grow with the number of tokens.",
             does_not_hold="On this machine a forward pass over up to 128 positions costs little more than one "
                           "position (the model is tiny and each call is dominated by fixed overhead): the "
                           "quadratic term shows only for longer sequences or wider models.")

# %% [markdown]
# ### 4.3 What the cache costs in memory, here and for real models
# The cache holds keys and values for every layer and position: layers × 2 × KV heads × head dim ×
# bytes per value, per token. Ours is tiny. For models people serve, the same formula decides how many
# tokens (all concurrent requests together) fit beside the weights; **grouped-query attention** (GQA)
# shares each key-value head among several query heads, which divides the cache by that factor (and
# shrinks the key and value projections a little too).

# %%
cache_here = KVCache(SMALL, batch=1)
print(f"our decoder: {cache_here.nbytes / 2**20:.2f} MiB of fp32 cache for its {SMALL.context} positions "
      f"({cache_here.nbytes // SMALL.context:,} bytes per token)")
GPU_GB = 80
kv_table = pd.DataFrame([{"model": m.name, "parameters (B)": m.parameters_b, "layers": m.layers,
                          "query heads": m.query_heads, "KV heads": m.kv_heads, "head dim": m.head_dim,
                          "KiB per token (bf16)": m.kv_bytes_per_token() / 1024,
                          "GB for one 4,096-token request": m.kv_bytes_per_token() * 4096 / 1e9,
                          f"tokens beside bf16 weights on {GPU_GB} GB": m.tokens_that_fit(GPU_GB)}
                         for m in SERVED_MODELS]).set_index("model")
kv_table.round(1)

# %% [markdown]
# Read the table before the next section. Llama 2 7B and Llama 3.1 8B have the same number of layers
# and query heads; with 8 KV heads instead of 32, Llama 3.1 8B keeps a quarter of the cache per token,
# so nearly four times as many tokens fit (GQA also shrinks the key and value projections, which frees
# parameters that Llama 3.1 spends on a larger vocabulary and MLP). A 70 B model's bf16 weights do not
# fit on one 80 GB GPU at all: it is split across GPUs (tensor parallelism, chapter 5) or quantized.
# Quantizing the cache itself to 8 bits (an FP8 KV cache, as vLLM and TensorRT-LLM offer) halves its
# bytes again; Exercise 2 uses it. And the table counts no waste: our `KVCache` sets aside the whole
# context for every sequence, used or not, which is what vLLM's PagedAttention avoids by handing the
# cache out in small blocks as a sequence grows. Nor does it count what a server keeps back: vLLM fits
# everything it holds (weights, activations, the cache) into 90% of the GPU by default
# (`gpu_memory_utilization`), leaving the rest to the CUDA context and other processes; and an
# "80 GB" H100 holds 80 GiB, a little more than the 80 × 10⁹ bytes used here.

# %% [markdown]
# ## 5. Attention kernels: written by hand against SDPA
# The hand-written version is the textbook formula: it builds the whole positions × positions score
# matrix for every head, masks the future, takes the softmax and multiplies by the values. PyTorch's
# `F.scaled_dot_product_attention` (SDPA) picks a fused kernel instead: on a CPU, a FlashAttention-style
# kernel that walks the keys in tiles and never stores the matrix.

# %%
show_source(attention_by_hand)

# %%
LENGTHS = (256, 512, 1024, 2048)
attention_cases = {length: attention_inputs(length) for length in LENGTHS}
q, k, v = attention_cases[256]
print("the same result within 1e-5:", torch.allclose(attention_by_hand(q, k, v), F.scaled_dot_product_attention(
    q, k, v, is_causal=True), atol=1e-5))
for name, fn in IMPLEMENTATIONS.items():
    operators, _ = operators_and_peak(fn, q, k, v)
    print(f"{name}: {', '.join(operators)}")

# %% [markdown]
# Memory first, since it is exact: the profiler records what each operator of one call leaves allocated
# (net of what it frees before returning), so their running total, in order, gives the most memory held
# between operators (4 heads, 64 channels each, fp32), shown against the size of one score matrix.
# Scratch an operator frees before it returns is not seen: SDPA's fixed-size tiles per thread.

# %%
allocated_mb = {name: [operators_and_peak(fn, *attention_cases[n])[1] for n in LENGTHS]
                for name, fn in IMPLEMENTATIONS.items()}
memory_table = pd.DataFrame({f"{name}: peak MB held": values for name, values in allocated_mb.items()},
                            index=pd.Index(LENGTHS, name="positions"))
memory_table["one score matrix (MB)"] = [score_matrix_bytes(n) / 1e6 for n in LENGTHS]
memory_table.round(1)

# %% tags=["nbval-ignore-output"]
attention_timings = {n: measure_interleaved({name: lambda f=fn, x=attention_cases[n]: f(*x)
                                             for name, fn in IMPLEMENTATIONS.items()},
                                            rounds=8 if n == LENGTHS[-1] else 3,
                                            min_run_time=0.6 if n == LENGTHS[-1] else 0.2)
                     for n in LENGTHS}
attention_ms = {name: [attention_timings[n][name].round_median_ms for n in LENGTHS] for name in IMPLEMENTATIONS}
plot_attention(LENGTHS, attention_ms, allocated_mb, hardware=hw.cpu_label)

# %% tags=["nbval-ignore-output"]
sdpa_claim = make_claim(9, "sdpa_faster_2048", "At 2048 positions (4 heads, fp32, causal), SDPA is at least 1.2x "
                        "faster than attention written by hand.", threshold=1.2,
                        ratio=timing_ratio(attention_timings[LENGTHS[-1]]["by hand"],
                                           attention_timings[LENGTHS[-1]]["SDPA"]), hardware=hw.cpu_label)
claims.append(sdpa_claim)
report_claim(sdpa_claim,
             holds="The fused kernel skips the masked half of the score matrix (is_causal=True) and never writes "
                   "the matrix to memory: the hand-written version writes and reads several matrices of the size in "
                   "the table. The decoder calls SDPA the same way, with is_causal=True, on a whole sequence.",
             does_not_hold="The hand-written version's matrix products run on the same tuned matrix kernels, and at "
                           "this length its score matrices still stream fast enough here; the memory column is "
                           "where SDPA wins on every machine, and on a GPU the time follows (section 8).")

# %% [markdown]
# The hand-written version's peak grows with the square of the length (it holds more than one score
# matrix at once), and a long-context model runs 128k positions; SDPA's grows linearly (between operators it
# holds nothing larger than its output, and its scratch tiles are a fixed size per thread). This is why every serving engine uses a fused attention kernel, and why the
# ones that matter on GPUs (FlashAttention 2 and 3, FlashInfer, cuDNN's) are engineered around
# memory traffic, not FLOPs.

# %% [markdown]
# ## 6. Where weight-only quantization pays: the decode step
# Chapter 6 measured weight-only int8 and int4 on stacks of Linear layers and found the rule: they pay
# where a matrix product reads each weight for few rows (batch 1), and not where each weight serves
# many rows. A decode step is that case, and this section applies chapter 6's variants to it, each on
# its fast path there (bf16: compiled with freezing; int8 weight-only: compiled; int4 weight-only:
# eager), plus bf16 itself, which halves the bytes of fp32.
#
# ### 6.1 Quality first
# The trained model in each weight format, on the same held-out text. Quality is measured on the model
# we could train; speed (6.2) on the 768-wide model with random weights, where the bytes matter. The
# quantization is the same code on both, with one difference to keep in mind: int4 keeps a scale and a
# zero point per group of 128 weights, so the small model's 128-input layers get one group per row (its MLP's 512-input
# rows, four), while the wide model's rows hold six groups and more.
# The change is paired (both formats scored on the same 64 windows) with a 95% bootstrap interval.

# %% tags=["nbval-ignore-output"]
small_formats = {fmt: decoder_in_format(small, fmt) for fmt in WEIGHT_FORMATS}
quality = pd.DataFrame({"weights (KB)": [weight_bytes(m) / 1e3 for m in small_formats.values()],
                        "held-out bits per byte": [bits_per_byte(validation_loss(m, corpus.validation))
                                                   for m in small_formats.values()]},
                       index=pd.Index(WEIGHT_FORMATS, name="weights"))
changes = {fmt: paired_loss_change(m, small, corpus.validation) for fmt, m in small_formats.items()}
quality["change (bits per byte)"] = [change for change, _, _ in changes.values()]
quality["95% interval"] = [f"{low:+.5f} to {high:+.5f}" for _, low, high in changes.values()]
quality["interval excludes 0"] = [low > 0 or high < 0 for _, low, high in changes.values()]
quality["perplexity per byte"] = 2 ** quality["held-out bits per byte"]
quality["same next byte as fp32 (%)"] = [100 * agreement(m, small, corpus.validation) for m in small_formats.values()]
quality.round(4)

# %% [markdown]
# A change of a few thousandths of a bit per byte is rounding; a change of a tenth would be a model that
# predicts noticeably worse; an interval that excludes 0 says the change is real, however small. The
# last column is stricter: how often the most likely next byte stays the
# one fp32 predicts. The int4 row is the one to read: 16 levels per group of 128 weights is coarse. This
# model is small and briefly trained, so its held-out loss barely moves; a published model's quality
# under int4 is checked on its own benchmarks, and int4 recipes (GPTQ, AWQ) calibrate the rounding on
# data to keep it.
#
# ### 6.2 Speed at batch 1
# The 768-wide model, all variants in the same interleaved rounds, the decode step at position 64.
# The compiled variants compile once each here (about ten seconds apiece). Each quantized format is set
# against bf16 on its fast path (compiled with freezing), so that compile's own gain, measured apart,
# is not folded into a quantization's headline; int4's fast path on a CPU is eager (chapter 6: its
# packed kernel is called directly), so it is compared across paths, each at its best. The table's
# speed-up column is against bf16 compiled with freezing, the baseline of the claims below. Each
# quantized copy is made just before its own compile, so that fewer copies share memory with a compile.

# %% tags=["nbval-ignore-output"]
batch1_variants = [("fp32", "eager"), ("bf16", "eager")] + [(fmt, FAST_PATHS[fmt]) for fmt in WEIGHT_FORMATS[1:]]
wide_formats, batch1_calls, format_of = {"fp32": WIDE}, {}, {}
for fmt, path in batch1_variants:
    if fmt not in wide_formats:
        wide_formats[fmt] = decoder_in_format(WIDE, fmt)
    label = f"{fmt} {path}"
    batch1_calls[label] = decode_call(wide_formats[fmt], batch=1, position=POSITION, path=path)
    format_of[label] = fmt
batch1 = measure_interleaved(batch1_calls, rounds=8, min_run_time=1.2)
timing_table(batch1, baseline="bf16 compiled, frozen")

# %% tags=["nbval-ignore-output"]
operators_ran = {name: ", ".join(ops) for name, ops in matmul_operators(batch1_calls).items()}
variants = list(batch1_calls)[1:]
where_time_goes = pd.DataFrame({"timed step (ms)": [batch1[name].round_median_ms for name in variants]},
                               index=variants)
where_time_goes["matrix products, profiled (ms)"] = matmul_ms_profiled({name: batch1_calls[name] for name in variants})
where_time_goes["rest of the step (ms)"] = (where_time_goes["timed step (ms)"]
                                            - where_time_goes["matrix products, profiled (ms)"])
product_mb = {name: weight_bytes(wide_formats[format_of[name]].blocks) / 1e6 for name in variants}
where_time_goes["products' weights (MB)"] = pd.Series(product_mb)
PACE = "products' GB/s"
where_time_goes[PACE] = where_time_goes["products' weights (MB)"] / where_time_goes["matrix products, profiled (ms)"]
where_time_goes["operators"] = [operators_ran[name] for name in variants]
del batch1_calls, wide_formats["fp32"], wide_formats["int8 weight-only"], WIDE  # compiled steps, fp32, int8
torch._dynamo.reset()  # and the compiled graphs Dynamo keeps for them
release_freed_memory()
where_time_goes.round(2)

# %% [markdown]
# The table splits each timed step into its matrix products (their own time, from one profile of 20
# steps: a few long kernels, which the profiler's overhead barely inflates) and the rest of the step,
# the timed step minus the products: the LayerNorms, GELU, attention and cache writes, Inductor's
# generated kernels, and the Python work of each path (eager dispatch, torchao's tensor subclasses,
# the compiled graph's guards). The products' GB/s is the rate at which each kernel streamed its
# format's weights: a smaller format pays only if its kernel keeps up the pace.

# %% tags=["nbval-ignore-output"]
decode_claims = {
    "bf16": make_claim(9, "bf16_decode_1.3x", "At batch 1, bf16 weights make the decode step at least 1.3x faster "
                       "than fp32 (both eager).", threshold=1.3,
                       ratio=timing_ratio(batch1["fp32 eager"], batch1["bf16 eager"]), hardware=hw.cpu_label),
    "compile": make_claim(9, "compile_decode_1.1x", "torch.compile with freezing makes the bf16 decode step at batch "
                          "1 at least 1.1x faster than eager.", threshold=1.1,
                          ratio=timing_ratio(batch1["bf16 eager"], batch1["bf16 compiled, frozen"]),
                          hardware=hw.cpu_label),
    "int8": make_claim(9, "int8_weight_only_decode_1.3x", "At batch 1, int8 weight-only (compiled) makes the decode "
                       "step at least 1.3x faster than bf16 compiled with freezing.", threshold=1.3,
                       ratio=timing_ratio(batch1["bf16 compiled, frozen"], batch1["int8 weight-only compiled"]),
                       hardware=hw.cpu_label),
    "int4": make_claim(9, "int4_weight_only_decode_1.5x", "At batch 1, int4 weight-only (eager, its fast path) "
                       "makes the decode step at least 1.5x faster than bf16 compiled with freezing.", threshold=1.5,
                       ratio=timing_ratio(batch1["bf16 compiled, frozen"], batch1["int4 weight-only eager"]),
                       hardware=hw.cpu_label),
}
claims += decode_claims.values()
display(report_claim(decode_claims["bf16"],
                     holds="Half the bytes per weight, read by native bf16 instructions (this CPU's AVX512-BF16 or AMX, "
                           "if the hardware line above lists them).",
                     does_not_hold="bf16 halves the bytes but this CPU converts it in software (no native bf16: "
                                   "chapter 3), or the step here is bound by something other than the weights' bytes."))
display(report_claim(decode_claims["compile"],
                     holds="Freezing packs the weights once for oneDNN: the split below shows the gain sits mostly "
                           "in the matrix products (their GB/s column; eager rows also carry some profiler overhead).",
                     does_not_hold="At batch 1 the step is the weights' bytes; compile removes dispatch overhead, "
                                   "which is a small share here. Where it pays for generation is a small model or a "
                                   "GPU, where launch overhead dominates (section 8: CUDA graphs)."))


def against_bf16_split(variant: str) -> str:
    """Where a format's step fell short of bf16 compiled with freezing (one profile of 20 steps): its products against
    an ideal kernel at bf16's pace, and the rest of its step against bf16's rest."""
    mine, bf16 = where_time_goes.loc[variant], where_time_goes.loc["bf16 compiled, frozen"]
    ideal_ms = mine["products' weights (MB)"] / bf16[PACE]
    kernel_loss = mine["matrix products, profiled (ms)"] - ideal_ms
    rest_growth = mine["rest of the step (ms)"] - bf16["rest of the step (ms)"]
    return (f"In the split above its matrix products streamed {mine[PACE]:.0f} GB/s against bf16's {bf16[PACE]:.0f}: "
            f"against a kernel at bf16's pace ({ideal_ms:.2f} ms) they {'lost' if kernel_loss >= 0 else 'gained'} "
            f"{abs(kernel_loss):.2f} ms, and the rest of its step took {abs(rest_growth):.2f} ms "
            f"{'more' if rest_growth >= 0 else 'less'} than bf16's. (An eager row's products carry some profiler "
            "overhead, so its pace is if anything understated.)")


display(report_claim(decode_claims["int8"],
                     holds="Half of bf16's bytes per weight, read directly by aten::_weight_int8pack_mm (chapter 6).",
                     does_not_hold="The int8 kernel ran (the operators column above). "
                                   + against_bf16_split("int8 weight-only compiled")))
report_claim(decode_claims["int4"],
             holds="A quarter of bf16's bytes per weight, read by the packed int4 kernel: batch 1 is the case "
                   "weight-only quantization is made for, and it pays even against bf16 at its best.",
             does_not_hold="int4 reads a quarter of bf16's bytes, but against bf16 compiled with freezing the gain "
                           "falls short of 1.5x here. " + against_bf16_split("int4 weight-only eager"),
             inconclusive="int4 gained against bf16 at its best, but whether by 1.5x this run cannot tell. "
                          + against_bf16_split("int4 weight-only eager"))
# %% [markdown]
# Read the verdicts above as chapter 6's rule, applied to generation: weight-only quantization is a
# decode-at-small-batch technique (bf16 is not only that: on a CPU with native bf16 its matrix products
# also run faster than fp32's, section 3.1, so it keeps paying when the step is compute-bound), and what it buys depends on the kernel a format gets on your
# hardware (int8 and int4 ran different ones here) and on how much of the step is matrix products.
# Section 7 measures int4 again at batch 64, where each weight serves many rows (int8 weight-only at a
# large batch is chapter 6's claim `weight_only_int8_batch128_slower`, on its Linear stack). Quality is the other
# half: read 6.1 before you ship a format.

# %% [markdown]
# ## 7. Batching requests
# ### 7.1 Throughput against each request's latency
# At batch $B$ a decode step reads the weights once for $B$ sequences, and each sequence's own cache
# (64 positions here, yet in a model this small, with no GQA, the caches of 64 sequences are nearly as
# large as the weights: the table's last column). While it stays memory-bound its time grows slowly with $B$, so
# tokens per second grow nearly $B$-fold, but every request waits a whole step per token. bf16, eager, the 768-wide model; and int4 weight-only at the largest batch, in the
# same rounds, to see where weight-only stops paying:

# %% tags=["nbval-ignore-output"]
BATCHES = (1, 4, 16, 64)
INT4_AT_64 = "int4 weight-only, batch 64"
batch_calls = {b: decode_call(wide_formats["bf16"], batch=b, position=POSITION) for b in BATCHES}
batch_calls[INT4_AT_64] = decode_call(wide_formats["int4 weight-only"], batch=BATCHES[-1], position=POSITION)
batch_timings = measure_interleaved(batch_calls, rounds=8, min_run_time=1.0)
del batch_calls
step_ms = {b: batch_timings[b].round_median_ms for b in BATCHES}
batching_table = pd.DataFrame({"ms per step (each request's time per token)": step_ms,
                               "tokens/s, all requests": {b: 1e3 * b / ms for b, ms in step_ms.items()},
                               "cache share of bytes": {b: 1 - 2 * matrix_weights(WIDE_CONFIG) / decode_cost(
                                                            WIDE_CONFIG, position=POSITION, batch=b, bytes_per_weight=2,
                                                            bytes_per_cached=2).bytes for b in BATCHES}})
batching_table.index.name = "batch"
display(batching_table.round(2))
plot_batching(BATCHES, list(step_ms.values()), hardware=hw.cpu_label)

# %% tags=["nbval-ignore-output"]
throughput_ratio = paired_ratio([1 / t for t in batch_timings[1].round_medians_s],
                                [16 / t for t in batch_timings[16].round_medians_s], higher_is_better=True)
batching_claim = make_claim(9, "batch16_throughput_4x", "Decoding 16 sequences per step gives at least 4x the tokens "
                            f"per second of one sequence per step (bf16, {WIDE_WIDTH}-wide).", threshold=4.0,
                            ratio=throughput_ratio, hardware=hw.cpu_label)
int4_at_64_claim = make_claim(9, "int4_weight_only_batch64_at_most_1.2x", "At batch 64, int4 weight-only makes the "
                              "decode step at most 1.2x faster than bf16 (both eager).", threshold=1.2,
                              direction="at most", ratio=timing_ratio(batch_timings[64], batch_timings[INT4_AT_64]),
                              hardware=hw.cpu_label)
claims += [batching_claim, int4_at_64_claim]
display(report_claim(batching_claim,
                     holds="The step time grew far less than 16-fold: the weights are read once per step whatever "
                           "the batch.",
                     does_not_hold="The step time grew more than 4-fold between batch 1 and 16 here: on two "
                                   "cores the step leaves the memory-bound region at a small batch (Exercise 3 "
                                   "computes where the ridge lies) and its fixed costs grow with the batch too."))
int4_slower = ("int4 is measurably slower than bf16 here: unpacking the weights for 64 rows costs more than the "
               "bytes it saves." if int4_at_64_claim.ratio.high < 1 else "")
report_claim(int4_at_64_claim,
             holds="At batch 64 each weight serves 64 rows: the step is closer to compute-bound, the kernel still "
                   "multiplies in floating point after unpacking, and the bytes saved matter less than at batch 1 "
                   f"(section 6.2). {int4_slower}",
             does_not_hold="On this CPU int4's kernel still wins at batch 64: its packed layout is faster than the bf16 "
                           "path here even when the weights' bytes matter less.")

# %% [markdown]
# ### 7.2 When each sequence's cache outweighs the weights
# The weights are shared by the batch; the cache is not: every sequence reads its own keys and values at
# every step. In 7.1 that already showed at a short context, because the model is small and has no GQA;
# for the models people serve, at the contexts they run, the cache is most of the bytes. The memory's bound on decode for Llama 3.1 8B in bf16 on
# one H100 SXM (3.35 TB/s), from the shapes alone (the cache's share of each step's bytes, and the tokens
# per second the bandwidth allows, counting every parameter as read, the input embedding too, so slightly
# low; "does not fit" where the weights and the caches exceed its 80 GB):

# %% tags=["nbval-ignore-output"]
llama3 = SERVED_MODELS[1]
H100_GB = 80


def served_row(batch: int, context: int) -> dict:
    """Cache share and the bandwidth's bound on tokens/s; no bound where weights and caches exceed the GPU."""
    fits = llama3.decode_step_bytes(batch=batch, context=context) <= H100_GB * 1e9
    share = 1 - llama3.decode_step_bytes(batch=batch, context=0) / llama3.decode_step_bytes(batch=batch, context=context)
    return {"batch": batch, "context": context, "cache share of bytes": share if fits else None,
            "tokens/s bound": llama3.decode_tokens_per_s_bound(batch=batch, context=context,
                                                               bandwidth_tbps=H100_SXM_TBPS) if fits else None}


served = pd.DataFrame([served_row(batch, context) for batch in (1, 8, 32) for context in (1024, 8192, 32768)])
served_table = served.pivot(index="batch", columns="context").round(2)
served_table.astype(object).where(served_table.notna(), "does not fit")

# %% [markdown]
# Past a few sequences at long context, batching stops sharing most of the bytes, so tokens per second
# grow far more slowly than the batch, and attention's part of the step stays memory-bound at any batch (about
# one FLOP per cached byte in bf16, times the number of query heads that share a KV head). This is why
# GQA, an FP8 cache and decode kernels that split the cache across many cores (FlashDecoding, split-KV)
# pay in time, not only in capacity.
#
# ### 7.3 Static against continuous batching
# Requests end at different lengths. **Static** batching runs a batch until its longest request ends:
# finished rows sit idle and new requests wait. **Continuous** batching (Orca, 2022; vLLM, SGLang,
# TensorRT-LLM) refills a slot as soon as its request ends. The two schedules below serve the same 64
# requests (8 to 200 tokens each) with 16 slots, on a clock made of the step times just measured
# (interpolated between the batch sizes). Prefill is left out of both (real servers also interleave it,
# in chunks).

# %% tags=["nbval-ignore-output"]
lengths = request_lengths(64)
schedules = {"static": static_batches(lengths, 16, step_ms), "continuous": continuous_batches(lengths, 16, step_ms)}
pd.DataFrame({name: {"decode steps": s.steps, "total (s)": s.total_ms / 1e3, "tokens/s": s.tokens_per_s,
                     "first token, p50 (s)": s.first_token_percentile_ms(50) / 1e3,
                     "first token, p99 (s)": s.first_token_percentile_ms(99) / 1e3,
                     "last token, p50 (s)": s.latency_percentile_ms(50) / 1e3,
                     "last token, p99 (s)": s.latency_percentile_ms(99) / 1e3}
              for name, s in schedules.items()}).T.round(2)

# %%
print("decode steps, static:", static_batches(lengths, 16, {1: 1.0, 64: 1.0}).steps,
      "continuous:", continuous_batches(lengths, 16, {1: 1.0, 64: 1.0}).steps)

# %% [markdown]
# The step counts (second cell: they depend only on the lengths) show where the gain comes from: the
# static schedule keeps stepping for each batch's longest request, and its later requests wait for a
# whole batch to end before their first token (the first-token columns). The gain depends on how much
# the lengths vary; the schedule is simulated, on measured step times, not measured end to end.
#
# What a production server adds on top (described here, not measured), each aimed at a cost measured
# above: **chunked prefill**
# splits a long prompt into pieces that share steps with other requests' decodes, so one long prompt
# does not stall everyone's next token (TTFT against TPOT, traded explicitly); **prefix caching** keeps
# the cache of a shared prompt (a system prompt) and skips its prefill; **speculative decoding** lets a
# small draft model propose several tokens that the large model checks in one pass, turning several
# memory-bound steps into one; **PagedAttention** allocates the cache in blocks as sequences grow,
# instead of reserving the whole context as our `KVCache` does; and the decode step is captured as a
# CUDA graph once per batch size (or `torch.compile(mode="reduce-overhead")`), section 8's technique.

# %% [markdown]
# ## 8. On a GPU
# Two things change on a GPU. SDPA chooses among several fused kernels (FlashAttention-2, a
# memory-efficient kernel, cuDNN's, and the math fallback), and a decode step of a small model is so
# short that launching its kernels from Python takes longer than running them, which a **CUDA graph**
# removes: the static-shape step (`Decoder.decode_at`, position in a tensor) is captured once and
# replayed. Without a CUDA GPU these cells say so and skip.

# %% tags=["nbval-ignore-output"]
if torch.cuda.is_available():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    gpu_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    gpu_q, gpu_k, gpu_v = attention_inputs(4096, dtype=gpu_dtype, device="cuda")
    backends = {"flash": SDPBackend.FLASH_ATTENTION, "memory-efficient": SDPBackend.EFFICIENT_ATTENTION,
                "cuDNN": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}

    def sdpa_with(backend: SDPBackend) -> torch.Tensor:
        """Causal SDPA on the GPU inputs, allowed only this backend (raises if it cannot run them)."""
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(gpu_q, gpu_k, gpu_v, is_causal=True)

    runnable = {}
    for name, backend in backends.items():
        try:
            sdpa_with(backend)
            runnable[name] = lambda b=backend: sdpa_with(b)
        except RuntimeError as error:
            print(f"{name}: not available here ({str(error).splitlines()[0][:90]})")
    display(timing_table(measure_interleaved(runnable, rounds=5, min_run_time=1.0), baseline="math"))
else:
    print("No CUDA GPU here: SDPA's GPU backends (flash, memory-efficient, cuDNN) are not timed.")

# %% tags=["nbval-ignore-output"]
if torch.cuda.is_available():
    graph_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    gpu_model = decoder(SMALL).to(device="cuda", dtype=graph_dtype)
    gpu_model.load_state_dict(small.state_dict())  # the trained weights, in the GPU's 16-bit format
    gpu_cache = KVCache(SMALL, 1, dtype=graph_dtype, device="cuda")
    with torch.no_grad():
        gpu_model(prompt.cuda(), gpu_cache)
        gpu_token, gpu_position = prompt[:, -1:].cuda(), torch.tensor([prompt.shape[1]], device="cuda")

        def eager_step(token: torch.Tensor) -> torch.Tensor:
            return gpu_model.decode_at(token, gpu_cache, gpu_position)

        graph_step = cuda_graph_replay(eager_step, gpu_token)  # chapter 3's capture: warm-up on a side stream
        print("graph replay matches eager:", torch.allclose(graph_step(gpu_token), eager_step(gpu_token), atol=1e-2))
        gpu_step = measure_interleaved({"eager": lambda: eager_step(gpu_token),
                                        "CUDA graph": lambda: graph_step(gpu_token)}, rounds=5, min_run_time=1.0)
    display(timing_table(gpu_step, baseline="eager"))
else:
    print("No CUDA GPU here: the CUDA graph of the decode step is not captured.")

# %% [markdown]
# ## 9. Explore: generation, live
# Move the prompt length, the batch, the precision and the cache, and the trained model generates 32
# tokens again and reports the clock. Try the cache off at a long prompt, then on; then a batch of 16.

# %% tags=["nbval-ignore-output"]
generation_models = {"fp32": small, "bf16": small_formats["bf16"]}
prompt_slider = widgets.IntSlider(value=64, min=8, max=192, step=8, description="prompt")
batch_slider = widgets.Dropdown(options=[1, 4, 16], value=1, description="batch")
precision_choice = widgets.ToggleButtons(options=["fp32", "bf16"], value="fp32", description="precision")
cache_box = widgets.Checkbox(value=True, description="KV cache")


def generation_live(prompt_tokens: int, batch: int, precision: str, cached: bool) -> str:
    """The widget's report: generation with these settings (the median of three)."""
    return generation_report(generation_models, prompt_tokens=prompt_tokens, batch=batch, precision=precision,
                             cached=cached)


generation_widget = live_control(generation_live, prompt_tokens=prompt_slider, batch=batch_slider,
                                 precision=precision_choice, cached=cache_box)
generation_widget

# %% [markdown]
# ## 10. What the source article does not cover
# The article has no section on transformers, attention or text generation. Its one sentence on
# quantization says that int8 weights "significantly reduce model size and inference time" (section
# 6.2 of the article; its dynamic-quantization call raises today with the dtype it passes: chapter 6
# quotes it as a mistake and shows the current call).
# For generation the size half is true by construction and the time half depends on the phase and the
# batch. This run's verdicts on the decode step:

# %% tags=["nbval-ignore-output"]
pd.DataFrame([{"claim": c.name, "ratio": str(c.ratio), "verdict": c.verdict}
              for c in (*decode_claims.values(), int4_at_64_claim)]).set_index("claim")

# %% [markdown]
# Against the article's own baseline, fp32, the decode step's gains add up in steps, each with its own
# verdict: bf16 over fp32, compile over bf16, then a weight format over compiled bf16. Chained from the
# medians of the same rounds:

# %% tags=["nbval-ignore-output"]
fp32_ms = batch1["fp32 eager"].round_median_ms
print("; ".join(f"{name}: {fp32_ms / batch1[name].round_median_ms:.2f}x" for name in list(batch1)[1:]),
      "(each against fp32 eager, same rounds)")

# %% [markdown]
# So the corrected advice for generation: quantize the weights where decode reads them at small batches,
# in a format whose kernel turns fewer bytes into less time on your hardware (measure it, as above).
# At large batches a weight-only format saves no time on this CPU and can cost it (section 7.1's int4 row
# at batch 64; chapter 6's int8 at batch 128), but it still buys capacity: smaller
# weights and an 8-bit cache leave memory for more sequences, which is how serving engines use them; on
# GPUs, 4-bit weight kernels (Marlin and its successors) keep their speed-up up to moderate batches, and
# past that, formats that quantize the activations too (int8 or fp8 dynamic, chapter 6) are the ones
# that pay in time. And report the user's clock (TTFT, TPOT and their percentiles under load) beside
# tokens per second: section 7 shows them moving in opposite directions.

# %% [markdown]
# ## 11. Exercises
# ### Exercise 1: predict a decode step from its bytes, then explain the gap
# Predict how many milliseconds one decode step of the 768-wide model in bf16 takes at batch 1 if all it
# did was read its weights at this machine's read roof (section 3.1). You need the number of weights
# that multiply every position (`matrix_weights(WIDE_CONFIG)`) and the bytes each takes. Then compare
# your prediction with the measured "bf16 eager" step in 6.2, and list for yourself what else it does.

# %%
predicted_step_ms = ...  # your prediction, in ms
check_step_prediction("Exercise 1", predicted_step_ms, config=WIDE_CONFIG, roofs=roofs)

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution", "nbval-ignore-output"]
# Solution
bf16_weight_bytes = 2 * matrix_weights(WIDE_CONFIG)
streaming_ms = bf16_weight_bytes / (roofs.read_gbps * 1e9) * 1e3
check_step_prediction("Exercise 1", streaming_ms, config=WIDE_CONFIG, roofs=roofs)
measured_bf16_ms = batch1["bf16 eager"].round_median_ms
eager_split = where_time_goes.loc["bf16 eager"]
print(f"streaming the weights alone: {streaming_ms:.2f} ms; measured bf16 eager step: {measured_bf16_ms:.2f} ms "
      f"({streaming_ms / measured_bf16_ms:.0%} of it). Most of the gap is the products themselves: one-row products "
      f"that streamed {eager_split[PACE]:.0f} GB/s ({eager_split['matrix products, profiled (ms)']:.2f} ms) against "
      f"the sum's {roofs.read_gbps:.0f} GB/s; the rest of the step (LayerNorms, GELU, attention, cache writes, "
      f"dispatch) took {eager_split['rest of the step (ms)']:.2f} ms. And the read roof is partly a cache's (section "
      "3.1's note), so the true bound is slower still.")

# %% [markdown]
# ### Exercise 2: how many tokens fit?
# Qwen2.5 7B (third row of the table in 4.3: its parameters, layers, KV heads and head dim) is served in
# bf16 on a 24 GB card (24 × 10⁹ bytes), its cache
# stored in FP8 (one byte per value). How many cached tokens, all requests together, fit beside the
# weights? Ignore activations and the framework's own memory.

# %%
qwen_tokens = ...  # your count
check_cached_tokens("Exercise 2", qwen_tokens, SERVED_MODELS[2], gpu_gb=24, bytes_per_value=1)

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution", "nbval-ignore-output"]
# Solution
qwen = SERVED_MODELS[2]
free_bytes = 24e9 - qwen.parameters_b * 1e9 * 2
per_token = qwen.layers * qwen.kv_heads * qwen.head_dim * 2 * 1
check_cached_tokens("Exercise 2", free_bytes // per_token, qwen, gpu_gb=24, bytes_per_value=1)
fitting = free_bytes // per_token
print(f"{free_bytes / 1e9:.1f} GB free / {per_token / 1024:.0f} KiB per token = {fitting:,.0f} tokens: "
      f"{fitting / 4096:.0f} requests of 4,096 tokens, or {fitting / 131072:.1f} of 128k.")

# %% [markdown]
# ### Exercise 3: the batch at the ridge
# A decode step at batch $B$ does about $2B$ FLOPs per weight and reads each weight once. At what batch
# does a bf16 decode step's FLOPs per byte reach the ridge of bf16's own compute roof (`bf16_gflops`)
# against the read roof (`roofs.read_gbps`), both measured in section 3.1? Count the weights only (the
# cache, 7.1's last column, adds bytes but few FLOPs, so it moves the ridge to a larger batch). Predict
# it, then compare with the step times of 7.1.

# %%
ridge_batch = ...  # your batch size (a real number is fine)
check_ridge_batch("Exercise 3", ridge_batch, compute_gflops=bf16_gflops, roofs=roofs, bytes_per_weight=2)

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["solution", "nbval-ignore-output"]
# Solution
bf16_ridge = bf16_gflops / roofs.read_gbps
batch_at_ridge = bf16_ridge * 2 / 2  # FLOP per byte = 2B FLOPs / 2 bytes per weight
check_ridge_batch("Exercise 3", batch_at_ridge, compute_gflops=bf16_gflops, roofs=roofs, bytes_per_weight=2)
overhead_ms = step_ms[1] - 2 * matrix_weights(WIDE_CONFIG) / (roofs.read_gbps * 1e6)
model_ms = {b: overhead_ms + max(2 * matrix_weights(WIDE_CONFIG) / (roofs.read_gbps * 1e6),
                                 2 * b * matrix_weights(WIDE_CONFIG) / (bf16_gflops * 1e6)) for b in BATCHES}
print(f"bf16 reaches its ridge near batch {batch_at_ridge:.1f}. A model of the step, the batch-1 time's part above "
      f"the streaming bound as a fixed cost plus max(bytes / bandwidth, FLOPs / bf16 roof), against 7.1:")
display(pd.DataFrame({"model (ms)": model_ms, "measured (ms)": step_ms}).rename_axis("batch").round(1))
largest = BATCHES[-1]
print(f"At batch {largest} the measured step takes {step_ms[largest] / model_ms[largest]:.1f}x the model's time. The "
      "compute roof is a large square product's rate; a decode step's products are thin (as many rows as the "
      "batch), and its fixed costs (LayerNorms, attention, cache writes) grow with the batch too, so past the "
      "ridge the step falls short of the roof by more than the model assumes.")

# %% [markdown]
# ## 12. Summary
# The results this run measured, recorded into the course's ledger under Appendix A (chapter 8's
# decision guide reads them as their own group, "generation"):

# %% tags=["nbval-ignore-output"]
cpu = hw.cpu_label
entries = [
    make_entry(9, "lm_kv_cache", metric=f"time to generate {NEW_TOKENS} tokens, trained 0.86M-parameter decoder",
               unit="ms", baseline=generation_timings["recompute the prefix"].round_median_ms,
               optimized=generation_timings["KV cache"].round_median_ms, higher_is_better=False, hardware=cpu,
               claim=kv_claim, compared_with="recomputing the prefix at every step, same rounds"),
    make_entry(9, "lm_sdpa_attention", metric="causal attention, 2048 positions, 4 heads, fp32", unit="ms",
               baseline=attention_timings[LENGTHS[-1]]["by hand"].round_median_ms,
               optimized=attention_timings[LENGTHS[-1]]["SDPA"].round_median_ms, higher_is_better=False,
               hardware=cpu, claim=sdpa_claim, compared_with="attention written by hand, same rounds",
               extras={"by_hand_peak_mb": allocated_mb["by hand"][-1], "sdpa_peak_mb": allocated_mb["SDPA"][-1]}),
    make_entry(9, "lm_bf16_decode", metric=f"decode step, {WIDE_WIDTH}-wide decoder, batch 1", unit="ms",
               baseline=batch1["fp32 eager"].round_median_ms, optimized=batch1["bf16 eager"].round_median_ms,
               higher_is_better=False, hardware=cpu, claim=decode_claims["bf16"], compared_with="fp32 eager",
               extras={"trained_128_wide_bits_per_byte_change": str(changes["bf16"])}),
    make_entry(9, "lm_compile_decode", metric=f"decode step, {WIDE_WIDTH}-wide decoder, bf16, batch 1", unit="ms",
               baseline=batch1["bf16 eager"].round_median_ms,
               optimized=batch1["bf16 compiled, frozen"].round_median_ms, higher_is_better=False, hardware=cpu,
               claim=decode_claims["compile"], compared_with="bf16 eager"),
    make_entry(9, "lm_int8_weight_only_decode", metric=f"decode step, {WIDE_WIDTH}-wide decoder, batch 1", unit="ms",
               baseline=batch1["bf16 compiled, frozen"].round_median_ms,
               optimized=batch1["int8 weight-only compiled"].round_median_ms, higher_is_better=False, hardware=cpu,
               claim=decode_claims["int8"], compared_with="bf16 compiled with freezing",
               extras={"trained_128_wide_bits_per_byte_change": str(changes["int8 weight-only"])}),
    make_entry(9, "lm_int4_weight_only_decode", metric=f"decode step, {WIDE_WIDTH}-wide decoder, batch 1", unit="ms",
               baseline=batch1["bf16 compiled, frozen"].round_median_ms,
               optimized=batch1["int4 weight-only eager"].round_median_ms, higher_is_better=False, hardware=cpu,
               claim=decode_claims["int4"], compared_with="bf16 compiled with freezing",
               extras={"trained_128_wide_bits_per_byte_change": str(changes["int4 weight-only"]),
                       "against_bf16_eager": str(timing_ratio(batch1["bf16 eager"], batch1["int4 weight-only eager"])),
                       "at_batch_64_against_bf16_eager": f"{int4_at_64_claim.ratio} ({int4_at_64_claim.verdict})"}),
    make_entry(9, "lm_decode_batching", metric=f"decode tokens per second, {WIDE_WIDTH}-wide decoder, bf16 eager", unit="tokens/s",
               baseline=1e3 / batch_timings[1].round_median_ms, optimized=16e3 / batch_timings[16].round_median_ms,
               higher_is_better=True, hardware=cpu, claim=batching_claim,
               compared_with="one sequence per step, same rounds",
               extras={"per_request_ms_batch_1": batch_timings[1].round_median_ms,
                       "per_request_ms_batch_16": batch_timings[16].round_median_ms}),
]
record_chapter(9, entries, claims)
ledger_table(entries).round(3)

# %% [markdown]
# **Take-aways**
# 1. Generation has two phases with opposite costs: prefill is compute-bound (about half a FLOP per
#    weight byte per prompt token in fp32: about a hundred for this prompt), decode at small batch is
#    memory-bound (two FLOPs per weight per sequence). Time per
#    output token is bought in bytes read per token; measure TTFT and TPOT, not throughput alone.
# 2. The KV cache is the first fix and the profiler finds its absence: without it every step recomputes
#    the prefix. Its memory (layers × KV heads × head dim × 2 × bytes, per token) then decides how many
#    requests fit; GQA and an 8-bit cache shrink it; fused attention (SDPA) keeps the score matrix out
#    of memory.
# 3. Weight-only formats are decode-at-small-batch techniques: they pay where bytes rule and a
#    kernel turns fewer bytes into less time, and fade as batching moves the step toward the compute
#    roof (bf16, with native instructions, also computes faster and keeps paying there). Batching buys tokens per second with each request's latency until each sequence's own cache
#    dominates the bytes; continuous batching keeps the slots full. Check quality (held-out loss, with
#    its interval) beside every speed-up.
