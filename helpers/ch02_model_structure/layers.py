"""Depthwise separable convolution, done generally: any kernel size, stride and dilation."""

from __future__ import annotations

from torch import Tensor, nn

from helpers.core.validate import require_int


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps H and W unchanged at stride 1 (and halves them at stride 2), for odd kernels."""
    require_int("kernel_size", kernel_size, minimum=1)
    require_int("dilation", dilation, minimum=1)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd for symmetric 'same' padding, got {kernel_size}")
    return dilation * (kernel_size - 1) // 2


class DepthwiseSeparableConv(nn.Module):
    """A k x k depthwise convolution (one filter per channel) then a 1 x 1 pointwise one that mixes channels.

    With norm=True each convolution is followed by batch norm and ReLU, as in MobileNet v1;
    with norm=False it is the bare pair (no bias either), whose cost is exactly the textbook formula.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, stride: int = 1,
                 dilation: int = 1, norm: bool = True) -> None:
        super().__init__()
        require_int("in_channels", in_channels, minimum=1)
        require_int("out_channels", out_channels, minimum=1)
        require_int("stride", stride, minimum=1)
        padding = same_padding(kernel_size, dilation)
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, stride=stride, padding=padding,
                                   dilation=dilation, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.depthwise_norm = nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True)) if norm else nn.Identity()
        self.pointwise_norm = nn.Sequential(nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)) if norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise_norm(self.pointwise(self.depthwise_norm(self.depthwise(x))))


def separable_cost_ratio(out_channels: int, kernel_size: int) -> float:
    """Separable / standard cost (parameters and FLOPs, without bias): 1/N + 1/k^2."""
    require_int("out_channels", out_channels, minimum=1)
    require_int("kernel_size", kernel_size, minimum=1)
    return 1 / out_channels + 1 / kernel_size**2
