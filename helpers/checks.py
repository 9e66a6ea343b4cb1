"""Auto-checks for exercises: each says what is right, or what is wrong and where to look."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

from .validate import require_callable, require_number

PASS, FAIL, TODO = "✅", "❌", "⏳"


class Verdict:
    """The outcome of a check: truthy when it passed; shows nothing itself (the check printed why)."""

    def __init__(self, passed: bool) -> None:
        self.passed = passed

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"Verdict(passed={self.passed})"

    def _ipython_display_(self) -> None:
        """Display nothing: the printed sentence is the verdict."""


def _say(mark: str, exercise: str, message: str, passed: bool) -> Verdict:
    print(f"{mark} {exercise}: {message}")
    return Verdict(passed)


def _close(answer: float, expected: float, rtol: float) -> bool:
    return math.isclose(answer, expected, rel_tol=rtol, abs_tol=1e-12)


def check_number(exercise: str, answer: object, expected: float, *, rtol: float = 0.02, hint: str = "") -> Verdict:
    """Compare a numeric answer with the expected value within a relative tolerance; print why it fails."""
    require_number("rtol", rtol, minimum=0)
    if answer is None or answer is Ellipsis:
        return _say(TODO, exercise, "not answered yet: replace the `...` with your answer and re-run this cell.", False)
    if isinstance(answer, bool) or not isinstance(answer, numbers.Real):
        return _say(FAIL, exercise, f"expected a number, got {type(answer).__name__} {answer!r}.", False)
    if _close(float(answer), expected, rtol):
        return _say(PASS, exercise, "correct.", True)
    direction = "too high" if answer > expected else "too low"
    return _say(FAIL, exercise, f"{float(answer):.4g} is {direction} (off by {abs(answer / expected - 1):.0%}). {hint}".rstrip(), False)


def check_function(
    exercise: str,
    candidate: Callable[..., object],
    cases: Sequence[tuple[tuple, float]],
    *,
    rtol: float = 1e-6,
    hint: str = "",
) -> Verdict:
    """Call candidate(*args) for each (args, expected) case; report the first case that fails."""
    require_callable("candidate", candidate)
    if not cases:
        raise ValueError("cases must hold at least one (args, expected) pair")
    for args, expected in cases:
        got = candidate(*args)
        shown = ", ".join(repr(a) for a in args)
        if got is None or got is Ellipsis:
            return _say(TODO, exercise, f"not implemented yet: {getattr(candidate, '__name__', 'it')}({shown}) returned {got!r}.", False)
        if isinstance(got, bool) or not isinstance(got, numbers.Real) or not _close(float(got), expected, rtol):
            return _say(FAIL, exercise, f"for ({shown}) expected {expected:.6g}, got {got!r}. {hint}".rstrip(), False)
    return _say(PASS, exercise, f"correct on all {len(cases)} cases.", True)
