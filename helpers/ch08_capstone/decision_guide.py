"""The learner's decision guide, written from their own ledger (the course's guide, section 5): results are read
as they are (paid, gained with no claim or with its claim open or short, no measurable effect,
inconclusive, did not pay, accounted), ranked only against results
of the same kind and the same baseline, combinations kept apart, and ordered cheap and safe first. Every number it
prints is a ledger number: an entry's ratio or accuracy difference as `ratio_text` formats it."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import NamedTuple

import numpy as np
import pandas as pd
from IPython.display import Markdown

from helpers.core.claims import BOOTSTRAP_MIN_ROUNDS
from helpers.core.hardware import HardwareReport
from helpers.core.validate import require_choice, require_instance
from helpers.support.ledger import LedgerEntry, appendix_letter, part_label

# "generation": Appendix A's results on a language model, a group of their own (its baselines are decode steps)
GOALS = ("latency", "throughput", "memory", "size", "communication", "accuracy", "generation")
EFFORTS = ("one line", "a few lines", "a project")
RISKS = ("none", "rounding", "needs retraining or a check")
READINGS = ("paid", "gained, no claim", "gained, claim open", "gained, short of its claim", "no measurable effect",
            "inconclusive", "did not pay", "accounted")
GAINED = READINGS[:4]  # an interval above 1, whatever its claim says
PRECISE_NULL = (0.95, 1.05)  # an interval inside these bounds measured "no effect" precisely: more rounds won't help
KINDS = ("time ratio", "exact ratio", "accuracy difference")
ORDER_NOTE = ("cheap and safe first (ties: the firmer reading, then the surer gain against the same baseline, then "
              "the earlier chapter); ratios compared only against the same baseline")
COLUMNS = ("goal", "technique", "result", "against", "reading", "effort", "accuracy risk", "chapter", "combination",
           "reason")
CHECK = RISKS[2]
# An inconclusive result is never read as "did not pay": what it needs is more rounds (or seeds, for accuracy).
INCONCLUSIVE_NOTE = {"time ratio": "its interval includes 1: measure more rounds",
                     "accuracy difference": "its interval includes 0 points: compare more seeds"}


class Technique(NamedTuple):
    """What a ledger technique is for (its goal), in the learner's words, and what it costs to try; builds_on names
    the catalogued technique its ratio is measured on top of (its baseline), if any."""

    goal: str
    words: str
    effort: str
    risk: str
    combination: bool = False
    builds_on: str = ""


def _precision_entries() -> dict[str, Technique]:
    """Chapter 3's mixed-precision entries: bf16, or fp16 on a GPU without bf16; small CNN, ResNet-18, against TF32."""
    catalog = {}
    for low in ("bf16", "fp16"):
        catalog[f"mixed_precision_{low}"] = Technique("throughput", f"{low} autocast for training (small CNN)",
                                                      "a few lines", "rounding")
        catalog[f"mixed_precision_{low}_resnet18"] = Technique(
            "throughput", f"{low} autocast for training (ResNet-18)", "a few lines", "rounding")
        catalog[f"mixed_precision_{low}_vs_tf32_resnet18"] = Technique(
            "throughput", f"{low} autocast for training, against TF32 (ResNet-18)", "a few lines", "rounding")
    return catalog


