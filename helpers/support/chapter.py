"""The first code cell of every chapter: seeds, plot style, warning policy, hardware line."""

from __future__ import annotations

import os
import random
import warnings

import numpy as np
import torch

from helpers.core.hardware import HardwareReport, hardware_report
from helpers.core.validate import require_int
from helpers.support.ledger import part_label
from helpers.support.plots import apply_style

STRICT_WARNINGS_ENV = "COURSE_STRICT_WARNINGS"
OUR_CODE = r"(__main__|helpers(\..*)?)\Z"
# Warnings that torch raises from its own code about its own code, with nothing for a learner to change:
# torch 2.11's exporter and torch.export (Colab) about a pytree class, and its profiler about a setting
# (acc_events) that only matters to profiles of more than one cycle, which the course never reads.
TORCH_INTERNAL_WARNINGS = ((FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
                           (UserWarning, r"Warning: Profiler clears events at the end of each cycle"))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that runs repeat."""
    require_int("seed", seed, minimum=0)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def hide_torch_internal_warnings() -> None:
    """Ignore TORCH_INTERNAL_WARNINGS: warnings about torch's own code that no learner's change can silence."""
    for category, message in TORCH_INTERNAL_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def use_strict_warnings() -> None:
    """Turn FutureWarning and DeprecationWarning raised from notebook or helpers code into errors."""
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("error", category=category, module=OUR_CODE)


def setup_chapter(number: int, *, seed: int = 0) -> HardwareReport:
    """Seed, style plots, apply the warning policy ($COURSE_STRICT_WARNINGS=1 in tests), print the hardware."""
    label = part_label(number)
    seed_everything(seed)
    apply_style()
    hide_torch_internal_warnings()
    if os.environ.get(STRICT_WARNINGS_ENV) == "1":
        use_strict_warnings()
    report = hardware_report()
    print(f"{label} | {report.summary_line()}")
    return report
