"""Tests of helpers/ch04_data_pipeline/: the digits on disk, the RAM caches, DataLoader measurements, exercises."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_pipeline_choice_check_measures_and_never_names_the_fastest(digits_root, capsys):
    from helpers.ch04_data_pipeline.exercises import check_pipeline_choice

    folder = image_folder(digits_root)
    model = small_cnn((4,), in_channels=3)
    measured = {"slow": [1.0, 1.0], "fast": [5.0, 5.0]}
    configurations = {"slow": (0, 2), "fast": (0, 1)}
    common = {"dataset": folder, "model": model, "measured": measured, "configurations": configurations,
              "timed_batches": 3, "rounds": 5}
    assert not check_pipeline_choice("E", 0, 1, ..., **common)
    assert "not answered yet" in capsys.readouterr().out
    assert not check_pipeline_choice("E", 0, 1, 500.0, **common)  # a pair whose rate is in the table
    assert "Choose a pair section 6 did not run" in capsys.readouterr().out
    check_pipeline_choice("E", 1, 1, 500.0, **common)  # a new pair, really trained beside the fastest
    out = capsys.readouterr().out
    assert "range of 5 rounds" in out and "you predicted 500" in out
    assert "against a threshold of at least 1x: " in out  # the comparison with the fastest is a claim with its verdict
    assert any(f"at least 1x: {verdict}." in out for verdict in ("holds", "does not hold here", "inconclusive"))
    assert "(0, 1)" not in out and "fast" not in out.replace("fastest", "")
    with pytest.raises(ValueError, match="num_workers"):
        check_pipeline_choice("E", -1, 1, 500.0, **common)
    with pytest.raises(ValueError, match="training_threads"):
        check_pipeline_choice("E", 0, 0, 500.0, **common)
    with pytest.raises(ValueError, match="predicted_rate"):
        check_pipeline_choice("E", 0, 1, -5.0, **common)
    with pytest.raises(ValueError, match="rounds"):
        check_pipeline_choice("E", 0, 1, 500.0, **{**common, "rounds": 3})
    with pytest.raises(ValueError, match="timed_batches"):
        check_pipeline_choice("E", 0, 1, 500.0, **{**common, "timed_batches": 0})
    with pytest.raises(ValueError, match="tolerance"):
        check_pipeline_choice("E", 0, 1, 500.0, tolerance=0.0, **common)
    with pytest.raises(ValueError, match="no measured rates"):
        check_pipeline_choice("E", 0, 1, 500.0, **{**common, "measured": {"slow": [1.0]}})
    with pytest.raises(TypeError, match="tuple"):
        check_pipeline_choice("E", 0, 1, 500.0, **{**common, "configurations": {"slow": [0, 2]}})


@pytest.mark.parametrize(("choice_rates", "prediction", "passes", "says"), [
    ([100.0] * 8, 110.0, True, "within 30%"),
    ([100.0] * 8, 200.0, False, "more than 30%"),
    ([70.0] * 7 + [120.0], 70.0, True, "within 30%"),  # slower than the fastest: graded on the prediction
])
def test_pipeline_choice_grades_the_prediction_and_reports_the_ratio(digits_root, monkeypatch, capsys,
                                                                     choice_rates, prediction, passes, says):
    import helpers.ch04_data_pipeline.exercises as exercises

    calls = []

    def fake_training(loaders, model, **kwargs):
        calls.append((dict(loaders), kwargs))
        return {"your choice": choice_rates, "fastest measured": [100.0] * 8}

    monkeypatch.setattr(exercises, "measure_training", fake_training)
    verdict = exercises.check_pipeline_choice(
        "E", 2, 1, prediction, dataset=image_folder(digits_root), model=small_cnn((4,), in_channels=3),
        measured={"row": [5.0]}, configurations={"row": (0, 2)})
    assert bool(verdict) is passes and says in capsys.readouterr().out
    _loaders, kwargs = calls[0]
    # two workers prefetch 4 batches, left off the clock: 16 are timed after them, in 8 rounds
    assert kwargs["max_batches"] == 4 + 16 and kwargs["rounds"] == 8


def test_pipeline_choice_refuses_more_workers_than_the_dataset_can_time(digits_root):
    from helpers.ch04_data_pipeline.exercises import check_pipeline_choice

    with pytest.raises(ValueError, match="choose fewer workers"):
        check_pipeline_choice("E", 16, 1, 100.0, dataset=image_folder(digits_root), model=small_cnn((4,), in_channels=3),
                              measured={"row": [5.0]}, configurations={"row": (0, 2)})


def test_throughput_check_never_prints_the_expected_value(capsys):
    assert not check_throughput_prediction("E", lambda loader_rate, step_rate, overlapped: loader_rate + step_rate)
    out = capsys.readouterr().out
    assert "faster than the slower stage" in out and "200" not in out  # 1/(1/1000 + 1/250) = 200
    assert not check_throughput_prediction("E", lambda loader_rate, step_rate, overlapped: min(loader_rate, step_rate))
    assert "one after the" in capsys.readouterr().out
    assert not check_throughput_prediction("E", lambda loader_rate, step_rate, overlapped: "fast")
    assert "must return a number" in capsys.readouterr().out
    with pytest.raises(TypeError, match="function"):
        check_throughput_prediction("E", 3)


def test_first_batch_table_has_one_column_per_epoch():
    from helpers.ch04_data_pipeline.loading import first_batch_table, measure_loaders

    dataset = TensorDataset(torch.arange(32), torch.arange(32))
    runs = measure_loaders({"a": make_loader(dataset, batch_size=4), "b": make_loader(dataset, batch_size=4)},
                           rounds=2, max_batches=3, epochs=2)
    assert all(len(t.first_batch_s) == 2 for t in runs["a"])
    table = first_batch_table(runs)
    assert list(table.index) == ["a", "b"]
    assert list(table.columns) == ["first batch, epoch 1 (ms)", "first batch, epoch 2 (ms)"]
    with pytest.raises(ValueError, match="non-empty"):
        first_batch_table({})


def test_held_batch_loader_repeats_one_batch():
    from helpers.ch04_data_pipeline.loading import HeldBatch, held_batch_loader

    dataset = TensorDataset(torch.arange(40).float().view(10, 4), torch.arange(10))
    batches = list(held_batch_loader(dataset, batch_size=5, batches=3))
    assert len(batches) == 3 and all(torch.equal(b[0], batches[0][0]) for b in batches)
    assert batches[0][0].shape == (5, 4)
    with pytest.raises(ValueError, match="count"):
        HeldBatch((torch.zeros(1), torch.zeros(1)), 0)
    with pytest.raises(TypeError, match="pair"):
        HeldBatch(torch.zeros(1), 2)
    with pytest.raises(IndexError):
        HeldBatch((torch.zeros(1), torch.zeros(1)), 2)[2]


def test_measure_training_times_loader_only_rows_without_training(digits_root):
    from helpers.ch04_data_pipeline.loading import held_batch_loader

    folder = image_folder(digits_root)
    model = small_cnn((4,), in_channels=3)
    loaders = {"train": make_loader(folder), "alone": make_loader(folder),
               "step": held_batch_loader(folder, batches=4)}
    before = [p.detach().clone() for p in model.parameters()]
    rates = measure_training({"alone": loaders["alone"]}, model, rounds=1, max_batches=3, loader_only=["alone"])
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # no step ran
    rates = measure_training(loaders, model, rounds=1, max_batches=4, loader_only=["alone"])
    assert set(rates) == set(loaders) and all(r[0] > 0 for r in rates.values())
    with pytest.raises(ValueError, match="loader_only"):
        measure_training(loaders, model, rounds=1, max_batches=4, loader_only=["missing"])
    with pytest.raises(ValueError, match="loader_only"):
        measure_training(loaders, model, rounds=1, max_batches=4, loader_only="alone")


def test_time_data_wait_splits_the_loop(digits_root):
    import time

    from helpers.ch04_data_pipeline.loading import time_data_wait

    loader = make_loader(TensorDataset(torch.zeros(40, 2), torch.zeros(40)), batch_size=4)
    wait = time_data_wait(loader, lambda inputs, targets: time.sleep(0.01), max_batches=6)
    assert wait.batches == 5 and wait.step_s >= 0.05 and 0 <= wait.wait_share < 0.5
    with pytest.raises(ValueError, match="more than 1 batches"):
        time_data_wait(loader, lambda inputs, targets: None, max_batches=1)


def test_per_image_transform_draws_per_image():
    from helpers.ch04_data_pipeline.images import PerImage

    torch.manual_seed(0)
    images = torch.arange(4 * 1 * 8 * 8, dtype=torch.uint8).view(4, 1, 8, 8)
    same = images[:1].repeat(16, 1, 1, 1)
    cropped = PerImage(v2.RandomCrop(4))(same)
    assert cropped.shape == (16, 1, 4, 4)
    assert len({c.numpy().tobytes() for c in cropped}) > 1  # one draw per image, not one per batch
    with pytest.raises(ValueError, match="batch"):
        PerImage(v2.RandomCrop(4))(images[0])
    with pytest.raises(TypeError, match="callable"):
        PerImage(3)


@pytest.mark.skipif(not hasattr(__import__("os"), "posix_fadvise"), reason="eviction needs os.posix_fadvise (Linux)")
def test_time_cache_loads_times_cold_and_warm(tmp_path):
    from helpers.ch04_data_pipeline.images import time_cache_loads

    cache_file = tmp_path / "cache.pt"
    torch.save({"images": torch.ones(4, 3, 8, 8, dtype=torch.uint8), "labels": torch.arange(4)}, cache_file)
    seconds = time_cache_loads(cache_file, rounds=2)
    assert set(seconds) == {"cold", "warm"} and all(len(v) == 2 and min(v) > 0 for v in seconds.values())
    with pytest.raises(ValueError, match="not a file"):
        time_cache_loads(tmp_path / "missing.pt")


@pytest.mark.parametrize("num_workers", [0, 2])
def test_shard_images_serve_every_image_once_per_epoch(digits_root, tmp_path, num_workers):
    from helpers.ch04_data_pipeline.images import ShardImages

    folder = image_folder(digits_root)
    paths = [Path(path) for path, _ in folder.samples[:200]]
    labels = folder.targets[:200]
    shard, _ = write_shard(paths, tmp_path / "part.shard")
    dataset = ShardImages(shard, labels, block_size=16, buffer_size=32, return_index=True)
    loader = DataLoader(dataset, batch_size=16, num_workers=num_workers, generator=torch.Generator().manual_seed(0))
    orders = []
    for _epoch in range(2):
        served = [(int(i), int(label), image) for images, batch_labels, indexes in loader
                  for image, label, i in zip(images, batch_labels, indexes)]
        assert sorted(i for i, _, _ in served) == list(range(200))
        assert all(label == labels[i] for i, label, _ in served)
        orders.append([i for i, _, _ in served])
    assert orders[0] != orders[1] and orders[0] != list(range(200))  # a new order each epoch, not the shard's
    index, _, image = served[0]
    assert torch.equal(image, folder[index][0])  # the shard's bytes decode to the file's image
    with pytest.raises(ValueError, match="one entry per image"):
        ShardImages(shard, labels[:-1])
    with pytest.raises(ValueError, match="write_shard"):
        ShardImages(tmp_path / "missing.shard", labels)


def test_compare_pinned_epochs_needs_a_gpu():
    from helpers.ch04_data_pipeline.gpu import PINNING_VARIANTS, compare_pinned_epochs

    assert len(PINNING_VARIANTS) == 4
    dataset = TensorDataset(torch.zeros(8, 3, 4, 4, dtype=torch.uint8), torch.zeros(8))
    with pytest.raises(ValueError, match="num_workers"):
        compare_pinned_epochs(dataset, num_workers=0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="needs a CUDA GPU"):
            compare_pinned_epochs(dataset)


def test_decode_stacked_matches_stacking_every_decoded_image(digits_root):
    from helpers.ch04_data_pipeline.images import decode_all, decode_stacked

    folder = image_folder(digits_root)
    images = decode_stacked(folder)
    assert images.dtype == torch.uint8 and images.shape == (DIGIT_IMAGES, 3, 16, 16)
    assert torch.equal(images, torch.stack(decode_all(folder)))


def test_gpu_helpers_validate_and_size_the_step():
    from helpers.ch03_hardware.gpu import median_call_ms
    from helpers.ch04_data_pipeline.gpu import loader_ms_per_batch, step_products

    assert step_products(7.5, 1.0) == 8 and step_products(0.1, 1.0) == 1  # at least the target, at least one
    with pytest.raises(ValueError, match="target_ms"):
        step_products(0.0, 1.0)
    with pytest.raises(ValueError, match="one_product_ms"):
        step_products(1.0, -1.0)
    with pytest.raises(TypeError, match="fn"):
        median_call_ms("not a function")
    with pytest.raises(ValueError, match="calls"):
        median_call_ms(lambda: None, calls=0)
    loader = DataLoader(TensorDataset(torch.zeros(8, 2), torch.zeros(8)), batch_size=4)
    assert loader_ms_per_batch(loader) > 0
    with pytest.raises(TypeError, match="loader"):
        loader_ms_per_batch([1, 2])
    with pytest.raises(ValueError, match="epochs"):
        loader_ms_per_batch(loader, epochs=0)


def test_chapter_4_uses_chapter_3s_gpu_work_and_timer():
    import helpers.ch03_hardware.gpu as chapter3
    import helpers.ch04_data_pipeline.gpu as chapter4

    assert chapter4.matmul_work is chapter3.matmul_work and chapter4.median_call_ms is chapter3.median_call_ms
