"""Chapter 8's exercise checks: deployment plans chosen from the waterfall table, checked against this run's numbers."""

from __future__ import annotations

import pandas as pd

from helpers.core.validate import require_number
from helpers.support.checks import Verdict, check_choice
from helpers.ch08_capstone.waterfall import plan_candidates

NONE = "none"


def _stage_choices(table: pd.DataFrame) -> list[str]:
    """What an answer may be: a row label of the table, or 'none'."""
    return [*table.index, NONE]


def check_latency_plan(exercise: str, answer: object, table: pd.DataFrame, *, latency_ms: float,
                       budget_points: float) -> Verdict:
    """The earliest stage (fewest techniques to maintain) within the latency limit and the accuracy budget."""
    require_number("latency_ms", latency_ms, strictly_positive=True)
    fits = plan_candidates(table, budget_points) & (table["latency_ms"] <= latency_ms)
    expected = str(fits.idxmax()) if fits.any() else NONE
    return check_choice(exercise, answer, expected, _stage_choices(table),
                        hint="Keep the rows the plan's rule allows (within the budget with the stages they build on, "
                             "own step paid) that meet the latency limit; the simplest is the one that comes first.")


def check_plan_without(exercise: str, answer: object, table: pd.DataFrame, *, size_KB: float, budget_points: float,
                       excluded_prefix: str) -> Verdict:
    """The fastest stage within the size limit and the accuracy budget, among stages not named excluded_prefix..."""
    require_number("size_KB", size_KB, strictly_positive=True)
    fits = (plan_candidates(table, budget_points) & (table["size_KB"] <= size_KB)
            & ~table.index.str.startswith(excluded_prefix))
    expected = str(table.loc[fits, "total_speedup"].idxmax()) if fits.any() else NONE
    return check_choice(exercise, answer, expected, _stage_choices(table),
                        hint=f"Leave out the {excluded_prefix} rows and those over either limit; of the rest, the "
                             "largest total_speedup.")
