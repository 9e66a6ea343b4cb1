"""torchvision's lightweight and classic architectures, built without weights, with published accuracy."""

from __future__ import annotations

from torch import nn
from torchvision import models

from helpers.core.validate import require_choice

ARCHITECTURES = ("resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
                 "efficientnet_b0", "shufflenet_v2_x1_0")
# Every architecture has these weights, trained with its original recipe; some also have later ones from newer,
# longer recipes (torchvision's DEFAULT). Comparing architectures on mixed recipes credits one with another's recipe.
FIRST_WEIGHTS = "IMAGENET1K_V1"


def build_architecture(name: str) -> nn.Module:
    """The architecture with random weights (weights=None: nothing is downloaded), in eval mode."""
    require_choice("name", name, ARCHITECTURES)
    return models.get_model(name, weights=None).eval()


def weights_top1(name: str) -> dict[str, float]:
    """ImageNet-1K top-1 accuracy (%) of each of torchvision's weights for the architecture, by weight name."""
    require_choice("name", name, ARCHITECTURES)
    return {w.name: w.meta["_metrics"]["ImageNet-1K"]["acc@1"] for w in models.get_model_weights(name)}


def published_top1(name: str) -> float:
    """ImageNet-1K top-1 accuracy (%) of the architecture's first weights (IMAGENET1K_V1, its original recipe)."""
    return weights_top1(name)[FIRST_WEIGHTS]


def published_gflops(name: str) -> float:
    """torchvision's published 'GFLOPS' per 224x224 image (meta["_ops"]): in fact billions of multiply-adds."""
    require_choice("name", name, ARCHITECTURES)
    return models.get_model_weights(name)[FIRST_WEIGHTS].meta["_ops"]