# A result is filed under the goal its metric measures (batching buys throughput, not latency; bf16 compression
# halves bytes sent, which is communication). Techniques the catalogue does not know are filed under "other".
CATALOG: dict[str, Technique] = {
    "batching": Technique("throughput", "batch inference requests", "a few lines", "none"),
    "batched_data_fetch": Technique("throughput", "a batch with one indexing operation, images kept as tensors",
                                    "a few lines", "none", True),
    "depthwise_separable_conv": Technique("latency", "depthwise separable convolutions", "a project", CHECK),
    "channel_pruning_50": Technique("latency", "prune half the channels, then fine-tune", "a project", CHECK),
    "unstructured_pruning_50": Technique("latency", "zero half the weights (unstructured)", "a project", CHECK),
    "conv_bn_folding": Technique("latency", "fold batch norms into convolutions", "a few lines", "rounding"),
    "channels_last": Technique("latency", "channels_last memory layout", "one line", "none"),
    "torch_compile": Technique("latency", "torch.compile", "one line", "none"),
    "torch_compile_freezing": Technique("latency", "torch.compile with freezing, against compile alone", "one line",
                                        "none", builds_on="torch_compile"),
    "torch_compile_training": Technique("throughput", "torch.compile for a training step", "one line", "none"),
    **_precision_entries(),
    "fused_adamw": Technique("throughput", "the fused AdamW step", "one line", "none"),
    "dataloader_workers": Technique("throughput", "DataLoader workers", "one line", "none"),
    "memory_cache": Technique("throughput", "a decoded in-memory cache", "a few lines", "none"),
    "ddp_buckets": Technique("communication", "DDP's gradient buckets, against one all-reduce per tensor",
                             "one line", "none"),
    "ddp_two_processes": Technique("throughput", "DDP with two processes on one machine", "a few lines", "none"),
    "no_sync_accumulation": Technique("communication", "no_sync during gradient accumulation", "a few lines", "none"),
    "bf16_compress_hook": Technique("communication", "bf16 gradient compression, against the same fp32 hook",
                                    "one line", "rounding"),
    "omp_one_thread_per_process": Technique("throughput", "one OpenMP thread per DDP process", "one line", "none",
                                            builds_on="ddp_two_processes"),
    "fsdp2_memory": Technique("memory", "FSDP2 sharding (accounted bytes per rank)", "a few lines", "none"),
    "fsdp2_step": Technique("memory", "FSDP2's step time, against DDP (the price of sharding)", "a few lines",
                            "none"),
    "pseudo_labelling": Technique("accuracy", "pseudo-labels from a teacher on unlabelled images", "a project",
                                  CHECK),
    "knowledge_distillation": Technique("accuracy", "distillation into a small student, against pseudo-labels",
                                        "a project", CHECK, builds_on="pseudo_labelling"),
    "compile_freezing_teacher": Technique("latency", "torch.compile with freezing, against eager (a CNN at batch 64)",
                                          "one line", "none"),
    "bf16_inference": Technique("latency", "bf16 inference, compiled with freezing", "a few lines", "rounding",
                                builds_on="compile_freezing_teacher"),
    "int8_dynamic_linear": Technique("latency", "dynamic int8 for Linear layers (torchao)", "a few lines", CHECK,
                                     builds_on="bf16_inference"),
    "int8_static_pt2e": Technique("latency", "static int8 with PT2E and freezing", "a few lines", CHECK,
                                  builds_on="compile_freezing_teacher"),
    "weight_only_int8": Technique("latency", "weight-only int8 at batch 1", "one line", CHECK,
                                  builds_on="bf16_inference"),
    "weight_only_int4": Technique("latency", "weight-only int4 at batch 1", "one line", CHECK,
                                  builds_on="bf16_inference"),
    "compression_combined": Technique("latency", "pruning, distillation and int8 together", "a project", CHECK, True),
    "profiler_fix_normalize_loop": Technique("throughput", "one vectorised expression instead of a loop over the "
                                             "batch", "a few lines", "none"),
    "profiler_fix_cached_loader": Technique("throughput", "resize once, shift whole batches (instead of per sample)",
                                            "a few lines", "none", builds_on="profiler_fix_normalize_loop"),
    "profiler_fix": Technique("throughput", "the fixes a profile pointed at, together", "a few lines", "none", True),
    "onnxruntime": Technique("latency", "ONNX Runtime, against torch.compile with freezing", "a few lines", "none",
                             builds_on="compile_freezing_teacher"),
    "onnxruntime_int8_static": Technique("latency", "ONNX Runtime static int8 (QDQ)", "a few lines", CHECK,
                                         builds_on="onnxruntime"),
    "onnxruntime_int8_dynamic_mlp": Technique("latency", "ONNX Runtime dynamic int8 for Linear layers",
                                              "a few lines", CHECK, builds_on="onnxruntime"),
    "tensorrt_fp16": Technique("latency", "a TensorRT fp16 engine, against torch.compile with CUDA graphs",
                               "a project", "rounding", builds_on="torch_compile"),
    "capstone_workers": Technique("throughput", "two DataLoader workers, training on the threads they leave",
                                  "a few lines", "none"),
    "capstone_int8_after_pruning": Technique("latency", "int8 (PT2E) after pruning, against the pruned network compiled",
                                             "a few lines", CHECK, builds_on="capstone_compile"),
    "capstone_int8_unpruned": Technique("latency", "int8 (PT2E) on the capstone's unpruned CNN, against it compiled",
                                        "a few lines", CHECK, builds_on="compile_freezing_teacher"),
    "capstone_channels_last": Technique("latency", "channels_last (the capstone's CNN at batch 64)", "one line", "none"),
    "capstone_pruning": Technique("latency", "the capstone's channel pruning, against channels_last",
                                  "a project", CHECK),
    "capstone_compile": Technique("latency", "torch.compile with freezing on the pruned CNN, against eager", "one line",
                                  "none", builds_on="capstone_pruning"),
    "capstone_ort_fp32": Technique("latency", "ONNX Runtime for the pruned network, against it compiled", "a few lines",
                                   "none", builds_on="capstone_compile"),
    "capstone_ort_int8": Technique("latency", "ONNX Runtime static int8 after pruning, against ONNX Runtime fp32",
                                   "a few lines", CHECK, builds_on="capstone_ort_fp32"),
    "capstone_cache": Technique("throughput", "the capstone's decoded in-memory cache", "a few lines", "none"),
    "capstone_plan_latency": Technique("latency", "the capstone's plan, all its stages against eager fp32",
                                       "a project", CHECK, True),
    "capstone_plan_size": Technique("size", "the capstone's plan, all its stages (bytes)", "a project", CHECK, True),
    "lm_kv_cache": Technique("generation", "a KV cache for generation, against recomputing the prefix", "a few lines",
                             "none"),
    "lm_sdpa_attention": Technique("generation", "fused attention (SDPA), against attention written by hand",
                                   "one line", "none"),
    # Appendix A's decode-step entries are all measured with a KV cache, so they build on it.
    "lm_bf16_decode": Technique("generation", "bf16 weights for the decode step, against fp32 (both eager)",
                                "one line", "rounding", builds_on="lm_kv_cache"),
    "lm_compile_decode": Technique("generation", "torch.compile with freezing of the bf16 decode step", "a few lines",
                                   "none", builds_on="lm_bf16_decode"),
    "lm_int8_weight_only_decode": Technique("generation", "int8 weight-only decode, against bf16 compiled",
                                            "one line", CHECK, builds_on="lm_compile_decode"),
    "lm_int4_weight_only_decode": Technique("generation", "int4 weight-only decode (eager), against bf16 compiled",
                                            "one line", CHECK, builds_on="lm_bf16_decode"),
    "lm_decode_batching": Technique("generation", "16 sequences per decode step (tokens/s), against one",
                                    "a project", "none", builds_on="lm_bf16_decode"),
    # written by earlier editions of chapter 8; kept so that older ledgers still read
    "capstone_latency": Technique("latency", "the capstone's plan, all stages together", "a project", CHECK, True),
    "capstone_size": Technique("size", "the capstone's plan, all stages together", "a project", CHECK, True),
    "capstone_pipeline": Technique("throughput", "the capstone's best data pipeline", "a few lines", "none", True),
}
UNKNOWN = Technique("other", "", "unknown", "unknown")
REQUIRED_KEYS = ("chapter", "technique", "metric", "speedup", "gain", "hardware")


