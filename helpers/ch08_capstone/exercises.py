"""Chapter 8's exercise checks: a verdict the learner measured, and the budgets where two plan rules disagree."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from helpers.core.claims import make_claim, timing_ratio
from helpers.core.measure import Timing
from helpers.core.validate import require_number
from helpers.support.checks import FAIL, PASS, TODO, Verdict, announce, check_choice
from helpers.ch08_capstone.waterfall import deployment_plan

VERDICTS = ("holds", "does not hold here", "inconclusive")
MIN_ROUNDS = 5


def _timings_problem(timings: object, names: Sequence[str]) -> str | None:
    """Why the learner's timings cannot be read (not a mapping, a name missing, too few rounds), or None."""
    if not isinstance(timings, Mapping):
        return f"my_timings must be the dict that measure_interleaved returns, got {type(timings).__name__}"
    for name in names:
        timing = timings.get(name)
        if not isinstance(timing, Timing):
            return f"my_timings needs a Timing named {name!r}; it has {list(timings)}"
        if len(timing.round_medians_s) < MIN_ROUNDS:
            rounds = len(timing.round_medians_s)
            return f"measure at least {MIN_ROUNDS} interleaved rounds (rounds=...); {name!r} has {rounds}"
    return None


def check_measured_verdict(exercise: str, answer: object, timings: object, *, baseline: str, candidate: str,
                           threshold: float, also_timed: Sequence[str] = (),
                           smaller_calls: Sequence[tuple[str, str]] = ()) -> Verdict:
    """The verdict of 'candidate is at least threshold x faster than baseline', read from the learner's own
    interleaved timings, which must also hold also_timed (the comparison the prompt asks for in the same rounds);
    each pair (a, b) of smaller_calls checks that call a takes less time than b (a smaller batch), the one sign of
    the batch size a check can see."""
    require_number("threshold", threshold, strictly_positive=True)
    if answer is None or answer is Ellipsis or timings is None or timings is Ellipsis:
        return announce(TODO, exercise, "not answered yet: measure, then replace both `...` and re-run this cell.",
                        False)
    problem = _timings_problem(timings, (baseline, candidate, *also_timed))
    if problem:
        return announce(FAIL, exercise, problem + ".", False)
    for small, large in smaller_calls:
        if timings[small].median_s >= timings[large].median_s:
            return announce(FAIL, exercise, f"{small!r} takes no less time than {large!r}: was it measured on the "
                                            "smaller batch?", False)
    claim = make_claim(8, "exercise", "exercise", threshold=threshold, hardware="this machine",
                       ratio=timing_ratio(timings[baseline], timings[candidate]))
    return check_choice(exercise, answer, claim.verdict, list(VERDICTS),
                        hint=f"Your rounds give {claim.ratio}: compare the whole interval with {threshold:g}x.")


def _disagreeing(answer: object) -> list[float] | None:
    """The answer as a sorted list of budgets, or None when it is not a list of numbers."""
    if not isinstance(answer, (list, tuple, np.ndarray, pd.Index)):
        return None
    try:
        return sorted(round(float(value), 2) for value in answer)
    except (TypeError, ValueError):
        return None


def point_estimate_plan(table: pd.DataFrame, budget_points: float) -> str:
    """The earlier edition's rule: within the budget on the point estimate, step pays only when faster."""
    own = table["accuracy_change_points"] >= -budget_points
    allowed: dict[str, bool] = {}
    for name, parent in table["builds_on"].items():
        allowed[name] = bool(own[name]) and (allowed[parent] if parent else True)
    candidates = pd.Series(allowed) & table["step_gain"].isin(("gain", "baseline"))
    return str(table.loc[candidates, "total_speedup"].idxmax())


def check_rule_disagreement(exercise: str, answer: object, table: pd.DataFrame, budgets: Sequence[float]) -> Verdict:
    """The budgets (of those given) where the point-estimate rule and this chapter's interval rule pick different
    plans."""
    if answer is None or answer is Ellipsis:
        return announce(TODO, exercise, "not answered yet: replace the `...` with your list and re-run this cell.",
                        False)
    given = _disagreeing(answer)
    if given is None:
        return announce(FAIL, exercise, f"answer a list of budgets, e.g. [0.5, 0.75]; got {answer!r}.", False)
    expected = sorted(round(float(b), 2) for b in budgets
                      if point_estimate_plan(table, b) != deployment_plan(table, b))
    if given == expected:
        return announce(PASS, exercise, f"correct: {len(expected)} of {len(budgets)} budgets.", True)
    return announce(FAIL, exercise, f"not {given}: compute both plans for every budget in the list and keep the "
                                    "budgets where they differ (an empty list is a possible answer).", False)
