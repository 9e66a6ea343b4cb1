"""ResNet-18 (He et al., 2016) layer for layer as torchvision's `resnet18`, with the same parameter names, so
that torchvision's state dicts load into it (tests/unit/test_ch07_tools.py checks that both compute the same).

Chapter 7 builds it from here instead of importing torchvision: on a CUDA build of PyTorch that import
alone costs about 160 MB of memory (torchvision's compiled operators), which the chapter's budget
needs for ONNX Runtime.
"""

from __future__ import annotations

import torch
from torch import nn

from helpers.core.validate import require_int


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, plus the input (through a 1x1 convolution when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18(nn.Module):
    """Stem (7x7 convolution, max pool), four stages of two BasicBlocks (64 to 512 channels), pool, Linear."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        require_int("num_classes", num_classes, minimum=1)
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = (64, 128, 256, 512)
        for index, (in_channels, out_channels) in enumerate(zip((64, *widths), widths), start=1):
            stride = 1 if index == 1 else 2
            setattr(self, f"layer{index}", nn.Sequential(BasicBlock(in_channels, out_channels, stride),
                                                         BasicBlock(out_channels, out_channels, 1)))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))
