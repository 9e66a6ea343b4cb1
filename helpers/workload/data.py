"""Real data that ships offline: scikit-learn's handwritten digits (1797 images, 8x8, 10 classes)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import StratifiedKFold, train_test_split
from torch.utils.data import DataLoader, Dataset, TensorDataset

from helpers.core.validate import require_int, require_number



@dataclass(frozen=True)
class DigitsSplit:
    """Fixed train/test split of the digits as float tensors (N, 1, H, W) in [0, 1] and int64 labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def upsample(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Resize (N, 1, H, W) images to image_size x image_size with bilinear interpolation."""
    require_int("image_size", image_size, minimum=1)
    if images.shape[-1] == image_size:
        return images
    return F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)


def load_digits_split(*, image_size: int = 8, test_fraction: float = 0.25, seed: int = 0) -> DigitsSplit:
    """The digits, split once with a fixed seed (stratified), optionally upsampled so convolutions have work."""
    require_int("image_size", image_size, minimum=8)
    require_number("test_fraction", test_fraction, minimum=0.05, maximum=0.95)
    require_int("seed", seed, minimum=0)
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.int64)
    train_idx, test_idx = train_test_split(
        torch.arange(len(labels)).numpy(), test_size=test_fraction, random_state=seed, stratify=labels.numpy()
    )
    images = upsample(images, image_size)
    return DigitsSplit(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx])


def digits_folds(n_folds: int = 3, *, image_size: int = 8, seed: int = 0) -> list[DigitsSplit]:
    """Stratified cross-validation folds of the digits: each image is a test image in exactly one fold."""
    require_int("n_folds", n_folds, minimum=2)
    require_int("image_size", image_size, minimum=8)
    digits = load_digits()
    images = upsample(torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0, image_size)
    labels = torch.tensor(digits.target, dtype=torch.int64)
    splitter = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    return [DigitsSplit(images[train], labels[train], images[test], labels[test])
            for train, test in splitter.split(images.numpy().reshape(len(labels), -1), labels.numpy())]


def hold_out(split: DigitsSplit, fraction: float = 0.2, *, seed: int = 0) -> tuple[DigitsSplit, torch.Tensor, torch.Tensor]:
    """(split with fewer training images, x_val, y_val): a stratified validation set taken from the training images,
    so that choices (ratios, thresholds) are made without looking at the test set."""
    require_number("fraction", fraction, minimum=0.05, maximum=0.95)
    fit, val = train_test_split(torch.arange(len(split.y_train)).numpy(), test_size=fraction, random_state=seed,
                                stratify=split.y_train.numpy())
    reduced = DigitsSplit(split.x_train[fit], split.y_train[fit], split.x_test, split.y_test)
    return reduced, split.x_train[val], split.y_train[val]


class PerSampleDigits(Dataset):
    """Digits that are normalised and upsampled one sample at a time, as many real pipelines do."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, image_size: int) -> None:
        if images.ndim != 4 or len(images) != len(labels):
            raise ValueError("images must be (N, C, H, W) with one label per image")
        self.images, self.labels = images, labels
        self.image_size = require_int("image_size", image_size, minimum=1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = upsample(self.images[index : index + 1], self.image_size)[0]
        return (image - 0.5) / 0.5, self.labels[index]


def tensor_loader(x: torch.Tensor, y: torch.Tensor, *, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """A DataLoader over in-memory tensors with a seeded shuffle."""
    require_int("batch_size", batch_size, minimum=1)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle, generator=generator)
