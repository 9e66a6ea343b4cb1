"""Tests of helpers/core/accuracy.py."""

import pytest
import torch

import helpers.ch06_compression.quantize  # noqa: F401  first: it quietens the log line that importing torchao prints
from helpers.core.accuracy import (
    compare_folds, fold_table, paired_accuracy_change, paired_difference, paired_prediction_change, wilson_interval,
)


def test_fold_table_and_compare_folds_report_mean_spread_and_consistency():
    table = fold_table({"a": [0.9, 0.92, 0.94], "b": [0.95, 0.91, 0.96]})
    assert table.loc["a", "mean (%)"] == pytest.approx(92.0)
    assert table.loc["a", "std (points)"] == pytest.approx(2.0)
    assert table.loc["b", "lowest (%)"] == pytest.approx(91.0)
    assert compare_folds([0.9, 0.92], [0.91, 0.95]) == "higher on every fold"
    assert compare_folds([0.9, 0.92], [0.89, 0.91]) == "lower on every fold"
    assert compare_folds([0.9, 0.92], [0.91, 0.91]) == "mixed"
    with pytest.raises(ValueError, match="at least 2 folds"):
        fold_table({"a": [0.9]})
    with pytest.raises(ValueError, match="same folds"):
        compare_folds([0.9, 0.92], [0.9])
    with pytest.raises(ValueError, match="a accuracy must be <= 1.0"):
        fold_table({"a": [0.9, 93.0]})


def test_wilson_interval_stays_inside_zero_and_one():
    low, high = wilson_interval(0.9, 400)
    assert low < 0.9 < high and high - low == pytest.approx(2 * 1.96 * 0.015, rel=0.02)
    low, high = wilson_interval(1.0, 50)
    assert high == pytest.approx(1.0) and 0.9 < low < 1.0
    with pytest.raises(ValueError, match="n_images must be an int >= 1"):
        wilson_interval(0.9, 0)


def test_paired_prediction_change_counts_each_direction_and_gives_mcnemar_p():
    truth = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    reference = torch.tensor([0, 1, 2, 3, 9, 9, 9, 9])  # right on the first four
    candidate = torch.tensor([0, 1, 9, 3, 4, 5, 6, 9])  # loses image 2, gains images 4, 5 and 6
    result = paired_prediction_change(reference, candidate, truth)
    assert result["predictions changed"] == 4
    assert (result["only the reference right"], result["only the candidate right"]) == (1, 3)
    assert result["McNemar p"] == pytest.approx(2 * (1 + 4) / 16)  # exact two-sided binomial, 4 discordant pairs
    assert paired_prediction_change(reference, reference, truth)["McNemar p"] == 1.0
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_prediction_change(reference, candidate[:3], truth)


def test_paired_difference_gives_the_t_interval_and_the_exact_sign_test():
    difference = paired_difference([0.90, 0.91, 0.92, 0.93], [0.92, 0.92, 0.95, 0.94])  # +2, +1, +3, +1 points
    assert difference.mean == pytest.approx(1.75)
    half = 3.182446305284263 * 0.9574271077563381 / 2  # t(0.975, 3) x sd / sqrt(4)
    assert (difference.low, difference.high) == pytest.approx((1.75 - half, 1.75 + half))
    assert difference.sign_test_p == pytest.approx(2 / 16) and difference.verdict == "higher"
    mixed = paired_difference([0.90, 0.91, 0.92], [0.91, 0.90, 0.92])
    assert mixed.verdict == "no measurable difference" and mixed.sign_test_p == 1.0
    assert "sign test p = 0.125" in str(difference)


def test_paired_difference_rejects_unpaired_or_too_few_values():
    with pytest.raises(ValueError, match="at least 3"):
        paired_difference([0.9, 0.8], [0.9, 0.8])
    with pytest.raises(ValueError, match="between 0.0 and 1.0|<= 1.0|at most"):
        paired_difference([0.9, 0.8, 1.5], [0.9, 0.8, 0.7])


def test_the_paired_accuracy_change_is_a_score_interval_that_never_collapses():
    base = torch.arange(450) < 440
    candidate = base.clone()
    candidate[:6], candidate[440:443] = False, True  # 6 images lost, 3 gained
    change, low, high = paired_accuracy_change(base, candidate)
    assert change == pytest.approx(-3 / 450) and low < change < high
    swapped = paired_accuracy_change(candidate, base)
    assert swapped == pytest.approx((-change, -high, -low))  # the same interval, seen from the other side
    same = paired_accuracy_change(base, base)
    assert same[0] == 0.0 and same[1] < 0 < same[2]  # no image changed, yet the next images might
    larger = paired_accuracy_change(torch.arange(4500) < 4400, torch.arange(4500) < 4400)
    assert larger[2] < same[2] / 2  # ten times the images, a narrower interval
    with pytest.raises(ValueError, match="bool tensors"):
        paired_accuracy_change(base, base.float())
