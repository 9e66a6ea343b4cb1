"""Build a wheel of the helpers package from the checkout, as Colab's `pip install git+...` would build it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_helpers_wheel(folder: Path) -> Path:
    """Build the wheel from a copy of the checkout inside folder (build files stay out of the checkout)."""
    source, wheels = folder / "source", folder / "wheels"
    shutil.copytree(ROOT / "helpers", source / "helpers", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(source), "-w", str(wheels)],
                   check=True, capture_output=True)
    return next(wheels.glob("*.whl"))
