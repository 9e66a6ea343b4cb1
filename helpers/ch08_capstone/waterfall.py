"""Chapter 8's capstone bookkeeping: one model's stages as a table (latency with intervals, size, accuracy with
its interval and its paired change against the baseline), the learner's accuracy budget, and the plan it allows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from helpers.core.accuracy import wilson_interval
from helpers.core.claims import timing_ratio
from helpers.core.measure import Timing
from helpers.core.validate import require_instance, require_int, require_number

PAYS = ("gain", "baseline")  # a stage's own step pays when its interval is above 1 (the baseline counts as paying)


@dataclass(frozen=True)
class Stage:
    """One row of the waterfall: the model after `step`, measured in this run.

    correct holds one bool per test image (was this stage's prediction right?), so that accuracy changes are
    judged image by image against the baseline. builds_on names the stage this one starts from (None: the row
    before it); note says why the step cannot change latency, where that is known before measuring.
    """

    name: str
    step: str
    timing: Timing
    size_bytes: int
    correct: torch.Tensor
    builds_on: str | None = None
    note: str = ""


def _check_stages(stages: Sequence[Stage]) -> None:
    """At least a baseline and one more stage, unique names, one correctness flag per test image, known parents."""
    if len(stages) < 2:
        raise ValueError(f"a waterfall needs the baseline and at least one stage, got {len(stages)}")
    for index, stage in enumerate(stages):
        require_instance(f"stages[{index}]", stage, Stage)
        require_int(f"stages[{index}].size_bytes", stage.size_bytes, minimum=1)
        if stage.correct.dtype != torch.bool or stage.correct.shape != stages[0].correct.shape:
            raise ValueError(f"stages[{index}].correct must be a bool tensor with one flag per test image, like "
                             f"the baseline's {tuple(stages[0].correct.shape)}")
    names = [stage.name for stage in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be unique, got {names}")
    for index, stage in enumerate(stages):
        if stage.builds_on is not None and stage.builds_on not in names[:index]:
            raise ValueError(f"stages[{index}].builds_on must name an earlier stage, got {stage.builds_on!r}")


def paired_change_points(baseline: torch.Tensor, candidate: torch.Tensor, *, resamples: int = 2000,
                         seed: int = 0) -> tuple[float, float, float]:
    """Accuracy change in points (candidate - baseline) on the same images, with a 95% bootstrap interval over the
    images (paired: both models are scored on each resampled image)."""
    difference = candidate.float().numpy() - baseline.float().numpy()
    picks = np.random.default_rng(seed).integers(0, len(difference), size=(resamples, len(difference)))
    low, high = np.percentile(difference[picks].mean(axis=1), [2.5, 97.5])
    return 100 * float(difference.mean()), 100 * float(low), 100 * float(high)


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
        change, change_low, change_high = paired_change_points(baseline.correct, stage.correct)
        rows.append({
            "stage": stage.name, "step": stage.step, "builds_on": parent.name if index else "",
            "latency_ms": stage.timing.median_ms,
            "step_speedup": step.median if step else 1.0, "step_low": step.low if step else 1.0,
            "step_high": step.high if step else 1.0, "step_gain": step.gain if step else "baseline",
            "total_speedup": total.median if total else 1.0, "total_low": total.low if total else 1.0,
            "total_high": total.high if total else 1.0,
            "size_KB": stage.size_bytes / 1e3, "size_reduction": baseline.size_bytes / stage.size_bytes,
            "accuracy_%": 100 * accuracy, "accuracy_low_%": 100 * low, "accuracy_high_%": 100 * high,
            "accuracy_change_points": change, "change_low_points": change_low, "change_high_points": change_high,
            "note": stage.note,
        })
    return pd.DataFrame(rows).set_index("stage")


def within_budget(table: pd.DataFrame, budget_points: float) -> pd.Series:
    """True for a stage that loses at most budget_points against stage 0, and whose stages it builds on do too
    (a stage over the budget takes every stage built on it out of the plan)."""
    require_number("budget_points", budget_points, minimum=0.0)
    own = table["accuracy_change_points"] >= -budget_points
    allowed = {}
    for name, parent in table["builds_on"].items():
        allowed[name] = bool(own[name]) and (allowed[parent] if parent else True)
    return pd.Series(allowed)


def budget_is_clear(table: pd.DataFrame, budget_points: float) -> pd.Series:
    """True where the paired 95% interval of the accuracy change lies wholly on one side of the budget line: the
    decision would be the same on another sample of test images; False where it is within their noise."""
    line = -require_number("budget_points", budget_points, minimum=0.0)
    return (table["change_low_points"] > line) | (table["change_high_points"] < line)


def plan_candidates(table: pd.DataFrame, budget_points: float) -> pd.Series:
    """The stages a plan may stop at: within the budget (with the stages they build on), and the baseline or a
    stage whose own step paid (a step that did not pay adds a technique and nothing to show for it)."""
    return within_budget(table, budget_points) & table["step_gain"].isin(PAYS)


def deployment_plan(table: pd.DataFrame, budget_points: float) -> str:
    """The fastest of the plan candidates (largest total speed-up against stage 0)."""
    return str(table.loc[plan_candidates(table, budget_points), "total_speedup"].idxmax())


def flat_step_reason(row: pd.Series) -> str:
    """Why a stage is drawn as a flat step: its note, or its own step's measured ratio and interval."""
    if row.get("note"):
        return row["note"]
    interval = f"{row['step_speedup']:.2f}x (95% interval {row['step_low']:.2f} to {row['step_high']:.2f}x)"
    if row["step_gain"] == "loss":
        return f"slower here: {interval}"
    return f"no measurable gain here: {interval}"
