"""Tests of helpers/workload/models.py."""

import pytest
import torch

from helpers.workload.models import small_cnn


def test_small_cnn_shapes_and_arguments():
    assert small_cnn()(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    assert small_cnn((4, 8), in_channels=3, num_classes=5)(torch.randn(1, 3, 8, 8)).shape == (1, 5)
    with pytest.raises(ValueError, match="at least one stage"):
        small_cnn(())
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        small_cnn(num_classes=1)