def _text(entry: Mapping, key: str) -> str:
    """A text field of an entry; '' where it is missing or not text (older ledgers, NaN in a table row)."""
    value = entry.get(key)
    return value if isinstance(value, str) else ""


def technique_of(entry: Mapping) -> Technique:
    """The catalogue's record of an entry's technique; unknown techniques keep their ledger name, goal 'other'."""
    return CATALOG.get(entry["technique"], UNKNOWN._replace(words=entry["technique"]))


def is_combination(entry: Mapping) -> bool:
    """Several techniques measured together: flagged so in the ledger, or known to the catalogue as one."""
    flag = entry.get("combination")
    return (isinstance(flag, (bool, np.bool_)) and bool(flag)) or technique_of(entry).combination


def kind_of(entry: Mapping) -> str:
    """What the number is (KINDS): a time ratio measured in rounds, an exact ratio, or an accuracy difference."""
    kind = _text(entry, "kind")
    if kind.startswith("accuracy difference"):
        return "accuracy difference"
    if kind.startswith("exact"):
        return "exact ratio"
    return "time ratio" if kind.startswith("time ratio") or _interval(entry) else "exact ratio"


def against(entry: Mapping) -> str:
    """The baseline an entry was measured against: its compared_with, or its metric where older ledgers lack one."""
    return _text(entry, "compared_with") or _text(entry, "metric")


