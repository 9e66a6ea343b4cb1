"""A real image dataset on disk (the digits as JPEG files), read with torchvision's ImageFolder, and RAM caches.

The cache Datasets live here, not in a notebook, so that DataLoader worker processes can import them
under every start method (spawn and forkserver re-import the Dataset's module in each worker).
Images are decoded with Pillow, ImageFolder's default loader (torchvision.io's decoders are deprecated
since torchvision 0.29 in favour of TorchCodec).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2
from torchvision.transforms.v2.functional import pil_to_tensor

from .data import upsample
from .validate import require_int

CACHE_ENV = "COURSE_CACHE"
Transform = Callable[[torch.Tensor], torch.Tensor]


def cache_root() -> Path:
    """$COURSE_CACHE if set, else .cache/ at the course root (the folder with book.toml), else ~/.cache."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / "book.toml").exists():
            return folder / ".cache"
    return Path.home() / ".cache" / "dl-perf-course"


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


class DecodedCache(Dataset):
    """Every image decoded once into ONE contiguous uint8 tensor; random augmentation still runs per item."""

    def __init__(self, folder: ImageFolder, transform: Transform | None = None) -> None:
        self.images = torch.stack(decode_all(folder))
        self.labels = torch.tensor(folder.targets)
        self.transform = transform

    @property
    def nbytes(self) -> int:
        """RAM held by the cache."""
        return self.images.numel() * self.images.element_size() + self.labels.numel() * self.labels.element_size()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        return (self.transform(image) if self.transform else image), self.labels[index]


class ObjectListCache(Dataset):
    """The article's MemoryDataset: a Python list with one object per image (here a NumPy array), no augmentation."""

    def __init__(self, folder: ImageFolder) -> None:
        self.data = [image.numpy() for image in decode_all(folder)]
        self.targets = list(folder.targets)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.data[index], self.targets[index]
