"""Accuracy over folds or seeds: mean and spread, paired comparisons, intervals, and paired tests on one test set."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd
import torch

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


def wilson_interval(accuracy: float, n_images: int) -> tuple[float, float]:
    """95% Wilson interval (low, high) of an accuracy measured on n_images; sound near 0 and 1, unlike p +- 1.96 se."""
    accuracy = require_number("accuracy", accuracy, minimum=0.0, maximum=1.0)
    n_images = require_int("n_images", n_images, minimum=1)
    z2 = 1.96**2
    centre = (accuracy + z2 / (2 * n_images)) / (1 + z2 / n_images)
    half = 1.96 * math.sqrt(accuracy * (1 - accuracy) / n_images + z2 / (4 * n_images**2)) / (1 + z2 / n_images)
    return centre - half, centre + half


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