def _interval(entry: Mapping) -> tuple[float, float] | None:
    """The entry's (low, high) interval, or None where it has none (exact ratios; NaN in a table row)."""
    interval = entry.get("speedup_interval")
    if interval is None or len(interval) != 2 or any(v != v for v in interval):
        return None
    return float(interval[0]), float(interval[1])


def coverage_percent(rounds: int) -> int:
    """Distribution-free coverage of the range of k round ratios for their median: 1 - 2 * 0.5**k, in percent."""
    return round(100 * (1 - 2 * 0.5 ** rounds))


def interval_words(entry: Mapping) -> str:
    """What an entry's interval is: '95% interval, 8 rounds', 'range of 5 rounds, about 94% coverage', or ''."""
    found = re.search(r"(\d+) rounds", _text(entry, "kind"))
    if not found:
        return ""
    rounds = int(found.group(1))
    if rounds < BOOTSTRAP_MIN_ROUNDS:
        return f"range of {rounds} rounds, about {coverage_percent(rounds)}% coverage"
    return f"95% interval, {rounds} rounds"


def _points_text(entry: Mapping) -> str | None:
    """An accuracy entry's difference in points with its interval, from extras['difference_points']."""
    points = (entry.get("extras") or {}).get("difference_points")
    if not points or len(points) != 3:
        return None
    mean, low, high = points
    seeds = re.search(r"over (\d+) paired seeds", _text(entry, "kind"))
    label = f"95% interval over {seeds.group(1)} seeds" if seeds else "95% interval"
    return f"{mean:+.2f} points ({label}: {low:+.2f} to {high:+.2f})"


def ratio_text(entry: Mapping) -> str:
    """An entry's number as the guide prints it: a ratio with its interval (named as what it is), 'exact' for sizes
    and counts, or an accuracy difference in points."""
    if kind_of(entry) == "accuracy difference" and (points := _points_text(entry)):
        return points
    text = f"{entry['speedup']:.2f}x"
    interval = _interval(entry)
    if interval is None:
        return f"{text} (exact)" if kind_of(entry) == "exact ratio" else text
    words = interval_words(entry)
    return f"{text} ({words + ': ' if words else ''}{interval[0]:.2f} to {interval[1]:.2f}x)"


