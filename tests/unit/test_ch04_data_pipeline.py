"""Tests of helpers/ch04_data_pipeline/: the digits on disk, the RAM caches, DataLoader measurements, exercises."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset, default_convert
from torchvision.transforms import v2

from helpers.ch04_data_pipeline.exercises import check_throughput_prediction
from helpers.ch04_data_pipeline.images import (
    BatchedCache, DecodedCache, ObjectListCache, RecordArrays, RecordList, cache_root, evict_from_page_cache,
    file_index, image_folder, read_bytes, time_reads_interleaved, write_digit_images, write_shard,
)
from helpers.ch04_data_pipeline.loading import (
    make_loader, measure_loader, measure_training, normalize_batch, training_throughput,
)
from helpers.workload.models import small_cnn

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
    cache = DecodedCache.decode(folder, v2.RandomCrop(12))
    assert cache.images.shape == (DIGIT_IMAGES, 3, 16, 16) and cache.images.is_contiguous()
    assert cache.nbytes == DIGIT_IMAGES * 3 * 16 * 16 + DIGIT_IMAGES * 8
    image, label = cache[3]
    assert image.shape == (3, 12, 12) and int(label) == folder.targets[3]
    assert torch.equal(DecodedCache.decode(folder)[3][0], folder[3][0])


def test_decoded_cache_rejects_what_is_not_a_uint8_image_batch():
    with pytest.raises(ValueError, match="uint8"):
        DecodedCache(torch.zeros(4, 3, 8, 8), torch.zeros(4))
    with pytest.raises(ValueError, match="one label per image"):
        DecodedCache(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.zeros(3))


def test_batched_cache_serves_whole_batches_through_getitems():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 4, 4).contiguous()
    cache = BatchedCache(images, torch.arange(10))
    batch, labels = cache.__getitems__([7, 2, 5])
    assert torch.equal(batch, images[[7, 2, 5]]) and labels.tolist() == [7, 2, 5]
    loader = DataLoader(cache, batch_size=4, collate_fn=default_convert)
    first_images, first_labels = next(iter(loader))
    assert first_images.shape == (4, 3, 4, 4) and first_labels.tolist() == [0, 1, 2, 3]


def test_batched_cache_draws_one_random_crop_per_batch():
    images = torch.randint(0, 255, (8, 3, 16, 16), dtype=torch.uint8)
    batch, _ = BatchedCache(images, torch.zeros(8), transform=v2.RandomCrop(8)).__getitems__(list(range(8)))
    assert batch.shape == (8, 3, 8, 8)
    offsets = {next((dy, dx) for dy in range(9) for dx in range(9)
                    if torch.equal(images[i, :, dy:dy + 8, dx:dx + 8], batch[i])) for i in range(8)}
    assert len(offsets) == 1


def test_object_list_cache_returns_items_unchanged():
    arrays = [np.full((3, 4, 4), i, dtype=np.uint8) for i in range(5)]
    cache = ObjectListCache(arrays, [0, 1, 2, 3, 4])
    assert len(cache) == 5 and isinstance(cache.data, list)
    image, label = cache[2]
    assert image is arrays[2] and label == 2
    with pytest.raises(ValueError, match="same length"):
        ObjectListCache(arrays, [0, 1])


def test_tensor_dataset_serves_what_the_articles_cache_serves():
    images = torch.randint(0, 255, (6, 3, 4, 4), dtype=torch.uint8)
    article = ObjectListCache([image.numpy() for image in images], list(range(6)))
    same = TensorDataset(images, torch.arange(6))
    assert all(np.array_equal(same[i][0].numpy(), article[i][0]) and int(same[i][1]) == article[i][1]
               for i in range(6))


def test_file_index_makes_distinct_paths_and_cycling_labels():
    paths, labels = file_index(25, classes=4)
    assert len(set(paths)) == 25 and labels[:5] == [0, 1, 2, 3, 0]
    assert paths[6] == "train/2/0000006.jpg"
    with pytest.raises(ValueError, match="count"):
        file_index(0)
    with pytest.raises(TypeError, match="classes"):
        file_index(5, classes=2.5)


def test_record_list_and_arrays_hold_the_same_index():
    paths, labels = file_index(50)
    records, arrays = RecordList(paths, labels), RecordArrays(paths, labels)
    assert len(records) == len(arrays) == 50
    assert all(records[i] == arrays[i] for i in range(50))
    assert isinstance(records.records[3], dict) and arrays.paths.dtype.kind == "S"
    with pytest.raises(ValueError, match="same length"):
        RecordArrays(paths, labels[:-1])
    with pytest.raises(ValueError):
        RecordList(paths, labels[:-1])


def test_forked_workers_copy_pages_of_per_sample_objects_but_not_of_arrays():
    import gc

    from helpers.ch04_data_pipeline.loading import worker_private_memory_bytes

    paths, labels = file_index(100_000)
    records, arrays = RecordList(paths, labels), RecordArrays(paths, labels)
    del paths, labels
    gc.collect()
    gc.freeze()
    try:
        private = {name: worker_private_memory_bytes(dataset, num_workers=1, batch_size=1024)
                   for name, dataset in (("records", records), ("arrays", arrays))}
    finally:
        gc.unfreeze()
    assert private["records"] - private["arrays"] > 10 * 2**20  # 100,000 records take about 30 MB


def test_shard_holds_the_files_end_to_end_and_is_written_once(tmp_path):
    files = []
    for i, content in enumerate((b"abc", b"", b"defgh")):
        files.append(tmp_path / f"{i}.bin")
        files[-1].write_bytes(content)
    shard, written = write_shard(files, tmp_path / "all.shard")
    assert written and shard.read_bytes() == b"abcdefgh"
    assert np.load(f"{shard}.offsets.npy").tolist() == [0, 3, 3, 8]
    assert write_shard(files, shard) == (shard, False)
    assert read_bytes(files) == read_bytes([shard]) == 8


@pytest.mark.skipif(not hasattr(__import__("os"), "posix_fadvise"), reason="eviction needs os.posix_fadvise (Linux)")
def test_cold_and_warm_reads_are_timed_per_round(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"x" * 100_000)
    evict_from_page_cache([path])
    seconds = time_reads_interleaved({"files": [path]}, rounds=2)["files"]
    assert set(seconds) == {"cold", "warm"} and all(len(v) == 2 and min(v) > 0 for v in seconds.values())
    with pytest.raises(ValueError, match="at least one file"):
        time_reads_interleaved({"files": []})
    with pytest.raises(ValueError, match="rounds"):
        time_reads_interleaved({"files": [path]}, rounds=0)


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
    from helpers.ch04_data_pipeline.loading import loader_table, measure_loaders

    folder = image_folder(digits_root)
    table = loader_table(measure_loaders({"b32": make_loader(folder, batch_size=32), "b64": make_loader(folder)},
                                         rounds=1, max_batches=3))
    assert isinstance(table, pd.DataFrame)
    assert list(table.index) == ["b32", "b64"]
    assert list(table.columns) == ["images_per_s", "first_batch_ms", "warnings"]


def test_loader_ratio_pairs_the_rounds_of_two_loaders(digits_root):
    from helpers.ch04_data_pipeline.loading import loader_ratio, measure_loaders

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
    from helpers.ch04_data_pipeline.loading import collect_garbage

    loader = make_loader(image_folder(digits_root), num_workers=1, worker_init_fn=collect_garbage)
    assert loader.worker_init_fn is collect_garbage
    assert make_loader(image_folder(digits_root)).worker_init_fn is None


def test_worker_private_memory_is_measured_for_each_new_worker(digits_root):
    from helpers.ch04_data_pipeline.loading import worker_private_memory_bytes

    assert worker_private_memory_bytes(image_folder(digits_root), num_workers=2, run_gc=True) > 0
    with pytest.raises(ValueError, match="num_workers"):
        worker_private_memory_bytes(image_folder(digits_root), num_workers=0)


def test_new_child_processes_finds_the_workers_a_loader_starts(digits_root):
    from helpers.ch04_data_pipeline.loading import child_pids, new_child_processes

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


def test_measure_training_alternates_loaders_and_threads(digits_root):
    folder = image_folder(digits_root)
    loaders = {"b16": make_loader(folder, batch_size=16), "b32": make_loader(folder, batch_size=32)}
    rates = measure_training(loaders, small_cnn((4,), in_channels=3), rounds=2, max_batches=3,
                             num_threads={"b32": 1})
    assert set(rates) == {"b16", "b32"} and all(len(r) == 2 and min(r) > 0 for r in rates.values())
    with pytest.raises(ValueError, match="not one of the loaders"):
        measure_training(loaders, small_cnn((4,), in_channels=3), num_threads={"b64": 1})
    with pytest.raises(ValueError, match="non-empty mapping"):
        measure_training({}, small_cnn((4,), in_channels=3))
    with pytest.raises(TypeError, match="model"):
        measure_training(loaders, "small_cnn")


def test_training_needs_two_batches(digits_root):
    loader = make_loader(image_folder(digits_root), batch_size=DIGIT_IMAGES)
    with pytest.raises(ValueError, match="at least 2 batches"):
        measure_training({"one batch": loader}, small_cnn((4,), in_channels=3), rounds=1)


def test_throughput_prediction_check_tells_serial_from_overlapped():
    def serial(loader_rate, step_rate, overlapped):
        return min(loader_rate, step_rate) if overlapped else 1 / (1 / loader_rate + 1 / step_rate)

    assert check_throughput_prediction("E", serial)
    assert not check_throughput_prediction("E", lambda loader_rate, step_rate, overlapped: min(loader_rate, step_rate))


def test_make_loader_passes_the_collate_function():
    dataset = TensorDataset(torch.arange(8))
    assert make_loader(dataset, collate_fn=default_convert).collate_fn is default_convert


def test_make_loader_silences_only_the_construction_time_worker_warning():
    import os
    import warnings

    too_many = (os.cpu_count() or 1) + 1
    with warnings.catch_warnings(record=True) as built:
        warnings.simplefilter("always")
        loader = make_loader(TensorDataset(torch.arange(8), torch.arange(8)), batch_size=4, num_workers=too_many)
    assert not [w for w in built if "worker processes" in str(w.message)]
    timing = measure_loader(loader, skip_batches=1)
    assert any("worker processes" in message for message in timing.warnings)


def test_prefetched_batches_is_the_workers_head_start():
    from helpers.ch04_data_pipeline.loading import prefetched_batches

    dataset = TensorDataset(torch.arange(64), torch.arange(64))
    assert prefetched_batches(make_loader(dataset, batch_size=4)) == 1
    assert prefetched_batches(make_loader(dataset, batch_size=4, num_workers=2, prefetch_factor=3)) == 6
    with pytest.raises(TypeError, match="loader"):
        prefetched_batches([1, 2])


def test_measure_loader_leaves_the_skipped_batches_off_the_clock():
    dataset = TensorDataset(torch.arange(40), torch.arange(40))
    timing = measure_loader(make_loader(dataset, batch_size=4), max_batches=6, skip_batches=3)
    assert timing.images == 3 * 4
    with pytest.raises(ValueError, match="more than the 3 batches"):
        measure_loader(make_loader(dataset, batch_size=4), max_batches=3, skip_batches=3)
    with pytest.raises(ValueError, match="skip_batches"):
        measure_loader(make_loader(dataset, batch_size=4), skip_batches=0)


def test_measure_loaders_times_every_loader_over_the_same_batches():
    from helpers.ch04_data_pipeline.loading import measure_loaders

    dataset = TensorDataset(torch.arange(64), torch.arange(64))
    runs = measure_loaders({"main": make_loader(dataset, batch_size=4),
                            "workers": make_loader(dataset, batch_size=4, num_workers=1)}, rounds=1, max_batches=5)
    # one worker with prefetch_factor 2 has 2 batches ready: both loaders time batches 3 to 5
    assert runs["main"][0].images == runs["workers"][0].images == 3 * 4


def test_worker_pids_come_from_the_worker_processes():
    import os

    from helpers.ch04_data_pipeline.loading import WorkerPids, child_pids, new_child_processes, start_method

    loader = make_loader(WorkerPids(32), batch_size=4, num_workers=2)
    assert start_method(loader) in ("fork", "forkserver", "spawn")
    before = child_pids()
    iterator = iter(loader)
    seen = set(next(iterator).tolist())
    started = {process.pid for process in new_child_processes(before)}
    for batch in iterator:
        seen |= set(batch.tolist())
    assert len(seen) == 2 and os.getpid() not in seen and seen <= started
    assert not seen & child_pids()
    assert WorkerPids(3)[0] == os.getpid() and len(WorkerPids(3)) == 3
    with pytest.raises(ValueError, match="length"):
        WorkerPids(0)


@pytest.mark.skipif(not hasattr(__import__("os"), "posix_fadvise"), reason="eviction needs os.posix_fadvise (Linux)")
def test_reads_of_several_groups_are_interleaved_per_round(tmp_path):

    small = [tmp_path / f"{i}.bin" for i in range(3)]
    for path in small:
        path.write_bytes(b"y" * 1000)
    shard, _ = write_shard(small, tmp_path / "all.shard")
    seconds = time_reads_interleaved({"small": small, "shard": [shard]}, rounds=3)
    assert set(seconds) == {"small", "shard"}
    assert all(len(times) == 3 and min(times) > 0 for group in seconds.values() for times in group.values())
    with pytest.raises(ValueError, match="non-empty mapping"):
        time_reads_interleaved({})
    with pytest.raises(ValueError, match="'shard' names none"):
        time_reads_interleaved({"small": small, "shard": []})


def test_pipeline_choice_check(digits_root, capsys):
    from helpers.ch04_data_pipeline.exercises import check_pipeline_choice

    folder = image_folder(digits_root)
    model = small_cnn((4,), in_channels=3)
    assert not check_pipeline_choice("E", ..., 1, dataset=folder, model=model, best=(0, 1))
    assert "not answered yet" in capsys.readouterr().out
    assert check_pipeline_choice("E", 0, 1, dataset=folder, model=model, best=(0, 1))
    with pytest.raises(ValueError, match="num_workers"):
        check_pipeline_choice("E", -1, 1, dataset=folder, model=model, best=(0, 1))
    with pytest.raises(ValueError, match="training_threads"):
        check_pipeline_choice("E", 0, 0, dataset=folder, model=model, best=(0, 1))
    with pytest.raises(TypeError, match="best"):
        check_pipeline_choice("E", 0, 1, dataset=folder, model=model, best=[0, 1])
    verdict = check_pipeline_choice("E", 0, 1, dataset=folder, model=model, best=(0, 2), max_batches=6)
    assert "best measured configuration" in capsys.readouterr().out and isinstance(bool(verdict), bool)


def test_decode_stacked_matches_stacking_every_decoded_image(digits_root):
    from helpers.ch04_data_pipeline.images import decode_all, decode_stacked

    folder = image_folder(digits_root)
    images = decode_stacked(folder)
    assert images.dtype == torch.uint8 and images.shape == (DIGIT_IMAGES, 3, 16, 16)
    assert torch.equal(images, torch.stack(decode_all(folder)))
