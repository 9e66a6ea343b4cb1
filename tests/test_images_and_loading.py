"""The on-disk digits dataset, the RAM caches and the DataLoader measurements of chapter 4."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torchvision.transforms import v2

from helpers import (
    DecodedCache, ObjectListCache, cache_root, image_folder, make_loader, measure_loader,
    normalize_batch, small_cnn, training_throughput, write_digit_images,
)

DIGIT_IMAGES = 1797


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory):
    root, written = write_digit_images(tmp_path_factory.mktemp("digits") / "jpeg", size=16, copies=1)
    assert written
    return root


def test_dataset_is_written_in_imagefolder_layout(digits_root):
    files = sorted(digits_root.glob("*/*.jpg"))
    assert len(files) == DIGIT_IMAGES
    assert sorted(p.name for p in digits_root.iterdir() if p.is_dir()) == [str(d) for d in range(10)]
    assert json.loads((digits_root / "complete.json").read_text())["files"] == DIGIT_IMAGES


def test_writing_again_reuses_the_files(digits_root):
    before = {p: p.stat().st_mtime_ns for p in digits_root.glob("*/*.jpg")}
    root, written = write_digit_images(digits_root, size=16, copies=1)
    assert root == digits_root and not written
    assert {p: p.stat().st_mtime_ns for p in digits_root.glob("*/*.jpg")} == before


def test_different_settings_rewrite_the_dataset(tmp_path):
    write_digit_images(tmp_path, size=16, copies=1)
    _, written = write_digit_images(tmp_path, size=16, copies=2)
    assert written
    assert len(list(tmp_path.glob("*/*.jpg"))) == 2 * DIGIT_IMAGES


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    assert cache_root() == tmp_path


def test_image_folder_decodes_uint8_rgb(digits_root):
    folder = image_folder(digits_root)
    image, label = folder[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 16, 16)
    assert folder.classes == [str(d) for d in range(10)] and label == 0
    assert len(folder) == DIGIT_IMAGES


def test_image_folder_applies_the_transform(digits_root):
    image, _ = image_folder(digits_root, v2.RandomCrop(12))[5]
    assert image.shape == (3, 12, 12)


def test_image_folder_rejects_a_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="write_digit_images"):
        image_folder(tmp_path / "nowhere")


def test_decoded_cache_holds_one_contiguous_tensor(digits_root):
    folder = image_folder(digits_root)
    cache = DecodedCache(folder, v2.RandomCrop(12))
    assert cache.images.shape == (DIGIT_IMAGES, 3, 16, 16) and cache.images.is_contiguous()
    assert cache.nbytes == DIGIT_IMAGES * 3 * 16 * 16 + DIGIT_IMAGES * 8
    image, label = cache[3]
    assert image.shape == (3, 12, 12) and int(label) == folder.targets[3]
    assert torch.equal(DecodedCache(folder)[3][0], folder[3][0])


def test_object_list_cache_keeps_one_array_per_image(digits_root):
    cache = ObjectListCache(image_folder(digits_root))
    assert len(cache) == DIGIT_IMAGES and isinstance(cache.data, list)
    image, label = cache[0]
    assert isinstance(image, np.ndarray) and image.shape == (3, 16, 16) and label == 0


@pytest.mark.parametrize(("setting", "value", "error"), [
    ("num_workers", -1, ValueError), ("batch_size", 0, ValueError), ("prefetch_factor", 0, ValueError),
    ("num_workers", 1.5, TypeError), ("batch_size", True, TypeError),
])
def test_make_loader_rejects_bad_settings(digits_root, setting, value, error):
    with pytest.raises(error, match=setting):
        make_loader(image_folder(digits_root), **{setting: value})


def test_make_loader_rejects_pin_memory_without_an_accelerator(digits_root):
    if torch.accelerator.is_available():
        pytest.skip("this machine has an accelerator, so pinned memory is allowed")
    with pytest.raises(ValueError, match="pin_memory"):
        make_loader(image_folder(digits_root), pin_memory=True)


def test_make_loader_rejects_what_is_not_a_dataset():
    with pytest.raises(TypeError, match="dataset"):
        make_loader([1, 2, 3])


def test_measure_loader_counts_batches_after_the_first(digits_root):
    loader = make_loader(image_folder(digits_root), batch_size=100)
    timing = measure_loader(loader, epochs=2, max_batches=3)
    assert timing.images == 2 * 2 * 100
    assert len(timing.first_batch_s) == 2 and timing.images_per_s > 0


def test_measure_loader_needs_two_batches(digits_root):
    with pytest.raises(ValueError, match="max_batches"):
        measure_loader(make_loader(image_folder(digits_root)), max_batches=1)
    with pytest.raises(ValueError, match="two batches"):
        measure_loader(make_loader(image_folder(digits_root), batch_size=DIGIT_IMAGES))


def test_loader_table_has_one_row_per_loader(digits_root):
    from helpers.loading import loader_table, measure_loaders

    folder = image_folder(digits_root)
    table = loader_table(measure_loaders({"b32": make_loader(folder, batch_size=32), "b64": make_loader(folder)},
                                         rounds=1, max_batches=3))
    assert isinstance(table, pd.DataFrame)
    assert list(table.index) == ["b32", "b64"]
    assert list(table.columns) == ["images_per_s", "first_batch_ms", "warnings"]


def test_loader_ratio_pairs_the_rounds_of_two_loaders(digits_root):
    from helpers.loading import loader_ratio, measure_loaders

    folder = image_folder(digits_root)
    runs = measure_loaders({"a": make_loader(folder, batch_size=32), "b": make_loader(folder)}, rounds=3, max_batches=3)
    assert all(len(r) == 3 for r in runs.values())
    ratio = loader_ratio(runs, "a", "b")
    assert ratio.rounds == 3 and ratio.low <= ratio.median <= ratio.high
    with pytest.raises(ValueError, match="'c' is not one of the measured loaders"):
        loader_ratio(runs, "a", "c")


def test_normalize_batch_maps_bytes_to_unit_range():
    images = torch.tensor([0, 255], dtype=torch.uint8)
    assert torch.equal(normalize_batch(images), torch.tensor([-1.0, 1.0]))


def test_make_loader_passes_the_worker_init_function(digits_root):
    from helpers.loading import collect_garbage

    loader = make_loader(image_folder(digits_root), num_workers=1, worker_init_fn=collect_garbage)
    assert loader.worker_init_fn is collect_garbage
    assert make_loader(image_folder(digits_root)).worker_init_fn is None


def test_worker_private_memory_is_measured_for_each_new_worker(digits_root):
    from helpers import worker_private_memory_bytes

    assert worker_private_memory_bytes(image_folder(digits_root), num_workers=2, run_gc=True) > 0
    with pytest.raises(ValueError, match="num_workers"):
        worker_private_memory_bytes(image_folder(digits_root), num_workers=0)


def test_new_child_processes_finds_the_workers_a_loader_starts(digits_root):
    from helpers import child_pids, new_child_processes

    before = child_pids()
    iterator = iter(make_loader(image_folder(digits_root), num_workers=2))
    next(iterator)
    assert len(new_child_processes(before)) == 2
    del iterator


def test_training_throughput_reports_loader_step_and_both(digits_root):
    loader = make_loader(image_folder(digits_root, transform=v2.RandomCrop(16)), batch_size=16)
    rates = training_throughput(loader, small_cnn((4,), in_channels=3), device="cpu", max_batches=3)
    assert set(rates) == {"loader alone", "training step alone", "loader + training"}
    assert all(rate > 0 for rate in rates.values())


def test_training_throughput_rejects_what_is_not_a_loader_or_a_model(digits_root):
    loader = make_loader(image_folder(digits_root), batch_size=16)
    with pytest.raises(TypeError, match="loader"):
        training_throughput([1, 2, 3], small_cnn((4,), in_channels=3))
    with pytest.raises(TypeError, match="model"):
        training_throughput(loader, "small_cnn")
