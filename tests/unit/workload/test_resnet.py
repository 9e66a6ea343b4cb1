"""Tests of helpers/workload/resnet.py."""

from __future__ import annotations

import pytest
import torch

from helpers.workload.resnet import ResNet18


def test_resnet18_is_torchvision_resnet18():
    torchvision = pytest.importorskip("torchvision")
    theirs = torchvision.models.resnet18(num_classes=10).eval()
    ours = ResNet18(num_classes=10).eval()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(images), theirs(images))
    with pytest.raises(ValueError):
        ResNet18(num_classes=0)
