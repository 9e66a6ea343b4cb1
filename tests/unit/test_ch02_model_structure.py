"""Tests of helpers/ch02_model_structure/: separable layers, pruning, the zoo, the roofline, the exercise answers."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from helpers.ch02_model_structure.exercises import (
    best_ratio_within, big_layer_kinds, depthwise_flop_share, expected_pruned_ms, kind_shortfall,
)
from helpers.ch02_model_structure.layers import DepthwiseSeparableConv, same_padding, separable_cost_ratio
from helpers.ch02_model_structure.pruning import filter_importance, per_conv_ratios, prune_channels
from helpers.ch02_model_structure.roofline import conv_min_bytes, depthwise_intensity
from helpers.ch02_model_structure.zoo import (
    ARCHITECTURES, FIRST_WEIGHTS, build_architecture, published_gflops, published_top1, weights_top1,
)
from helpers.core.cost import count_flops, count_parameters, serialized_size_bytes
from helpers.workload.models import small_cnn


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


@pytest.mark.parametrize("kernel", [1, 3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2])
def test_separable_conv_matches_the_standard_output_shape(kernel, stride):
    x = torch.randn(2, 8, 15, 15)
    standard = nn.Conv2d(8, 12, kernel, stride=stride, padding=kernel // 2)
    assert DepthwiseSeparableConv(8, 12, kernel, stride=stride)(x).shape == standard(x).shape


def test_separable_conv_with_dilation_keeps_the_resolution():
    x = torch.randn(1, 4, 16, 16)
    assert DepthwiseSeparableConv(4, 4, 3, dilation=2)(x).shape == x.shape


def test_separable_cost_matches_the_formula_exactly():
    n, k = 64, 5
    x = torch.randn(1, 32, 10, 10)
    standard = nn.Conv2d(32, n, k, padding=2, bias=False)
    separable = DepthwiseSeparableConv(32, n, k, norm=False)
    assert count_parameters(separable) == k * k * 32 + 32 * n
    assert count_parameters(separable) / count_parameters(standard) == pytest.approx(separable_cost_ratio(n, k))
    assert count_flops(separable, x) / count_flops(standard, x) == pytest.approx(separable_cost_ratio(n, k))


def test_layer_arguments_are_checked():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        same_padding(4)
    with pytest.raises(ValueError, match="in_channels must be an int >= 1"):
        DepthwiseSeparableConv(0, 4)
    assert same_padding(7, dilation=2) == 6


def test_prune_channels_builds_a_smaller_network_and_leaves_the_input_alone():
    torch.manual_seed(0)
    model = small_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = prune_channels(model, 0.5)
    assert [m.out_channels for m in pruned if isinstance(m, nn.Conv2d)] == [16, 32, 64]
    assert [m.in_channels for m in pruned if isinstance(m, nn.Conv2d)] == [1, 16, 32]
    assert [m.num_features for m in pruned if isinstance(m, nn.BatchNorm2d)] == [16, 32, 64]
    assert pruned[-1].in_features == 64
    assert pruned(torch.randn(3, 1, 32, 32)).shape == (3, 10)
    assert count_parameters(model) / count_parameters(pruned) >= 3.5
    assert serialized_size_bytes(pruned) < serialized_size_bytes(model) / 3
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_prune_channels_keeps_the_largest_filters():
    torch.manual_seed(0)
    model = small_cnn((4,))
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(1, 5, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 1, 3, 3))
    pruned = prune_channels(model, 0.5)
    assert torch.equal(pruned[0].weight, model[0].weight[[2, 3]])
    assert torch.equal(filter_importance(model[0], None).argsort(descending=True), torch.tensor([3, 2, 1, 0]))


def test_pruning_ratio_zero_is_an_exact_copy():
    model = small_cnn().eval()
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(prune_channels(model, 0.0)(x), model(x))


def test_prune_channels_rejects_bad_ratios_and_unsupported_models():
    with pytest.raises(ValueError, match=r"ratio must be in \[0, 1\), got 1.5"):
        prune_channels(small_cnn(), 1.5)
    with pytest.raises(ValueError, match="ratio must be >= 0"):
        prune_channels(small_cnn(), -0.1)
    with pytest.raises(TypeError, match="model must be a Sequential"):
        prune_channels(build_architecture("resnet18"), 0.5)
    with pytest.raises(TypeError, match="depthwise"):
        prune_channels(nn.Sequential(nn.Conv2d(4, 4, 3, groups=4)), 0.5)
    with pytest.raises(TypeError, match="layer 0 is DepthwiseSeparableConv"):
        prune_channels(nn.Sequential(DepthwiseSeparableConv(4, 4)), 0.5)


def test_zoo_builds_every_architecture_without_downloading():
    assert len(ARCHITECTURES) == 7
    assert count_parameters(build_architecture("resnet18")) == 11_689_512
    assert published_top1("resnet18") == 69.758
    with pytest.raises(ValueError, match="must be one of"):
        build_architecture("vgg_tiny")


def test_the_exercise_answers_are_computed_from_the_chapter_s_tables():
    assert depthwise_flop_share(128, 5) == pytest.approx(25 / (25 + 128), rel=0.02)
    dense = pd.Series({"Conv2d": 8.0, "ReLU": 1.0, "Linear": 0.5, "total": 9.5})
    pruned = pd.Series({"Conv2d": 2.0, "ReLU": 0.9, "Linear": 0.25, "total": 3.15})
    assert expected_pruned_ms(dense) == pytest.approx(8 / 4 + 1 / 2 + 0.5 / 2)
    assert big_layer_kinds(dense) == ["Conv2d", "ReLU"]
    assert kind_shortfall(dense, pruned, "Conv2d") == pytest.approx(1.0)  # the convolutions made their 4x
    assert kind_shortfall(dense, pruned, "ReLU") == pytest.approx(2 / (1 / 0.9))  # 1.1x against the 2x assumed
    with pytest.raises(ValueError, match="kind must be a layer kind of both tables"):
        kind_shortfall(dense, pruned, "total")
    sweep = pd.DataFrame({"validation accuracy": [0.95, 0.94, 0.90], "latency_ms (batch 64)": [3.0, 2.0, 1.0]},
                         index=[0.0, 0.25, 0.5])
    assert best_ratio_within(sweep, 3.0) == 0.25
    assert best_ratio_within(sweep, 10.0) == 0.5
    with pytest.raises(TypeError, match="dense_ms"):
        expected_pruned_ms([1.0])
    with pytest.raises(ValueError, match="points"):
        best_ratio_within(sweep, -1)


def test_published_accuracy_is_the_first_weights_for_every_architecture():
    """Newer torchvision weights come from newer recipes: the chapter quotes IMAGENET1K_V1 throughout."""
    assert all(FIRST_WEIGHTS in weights_top1(name) for name in ARCHITECTURES)
    assert published_top1("resnet50") == weights_top1("resnet50")[FIRST_WEIGHTS] == 76.13
    assert weights_top1("mobilenet_v2")["IMAGENET1K_V2"] > published_top1("mobilenet_v2")
    with pytest.raises(ValueError, match="must be one of"):
        weights_top1("vgg_tiny")


def test_prune_channels_leaves_a_trained_model_untouched_with_per_layer_ratios():
    """The chapter prunes the same dense networks again and again (arms, scan, sweep): pruning must copy."""
    torch.manual_seed(0)
    model = small_cnn()
    model.train()(torch.randn(8, 1, 32, 32))  # moves the batch norms' running statistics away from their defaults
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    output = model(torch.ones(1, 1, 32, 32))
    for ratio in (0.5, [0.25, 0.0, 0.75]):
        prune_channels(model, ratio, criterion="bn_scaled_l1")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training and torch.equal(model(torch.ones(1, 1, 32, 32)), output)