def reading(entry: Mapping) -> str:
    """How a result reads (READINGS, GUIDE section 5), from its interval against 1 and then its claim: above 1, it
    'paid' when its claim holds, or 'gained' with no claim, with its claim open (the interval includes the
    threshold) or short of its claim; 'no measurable effect' (a narrow interval around 1), 'inconclusive' (a wide
    one: never 'did not pay'), 'did not pay' (below 1), or 'accounted' (an exact ratio: sizes, bytes, counts)."""
    if kind_of(entry) == "exact ratio":
        return "accounted"
    verdict, gain = _text(entry, "verdict"), entry["gain"]
    if kind_of(entry) == "time ratio" and _interval(entry) is None:
        return "inconclusive"  # a time ratio an earlier format stored without its interval cannot be read
    if gain == "gain":
        return {"holds": "paid", "inconclusive": "gained, claim open",
                "does not hold here": "gained, short of its claim"}.get(verdict, "gained, no claim")
    if gain == "loss":
        return "did not pay"
    interval = _interval(entry)
    if interval and PRECISE_NULL[0] <= interval[0] and interval[1] <= PRECISE_NULL[1]:
        return "no measurable effect"
    return "inconclusive"


def sure_gain(entry: Mapping) -> float:
    """How sure a gain is, to rank within one group only: the lower end of its interval (ratio or points)."""
    if kind_of(entry) == "accuracy difference":
        points = (entry.get("extras") or {}).get("difference_points")
        return float(points[1]) if points and len(points) == 3 else float("-inf")
    interval = _interval(entry)
    return interval[0] if interval else float(entry["speedup"])


def group_key(entry: Mapping) -> tuple[str, bool, str, str]:
    """The group a result is ranked in (like with like): its goal, whether it is a combination, its baseline and its
    kind."""
    return technique_of(entry).goal, is_combination(entry), against(entry), kind_of(entry)


def group_ranks(entries: Sequence[Mapping]) -> list[int]:
    """Each entry's rank within its group (0: the surest gain against that baseline)."""
    ranks = []
    for entry in entries:
        rivals = [e for e in entries if group_key(e) == group_key(entry) and sure_gain(e) > sure_gain(entry)]
        ranks.append(len(rivals))
    return ranks


def _with_prerequisites(technique: Technique) -> tuple[str, str]:
    """The effort and accuracy risk of trying a technique, with what it builds on (total_cost, in words)."""
    effort, risk = total_cost(technique)
    return ((EFFORTS[effort] if effort < len(EFFORTS) else technique.effort),
            (RISKS[risk] if risk < len(RISKS) else technique.risk))


def total_cost(technique: Technique) -> tuple[int, int]:
    """The effort and risk ranks (EFFORTS, RISKS; unknown last) of a technique and of what it builds on: trying a
    step measured on top of another means trying that one too."""
    effort = EFFORTS.index(technique.effort) if technique.effort in EFFORTS else len(EFFORTS)
    risk = RISKS.index(technique.risk) if technique.risk in RISKS else len(RISKS)
    if technique.builds_on in CATALOG:
        below = total_cost(CATALOG[technique.builds_on])
        return max(effort, below[0]), max(risk, below[1])
    return effort, risk


def cost_key(entry: Mapping, rank: int) -> tuple:
    """Cheap and safe first (effort, then accuracy risk, each with what it builds on), a step on top of another
    after a first step, then the rank within its group (the surest gain against that baseline), then chapter."""
    technique = technique_of(entry)
    return (*total_cost(technique), bool(technique.builds_on), rank, entry["chapter"], entry["technique"])


def _cpu_reason(entry: Mapping, hardware: HardwareReport) -> str:
    """A reason a chapter measured for a CPU result that did not pay, from this CPU's report; '' where none did."""
    technique, cores = entry["technique"], hardware.cpu_cores
    if technique.startswith("mixed_precision_bf16") and hardware.cpu_native_bf16 is False:
        return "this CPU has no native bf16 arithmetic (AVX512-BF16 or AMX): chapter 3"
    if technique == "dataloader_workers":
        return f"the workers and the training step share this machine's {cores} logical CPUs: chapter 4"
    if technique == "ddp_two_processes":
        return (f"two processes share the {cores} logical CPUs one process already used, and add an all-reduce: "
                "chapter 5")
    if technique in ("int8_static_pt2e", "int8_dynamic_linear", "onnxruntime_int8_static",
                     "onnxruntime_int8_dynamic_mlp"):
        return (f"int8 pays only with int8 kernels for this CPU (VNNI or AMX; its ISA level: {hardware.cpu_isa}) and "
                "enough work per call to repay the quantize steps: chapter 6")
    if technique.startswith("weight_only_"):
        return ("weight-only quantization turns the weights back to float for each matmul: it saves bytes, not "
                "arithmetic: chapter 6")
    return ""


