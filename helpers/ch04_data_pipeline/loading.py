"""DataLoader settings checked up front, and measurements of a loading pipeline: start-up, throughput, memory."""

from __future__ import annotations

import gc
import multiprocessing
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
import itertools
from itertools import islice

import pandas as pd
import psutil
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from helpers.core.amp import amp_train_step, make_grad_scaler
from helpers.core.claims import Ratio, paired_ratio
from helpers.core.measure import measure_latency, synchronize, torch_threads
from helpers.core.rounds import round_order
from helpers.core.validate import require_instance, require_int


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
    collate_fn: Callable[[list], object] | None = None,
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
        # DataLoader warns about more workers than cores twice: here, when it is built, and again each time it
        # is iterated. Silence the first; measure_loader records the second with the measurement it concerns.
        warnings.filterwarnings("ignore", message="This DataLoader will create")
        return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers, pin_memory=pin_memory,
                          generator=torch.Generator().manual_seed(0), collate_fn=collate_fn, **workers)


@dataclass(frozen=True)
class LoaderTiming:
    """How a loader performed over some epochs: time to the first batch of each, and steady throughput."""

    first_batch_s: tuple[float, ...]
    images_per_s: float
    images: int
    warnings: tuple[str, ...] = ()


def prefetched_batches(loader: DataLoader) -> int:
    """Batches a loader's workers may have ready before the first one arrives: num_workers * prefetch_factor.

    They are produced while the main process waits for the first batch, so a clock started at the first
    batch would count them as free. At least 1 (with num_workers=0 the first batch is the start-up one).
    """
    require_instance("loader", loader, DataLoader)
    return max(1, loader.num_workers * (loader.prefetch_factor or 0))


def _epoch(loader: DataLoader, max_batches: int | None, skip: int) -> tuple[float, float, int]:
    """(seconds to first batch, seconds for the batches after the first `skip`, images in those batches)."""
    start = time.perf_counter()
    first_at = clock_at = None
    images = 0
    for index, (inputs, _targets) in enumerate(islice(loader, max_batches)):
        if first_at is None:
            first_at = time.perf_counter()
        if index == skip - 1:
            clock_at = time.perf_counter()
        elif index >= skip:
            images += len(inputs)
    if clock_at is None:
        clock_at = time.perf_counter()
    return first_at - start, time.perf_counter() - clock_at, images


