"""Tests of helpers/core/cost.py."""

import pytest
import torch
from torch import nn

from helpers.core.cost import count_flops, count_parameters, model_cost, serialized_size_bytes
from helpers.workload.models import small_cnn


def test_count_parameters_matches_the_layer_formula():
    layer = nn.Linear(10, 5)
    assert count_parameters(layer) == 10 * 5 + 5
    layer.bias.requires_grad_(False)
    assert count_parameters(layer, trainable_only=True) == 50


def test_count_flops_of_a_linear_layer_is_two_per_multiply_add():
    layer = nn.Linear(128, 64)
    assert count_flops(layer, torch.randn(4, 128)) == 2 * 4 * 128 * 64


def test_count_flops_of_a_convolution_matches_the_formula():
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1, bias=False)
    assert count_flops(conv, torch.randn(1, 3, 16, 16)) == 2 * 16 * 16 * 8 * 3 * 3 * 3


def test_count_flops_keeps_the_training_mode():
    model = small_cnn().train()
    count_flops(model, torch.randn(1, 1, 32, 32))
    assert model.training


def test_serialized_size_covers_every_float32_parameter_and_buffer():
    model = small_cnn()
    tensor_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    size = serialized_size_bytes(model)
    assert tensor_bytes <= size < tensor_bytes + 64 * 1024


def test_model_cost_of_small_cnn():
    cost = model_cost(small_cnn(), torch.randn(1, 1, 32, 32))
    assert cost["parameters"] == 94186
    assert cost["flops"] == 19466752


def test_cost_helpers_reject_non_modules():
    with pytest.raises(TypeError, match="model must be a Module"):
        count_parameters("resnet")
    with pytest.raises(TypeError, match="example_input must be a Tensor"):
        count_flops(nn.Linear(2, 2), [1.0, 2.0])