def established_reason(entry: Mapping, hardware: HardwareReport, here: Sequence[Mapping] = ()) -> str:
    """Why a result read as it did, only where a chapter measured the cause ('' otherwise; an inconclusive result
    gets 'measure more rounds'); reasons read from the CPU's report apply only to results measured on the CPU."""
    require_instance("hardware", hardware, HardwareReport)
    if entry["technique"] == "dataloader_workers":
        workers = [e for e in here if e["technique"] == "capstone_workers" and e["gain"] == "gain"]
        if workers:
            return (f"chapter 8 measured {ratio_text(workers[0])} with another thread split and model "
                    f"({reading(workers[0])})")
    if reading(entry) == "inconclusive":
        if kind_of(entry) == "time ratio" and _interval(entry) is None:
            return "no interval recorded (an earlier ledger format): run the chapter again"
        return INCONCLUSIVE_NOTE.get(kind_of(entry), INCONCLUSIVE_NOTE["time ratio"])
    if reading(entry) == "gained, claim open":
        return "it gained; its interval includes its claim's threshold: measure more rounds"
    if reading(entry) not in ("did not pay", "gained, short of its claim"):
        return ""
    if entry["technique"] == "fsdp2_step":
        return "the price of FSDP2's memory saving: its gathers, copies and hooks: chapter 5, where its step goes"
    on_cpu = entry["hardware"] == hardware.cpu_label and entry["hardware"] != hardware.gpu_name
    return _cpu_reason(entry, hardware) if on_cpu else ""


def measured_on(entries: Sequence[Mapping], hardware: HardwareReport) -> list[Mapping]:
    """The entries this machine measured (its CPU label, or its GPU's name)."""
    require_instance("hardware", hardware, HardwareReport)
    return [entry for entry in entries if entry["hardware"] in (hardware.cpu_label, hardware.gpu_name)]


def _checked(entries: Sequence[Mapping | LedgerEntry], hardware: HardwareReport) -> list[Mapping]:
    """The entries as mappings, each checked to carry the fields the guide reads."""
    require_instance("hardware", hardware, HardwareReport)
    require_instance("entries", entries, (list, tuple))
    rows = [asdict(e) if isinstance(e, LedgerEntry) else require_instance(f"entries[{i}]", e, Mapping)
            for i, e in enumerate(entries)]
    for i, row in enumerate(rows):
        missing = [key for key in REQUIRED_KEYS if key not in row]
        if missing:
            raise ValueError(f"entries[{i}] is not a ledger entry (missing {missing})")
    return rows


def chapter_key(number: object) -> int | str:
    """The chapter column's value: the chapter's number, or an appendix's letter ('A')."""
    return appendix_letter(int(number)) or int(number)


def _row(entry: Mapping, hardware: HardwareReport, here: Sequence[Mapping]) -> dict:
    """One result as a row of the guide's table."""
    technique = technique_of(entry)
    effort, risk = _with_prerequisites(technique)
    return {"goal": technique.goal, "technique": technique.words, "result": ratio_text(entry),
            "against": against(entry), "reading": reading(entry), "effort": effort, "accuracy risk": risk, "chapter": chapter_key(entry["chapter"]), "combination": is_combination(entry),
            "reason": established_reason(entry, hardware, here)}


def _ordered(here: Sequence[Mapping]) -> list[Mapping]:
    """Goal by goal, single techniques before combinations, then cheap and safe first, the firmer reading, the place
    within its baseline (the surer gain first: no ratio is compared across baselines) and the earlier chapter."""
    ranks = dict(zip(map(id, here), group_ranks(here)))
    goals = (*GOALS, "other")
    return sorted(here, key=lambda e: (goals.index(technique_of(e).goal), is_combination(e),
                                       cost_key(e, ranks[id(e)])[:3], READINGS.index(reading(e)), ranks[id(e)],
                                       e["chapter"], e["technique"]))


