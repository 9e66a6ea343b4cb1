"""Accuracy over folds or seeds: mean and spread, paired comparisons, intervals, and paired tests on one test set."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from scipy import stats

from helpers.core.validate import require_int, require_number


def fold_table(accuracies: Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """One row per method: mean, standard deviation, lowest and highest accuracy over the folds (in %)."""
    if not accuracies:
        raise ValueError("accuracies must map at least one method to its per-fold accuracies")
    rows = {}
    for name, values in accuracies.items():
        values = [100 * require_number(f"{name} accuracy", v, minimum=0.0, maximum=1.0) for v in values]
        if len(values) < 2:
            raise ValueError(f"{name}: a spread needs at least 2 folds, got {len(values)}")
        rows[name] = pd.Series(values).agg(["mean", "std", "min", "max"])
    return pd.DataFrame(rows).T.rename(columns={"mean": "mean (%)", "std": "std (points)",
                                                "min": "lowest (%)", "max": "highest (%)"})


def compare_folds(baseline: Sequence[float], candidate: Sequence[float]) -> str:
    """'higher on every fold', 'lower on every fold' or 'mixed': what paired folds can say about a difference."""
    if len(baseline) != len(candidate) or len(baseline) < 2:
        raise ValueError(f"need the same folds (at least 2) for both, got {len(baseline)} and {len(candidate)}")
    differences = [c - b for b, c in zip(baseline, candidate)]
    if all(d > 0 for d in differences):
        return "higher on every fold"
    if all(d < 0 for d in differences):
        return "lower on every fold"
    return "mixed"


@dataclass(frozen=True)
class PairedDifference:
    """candidate - baseline in accuracy points over paired seeds or folds: mean, 95% t interval, exact sign test."""

    mean: float
    low: float
    high: float
    pairs: int
    sign_test_p: float

    @property
    def verdict(self) -> str:
        """'higher', 'lower' (the whole interval on one side of 0) or 'no measurable difference'."""
        if self.low > 0:
            return "higher"
        if self.high < 0:
            return "lower"
        return "no measurable difference"

    def __str__(self) -> str:
        return (f"{self.mean:+.1f} points (95% interval over {self.pairs} seeds {self.low:+.1f} to {self.high:+.1f}; "
                f"sign test p = {self.sign_test_p:.3f})")


def paired_difference(baseline: Sequence[float], candidate: Sequence[float]) -> PairedDifference:
    """Accuracy differences (points) of paired runs: mean with a 95% Student t interval, and the exact two-sided
    sign test (how often a difference this one-sided arises if either is equally likely to win each pair)."""
    if len(baseline) != len(candidate) or len(baseline) < 3:
        raise ValueError(f"need the same seeds (at least 3) for both, got {len(baseline)} and {len(candidate)}")
    differences = [100 * (require_number("candidate", c, minimum=0.0, maximum=1.0)
                          - require_number("baseline", b, minimum=0.0, maximum=1.0)) for b, c in zip(baseline, candidate)]
    mean, n = sum(differences) / len(differences), len(differences)
    half = stats.t.ppf(0.975, n - 1) * statistics.stdev(differences) / math.sqrt(n)
    wins, losses = sum(d > 0 for d in differences), sum(d < 0 for d in differences)
    sign_p = min(1.0, 2 * stats.binom.cdf(min(wins, losses), wins + losses, 0.5)) if wins + losses else 1.0
    return PairedDifference(mean, mean - half, mean + half, n, float(sign_p))


def wilson_interval(accuracy: float, n_images: int) -> tuple[float, float]:
    """95% Wilson interval (low, high) of an accuracy measured on n_images; sound near 0 and 1, unlike p +- 1.96 se."""
    accuracy = require_number("accuracy", accuracy, minimum=0.0, maximum=1.0)
    n_images = require_int("n_images", n_images, minimum=1)
    z2 = 1.96**2
    centre = (accuracy + z2 / (2 * n_images)) / (1 + z2 / n_images)
    half = 1.96 * math.sqrt(accuracy * (1 - accuracy) / n_images + z2 / (4 * n_images**2)) / (1 + z2 / n_images)
    return centre - half, centre + half


def _discordance_correlation(both: int, only_first: int, only_second: int, neither: int) -> float:
    """Newcombe's correlation of a paired 2x2 table: phi of the table, its numerator moved n/2 towards 0."""
    n = both + only_first + only_second + neither
    margins = (both + only_first) * (only_second + neither) * (both + only_second) * (only_first + neither)
    if margins == 0:
        return 0.0
    product = both * neither - only_first * only_second
    numerator = product - n / 2 if product > n / 2 else min(product, 0)
    return numerator / math.sqrt(margins)


def paired_accuracy_change(baseline: torch.Tensor, candidate: torch.Tensor) -> tuple[float, float, float]:
    """Accuracy change (candidate - baseline, as fractions) with a 95% interval, from one bool per image for each.

    Newcombe's hybrid score interval for paired proportions (his method 10): each accuracy's Wilson interval, combined
    with the correlation of the pairs. Unlike a bootstrap of the images it does not collapse to [0, 0] when no image
    changes: n unchanged images still leave the change uncertain by about the width of a Wilson interval's shorter side.
    """
    if baseline.dtype != torch.bool or candidate.dtype != torch.bool or baseline.shape != candidate.shape:
        raise ValueError(f"need two bool tensors of one flag per image, the same shape; got {baseline.dtype} "
                         f"{tuple(baseline.shape)} and {candidate.dtype} {tuple(candidate.shape)}")
    n = require_int("number of images", baseline.numel(), minimum=1)
    both, only_base = int((baseline & candidate).sum()), int((baseline & ~candidate).sum())
    only_cand, neither = int((~baseline & candidate).sum()), int((~baseline & ~candidate).sum())
    p_base, p_cand = (both + only_base) / n, (both + only_cand) / n
    (low_base, high_base), (low_cand, high_cand) = wilson_interval(p_base, n), wilson_interval(p_cand, n)
    phi = _discordance_correlation(both, only_base, only_cand, neither)
    change = p_cand - p_base
    down = (p_cand - low_cand) ** 2 - 2 * phi * (p_cand - low_cand) * (high_base - p_base) + (high_base - p_base) ** 2
    up = (high_cand - p_cand) ** 2 - 2 * phi * (high_cand - p_cand) * (p_base - low_base) + (p_base - low_base) ** 2
    return change, change - math.sqrt(max(down, 0.0)), change + math.sqrt(max(up, 0.0))


def paired_prediction_change(reference: torch.Tensor, candidate: torch.Tensor, labels: torch.Tensor) -> dict:
    """How two models' predictions on the same images differ: images each alone gets right, and McNemar's exact
    two-sided p-value for "both have the same accuracy" (the paired test; two separate intervals are not)."""
    if not (len(reference) == len(candidate) == len(labels)) or len(labels) == 0:
        raise ValueError(f"need equal, non-empty lengths, got {len(reference)}, {len(candidate)} and {len(labels)}")
    only_reference = int(((reference == labels) & (candidate != labels)).sum())
    only_candidate = int(((candidate == labels) & (reference != labels)).sum())
    discordant = only_reference + only_candidate
    tail = sum(math.comb(discordant, k) for k in range(min(only_reference, only_candidate) + 1)) / 2**discordant
    return {"predictions changed": int((reference != candidate).sum()), "only the reference right": only_reference,
            "only the candidate right": only_candidate, "McNemar p": min(1.0, 2 * tail)}
