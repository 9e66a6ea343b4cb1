"""The learner's decision guide, written from their own ledger: what paid on this machine, what did not and a
likely reason from the hardware report, and what to try first for each goal. Every number it prints is a
ledger number: an entry's speed-up as `ratio_text` formats it, or the size ratio an entry recorded."""

from __future__ import annotations

import re
from collections.abc import Sequence

from IPython.display import Markdown

from helpers.core.hardware import HardwareReport
from helpers.core.validate import require_instance

GOALS = ("latency", "throughput", "memory", "size", "communication", "accuracy")
# What each ledger technique is for, in the learner's words. A result is filed under the goal its metric measures
# (batching buys throughput, not latency; bf16 compression halves bytes sent, which is communication). Techniques
# the catalogue does not know are listed under "other results" rather than guessed into a goal.
CATALOG = {
    "batching": ("throughput", "batch inference requests"),
    "batched_data_fetch": ("throughput", "fetch a batch with one indexing operation"),
    "depthwise_separable_conv": ("latency", "depthwise separable convolutions"),
    "channel_pruning_50": ("latency", "prune half the channels, then fine-tune"),
    "conv_bn_folding": ("latency", "fold batch norms into convolutions"),
    "channels_last": ("latency", "channels_last memory layout"),
    "torch_compile": ("latency", "torch.compile"),
    "torch_compile_freezing": ("latency", "torch.compile with freezing, against compile alone"),
    "mixed_precision_bf16": ("throughput", "bf16 autocast for training (small CNN)"),
    "mixed_precision_bf16_resnet18": ("throughput", "bf16 autocast for training (ResNet-18)"),
    "fused_adamw": ("throughput", "the fused AdamW step"),
    "dataloader_workers": ("throughput", "DataLoader workers"),
    "memory_cache": ("throughput", "a decoded in-memory cache"),
    "ddp_buckets": ("communication", "DDP's gradient buckets, against one all-reduce per tensor"),
    "ddp_two_processes": ("throughput", "DDP with two processes on one machine"),
    "no_sync_accumulation": ("communication", "no_sync during gradient accumulation"),
    "bf16_compress_hook": ("communication", "bf16 gradient compression, against the same fp32 hook"),
    "omp_one_thread_per_process": ("throughput", "one OpenMP thread per DDP process"),
    "fsdp2_memory": ("memory", "FSDP2 sharding (accounted bytes per rank)"),
    "fsdp2_step": ("memory", "FSDP2's step time, against DDP (the price of sharding)"),
    "pseudo_labelling": ("accuracy", "pseudo-labels from a teacher on unlabelled images"),
    "knowledge_distillation": ("accuracy", "distillation into a small student, against pseudo-labels"),
    "compile_freezing_teacher": ("latency", "torch.compile with freezing, against eager (a CNN at batch 64)"),
    "bf16_inference": ("latency", "bf16 inference, compiled with freezing"),
    "int8_dynamic_linear": ("latency", "dynamic int8 for Linear layers (torchao)"),
    "int8_static_pt2e": ("latency", "static int8 with PT2E and freezing"),
    "weight_only_int8": ("latency", "weight-only int8 at batch 1"),
    "weight_only_int4": ("latency", "weight-only int4 at batch 1"),
    "compression_combined": ("latency", "pruning, distillation and int8 together"),
    "profiler_fix_normalize_loop": ("throughput", "one vectorised expression instead of a loop over the batch"),
    "profiler_fix_cached_loader": ("throughput", "resize once, shift whole batches (instead of per sample)"),
    "profiler_fix": ("throughput", "the fixes a profile pointed at, together"),
    "onnxruntime": ("latency", "ONNX Runtime, against torch.compile with freezing"),
    "onnxruntime_int8_static": ("latency", "ONNX Runtime static int8 (QDQ)"),
    "onnxruntime_int8_dynamic_mlp": ("latency", "ONNX Runtime dynamic int8 for Linear layers"),
    "tensorrt_fp16": ("latency", "a TensorRT fp16 engine, against torch.compile with CUDA graphs"),
    "capstone_latency": ("latency", "the capstone's plan, all stages together"),
    "capstone_size": ("size", "the capstone's plan, all stages together"),
    "capstone_pipeline": ("throughput", "the capstone's best data pipeline"),
}


def ratio_text(entry: dict) -> str:
    """An entry's number as the guide prints it: median and, where measured in rounds, its interval (a 95%
    interval from 8 rounds up; below, the range of the rounds, and said so)."""
    text = f"{entry['speedup']:.2f}x"
    if entry.get("speedup_interval"):
        low, high = entry["speedup_interval"]
        ranged = re.search(r"range of \d+ rounds", entry.get("kind", ""))
        text += f" ({ranged.group(0) + ': ' if ranged else ''}{low:.2f} to {high:.2f}x)"
    return text


def size_ratio(entry: dict) -> float | None:
    """The size (or parameter) reduction an entry recorded beside its speed-up, if any."""
    extras = entry.get("extras") or {}
    return extras.get("size_ratio") or extras.get("params_ratio")


