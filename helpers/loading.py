"""DataLoader settings checked up front, and measurements of a loading pipeline: start-up, throughput, memory."""

from __future__ import annotations

import gc
import statistics
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import islice

import pandas as pd
import psutil
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from .claims import Ratio, paired_ratio
from .measure import measure_latency
from .precision import amp_train_step, make_grad_scaler
from .validate import require_instance, require_int


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    prefetch_factor: int = 2,
    start_method: str | None = None,
    worker_init_fn: Callable[[int], None] | None = None,
) -> DataLoader:
    """A shuffling DataLoader whose settings are checked with messages that say what is allowed."""
    require_instance("dataset", dataset, Dataset)
    require_int("batch_size", batch_size, minimum=1)
    require_int("num_workers", num_workers, minimum=0)
    require_int("prefetch_factor", prefetch_factor, minimum=1)
    if pin_memory and not torch.accelerator.is_available():
        raise ValueError("pin_memory only helps when batches are copied to a GPU, and this machine has none")
    workers = {}
    if num_workers > 0:
        workers = {"persistent_workers": persistent_workers, "prefetch_factor": prefetch_factor,
                   "multiprocessing_context": start_method, "worker_init_fn": worker_init_fn}
    with warnings.catch_warnings():
        # DataLoader warns about too many workers here and again when iterated: measure_loader records the latter
        warnings.filterwarnings("ignore", message="This DataLoader will create")
        return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers, pin_memory=pin_memory,
                          generator=torch.Generator().manual_seed(0), **workers)


@dataclass(frozen=True)
class LoaderTiming:
    """How a loader performed over some epochs: time to the first batch of each, and steady throughput."""

    first_batch_s: tuple[float, ...]
    images_per_s: float
    images: int
    warnings: tuple[str, ...] = ()


def _epoch(loader: DataLoader, max_batches: int | None) -> tuple[float, float, int]:
    """(seconds to first batch, seconds for the remaining batches, images in the remaining batches)."""
    start = time.perf_counter()
    first_at, images = None, 0
    for inputs, _targets in islice(loader, max_batches):
        if first_at is None:
            first_at = time.perf_counter()
        else:
            images += len(inputs)
    return first_at - start, time.perf_counter() - first_at, images


