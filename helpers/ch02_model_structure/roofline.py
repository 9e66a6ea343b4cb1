"""Where a layer sits on the roofline: its least traffic and its arithmetic intensity (the roofs: helpers.core.roofs)."""

from __future__ import annotations

import torch
from torch import nn

from helpers.core.validate import require_instance, require_int


def conv_min_bytes(conv: nn.Conv2d, x: torch.Tensor) -> int:
    """The least traffic of conv(x): its input read once, its weights read once, its output written once."""
    require_instance("conv", conv, nn.Conv2d)
    require_instance("x", x, torch.Tensor)
    with torch.no_grad():
        out = conv(x)
    elements = x.numel() + conv.weight.numel() + out.numel()
    return elements * x.element_size()


def depthwise_intensity(kernel_size: int, element_bytes: int = 4) -> float:
    """FLOP per byte of a k x k depthwise convolution at stride 1, large maps: 2 k^2 FLOPs per 2 elements moved."""
    require_int("kernel_size", kernel_size, minimum=1)
    require_int("element_bytes", element_bytes, minimum=1)
    return 2 * kernel_size**2 / (2 * element_bytes)
