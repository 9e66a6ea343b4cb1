"""A real image dataset on disk (the digits as JPEG files), read with torchvision's ImageFolder, and RAM caches.

The cache Datasets live here, not in a notebook, so that DataLoader worker processes can import them
under every start method (spawn and forkserver re-import the Dataset's module in each worker).
Images are decoded with Pillow, ImageFolder's default loader (torchvision.io's decoders are deprecated
since torchvision 0.29 in favour of TorchCodec).
"""

from __future__ import annotations

import io
import json
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from sklearn.datasets import load_digits
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2
from torchvision.transforms.v2.functional import pil_to_tensor

from helpers.core.rounds import round_order
from helpers.core.validate import require_int
from helpers.workload.data import upsample
from helpers.support.course_folder import course_folder

CACHE_ENV = "COURSE_CACHE"
Transform = Callable[[torch.Tensor], torch.Tensor]


def cache_root() -> Path:
    """$COURSE_CACHE if set, else .cache/ at the course root (the folder with book.toml), else ~/.cache."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    folder = course_folder()
    return folder / ".cache" if folder else Path.home() / ".cache" / "dl-perf-course"


def _tinted(gray: torch.Tensor, label: int, generator: torch.Generator) -> torch.Tensor:
    """An RGB uint8 image: the digit in a colour of its class on a textured background, as a photo would vary."""
    colour = torch.tensor([(label * 37) % 256, (label * 91) % 256, (label * 151) % 256], dtype=torch.float32)
    noise = torch.rand(3, *gray.shape[-2:], generator=generator) * 60
    rgb = gray * (255 - noise) * 0.5 + (1 - gray) * noise + gray * colour.view(3, 1, 1) * 0.5
    return rgb.clamp(0, 255).to(torch.uint8)


def write_digit_images(root: Path | None = None, *, size: int = 96, copies: int = 2, seed: int = 0) -> tuple[Path, bool]:
    """Write the digits as JPEG files in ImageFolder layout (root/<class>/<n>.jpg), once.

    Returns (root, written): written is False when a complete dataset with the same settings was
    already there, so re-running a chapter never regenerates it.
    """
    require_int("size", size, minimum=16)
    require_int("copies", copies, minimum=1)
    root = Path(root) if root is not None else cache_root() / f"digits-jpeg-{size}px-x{copies}"
    settings = {"size": size, "copies": copies, "seed": seed}
    marker = root / "complete.json"
    if marker.exists() and json.loads(marker.read_text()).get("settings") == settings:
        return root, False
    digits = load_digits()
    images = upsample(torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0, size)
    generator = torch.Generator().manual_seed(seed)
    count = 0
    for index, (gray, label) in enumerate(zip(images, digits.target.tolist())):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        for copy_index in range(copies):
            pixels = _tinted(gray, label, generator).permute(1, 2, 0).numpy()
            Image.fromarray(pixels).save(root / str(label) / f"{index:05d}_{copy_index}.jpg", quality=90)
            count += 1
    marker.write_text(json.dumps({"settings": settings, "files": count}))
    return root, True


def image_folder(root: Path, transform: Transform | None = None) -> ImageFolder:
    """torchvision's ImageFolder over root: each image decoded to a uint8 (3, H, W) tensor, then transformed."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder; create the dataset with write_digit_images() first")
    steps = [v2.PILToTensor()] + ([transform] if transform is not None else [])
    return ImageFolder(str(root), transform=v2.Compose(steps))


def decode_all(folder: ImageFolder) -> list[torch.Tensor]:
    """Every image of the folder decoded once, untransformed, as uint8 (3, H, W) tensors."""
    return [pil_to_tensor(folder.loader(path)) for path, _ in folder.samples]


