"""Structured channel pruning: build a physically smaller network, not a masked one."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .validate import require_instance, require_number

SUPPORTED = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear, nn.Dropout)


def l1_filter_ranking(conv: nn.Conv2d) -> torch.Tensor:
    """Output-channel indices of conv, most important first (largest L1 norm of the filter)."""
    require_instance("conv", conv, nn.Conv2d)
    return conv.weight.detach().abs().sum(dim=(1, 2, 3)).argsort(descending=True)


def _check_supported(model: nn.Sequential) -> None:
    """prune_channels handles plain stacks only: say clearly what it cannot do."""
    require_instance("model", model, nn.Sequential)
    for index, layer in enumerate(model):
        if not isinstance(layer, SUPPORTED):
            raise TypeError(f"prune_channels supports conv/BN/activation/pooling stacks ending in a linear "
                            f"classifier; layer {index} is {type(layer).__name__} (for residual or other "
                            f"architectures use a dependency-graph pruner such as Torch-Pruning)")
        if isinstance(layer, nn.Conv2d) and layer.groups != 1:
            raise TypeError(f"layer {index}: grouped or depthwise convolutions are not supported")
        if isinstance(layer, nn.AdaptiveAvgPool2d) and layer.output_size not in (1, (1, 1)):
            raise TypeError(f"layer {index}: only global pooling (output size 1) may precede the classifier")


@torch.no_grad()
def keep_output_channels(conv: nn.Conv2d, keep: torch.Tensor) -> nn.Conv2d:
    """A new conv with only the output channels in keep."""
    new = nn.Conv2d(conv.in_channels, len(keep), conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, bias=conv.bias is not None)
    new.weight.copy_(conv.weight[keep])
    if conv.bias is not None:
        new.bias.copy_(conv.bias[keep])
    return new


@torch.no_grad()
def keep_input_channels(layer: nn.Conv2d | nn.Linear, keep: torch.Tensor) -> nn.Conv2d | nn.Linear:
    """A new conv (or linear layer) that reads only the input channels (or features) in keep."""
    if isinstance(layer, nn.Conv2d):
        new = nn.Conv2d(len(keep), layer.out_channels, layer.kernel_size, stride=layer.stride,
                        padding=layer.padding, dilation=layer.dilation, bias=layer.bias is not None)
    else:
        new = nn.Linear(len(keep), layer.out_features, bias=layer.bias is not None)
    new.weight.copy_(layer.weight[:, keep])
    if layer.bias is not None:
        new.bias.copy_(layer.bias)
    return new


@torch.no_grad()
def keep_batch_norm_channels(bn: nn.BatchNorm2d, keep: torch.Tensor) -> nn.BatchNorm2d:
    """A new batch norm holding the statistics and affine parameters of the kept channels."""
    new = nn.BatchNorm2d(len(keep), eps=bn.eps, momentum=bn.momentum)
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new, name).copy_(getattr(bn, name)[keep])
    new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new


def prune_channels(model: nn.Sequential, ratio: float) -> nn.Sequential:
    """Remove the fraction `ratio` of output channels with the smallest L1 norm from every conv.

    Returns a new, smaller nn.Sequential; `model` is left untouched. Each conv's batch norm and the
    next conv's (or the final linear layer's) input channels shrink to match.
    """
    ratio = require_number("ratio", ratio, minimum=0.0)
    if ratio >= 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    _check_supported(model)
    layers = [copy.deepcopy(layer) for layer in model]
    keep = None
    for index, layer in enumerate(layers):
        if isinstance(layer, (nn.Conv2d, nn.Linear)) and keep is not None:
            layer = keep_input_channels(layer, keep)
            layers[index] = layer
            keep = None
        if isinstance(layer, nn.Conv2d):
            n_keep = max(1, round(layer.out_channels * (1 - ratio)))
            keep = l1_filter_ranking(layer)[:n_keep].sort().values
            layers[index] = keep_output_channels(layer, keep)
        elif isinstance(layer, nn.BatchNorm2d) and keep is not None:
            layers[index] = keep_batch_norm_channels(layer, keep)
    return nn.Sequential(*layers).train(model.training)
