import pytest
import torch
from torch import nn

from helpers.cost import count_flops, count_parameters, serialized_size_bytes
from helpers.layers import DepthwiseSeparableConv, same_padding, separable_cost_ratio
from helpers.models import small_cnn
from helpers.plots import pareto_front
from helpers.pruning import l1_filter_ranking, prune_channels
from helpers.source import show_source
from helpers.zoo import ARCHITECTURES, build_architecture, published_top1


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
    assert torch.equal(l1_filter_ranking(model[0]), torch.tensor([3, 2, 1, 0]))


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


def test_pareto_front_keeps_only_undominated_points():
    points = {"a": (1.0, 70.0), "b": (2.0, 80.0), "c": (3.0, 75.0), "d": (0.5, 60.0)}
    assert pareto_front(points) == ["d", "a", "b"]


def test_show_source_shows_helpers_code():
    assert "def prune_channels" in show_source(prune_channels).data
    with pytest.raises(TypeError, match="function or class"):
        show_source(42)
