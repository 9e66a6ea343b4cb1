"""Interleaved rounds: the order in which the variants run in each round of a comparison."""

from __future__ import annotations

from collections.abc import Iterable


def round_order(names: Iterable, round_index: int) -> list:
    """The variants in order in even rounds and reversed in odd ones (ABBA), so that none always runs first."""
    names = list(names)
    return names if round_index % 2 == 0 else names[::-1]