def decode_stacked(folder: ImageFolder) -> torch.Tensor:
    """Every image of the folder decoded once, untransformed, into ONE uint8 (N, 3, H, W) tensor.

    Each image is written into a tensor allocated up front, so decoding never holds a list of
    per-image tensors beside the stacked copy (half the peak memory of torch.stack(decode_all(folder))).
    """
    if not folder.samples:
        raise ValueError("the folder holds no images")
    first = pil_to_tensor(folder.loader(folder.samples[0][0]))
    images = torch.empty((len(folder.samples), *first.shape), dtype=torch.uint8)
    for index, (path, _) in enumerate(folder.samples):
        image = first if index == 0 else pil_to_tensor(folder.loader(path))
        if image.shape != first.shape:
            raise ValueError(f"every image must have the shape of the first, {tuple(first.shape)}; {path} has "
                             f"{tuple(image.shape)}")
        images[index] = image
    return images


class DecodedCache(Dataset):
    """Every image decoded once into ONE contiguous uint8 tensor; random augmentation still runs per item."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor,
                 transform: Transform | None = None) -> None:
        if images.ndim != 4 or images.dtype != torch.uint8 or len(images) != len(labels):
            raise ValueError("images must be a uint8 (N, C, H, W) tensor with one label per image")
        self.images, self.labels, self.transform = images, labels, transform

    @classmethod
    def decode(cls, folder: ImageFolder, transform: Transform | None = None) -> DecodedCache:
        """Decode every image of the folder once, untransformed, into one tensor."""
        return cls(decode_stacked(folder), torch.tensor(folder.targets), transform)

    @property
    def nbytes(self) -> int:
        """RAM held by the cache."""
        return self.images.numel() * self.images.element_size() + self.labels.numel() * self.labels.element_size()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        return (self.transform(image) if self.transform else image), self.labels[index]


class BatchedCache(DecodedCache):
    """A DecodedCache that serves a whole batch with one indexing operation and transforms it in one call.

    DataLoader calls __getitems__(indices) when a Dataset defines it, instead of one __getitem__ per
    index; pair it with collate_fn=default_convert, since the batch is already stacked. A random
    transform applied to the batch draws its random parameters once per batch, not once per image.
    """

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices)
        images = self.images.index_select(0, index)  # a row copy each; images[indices] gathers element-wise
        return (self.transform(images) if self.transform else images), self.labels.index_select(0, index)


class ObjectListCache(Dataset):
    """The article's MemoryDataset: a list with one object per image, returned unchanged (no augmentation)."""

    def __init__(self, data: Sequence[object], targets: Sequence[int]) -> None:
        if len(data) != len(targets):
            raise ValueError(f"data and targets must have the same length, got {len(data)} and {len(targets)}")
        self.data, self.targets = list(data), list(targets)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[object, int]:
        return self.data[index], self.targets[index]


def file_index(count: int, *, classes: int = 10) -> tuple[list[str], list[int]]:
    """Paths and labels of a large image dataset (count distinct path strings), as a training script lists."""
    require_int("count", count, minimum=1)
    require_int("classes", classes, minimum=1)
    labels = [index % classes for index in range(count)]
    return [f"train/{label}/{index:07d}.jpg" for index, label in enumerate(labels)], labels


class RecordList(Dataset):
    """A dataset's index as one dict per sample (path string, label): many small Python objects."""

    def __init__(self, paths: Sequence[str], labels: Sequence[int]) -> None:
        self.records = [{"path": path, "label": label} for path, label in zip(paths, labels, strict=True)]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[int, int]:
        record = self.records[index]
        return len(record["path"]), record["label"]  # a real Dataset would open the file here


class RecordArrays(Dataset):
    """The same index as two NumPy arrays (fixed-width path bytes, int64 labels): two objects in all."""

    def __init__(self, paths: Sequence[str], labels: Sequence[int]) -> None:
        if len(paths) != len(labels):
            raise ValueError(f"paths and labels must have the same length, got {len(paths)} and {len(labels)}")
        self.paths = np.array(paths, dtype=np.bytes_)
        self.labels = np.array(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[int, int]:
        return len(self.paths[index]), int(self.labels[index])


def evict_from_page_cache(paths: Iterable[Path]) -> None:
    """Ask the OS to drop these files from its page cache, so that the next read comes from the disk (Linux)."""
    if not hasattr(os, "posix_fadvise"):
        raise RuntimeError("evicting files needs os.posix_fadvise (Linux); this system has none")
    for path in paths:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(descriptor)  # dirty pages are not dropped: write them out first
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)


