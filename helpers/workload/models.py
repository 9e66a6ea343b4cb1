"""Small models sized for a laptop CPU: the course's running examples."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from helpers.core.validate import require_int


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    """3x3 convolution (no bias: BN adds one), batch norm, ReLU."""
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


def small_cnn(channels: Sequence[int] = (32, 64, 128), *, in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """conv-BN-ReLU stages, each followed by 2x2 max-pooling, then global pooling and a linear classifier."""
    if len(channels) == 0:
        raise ValueError("channels must list at least one stage width")
    widths = [require_int("in_channels", in_channels, minimum=1)]
    widths += [require_int("channels[i]", c, minimum=1) for c in channels]
    layers: list[nn.Module] = []
    for c_in, c_out in zip(widths[:-1], widths[1:]):
        layers += [*conv_bn_relu(c_in, c_out), nn.MaxPool2d(2)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], require_int("num_classes", num_classes, minimum=2))]
    return nn.Sequential(*layers)
