"""Pruning criteria and per-layer ratios, cross-validation folds, and the roofline helpers of chapter 2."""

import numpy as np
import pytest
import torch
from torch import nn

from helpers import (
    compare_folds, hold_out, time_layers_interleaved, wilson_interval, conv_min_bytes, depthwise_intensity, digits_folds, filter_importance,
    fold_table, measure_roofs, per_conv_ratios, prune_channels, published_gflops, small_cnn,
)


def test_bn_scaled_importance_folds_the_batch_norm_scale_into_the_filter_norm():
    conv, bn = nn.Conv2d(1, 3, 1, bias=False), nn.BatchNorm2d(3).eval()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1, 1))
        bn.weight.copy_(torch.tensor([3.0, 1.0, 0.1]))
        bn.running_var.copy_(torch.tensor([1.0, 1.0, 1.0]) - bn.eps)
    assert torch.equal(filter_importance(conv, bn, "l1"), torch.tensor([1.0, 2.0, 3.0]))
    assert torch.allclose(filter_importance(conv, bn, "bn_scaled_l1"), torch.tensor([3.0, 2.0, 0.3]))
    with pytest.raises(ValueError, match="needs the batch norm"):
        filter_importance(conv, None, "bn_scaled_l1")
    with pytest.raises(ValueError, match="criterion must be one of 'l1', 'bn_scaled_l1'"):
        filter_importance(conv, bn, "gradient")


def test_bn_scaled_criterion_keeps_the_channels_batch_norm_amplifies():
    model = small_cnn((4,)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(1, 5, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 1, 3, 3))
        model[1].weight.copy_(torch.tensor([10.0, 10.0, 0.1, 0.1]))
    assert torch.equal(prune_channels(model, 0.5, criterion="l1")[0].weight, model[0].weight[[2, 3]])
    assert torch.equal(prune_channels(model, 0.5, criterion="bn_scaled_l1")[0].weight, model[0].weight[[0, 1]])


def test_per_layer_ratios_prune_each_convolution_by_its_own_amount():
    pruned = prune_channels(small_cnn(), [0.5, 0.0, 0.75])
    assert [m.out_channels for m in pruned if isinstance(m, nn.Conv2d)] == [16, 64, 32]
    assert [m.in_channels for m in pruned if isinstance(m, nn.Conv2d)] == [1, 16, 64]
    assert pruned(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    assert per_conv_ratios(small_cnn(), 0.25) == [0.25, 0.25, 0.25]
    with pytest.raises(ValueError, match=r"one per convolution \(3\), got 2"):
        prune_channels(small_cnn(), [0.5, 0.5])
    with pytest.raises(ValueError, match=r"ratio\[1\] must be >= 0"):
        prune_channels(small_cnn(), [0.5, -0.5, 0.5])
    with pytest.raises(TypeError, match=r"ratio\[0\] must be a number"):
        prune_channels(small_cnn(), ["half", 0.5, 0.5])


def test_digits_folds_partition_the_data_set():
    folds = digits_folds(3)
    assert len(folds) == 3
    assert sum(len(f.y_test) for f in folds) == 1797
    assert all(len(f.y_train) + len(f.y_test) == 1797 for f in folds)
    assert folds[0].x_test.shape[1:] == (1, 8, 8)
    with pytest.raises(ValueError, match="n_folds must be an int >= 2"):
        digits_folds(1)


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


def test_hold_out_takes_validation_images_from_training_only():
    fold = digits_folds(3)[0]
    reduced, x_val, y_val = hold_out(fold, 0.2)
    assert len(reduced.y_train) + len(y_val) == len(fold.y_train)
    assert torch.equal(reduced.x_test, fold.x_test)
    assert sorted(set(y_val.tolist())) == list(range(10))
    with pytest.raises(ValueError, match="fraction must be <= 0.95"):
        hold_out(fold, 1.5)


def test_time_layers_interleaved_tabulates_each_kind_for_each_network():
    model = small_cnn((4,)).eval()
    table = time_layers_interleaved({"a": (model, torch.randn(2, 1, 8, 8)), "b": (model, torch.randn(2, 1, 8, 8))},
                                    min_run_time=0.01)
    assert list(table.columns) == ["a", "b"]
    assert {"Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Linear"} <= set(table.index)
    assert (table > 0).all().all()
    with pytest.raises(ValueError, match="networks must map a name"):
        time_layers_interleaved({})


def test_pruned_layers_keep_the_dtype_of_the_model():
    model = small_cnn((4, 8)).to(torch.float64)
    pruned = prune_channels(model, 0.5)
    assert {p.dtype for p in pruned.parameters()} == {torch.float64}
    assert per_conv_ratios(model, np.array([0.5, 0.25])) == [0.5, 0.25]


def test_roofline_traffic_and_intensity_of_a_depthwise_convolution():
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
    x = torch.randn(2, 8, 10, 10)
    assert conv_min_bytes(conv, x) == 4 * (2 * 8 * 10 * 10 * 2 + 8 * 9)
    assert depthwise_intensity(3) == 2.25
    assert depthwise_intensity(7, element_bytes=2) == 24.5
    with pytest.raises(TypeError, match="conv must be a Conv2d"):
        conv_min_bytes(nn.Linear(2, 2), x)


def test_published_gflops_are_multiply_adds():
    assert published_gflops("resnet18") == 1.814
    with pytest.raises(ValueError, match="must be one of"):
        published_gflops("alexnet")


def test_measure_roofs_returns_two_positive_rates():
    gflops, gbps = measure_roofs(min_run_time=0.05)
    assert gflops > 0 and gbps > 0
    with pytest.raises(ValueError, match="min_run_time must be > 0"):
        measure_roofs(min_run_time=0)