def read_bytes(paths: Iterable[Path]) -> int:
    """Read every file whole (no decoding); the number of bytes read."""
    total = 0
    for path in paths:
        with open(path, "rb") as file:
            total += len(file.read())
    return total


def write_shard(paths: Sequence[Path], shard: Path) -> tuple[Path, bool]:
    """The files' bytes end to end in ONE file, and their offsets in shard + '.offsets.npy' (written once).

    This is the idea behind WebDataset's tar shards and TFRecord files: one open and one sequential
    read for many samples, instead of one open, stat and read per sample.
    """
    shard, offsets_file = Path(shard), Path(f"{shard}.offsets.npy")
    if shard.exists() and offsets_file.exists():
        return shard, False
    shard.parent.mkdir(parents=True, exist_ok=True)
    offsets = [0]
    partial = Path(f"{shard}.partial")
    with open(partial, "wb") as out:
        for path in paths:
            offsets.append(offsets[-1] + out.write(Path(path).read_bytes()))
    np.save(offsets_file, np.array(offsets, dtype=np.int64))
    partial.replace(shard)  # the shard appears whole or not at all
    return shard, True


def time_reads_interleaved(groups: Mapping[str, Sequence[Path]], *,
                           rounds: int = 3) -> dict[str, dict[str, list[float]]]:
    """For each named group of files, seconds per round to read it cold (just evicted), then warm.

    The groups alternate within every round (odd rounds in reverse order), so round i of one group can be
    paired with round i of another: a slow spell of the disk hits both alike.
    """
    require_int("rounds", rounds, minimum=1)
    if not isinstance(groups, Mapping) or not groups:
        raise ValueError("groups must be a non-empty mapping of name -> file paths")
    for name, paths in groups.items():
        if not paths:
            raise ValueError(f"paths must name at least one file (group {name!r} names none)")
    seconds = {name: {"cold": [], "warm": []} for name in groups}
    for round_index in range(rounds):
        for name in round_order(groups, round_index):
            evict_from_page_cache(groups[name])
            for kind in ("cold", "warm"):
                start = time.perf_counter()
                read_bytes(groups[name])
                seconds[name][kind].append(time.perf_counter() - start)
    return seconds


class PerImage:
    """Apply a transform to each image of a batch separately and stack the results: one random draw per image."""

    def __init__(self, transform: Transform) -> None:
        if not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        self.transform = transform

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """The transformed images of the (N, C, H, W) batch, stacked."""
        if images.ndim != 4:
            raise ValueError(f"images must be a (N, C, H, W) batch, got shape {tuple(images.shape)}")
        return torch.stack([self.transform(image) for image in images])


def time_cache_loads(cache_file: Path, *, rounds: int = 3) -> dict[str, list[float]]:
    """Seconds per round to load a saved tensor cache with mmap and read every page: cold (just evicted), then warm.

    Each loaded copy is released before the next eviction (pages mapped by this process would not be dropped).
    """
    require_int("rounds", rounds, minimum=1)
    cache_file = Path(cache_file)
    if not cache_file.is_file():
        raise ValueError(f"{cache_file} is not a file; save the cache first")
    seconds: dict[str, list[float]] = {"cold": [], "warm": []}
    for _ in range(rounds):
        evict_from_page_cache([cache_file])
        for kind in ("cold", "warm"):
            start = time.perf_counter()
            _load_and_touch(cache_file)
            seconds[kind].append(time.perf_counter() - start)
    return seconds


def _load_and_touch(cache_file: Path) -> None:
    """torch.load the file with mmap and read every page; on return nothing refers to the mapping any more
    (one tensor still alive would keep the whole file mapped, and mapped pages cannot be evicted)."""
    saved = torch.load(cache_file, weights_only=True, mmap=True)
    for tensor in saved.values():
        tensor.max()  # touch every page: the load is complete only when the pixels are read


