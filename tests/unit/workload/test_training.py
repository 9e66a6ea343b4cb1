"""Tests of helpers/workload/training.py."""


import pytest
import torch

from helpers.workload.data import load_digits_split, tensor_loader
from helpers.workload.models import small_cnn
from helpers.workload.training import evaluate_accuracy, train_epochs


def test_training_learns_the_digits():
    torch.manual_seed(0)
    split = load_digits_split()
    model = small_cnn((16, 32))
    losses = train_epochs(model, tensor_loader(split.x_train, split.y_train, batch_size=64, shuffle=True),
                          epochs=4, lr=3e-3, progress=False)
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert evaluate_accuracy(model, split.x_test, split.y_test) > 0.8


def test_training_helpers_reject_bad_arguments():
    split = load_digits_split()
    loader = tensor_loader(split.x_train, split.y_train, batch_size=64, shuffle=False)
    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        train_epochs(small_cnn(), loader, epochs=0)
    with pytest.raises(ValueError, match="lr must be > 0"):
        train_epochs(small_cnn(), loader, epochs=1, lr=-1.0)
    with pytest.raises(ValueError, match="equal length"):
        evaluate_accuracy(small_cnn(), split.x_test, split.y_test[:3])
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        tensor_loader(split.x_train, split.y_train, batch_size=0, shuffle=False)


def test_train_epochs_accepts_a_precision_and_rejects_unknown_ones():
    loader = tensor_loader(torch.randn(8, 1, 8, 8), torch.arange(8) % 2, batch_size=4, shuffle=False)
    losses = train_epochs(small_cnn((4,), num_classes=2), loader, epochs=2, precision="bf16", anneal=True, progress=False)
    assert len(losses) == 2
    with pytest.raises(ValueError, match="precision must be one of"):
        train_epochs(small_cnn((4,), num_classes=2), loader, epochs=1, precision="half", progress=False)