def measure_loader(loader: DataLoader, *, epochs: int = 1, max_batches: int | None = None) -> LoaderTiming:
    """Iterate the loader for some epochs; throughput counts the batches after each epoch's first one."""
    require_instance("loader", loader, DataLoader)
    require_int("epochs", epochs, minimum=1)
    if max_batches is not None:
        require_int("max_batches", max_batches, minimum=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = [_epoch(loader, max_batches) for _ in range(epochs)]
    if sum(images for _, _, images in runs) == 0:
        raise ValueError("the loader must yield at least two batches per epoch to measure throughput")
    return LoaderTiming(first_batch_s=tuple(first for first, _, _ in runs),
                        images_per_s=sum(n for _, _, n in runs) / sum(s for _, s, _ in runs),
                        images=sum(n for _, _, n in runs),
                        warnings=tuple(dict.fromkeys(str(w.message) for w in caught)))


def measure_loaders(loaders: Mapping[str, DataLoader], *, rounds: int = 2,
                    max_batches: int | None = None) -> dict[str, list[LoaderTiming]]:
    """One epoch of each loader per round, the loaders alternating; every round's timing of each loader."""
    if not isinstance(loaders, Mapping) or not loaders:
        raise ValueError("loaders must be a non-empty mapping of name -> DataLoader")
    require_int("rounds", rounds, minimum=1)
    timings: dict[str, list[LoaderTiming]] = {name: [] for name in loaders}
    for _ in range(rounds):
        for name, loader in loaders.items():
            timings[name].append(measure_loader(loader, max_batches=max_batches))
    return timings


def loader_table(timings: Mapping[str, list[LoaderTiming]]) -> pd.DataFrame:
    """Median images/s and time to the first batch of each loader over its rounds, and any warnings."""
    rows = [{"loader": name, "images_per_s": statistics.median(t.images_per_s for t in runs),
             "first_batch_ms": statistics.median(t.first_batch_s[0] for t in runs) * 1e3,
             "warnings": " ".join(dict.fromkeys(w for t in runs for w in t.warnings))}
            for name, runs in timings.items()]
    return pd.DataFrame(rows).set_index("loader")


def loader_ratio(timings: Mapping[str, list[LoaderTiming]], baseline: object, optimized: object) -> Ratio:
    """Throughput ratio (optimized / baseline images/s) of two loaders over the rounds they shared, with its interval."""
    for name in (baseline, optimized):
        if name not in timings:
            raise ValueError(f"{name!r} is not one of the measured loaders: {', '.join(map(str, timings))}")
    return paired_ratio([t.images_per_s for t in timings[baseline]], [t.images_per_s for t in timings[optimized]],
                        higher_is_better=True)


def normalize_batch(images: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] to floats in [-1, 1], once per batch (cheaper than once per image in the workers)."""
    return images.float().div_(127.5).sub_(1.0)


def training_throughput(loader: DataLoader, model: nn.Module, *, device: torch.device | str = "cpu",
                        max_batches: int | None = None) -> dict[str, float]:
    """Images/s of the loader alone, the training step alone (on one batch held in memory), and both together.

    The loader runs on the CPU; the model trains on device, each batch copied there as it arrives.
    """
    require_instance("loader", loader, DataLoader)
    require_instance("model", model, nn.Module)
    device = torch.device(device)
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = make_grad_scaler("fp32", device)

    def train_step(inputs: torch.Tensor, targets: torch.Tensor) -> None:
        batch = normalize_batch(inputs.to(device, non_blocking=True))
        amp_train_step(model, batch, targets.to(device, non_blocking=True), optimizer, scaler, "fp32")

    # One batch straight from the dataset: starting the loader's workers here would leave them decoding
    # beside the timed steps.
    inputs, targets = default_collate([loader.dataset[i] for i in range(loader.batch_size)])
    step = measure_latency(lambda: train_step(inputs, targets), min_run_time=1.0)
    loading = measure_loader(loader, max_batches=max_batches).images_per_s
    start, images = None, 0
    for batch_inputs, batch_targets in islice(loader, max_batches):
        train_step(batch_inputs, batch_targets)  # amp_train_step's loss.item() waits for the device
        if start is None:  # like measure_loader: the clock starts after the first batch (workers started)
            start = time.perf_counter()
        else:
            images += len(batch_inputs)
    if not images:
        raise ValueError("training_throughput needs a loader (and max_batches) of at least 2 batches")
    return {"loader alone": loading, "training step alone": len(inputs) / step.median_s,
            "loader + training": images / (time.perf_counter() - start)}


def child_pids() -> set[int]:
    """PIDs of this process's children now (to tell which ones a loader starts later)."""
    return {child.pid for child in psutil.Process().children()}


def new_child_processes(before: set[int]) -> list[psutil.Process]:
    """Children of this process that were not among the PIDs in before: the workers a loader started."""
    return [child for child in psutil.Process().children() if child.pid not in before]


def collect_garbage(_worker_id: int) -> None:
    """A worker_init_fn that runs one full garbage collection, as a long-running worker eventually does."""
    gc.collect()


def worker_private_memory_bytes(dataset: Dataset, *, num_workers: int = 2, batch_size: int = 64,
                                run_gc: bool = False) -> int:
    """Private memory (USS) of forked DataLoader workers, summed, after each has served its share of one epoch.

    Forked workers start by sharing every page with the parent; a page becomes private to a worker
    when the worker writes to it, for example to update the reference count of a Python object, or
    when the garbage collector scans objects (run_gc=True makes each worker run one full collection).
    """
    require_int("num_workers", num_workers, minimum=1)
    before = child_pids()
    loader = make_loader(dataset, batch_size=batch_size, num_workers=num_workers, persistent_workers=True,
                         start_method="fork", worker_init_fn=collect_garbage if run_gc else None)
    for _ in loader:
        pass
    total = sum(worker.memory_full_info().uss for worker in new_child_processes(before))
    del loader
    return total