def measure_loader(loader: DataLoader, *, epochs: int = 1, max_batches: int | None = None,
                   skip_batches: int | None = None) -> LoaderTiming:
    """Iterate the loader for some epochs; throughput counts the batches after each epoch's first skip_batches.

    skip_batches defaults to prefetched_batches(loader): the batches the workers prepared while the
    main process waited for the first one are left off the clock. Pass the same value to loaders you
    compare (measure_loaders does), so that every loader is timed over the same batches.
    """
    require_instance("loader", loader, DataLoader)
    require_int("epochs", epochs, minimum=1)
    skip = prefetched_batches(loader) if skip_batches is None else require_int("skip_batches", skip_batches,
                                                                               minimum=1)
    if max_batches is not None:
        require_int("max_batches", max_batches, minimum=2)
        if max_batches <= skip:
            raise ValueError(f"max_batches must be more than the {skip} batches left off the clock, got {max_batches}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = [_epoch(loader, max_batches, skip) for _ in range(epochs)]
    if sum(images for _, _, images in runs) == 0:
        raise ValueError(f"the loader must yield more than {skip} batches per epoch to measure throughput (at "
                         "least two batches)")
    return LoaderTiming(first_batch_s=tuple(first for first, _, _ in runs),
                        images_per_s=sum(n for _, _, n in runs) / sum(s for _, s, _ in runs),
                        images=sum(n for _, _, n in runs),
                        warnings=tuple(dict.fromkeys(str(w.message) for w in caught)))


def measure_loaders(loaders: Mapping[str, DataLoader], *, rounds: int = 2, max_batches: int | None = None,
                    epochs: int = 1) -> dict[str, list[LoaderTiming]]:
    """`epochs` epochs of each loader per round, the loaders alternating; every round's timing of each loader.

    Every loader is timed over the same batches: those after the largest prefetched_batches() of the
    loaders (so workers' head start counts for no loader, num_workers=0 included).
    """
    if not isinstance(loaders, Mapping) or not loaders:
        raise ValueError("loaders must be a non-empty mapping of name -> DataLoader")
    require_int("rounds", rounds, minimum=1)
    skip = max(prefetched_batches(loader) for loader in loaders.values())
    timings: dict[str, list[LoaderTiming]] = {name: [] for name in loaders}
    for round_index in range(rounds):
        for name in round_order(loaders, round_index):
            timings[name].append(measure_loader(loaders[name], epochs=epochs, max_batches=max_batches,
                                                skip_batches=skip))
    return timings


def loader_table(timings: Mapping[str, list[LoaderTiming]]) -> pd.DataFrame:
    """Median images/s and time to the first batch of each loader over its rounds, and any warnings."""
    rows = [{"loader": name, "images_per_s": statistics.median(t.images_per_s for t in runs),
             "first_batch_ms": statistics.median(t.first_batch_s[0] for t in runs) * 1e3,
             "warnings": " ".join(dict.fromkeys(w for t in runs for w in t.warnings))}
            for name, runs in timings.items()]
    return pd.DataFrame(rows).set_index("loader")


def first_batch_table(timings: Mapping[str, list[LoaderTiming]]) -> pd.DataFrame:
    """Median time to the first batch of each epoch (ms), one column per epoch, one row per loader."""
    if not isinstance(timings, Mapping) or not timings:
        raise ValueError("timings must be a non-empty mapping of name -> list of LoaderTiming")
    rows = {}
    for name, runs in timings.items():
        if not runs:
            raise ValueError(f"loader {name!r} has no measured rounds")
        epochs = min(len(t.first_batch_s) for t in runs)
        rows[name] = {f"first batch, epoch {e + 1} (ms)": statistics.median(t.first_batch_s[e] for t in runs) * 1e3
                      for e in range(epochs)}
    return pd.DataFrame(rows).T


def loader_ratio(timings: Mapping[str, list[LoaderTiming]], baseline: object, optimized: object) -> Ratio:
    """Throughput ratio (optimized / baseline images/s) of two loaders over the rounds they shared, with its interval."""
    for name in (baseline, optimized):
        if name not in timings:
            raise ValueError(f"{name!r} is not one of the measured loaders: {', '.join(map(str, timings))}")
    return paired_ratio([t.images_per_s for t in timings[baseline]], [t.images_per_s for t in timings[optimized]],
                        higher_is_better=True)


def normalize_batch(images: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] to floats in [-1, 1], once per batch (the loader moves uint8: 4x fewer bytes)."""
    return images.float().div_(127.5).sub_(1.0)


TrainStep = Callable[[torch.Tensor, torch.Tensor], None]


def make_train_step(model: nn.Module, device: torch.device) -> TrainStep:
    """One SGD step of model on a uint8 batch: copy to device, normalise once per batch, forward, backward, update."""
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = make_grad_scaler("fp32", device)

    def train_step(inputs: torch.Tensor, targets: torch.Tensor) -> None:
        batch = normalize_batch(inputs.to(device, non_blocking=True))
        amp_train_step(model, batch, targets.to(device, non_blocking=True), optimizer, scaler, "fp32")

    return train_step


def train_images_per_s(loader: DataLoader, train_step: TrainStep, max_batches: int | None = None,
                       skip_batches: int | None = None) -> float:
    """Images/s of loading and training together, timed after the first skip_batches (default
    prefetched_batches(loader)): the workers' start-up and head start are left off the clock."""
    skip = prefetched_batches(loader) if skip_batches is None else require_int("skip_batches", skip_batches,
                                                                               minimum=1)
    start, images = None, 0
    for index, (inputs, targets) in enumerate(islice(loader, max_batches)):
        train_step(inputs, targets)
        if index == skip - 1:
            synchronize()  # the skipped steps' queued device work is not part of the timed stretch
            start = time.perf_counter()
        elif index >= skip:
            images += len(inputs)
    if not images:
        raise ValueError(f"training needs a loader (and max_batches) of more than {skip} batches (at least 2 "
                         "batches) to measure throughput")
    synchronize()  # wait for the device to finish the last steps before reading the clock
    return images / (time.perf_counter() - start)


def training_throughput(loader: DataLoader, model: nn.Module, *, device: torch.device | str = "cpu",
                        max_batches: int | None = None) -> dict[str, float]:
    """Images/s of the loader alone, the training step alone (on one batch held in memory), and both together.

    The loader runs on the CPU; the model trains on device, each batch copied there as it arrives.
    """
    require_instance("loader", loader, DataLoader)
    require_instance("model", model, nn.Module)
    train_step = make_train_step(model, torch.device(device))
    # One batch straight from the dataset: starting the loader's workers here would leave them decoding
    # beside the timed steps.
    inputs, targets = default_collate([loader.dataset[i] for i in range(loader.batch_size)])
    step = measure_latency(lambda: train_step(inputs, targets), min_run_time=0.5)
    skip = prefetched_batches(loader)
    loading = measure_loader(loader, max_batches=max_batches, skip_batches=skip).images_per_s
    return {"loader alone": loading, "training step alone": len(inputs) / step.median_s,
            "loader + training": train_images_per_s(loader, train_step, max_batches, skip)}


def _no_step(_inputs: torch.Tensor, _targets: torch.Tensor) -> None:
    """The training step of a loader-only row: nothing."""


def measure_training(loaders: Mapping[str, DataLoader], model: nn.Module, *, device: torch.device | str = "cpu",
                     rounds: int = 3, max_batches: int | None = None,
                     num_threads: Mapping[str, int] | None = None,
                     loader_only: Collection[str] = ()) -> dict[str, list[float]]:
    """End-to-end images/s (loading and training) of each loader per round, the loaders alternating.

    All loaders train the same model (its weights keep changing; the work per step does not). The
    main process trains on torch's current thread count, or on num_threads[name] for the loaders named there.
    The loaders named in loader_only are iterated without training (the loader alone, in the same rounds);
    a held_batch_loader() row gives the training step alone. Every loader is timed over the same batches,
    after the largest prefetched_batches() of the loaders.
    """
    if not isinstance(loaders, Mapping) or not loaders:
        raise ValueError("loaders must be a non-empty mapping of name -> DataLoader")
    for name, loader in loaders.items():
        require_instance(f"loaders[{name!r}]", loader, DataLoader)
    require_instance("model", model, nn.Module)
    require_int("rounds", rounds, minimum=1)
    threads = {name: torch.get_num_threads() for name in loaders}
    for name, count in (num_threads or {}).items():
        if name not in loaders:
            raise ValueError(f"num_threads names {name!r}, which is not one of the loaders: {', '.join(loaders)}")
        threads[name] = require_int(f"num_threads[{name!r}]", count, minimum=1)
    if isinstance(loader_only, str) or not all(name in loaders for name in loader_only):
        raise ValueError(f"loader_only must be a collection of loader names among: {', '.join(loaders)}; got "
                         f"{loader_only!r}")
    train_step = make_train_step(model, torch.device(device))
    skip = max(prefetched_batches(loader) for loader in loaders.values())  # the same timed batches for all
    rates: dict[str, list[float]] = {name: [] for name in loaders}
    for round_index in range(rounds):
        for name in round_order(loaders, round_index):
            step = _no_step if name in loader_only else train_step
            with torch_threads(threads[name]):
                rates[name].append(train_images_per_s(loaders[name], step, max_batches, skip))
    return rates


class HeldBatch(Dataset):
    """The same batch, count times: a loader that costs (almost) nothing, to time the training step alone."""

    def __init__(self, batch: tuple[torch.Tensor, torch.Tensor], count: int) -> None:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise TypeError(f"batch must be an (inputs, targets) pair, got {type(batch).__name__}")
        self.batch, self.count = tuple(batch), require_int("count", count, minimum=1)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.count:
            raise IndexError(f"index {index} out of range for {self.count} batches")
        return self.batch


def held_batch_loader(dataset: Dataset, *, batch_size: int = 64, batches: int = 20) -> DataLoader:
    """A loader that yields one batch of the dataset (collated once, held in memory) `batches` times."""
    require_instance("dataset", dataset, Dataset)
    require_int("batch_size", batch_size, minimum=1)
    batch = default_collate([dataset[i] for i in range(batch_size)])
    return DataLoader(HeldBatch(batch, batches), batch_size=None)


@dataclass(frozen=True)
class DataWait:
    """A training loop's time split in two: waiting for the next batch, and the training step."""

    wait_s: float
    step_s: float
    batches: int

    @property
    def wait_share(self) -> float:
        """The part of the loop's time spent waiting for data (0 to 1)."""
        return self.wait_s / (self.wait_s + self.step_s)


def time_data_wait(loader: DataLoader, train_step: TrainStep, *, max_batches: int | None = None,
                   skip_batches: int | None = None) -> DataWait:
    """Time the two phases of a training loop: next(batches), the data wait, and the step (synchronised).

    The first skip_batches (default prefetched_batches(loader)) are left off the clock. On a GPU the
    synchronisation after each step is what makes its time readable; it costs the overlap of queued
    GPU work with the next wait, acceptable in a diagnostic run.
    """
    require_instance("loader", loader, DataLoader)
    skip = prefetched_batches(loader) if skip_batches is None else require_int("skip_batches", skip_batches,
                                                                               minimum=1)
    wait_s = step_s = 0.0
    timed = 0
    batches = iter(islice(loader, max_batches))
    for index in itertools.count():
        start = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            break
        got_at = time.perf_counter()
        train_step(*batch)
        synchronize()
        if index >= skip:
            wait_s, step_s, timed = wait_s + got_at - start, step_s + time.perf_counter() - got_at, timed + 1
    if not timed:
        raise ValueError(f"the loader (and max_batches) must yield more than {skip} batches to time the data wait")
    return DataWait(wait_s, step_s, timed)


def child_pids() -> set[int]:
    """PIDs of this process's descendants now (to tell which ones a loader starts later)."""
    return {child.pid for child in psutil.Process().children(recursive=True)}


def new_child_processes(before: set[int]) -> list[psutil.Process]:
    """Descendants of this process that were not among the PIDs in before: the workers a loader started
    (and, under forkserver, the server process that forks them, the first time one is needed)."""
    return [child for child in psutil.Process().children(recursive=True) if child.pid not in before]


class WorkerPids(Dataset):
    """length items, each the PID of the process that produced it: a batch says which worker made it."""

    def __init__(self, length: int) -> None:
        self.length = require_int("length", length, minimum=1)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> int:
        return os.getpid()


def start_method(loader: DataLoader) -> str:
    """The start method the loader's workers use: its multiprocessing_context, else Python's default."""
    require_instance("loader", loader, DataLoader)
    context = loader.multiprocessing_context
    return context.get_start_method() if context is not None else multiprocessing.get_start_method()


def collect_garbage(_worker_id: int) -> None:
    """A worker_init_fn that runs one full collection: the worst case, which a real worker may reach late or never."""
    gc.collect()


def worker_private_memory_bytes(dataset: Dataset, *, num_workers: int = 2, batch_size: int = 64,
                                run_gc: bool = False) -> int:
    """Private memory (USS) of forked DataLoader workers, summed, after each has served its share of one epoch.

    Forked workers start by sharing every page with the parent; a page becomes private to a worker
    when the worker writes to it, for example to update the reference count of a Python object, or
    when the garbage collector scans objects (run_gc=True makes each worker run one full collection).
    """
    require_int("num_workers", num_workers, minimum=1)
    if "fork" not in multiprocessing.get_all_start_methods():
        raise RuntimeError(f"copy-on-write needs workers started with fork, which {sys.platform} does not offer")
    before = child_pids()
    loader = make_loader(dataset, batch_size=batch_size, num_workers=num_workers, persistent_workers=True,
                         start_method="fork", worker_init_fn=collect_garbage if run_gc else None)
    for _ in loader:
        pass
    workers = new_child_processes(before)
    total = sum(worker.memory_full_info().uss for worker in workers)
    del loader  # shuts the persistent workers down
    psutil.wait_procs(workers, timeout=10)  # gone before the caller starts the next ones
    return total
