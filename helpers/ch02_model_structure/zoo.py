"""torchvision's lightweight and classic architectures, built without weights, with published accuracy."""

from __future__ import annotations

from torch import nn
from torchvision import models

from helpers.core.validate import require_choice

ARCHITECTURES = ("resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
                 "efficientnet_b0", "shufflenet_v2_x1_0")


def build_architecture(name: str) -> nn.Module:
    """The architecture with random weights (weights=None: nothing is downloaded), in eval mode."""
    require_choice("name", name, ARCHITECTURES)
    return models.get_model(name, weights=None).eval()


def published_top1(name: str) -> float:
    """ImageNet-1K top-1 accuracy (%) of torchvision's default weights, from the weight enum's metadata."""
    require_choice("name", name, ARCHITECTURES)
    weights = models.get_model_weights(name).DEFAULT
    return weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]


def published_gflops(name: str) -> float:
    """torchvision's published 'GFLOPS' per 224x224 image (meta["_ops"]): in fact billions of multiply-adds."""
    require_choice("name", name, ARCHITECTURES)
    return models.get_model_weights(name).DEFAULT.meta["_ops"]
