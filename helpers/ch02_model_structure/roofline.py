"""Where a layer sits on the roofline: its arithmetic intensity, its achieved rate, and this machine's roofs."""

from __future__ import annotations

import torch
from torch import nn

from helpers.core.measure import measure_interleaved
from helpers.core.validate import require_instance, require_int, require_number

ROOF_MATMUL = 1024  # the n x n float32 product whose rate stands for the compute roof
ROOF_ELEMENTS = 2**24  # a 64 MiB float32 vector whose read-only sum stands for the bandwidth roof


def measure_roofs(*, min_run_time: float = 0.6) -> tuple[float, float]:
    """(GFLOP/s, GB/s) of this machine: a large float32 matrix product and a read-only sum, as in chapter 1."""
    require_number("min_run_time", min_run_time, strictly_positive=True)
    a, b = torch.randn(ROOF_MATMUL, ROOF_MATMUL), torch.randn(ROOF_MATMUL, ROOF_MATMUL)
    vector = torch.randn(ROOF_ELEMENTS)
    timings = measure_interleaved({"matmul": lambda: torch.mm(a, b), "sum": lambda: vector.sum()},
                                  min_run_time=min_run_time)
    gflops = 2 * ROOF_MATMUL**3 / timings["matmul"].median_s / 1e9
    gbps = 4 * ROOF_ELEMENTS / timings["sum"].median_s / 1e9
    return gflops, gbps


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
