"""Structured channel pruning: build a physically smaller network, not a masked one."""

from __future__ import annotations

import copy
import numbers
from collections.abc import Sequence

import torch
from torch import nn

from helpers.core.validate import require_choice, require_instance, require_number

SUPPORTED = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear, nn.Dropout)
CRITERIA = ("l1", "bn_scaled_l1")


def filter_importance(conv: nn.Conv2d, bn: nn.BatchNorm2d | None, criterion: str = "l1") -> torch.Tensor:
    """One score per output channel: the filter's L1 norm, or (bn_scaled_l1) that of the filter with its BN folded in.

    Batch norm multiplies channel c by gamma_c / sqrt(running_var_c + eps): a filter with a small L1 norm
    can still feed a channel that batch norm scales up, so the folded norm measures what the channel passes on.
    """
    require_instance("conv", conv, nn.Conv2d)
    require_choice("criterion", criterion, CRITERIA)
    l1 = conv.weight.detach().abs().sum(dim=(1, 2, 3))
    if criterion == "l1":
        return l1
    if bn is None:
        raise ValueError("criterion 'bn_scaled_l1' needs the batch norm that follows the convolution")
    return l1 * bn.weight.detach().abs() / torch.sqrt(bn.running_var + bn.eps)


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


def per_conv_ratios(model: nn.Sequential, ratio: float | Sequence[float]) -> list[float]:
    """One pruning ratio per convolution of model: the same ratio for all, or one given for each."""
    n_convs = sum(isinstance(layer, nn.Conv2d) for layer in model)
    one_for_all = isinstance(ratio, numbers.Real)
    ratios = [ratio] * n_convs if one_for_all else list(ratio)
    if len(ratios) != n_convs:
        raise ValueError(f"give one ratio for all convolutions or one per convolution ({n_convs}), got {len(ratios)}")
    for index, value in enumerate(ratios):
        if require_number("ratio" if one_for_all else f"ratio[{index}]", value, minimum=0.0) >= 1.0:
            raise ValueError(f"ratio must be in [0, 1), got {value}")
    return [float(value) for value in ratios]


def _placement(tensor: torch.Tensor) -> dict:
    """device and dtype of an existing tensor, so that a rebuilt layer stays where the old one was."""
    return {"device": tensor.device, "dtype": tensor.dtype}


@torch.no_grad()
def keep_output_channels(conv: nn.Conv2d, keep: torch.Tensor) -> nn.Conv2d:
    """A new conv with only the output channels in keep."""
    new = nn.Conv2d(conv.in_channels, len(keep), conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, bias=conv.bias is not None, **_placement(conv.weight))
    new.weight.copy_(conv.weight[keep])
    if conv.bias is not None:
        new.bias.copy_(conv.bias[keep])
    return new


@torch.no_grad()
def keep_input_channels(layer: nn.Conv2d | nn.Linear, keep: torch.Tensor) -> nn.Conv2d | nn.Linear:
    """A new conv (or linear layer) that reads only the input channels (or features) in keep."""
    if isinstance(layer, nn.Conv2d):
        new = nn.Conv2d(len(keep), layer.out_channels, layer.kernel_size, stride=layer.stride,
                        padding=layer.padding, dilation=layer.dilation, bias=layer.bias is not None,
                        **_placement(layer.weight))
    else:
        new = nn.Linear(len(keep), layer.out_features, bias=layer.bias is not None, **_placement(layer.weight))
    new.weight.copy_(layer.weight[:, keep])
    if layer.bias is not None:
        new.bias.copy_(layer.bias)
    return new


@torch.no_grad()
def keep_batch_norm_channels(bn: nn.BatchNorm2d, keep: torch.Tensor) -> nn.BatchNorm2d:
    """A new batch norm holding the statistics and affine parameters of the kept channels."""
    new = nn.BatchNorm2d(len(keep), eps=bn.eps, momentum=bn.momentum, **_placement(bn.running_mean))
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new, name).copy_(getattr(bn, name)[keep])
    new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new


def _batch_norm_after(layers: Sequence[nn.Module], index: int) -> nn.BatchNorm2d | None:
    """The batch norm directly after layers[index], if there is one."""
    following = layers[index + 1] if index + 1 < len(layers) else None
    return following if isinstance(following, nn.BatchNorm2d) else None


def prune_channels(model: nn.Sequential, ratio: float | Sequence[float], *, criterion: str = "l1") -> nn.Sequential:
    """Remove the least important fraction `ratio` of output channels from every conv (or one ratio per conv).

    Returns a new, smaller nn.Sequential; `model` is left untouched. Each conv's batch norm and the
    next conv's (or the final linear layer's) input channels shrink to match. criterion: see filter_importance.
    """
    _check_supported(model)
    require_choice("criterion", criterion, CRITERIA)
    ratios = iter(per_conv_ratios(model, ratio))
    layers = [copy.deepcopy(layer) for layer in model]
    keep = None
    for index, layer in enumerate(layers):
        if isinstance(layer, (nn.Conv2d, nn.Linear)) and keep is not None:
            layer = layers[index] = keep_input_channels(layer, keep)
            keep = None
        if isinstance(layer, nn.Conv2d):
            n_keep = max(1, round(layer.out_channels * (1 - next(ratios))))
            scores = filter_importance(layer, _batch_norm_after(layers, index), criterion)
            keep = scores.argsort(descending=True)[:n_keep].sort().values
            layers[index] = keep_output_channels(layer, keep)
        elif isinstance(layer, nn.BatchNorm2d) and keep is not None:
            layers[index] = keep_batch_norm_channels(layer, keep)
    return nn.Sequential(*layers).train(model.training)