class ShardImages(torch.utils.data.IterableDataset):
    """JPEG images streamed from one shard (write_shard's bytes and offsets), decoded as they are read.

    The shard is cut into blocks of block_size consecutive images; each epoch permutes the blocks (the same
    permutation in every worker) and worker k of n takes blocks k, k + n, ... (get_worker_info()), so every
    image is served once per epoch. A block is one sequential read. Consecutive images are alike (here: one
    class), so items pass through a shuffle buffer of buffer_size decoded items, as WebDataset does. With
    return_index=True items are (image, label, index), for checking.
    """

    def __init__(self, shard: Path, labels: Sequence[int], *, transform: Transform | None = None,
                 block_size: int = 64, buffer_size: int = 256, seed: int = 0, return_index: bool = False) -> None:
        self.shard = Path(shard)
        offsets_file = Path(f"{self.shard}.offsets.npy")
        if not (self.shard.is_file() and offsets_file.is_file()):
            raise ValueError(f"{self.shard} and its offsets file must exist; write them with write_shard() first")
        self.offsets = np.load(offsets_file)
        if len(labels) != len(self.offsets) - 1:
            raise ValueError(f"labels must have one entry per image of the shard ({len(self.offsets) - 1}), "
                             f"got {len(labels)}")
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform, self.seed, self.return_index = transform, seed, return_index
        self.block_size = require_int("block_size", block_size, minimum=1)
        self.buffer_size = require_int("buffer_size", buffer_size, minimum=1)
        self.epoch = 0  # epochs iterated by this copy of the dataset

    def _epoch_seed(self) -> tuple[int, int]:
        """A seed per epoch, the same in every worker of that epoch: DataLoader's base seed (new for each epoch's
        workers; 0 without workers) and the epochs this copy has iterated (which persistent workers keep)."""
        info = torch.utils.data.get_worker_info()
        self.epoch += 1
        return (0 if info is None else info.seed - info.id), self.epoch

    def _block(self, shard_file: BinaryIO, first: int) -> Iterator[tuple]:
        """The decoded items of the block that starts at image `first`, read from the shard in one read."""
        last = min(first + self.block_size, len(self.labels))
        shard_file.seek(int(self.offsets[first]))
        data = shard_file.read(int(self.offsets[last] - self.offsets[first]))
        for index in range(first, last):
            start, end = (int(self.offsets[i] - self.offsets[first]) for i in (index, index + 1))
            with Image.open(io.BytesIO(data[start:end])) as image:
                pixels = pil_to_tensor(image.convert("RGB"))
            pixels = self.transform(pixels) if self.transform else pixels
            label = int(self.labels[index])
            yield (pixels, label, index) if self.return_index else (pixels, label)

    def __iter__(self) -> Iterator[tuple]:
        """This worker's share of the epoch: its blocks in the epoch's order, through the shuffle buffer."""
        epoch_seed, info = self._epoch_seed(), torch.utils.data.get_worker_info()
        firsts = np.arange(0, len(self.labels), self.block_size)
        firsts = firsts[np.random.default_rng((self.seed, *epoch_seed)).permutation(len(firsts))]
        if info is not None:
            firsts = firsts[info.id::info.num_workers]  # this worker's blocks
        rng = random.Random(f"{self.seed}-{epoch_seed}-{info.id if info else 0}")  # this worker's buffer draws
        buffer: list[tuple] = []
        with open(self.shard, "rb") as shard_file:
            for first in firsts:
                for item in self._block(shard_file, int(first)):
                    buffer.append(item)
                    if len(buffer) >= self.buffer_size:  # emit a random item of the buffer
                        pick = rng.randrange(len(buffer))
                        buffer[pick], buffer[-1] = buffer[-1], buffer[pick]
                        yield buffer.pop()
        rng.shuffle(buffer)
        yield from buffer
