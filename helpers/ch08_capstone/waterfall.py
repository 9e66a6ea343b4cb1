"""Chapter 8's capstone bookkeeping: one model's stages as a table (latency with intervals, size, accuracy with
its interval and its paired change against the baseline), the learner's accuracy budget, and the plan it allows.

One rule judges both sides with their intervals: a stage stays within the budget when the lower end of its
accuracy change's interval (and of every stage it builds on) is at or above -budget, or when it computes its
parent's function and changed no image's verdict; its step pays when its latency interval lies above 1, or when it
makes the model smaller and its latency interval does not lie below 1."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from helpers.core.accuracy import paired_accuracy_change, wilson_interval
from helpers.core.claims import BOOTSTRAP_MIN_ROUNDS, timing_ratio
from helpers.core.measure import Timing
from helpers.core.validate import require_instance, require_int, require_number

TOLERANCE = 1e-9  # points: an interval's end exactly on the budget line counts as within it
PAYS = ("gain", "baseline")  # a step is faster when its interval is above 1 (the baseline counts as paying)


@dataclass(frozen=True)
class Stage:
    """One row of the waterfall: the model after `step`, measured in this run.

    correct holds one bool per held-out image (was this stage's prediction right?), so that accuracy changes are
    judged image by image against the baseline. builds_on names the stage this one starts from (None: the row
    before it); note says why the step cannot change latency, where that is known before measuring; constraint
    says what the stage asks of a deployment (a fixed batch size, a first call that compiles); same_function marks a
    step that computes its parent's function up to float rounding (a layout, a compiler), whose accuracy is its
    parent's as long as it changes no prediction.
    """

    name: str
    step: str
    timing: Timing
    size_bytes: int
    correct: torch.Tensor
    builds_on: str | None = None
    note: str = ""
    constraint: str = ""
    same_function: bool = False


def _check_stages(stages: Sequence[Stage]) -> None:
    """At least a baseline and one more stage, unique names, one correctness flag per image, known parents."""
    if len(stages) < 2:
        raise ValueError(f"a waterfall needs the baseline and at least one stage, got {len(stages)}")
    for index, stage in enumerate(stages):
        require_instance(f"stages[{index}]", stage, Stage)
        require_int(f"stages[{index}].size_bytes", stage.size_bytes, minimum=1)
        if stage.correct.dtype != torch.bool or stage.correct.shape != stages[0].correct.shape:
            raise ValueError(f"stages[{index}].correct must be a bool tensor with one flag per image, like "
                             f"the baseline's {tuple(stages[0].correct.shape)}")
    names = [stage.name for stage in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be unique, got {names}")
    for index, stage in enumerate(stages):
        if stage.builds_on is not None and stage.builds_on not in names[:index]:
            raise ValueError(f"stages[{index}].builds_on must name an earlier stage, got {stage.builds_on!r}")


def paired_change_points(baseline: torch.Tensor, candidate: torch.Tensor) -> tuple[float, float, float]:
    """Accuracy change in points (candidate - baseline) on the same images, with its 95% interval (Newcombe's
    hybrid score interval for paired proportions: see paired_accuracy_change)."""
    return tuple(100 * value for value in paired_accuracy_change(baseline, candidate))


def waterfall_table(stages: Sequence[Stage]) -> pd.DataFrame:
    """One row per stage: its step's speed-up over the stage it builds on and the total over the first (95%
    intervals from the same interleaved rounds), size, accuracy with its Wilson interval, and its paired change against stage 0."""
    _check_stages(stages)
    baseline = stages[0]
    by_name = {stage.name: stage for stage in stages}
    rows = []
    for index, stage in enumerate(stages):
        parent = by_name[stage.builds_on] if stage.builds_on else stages[index - 1]
        step = timing_ratio(parent.timing, stage.timing) if index else None
        total = timing_ratio(baseline.timing, stage.timing) if index else None
        accuracy = stage.correct.float().mean().item()
        low, high = wilson_interval(accuracy, len(stage.correct))
        change, change_low, change_high = (paired_change_points(baseline.correct, stage.correct) if index
                                           else (0.0, 0.0, 0.0))  # the baseline is the reference itself
        rows.append({
            "stage": stage.name, "step": stage.step, "builds_on": parent.name if index else "",
            "latency_ms": stage.timing.round_median_ms, "rounds": len(stage.timing.round_medians_s),
            "step_speedup": step.median if step else 1.0, "step_low": step.low if step else 1.0,
            "step_high": step.high if step else 1.0, "step_gain": step.gain if step else "baseline",
            "total_speedup": total.median if total else 1.0, "total_low": total.low if total else 1.0,
            "total_high": total.high if total else 1.0,
            "size_KB": stage.size_bytes / 1e3, "size_reduction": baseline.size_bytes / stage.size_bytes,
            "size_step": parent.size_bytes / stage.size_bytes if index else 1.0,
            "accuracy_%": 100 * accuracy, "accuracy_low_%": 100 * low, "accuracy_high_%": 100 * high,
            "accuracy_change_points": change, "change_low_points": change_low, "change_high_points": change_high,
            "note": stage.note, "constraint": stage.constraint, "same_function": stage.same_function,
            "changed_from_parent": int((stage.correct != parent.correct).sum()) if index else 0,
        })
    return pd.DataFrame(rows).set_index("stage")


def within_budget(table: pd.DataFrame, budget_points: float) -> pd.Series:
    """True for a stage whose accuracy change is shown to lose at most budget_points (the lower end of its paired
    95% interval is at or above -budget_points), or that computes its parent's function and changed no prediction;
    and whose stages it builds on are within too: a stage over the budget, or not shown to be within it, takes
    every stage built on it out of the plan."""
    require_number("budget_points", budget_points, minimum=0.0)
    inherits = table["same_function"] & (table["changed_from_parent"] == 0)
    own = (table["change_low_points"] >= -budget_points - TOLERANCE) | inherits
    allowed = {}
    for name, parent in table["builds_on"].items():
        allowed[name] = bool(own[name]) and (allowed[parent] if parent else True)
    return pd.Series(allowed)


def budget_is_clear(table: pd.DataFrame, budget_points: float) -> pd.Series:
    """True where the paired 95% interval of the accuracy change lies wholly on one side of the budget line (another
    sample of this size would probably decide the same way); a stage that computes its parent's function and changed
    no image's verdict takes its parent's answer. False where the line falls inside the noise."""
    line = -require_number("budget_points", budget_points, minimum=0.0)
    inherits = table["same_function"] & (table["changed_from_parent"] == 0)
    own = (table["change_low_points"] >= line - TOLERANCE) | (table["change_high_points"] < line)
    clear: dict[str, bool] = {}
    for name, parent in table["builds_on"].items():
        clear[name] = clear[parent] if inherits[name] and parent else bool(own[name])
    return pd.Series(clear)


def step_pays(table: pd.DataFrame) -> pd.Series:
    """True for the baseline and for a step that is faster (its interval above 1), or smaller than the stage it
    builds on without being measurably slower (its interval not below 1)."""
    faster = table["step_gain"].isin(PAYS)
    smaller = (table["size_step"] > 1) & (table["step_gain"] != "loss")
    return faster | smaller


def plan_candidates(table: pd.DataFrame, budget_points: float) -> pd.Series:
    """The stages a plan may stop at: shown within the budget (with the stages they build on), and whose own step
    pays (a step that buys neither speed nor size adds a technique and nothing to show for it)."""
    return within_budget(table, budget_points) & step_pays(table)


def deployment_plan(table: pd.DataFrame, budget_points: float) -> str:
    """The fastest of the plan candidates (largest total speed-up against stage 0)."""
    return str(table.loc[plan_candidates(table, budget_points), "total_speedup"].idxmax())


def ratio_table(timings: Mapping[str, Timing], pairs: Mapping[str, tuple[str, str]]) -> pd.DataFrame:
    """One row per named comparison (without, with) of timings from the same rounds: the speed-up of 'with' over
    'without', its interval and its gain."""
    rows = {}
    for label, (without, with_) in pairs.items():
        for name in (without, with_):
            if name not in timings:
                raise ValueError(f"pairs[{label!r}] names {name!r}, which was not timed; timed: {list(timings)}")
        ratio = timing_ratio(timings[without], timings[with_])
        rows[label] = {"without": without, "with": with_, "speedup": ratio.median, "low": ratio.low,
                       "high": ratio.high, "reading": ratio.gain}
    return pd.DataFrame.from_dict(rows, orient="index")


def flat_step_reason(row: pd.Series) -> str:
    """Why a stage is drawn as a flat step: its note, or its own step's measured ratio and interval."""
    if row.get("note"):
        return row["note"]
    label = "95% interval" if row["rounds"] >= BOOTSTRAP_MIN_ROUNDS else f"range of {row['rounds']} rounds"
    interval = f"{row['step_speedup']:.2f}x ({label}: {row['step_low']:.2f} to {row['step_high']:.2f}x)"
    if row["step_gain"] == "loss":
        return f"slower here: {interval}"
    return f"no measurable gain here: {interval}"
