"""Argument checks shared by the helpers: each error says what was wrong and what is allowed."""

from __future__ import annotations

import numbers
from collections.abc import Iterable


def require_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """Return value if it is an int (not a bool) of at least minimum, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def require_number(
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strictly_positive: bool = False,
) -> float:
    """Return value as a float if it is a real number within the given bounds, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if value != value:
        raise ValueError(f"{name} must be a number, got NaN")
    if strictly_positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def require_choice(name: str, value: object, choices: Iterable[object]) -> object:
    """Return value if it is one of choices, else raise a ValueError listing them."""
    allowed = list(choices)
    if value not in allowed:
        listed = ", ".join(repr(c) for c in allowed)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}")
    return value


def require_callable(name: str, value: object) -> object:
    """Return value if it can be called, else raise a TypeError."""
    if not callable(value):
        raise TypeError(f"{name} must be callable (a function or a model), got {type(value).__name__}")
    return value


def require_instance(name: str, value: object, cls: type | tuple[type, ...]) -> object:
    """Return value if it is an instance of cls, else raise a TypeError naming the expected type."""
    if not isinstance(value, cls):
        expected = cls.__name__ if isinstance(cls, type) else " or ".join(c.__name__ for c in cls)
        raise TypeError(f"{name} must be a {expected}, got {type(value).__name__}")
    return value
