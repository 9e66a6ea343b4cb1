"""Chapter 4's GPU-only measurement: what pinned memory buys a DataLoader that feeds a GPU step.

It reuses chapter 3's copy on a side stream beside compute (copy_beside_compute), its GPU work of a chosen
length (matmul_work) and its single-call GPU timer (median_call_ms).
"""

from __future__ import annotations

import math
import statistics
import time
from functools import partial

import torch
from torch.utils.data import DataLoader, Dataset, default_convert

from helpers.core.measure import Timing, measure_interleaved
from helpers.core.validate import require_instance, require_int, require_number
from helpers.ch03_hardware.gpu import copy_beside_compute, matmul_work, median_call_ms, require_cuda
from helpers.ch04_data_pipeline.loading import make_loader, normalize_batch

PINNING_VARIANTS = ("loader alone (pinned)", "pageable, blocking copy", "pinned, non_blocking copy",
                    "pinned, next batch copied beside the step")


def loader_ms_per_batch(loader: DataLoader, *, epochs: int = 3) -> float:
    """Median over `epochs` whole epochs of a loader alone (no GPU work), in ms per batch, after one untimed
    epoch (which starts persistent workers)."""
    require_instance("loader", loader, DataLoader)
    require_int("epochs", epochs, minimum=1)
    for _batch in loader:  # untimed: worker start-up belongs to no steady-state batch
        pass
    per_batch = []
    for _ in range(epochs):
        start, batches = time.perf_counter(), 0
        for _batch in loader:
            batches += 1
        if not batches:
            raise ValueError("the loader yielded no batch")
        per_batch.append((time.perf_counter() - start) * 1e3 / batches)
    return statistics.median(per_batch)


def step_products(target_ms: float, one_product_ms: float) -> int:
    """How many matrix products of one_product_ms make a step of at least target_ms (at least one)."""
    target_ms = require_number("target_ms", target_ms, strictly_positive=True)
    one_product_ms = require_number("one_product_ms", one_product_ms, strictly_positive=True)
    return max(1, math.ceil(target_ms / one_product_ms))


def compare_pinned_epochs(dataset: Dataset, *, batch_size: int = 256, num_workers: int = 2, rounds: int = 5,
                          min_run_time: float = 2.0, matrix_size: int = 1024,
                          step_margin: float = 1.5) -> tuple[dict[str, Timing], dict[str, float]]:
    """Whole epochs of a loader feeding a GPU step longer than both the loader's batch time and the copy.

    First the pinned loader alone is timed per batch (worker crossing and pin-memory thread included) and
    one batch's pageable copy; the step (a read of the batch, then matrix products) is sized to
    step_margin x the larger of the two, so that the loader is off the critical path and the copy is what
    the variants differ in. Its length is then timed directly. Variants, in alternating rounds
    (PINNING_VARIANTS): the pinned loader alone; pageable batches with a blocking copy (the GPU idles
    during each copy); pinned batches copied with non_blocking=True on the same stream (the host no longer
    waits; copy and step still take turns on the GPU); pinned batches with the next batch copied on a side
    stream while the step runs (chapter 3's copy_beside_compute). Persistent workers pay start-up once.
    Returns the timings (one call = one epoch) and the per-batch facts, all measured, in ms.
    """
    require_instance("dataset", dataset, Dataset)
    require_int("batch_size", batch_size, minimum=1)
    require_int("num_workers", num_workers, minimum=1)  # the pin-memory thread exists only with workers
    require_int("rounds", rounds, minimum=3)
    require_number("min_run_time", min_run_time, strictly_positive=True)
    require_int("matrix_size", matrix_size, minimum=64)
    require_number("step_margin", step_margin, minimum=1.0)
    device = require_cuda("comparing pinned and pageable loaders")
    loaders = {pin: make_loader(dataset, batch_size=batch_size, num_workers=num_workers, pin_memory=pin,
                                persistent_workers=True, collate_fn=default_convert) for pin in (False, True)}
    loader_ms = loader_ms_per_batch(loaders[True])
    pinned_batch = next(iter(loaders[True]))[0]
    pageable_batch = pinned_batch.clone()  # clone() allocates ordinary (pageable) host memory
    facts = {"batch (MB)": pinned_batch.numel() * pinned_batch.element_size() / 2**20,
             "loader alone, pinned (ms per batch)": loader_ms,
             "copy, pageable (ms)": median_call_ms(lambda: pageable_batch.to(device)),
             "copy, pinned (ms)": median_call_ms(lambda: pinned_batch.to(device, non_blocking=True))}
    a = torch.randn(matrix_size, matrix_size, device=device)
    target_ms = step_margin * max(loader_ms, facts["copy, pageable (ms)"])
    products = step_products(target_ms, median_call_ms(lambda: a @ a))
    matmuls = matmul_work(a, products)

    def step(batch: torch.Tensor) -> None:
        normalize_batch(batch).sum()  # the step reads the batch, so it must wait for the batch's copy
        matmuls()

    on_gpu = pinned_batch.to(device)
    facts["GPU step (ms)"] = median_call_ms(lambda: step(on_gpu))  # timed directly, not estimated
    facts["matrix products per step"] = float(products)
    side = torch.cuda.Stream()

    def loader_alone() -> None:
        for _inputs, _targets in loaders[True]:
            pass

    def pageable_epoch() -> None:
        for inputs, _targets in loaders[False]:
            step(inputs.to(device))  # blocking: returns when the copy (and the work queued before it) is done

    def pinned_epoch() -> None:
        for inputs, _targets in loaders[True]:
            step(inputs.to(device, non_blocking=True))  # returns at once; the copy waits its turn on the stream

    def prefetch_epoch() -> None:
        batches = iter(loaders[True])
        current = next(batches)[0].to(device, non_blocking=True)
        for inputs, _targets in batches:
            # copy this batch on the side stream while the step runs on the one before
            current, _ = copy_beside_compute(inputs, partial(step, current), side)()
        step(current)

    epochs = dict(zip(PINNING_VARIANTS, (loader_alone, pageable_epoch, pinned_epoch, prefetch_epoch)))
    timings = measure_interleaved(epochs, rounds=rounds, min_run_time=min_run_time, warmup=1)
    return timings, facts