def likely_reason(technique: str, hardware: HardwareReport) -> str:
    """A likely reason, from this machine's hardware report, why a technique did not pay (not a measurement)."""
    if technique.startswith("mixed_precision"):
        return {False: "this CPU has no native bf16 arithmetic (AVX-512-BF16 or AMX)",
                True: "the CPU has bf16 instructions, but at this size the conversions cost more than they save "
                      "(chapter 3)",
                None: "this CPU's bf16 support could not be read (chapter 3)"}[hardware.cpu_native_bf16]
    if technique in ("dataloader_workers", "ddp_two_processes", "omp_one_thread_per_process"):
        return (f"{hardware.cpu_cores} logical CPUs: the extra processes share them with the training step "
                "(chapters 4, 5)")
    if technique in ("int8_static_pt2e", "int8_dynamic_linear", "onnxruntime_int8_static", "compression_combined"):
        return f"int8 pays only with int8 kernels for this CPU ({hardware.cpu_isa}) and enough work per call"
    if technique in ("weight_only_int8", "weight_only_int4"):
        return "weight-only int8 converts weights back to float before each matmul: it saves bytes, not arithmetic"
    if technique == "torch_compile_freezing":
        return "against compile alone, freezing mainly enables the int8 fusions (chapter 6)"
    if technique == "fsdp2_step":
        return "it is the price of FSDP2's memory saving: its gathers, copies and hooks (chapter 5, section 5.5)"
    return "not measured here: read the reading under that chapter's measurement"


def _line(entry: dict, goal: str) -> str:
    """One bullet: what the technique is, its ledger number (for size: the size ratio), and the chapter."""
    _, what = CATALOG.get(entry["technique"], ("", entry["technique"]))
    if goal == "size":
        ratio = size_ratio(entry) or entry["speedup"]  # a size result's own speed-up is its size ratio
        return f"{what}: {ratio:.1f}x smaller ({entry['metric']}; chapter {entry['chapter']})"
    size = size_ratio(entry)
    size_text = f"; also {size:.1f}x smaller" if size and size > 1 else ""
    return f"{what}: {ratio_text(entry)} on {entry['metric']}{size_text} (chapter {entry['chapter']})"


def reading(entry: dict, goal: str) -> str:
    """Where a result belongs in the guide (GUIDE section 5): 'paid' (a time ratio that gained, and whose claim, if
    judged, holds), 'below its claim' (it gained, but less than its claim's threshold), 'inconclusive', 'did not
    pay', or 'accounted' (an exact ratio: a size, bytes or a count, true by construction and no speed-up; under the
    size goal, a size is what is asked for and counts as paid)."""
    if entry.get("kind", "").startswith("exact"):
        return "paid" if goal == "size" and entry["gain"] == "gain" else "accounted"
    verdict = entry.get("verdict", "")
    if verdict == "inconclusive" or entry["gain"] == "inconclusive":
        return "inconclusive"
    if entry["gain"] == "gain":
        return "paid" if verdict in ("", "holds") else "below its claim"
    return "did not pay"


def sure_gain(entry: dict) -> float:
    """How sure a gain is: its interval's lower bound; exact results (no rounds) rank after every measured one."""
    return entry["speedup_interval"][0] if entry.get("speedup_interval") else 0.0


READINGS = ("paid", "below its claim", "inconclusive", "did not pay", "accounted")


def guide_sections(entries: Sequence[dict]) -> dict[str, dict[str, list[dict]]]:
    """Entries by goal, then by their reading (READINGS; 'paid' surest gain first, size by its ratio). Every result
    with a size ratio also appears under size."""
    sections: dict[str, dict[str, list[dict]]] = {goal: {r: [] for r in READINGS} for goal in (*GOALS, "other")}
    for entry in entries:
        goal = CATALOG.get(entry["technique"], ("other",))[0]
        sections[goal][reading(entry, goal)].append(entry)
        if goal != "size" and (size_ratio(entry) or 0) > 1:
            sections["size"]["paid"].append(entry)
    for goal, parts in sections.items():
        parts["paid"].sort(key=(lambda e: -(size_ratio(e) or e["speedup"])) if goal == "size"
                           else (lambda e: -sure_gain(e)))
    return sections


def measured_on(entries: Sequence[dict], hardware: HardwareReport) -> list[dict]:
    """The entries this machine measured (its CPU label, or its GPU's name)."""
    return [entry for entry in entries if entry["hardware"] in (hardware.cpu_label, hardware.gpu_name)]


def decision_guide(entries: Sequence[dict], hardware: HardwareReport) -> Markdown:
    """The guide as Markdown: per goal, what to try first, what else paid, and what did not (with a likely reason).

    Only results measured on this machine count; ratios are against each result's own baseline (named in its
    metric), so compare them within a goal with care and across goals not at all.
    """
    require_instance("hardware", hardware, HardwareReport)
    here = measured_on(entries, hardware)
    if not here:
        return Markdown("The ledger holds no results from this machine: run chapters 1 to 7 first (`make execute`), "
                        "then this cell again.")
    lines = [f"**Decision guide for {hardware.cpu_label}**, written from the {len(here)} ledger results measured "
             f"on this machine ({len(entries) - len(here)} from other hardware left out). Each ratio is against its "
             "own baseline, named in its metric."]
    for goal, parts in guide_sections(here).items():
        if not any(parts.values()):
            continue
        lines.append(f"\n**{goal.capitalize() if goal != 'other' else 'Other results'}**")
        if parts["paid"]:
            lines.append(f"- *Try first*: {_line(parts['paid'][0], goal)}.")
            lines += [f"- Also paid: {_line(entry, goal)}." for entry in parts["paid"][1:]]
        lines += [f"- Gained less than its claim here: {_line(entry, goal)}." for entry in parts["below its claim"]]
        lines += [f"- Inconclusive here (the interval, or the claim's threshold, leaves it open): {_line(entry, goal)}."
                  for entry in parts["inconclusive"]]
        lines += [f"- Did not pay here: {_line(entry, goal)}; likely reason: "
                  f"{likely_reason(entry['technique'], hardware)}." for entry in parts["did not pay"]]
        lines += [f"- Accounted, not timed: {_line(entry, goal)}." for entry in parts["accounted"]]
    return Markdown("\n".join(lines))
