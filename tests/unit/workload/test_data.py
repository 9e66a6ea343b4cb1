"""Tests of helpers/workload/data.py."""

import pytest
import torch

from helpers.workload.data import PerSampleDigits, digits_folds, hold_out, load_digits_split, upsample


def test_digits_split_is_fixed_stratified_and_scaled():
    split = load_digits_split()
    assert split.x_train.shape == (1347, 1, 8, 8) and split.x_test.shape == (450, 1, 8, 8)
    assert split.x_train.min() >= 0 and split.x_train.max() <= 1
    assert torch.equal(split.y_test, load_digits_split().y_test), "same split every time"
    totals = torch.bincount(torch.cat([split.y_train, split.y_test]))
    assert (torch.bincount(split.y_test) - 0.25 * totals).abs().max() <= 1, "stratified: a quarter of each class"


def test_upsampled_split_and_bad_arguments():
    assert load_digits_split(image_size=32).x_train.shape == (1347, 1, 32, 32)
    with pytest.raises(ValueError, match="image_size must be an int >= 8"):
        load_digits_split(image_size=4)
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits_split(test_fraction=1.5)


def test_per_sample_dataset_matches_whole_batch_preparation():
    split = load_digits_split()
    data = PerSampleDigits(split.x_train, split.y_train, image_size=16)
    image, label = data[3]
    assert image.shape == (1, 16, 16) and label == split.y_train[3]
    assert torch.equal(image, (upsample(split.x_train, 16)[3] - 0.5) / 0.5)
    with pytest.raises(ValueError, match="one label per image"):
        PerSampleDigits(split.x_train, split.y_train[:5], image_size=16)


def test_digits_folds_partition_the_data_set():
    folds = digits_folds(3)
    assert len(folds) == 3
    assert sum(len(f.y_test) for f in folds) == 1797
    assert all(len(f.y_train) + len(f.y_test) == 1797 for f in folds)
    assert folds[0].x_test.shape[1:] == (1, 8, 8)
    with pytest.raises(ValueError, match="n_folds must be an int >= 2"):
        digits_folds(1)


def test_hold_out_takes_validation_images_from_training_only():
    fold = digits_folds(3)[0]
    reduced, x_val, y_val = hold_out(fold, 0.2)
    assert len(reduced.y_train) + len(y_val) == len(fold.y_train)
    assert torch.equal(reduced.x_test, fold.x_test)
    assert sorted(set(y_val.tolist())) == list(range(10))
    with pytest.raises(ValueError, match="fraction must be <= 0.95"):
        hold_out(fold, 1.5)
