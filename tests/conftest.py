"""Test-session settings shared by the unit tests and by nbval's kernels (which inherit the environment)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config) -> None:
    """Strict warnings in every kernel; a throw-away ledger so tests never touch results/."""
    os.environ["COURSE_STRICT_WARNINGS"] = "1"
    ledger_dir = Path(tempfile.mkdtemp(prefix="course-ledger-"))
    os.environ["COURSE_LEDGER"] = str(ledger_dir / "ledger.json")
