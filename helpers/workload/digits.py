"""The digits as plain tensors, read without scikit-learn: light enough for every torchrun worker to load."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch


def digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as 64 features in [0, 1] and their labels (every rank loads the same).

    Read from the file scikit-learn ships, without importing scikit-learn: that import would cost each
    worker process about 80 MB, and a job's processes are counted in the chapter's memory budget.
    """
    package = Path(importlib.util.find_spec("sklearn").submodule_search_locations[0])
    table = np.loadtxt(package / "datasets" / "data" / "digits.csv.gz", delimiter=",", dtype=np.float32)
    return torch.from_numpy(table[:, :-1] / 16), torch.from_numpy(table[:, -1]).long()
