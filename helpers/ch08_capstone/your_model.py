"""The capstone's method as one call you can point at your own model: time every stage in the same interleaved
rounds, score each on held-out images, and return the waterfall table that the plan's rule reads."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import pandas as pd
import torch

from helpers.core.measure import Timing, measure_interleaved
from helpers.core.validate import require_callable, require_instance, require_int, require_number
from helpers.ch06_compression.quantize import predict_in_fixed_batches
from helpers.ch08_capstone.waterfall import Stage, waterfall_table


@dataclass(frozen=True)
class StageSpec:
    """A stage before it is measured: its model (called on a batch like `example`), its bytes and its place.

    timed_as names an earlier stage whose call does the same work (the same layers and shapes), so that it is
    timed once; the other fields are Stage's (same_function: a layout or a compiler, the parent's function).
    """

    name: str
    step: str
    model: Callable[[torch.Tensor], object]
    size_bytes: int
    builds_on: str | None = None
    note: str = ""
    constraint: str = ""
    timed_as: str | None = None
    same_function: bool = False


def correct_flags(model: Callable[[torch.Tensor], object], images: torch.Tensor, labels: torch.Tensor,
                  batch_size: int) -> torch.Tensor:
    """One bool per image: is the model's prediction right (called on batches of exactly batch_size, no autograd)?"""
    if len(images) != len(labels):
        raise ValueError(f"need one label per image, got {len(images)} images and {len(labels)} labels")
    with torch.no_grad():
        return predict_in_fixed_batches(model, images, batch_size).argmax(1) == labels


def run_waterfall(specs: Sequence[StageSpec], example: torch.Tensor, images: torch.Tensor, labels: torch.Tensor, *,
                  also_time: Mapping[str, Callable[[], object]] | None = None, rounds: int = 8,
                  min_run_time: float = 0.2) -> tuple[pd.DataFrame, dict[str, Timing]]:
    """(waterfall table, every timing): the stages and also_time's calls timed in the same rounds, each stage scored
    on images/labels (held-out data: a validation split for decisions, the test set once at the end)."""
    require_instance("example", example, torch.Tensor)
    require_int("rounds", rounds, minimum=3)
    require_number("min_run_time", min_run_time, strictly_positive=True)
    for index, spec in enumerate(specs):
        require_instance(f"specs[{index}]", spec, StageSpec)
        require_callable(f"specs[{index}].model", spec.model)
    calls = {spec.name: partial(spec.model, example) for spec in specs if spec.timed_as is None}
    for spec in specs:
        if spec.timed_as is not None and spec.timed_as not in calls:
            raise ValueError(f"stage {spec.name!r}: timed_as must name a stage timed itself, one of {list(calls)}")
    clashes = set(calls) & set(also_time or {})
    if clashes:
        raise ValueError(f"also_time must not reuse stage names, got {sorted(clashes)}")
    with torch.no_grad():
        timings = measure_interleaved({**calls, **(also_time or {})}, rounds=rounds, min_run_time=min_run_time)
    stages = [Stage(spec.name, spec.step, timings[spec.timed_as or spec.name], spec.size_bytes,
                    correct_flags(spec.model, images, labels, len(example)), spec.builds_on, spec.note,
                    spec.constraint, spec.same_function) for spec in specs]
    return waterfall_table(stages), timings