def guide_table(entries: Sequence[Mapping | LedgerEntry], hardware: HardwareReport) -> pd.DataFrame:
    """One row per result measured on this machine: goal, technique, result, against, reading, effort, accuracy
    risk, chapter, combination and a reason where a chapter established one; cheap and safe first in each goal."""
    here = measured_on(_checked(entries, hardware), hardware)
    return pd.DataFrame([_row(entry, hardware, here) for entry in _ordered(here)], columns=list(COLUMNS))


def try_first(entries: Sequence[Mapping], goal: str) -> Mapping | None:
    """The first single technique of a goal in the guide's order (_ordered: the table's order) that gained."""
    require_choice("goal", goal, (*GOALS, "other"))
    singles = [e for e in entries if technique_of(e).goal == goal and not is_combination(e)]
    return next((e for e in _ordered(singles) if reading(e) in GAINED), None)


def _goal_line(entries: Sequence[Mapping], goal: str) -> str | None:
    """A goal's 'Try first' and how its single-technique results read; None where the goal has none."""
    singles = [e for e in entries if technique_of(e).goal == goal and not is_combination(e)]
    if not singles:
        return None
    counts = ", ".join(f"{n} {r}" for r in READINGS if (n := sum(reading(e) == r for e in singles)))
    first = try_first(singles, goal) if goal != "other" else None
    if first is None:
        pick = "nothing gained here yet" if goal != "other" else "not in the catalogue, so not ranked"
    else:
        technique = technique_of(first)
        effort, risk = _with_prerequisites(technique)
        part = part_label(int(first["chapter"]), in_sentence=True)
        pick = (f"{technique.words} ({effort}; accuracy risk: {risk}): {ratio_text(first)} "
                f"against {against(first)} ({part}; {reading(first)})")
    name = goal.capitalize() if goal != "other" else "Other results"
    return f"- **{name}**. *Try first*: {pick}. Readings: {counts}."


def _combination_line(entry: Mapping) -> str:
    """One combination, listed apart and never ranked against single techniques."""
    technique = technique_of(entry)
    part = part_label(int(entry["chapter"]), in_sentence=True)
    return (f"- *Combination* ({technique.goal}, {part}): {technique.words}: {ratio_text(entry)} "
            f"against {against(entry)}; {reading(entry)}.")


def _title(hardware: HardwareReport) -> str:
    """The machine the guide is for: the CPU, and the GPU where there is one."""
    return hardware.cpu_label + (f" and {hardware.gpu_name}" if hardware.gpu_name else "")


def decision_guide(entries: Sequence[Mapping | LedgerEntry], hardware: HardwareReport) -> Markdown:
    """The guide in a few lines: how many results, per goal what to try first and how its results read, and each
    combination on its own line (every result, with its reading and reason, is in `guide_table`)."""
    checked = _checked(entries, hardware)
    here = measured_on(checked, hardware)
    if not here:
        return Markdown("The ledger holds no results from this machine: run chapters 1 to 7 first (`make execute`), "
                        "then this cell again.")
    inconclusive = sum(reading(e) == "inconclusive" for e in here)
    lines = [f"**Decision guide for {_title(hardware)}**: {len(here)} results measured on this machine "
             f"({len(checked) - len(here)} from other hardware left out; {inconclusive} inconclusive: a wide "
             f"interval around 1 or 0, or none at all, so measure again). Order: {ORDER_NOTE}; a step measured "
             "on top of another technique counts that one's cost too."]
    lines += [line for goal in (*GOALS, "other") if (line := _goal_line(here, goal))]
    lines += [_combination_line(e) for e in _ordered(here) if is_combination(e)]
    return Markdown(lines[0] + "\n\n" + "\n".join(lines[1:]))
