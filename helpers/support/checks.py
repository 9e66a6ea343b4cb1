"""Auto-checks for exercises: each says what is right, or what is wrong and where to look."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

from helpers.core.validate import require_callable, require_number

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


def announce(mark: str, exercise: str, message: str, passed: bool) -> Verdict:
    """Print the verdict line (mark, exercise, message) and return it as a Verdict."""
    print(f"{mark} {exercise}: {message}")
    return Verdict(passed)


def is_close(answer: float, expected: float, rtol: float) -> bool:
    """Whether answer is within rtol of expected (relative), or both are zero."""
    return math.isclose(answer, expected, rel_tol=rtol, abs_tol=1e-12)


def check_number(exercise: str, answer: object, expected: float, *, rtol: float = 0.02, hint: str = "") -> Verdict:
    """Compare a numeric answer with the expected value within a relative tolerance; print why it fails."""
    require_number("rtol", rtol, minimum=0)
    if answer is None or answer is Ellipsis:
        return announce(TODO, exercise, "not answered yet: replace the `...` with your answer and re-run this cell.", False)
    if isinstance(answer, bool) or not isinstance(answer, numbers.Real):
        return announce(FAIL, exercise, f"expected a number, got {type(answer).__name__} {answer!r}.", False)
    if is_close(float(answer), expected, rtol):
        return announce(PASS, exercise, "correct.", True)
    direction = "too high" if answer > expected else "too low"
    if expected != 0 and not 0.5 <= answer / expected <= 2:
        direction += ", by more than a factor of 2"
    return announce(FAIL, exercise, f"{float(answer):.4g} is {direction}. {hint}".rstrip(), False)


def check_choice(exercise: str, answer: object, expected: str, choices: Sequence[str], *, hint: str = "") -> Verdict:
    """Check a one-word answer such as 'memory' or 'compute' against the expected one; say what is allowed."""
    if answer is None or answer is Ellipsis:
        return announce(TODO, exercise, "not answered yet: replace the `...` with your answer and re-run this cell.", False)
    if answer not in choices:
        return announce(FAIL, exercise, f"answer one of {', '.join(repr(c) for c in choices)}; got {answer!r}.", False)
    if answer == expected:
        return announce(PASS, exercise, "correct.", True)
    return announce(FAIL, exercise, f"not {answer!r}. {hint}".rstrip(), False)


def _short_repr(value: object) -> str:
    """repr for a message: arrays and tensors by shape, not by their (long) contents."""
    shape = getattr(value, "shape", None)
    return f"<{type(value).__name__} of shape {tuple(shape)}>" if shape is not None else repr(value)


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
        shown = ", ".join(_short_repr(a) for a in args)
        if got is None or got is Ellipsis:
            return announce(TODO, exercise, f"not implemented yet: {getattr(candidate, '__name__', 'it')}({shown}) returned {got!r}.", False)
        if isinstance(got, bool) or not isinstance(got, numbers.Real) or not is_close(float(got), expected, rtol):
            return announce(FAIL, exercise, f"for ({shown}) expected {expected:.6g}, got {got!r}. {hint}".rstrip(), False)
    return announce(PASS, exercise, f"correct on all {len(cases)} cases.", True)
