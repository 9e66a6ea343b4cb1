"""Where the learner's course folder is: the nearest folder at or above the working directory that holds book.toml.

book.toml is only a marker here, never read: with the repository, the ledger and the caches go beside the
chapters; without it (Colab, an installed package) the callers fall back to the working folder or home.
"""

from __future__ import annotations

from pathlib import Path

MARKER = "book.toml"


def course_folder() -> Path | None:
    """The nearest folder at or above the working directory that holds book.toml, or None outside the course."""
    here = Path.cwd().resolve()
    return next((folder for folder in [here, *here.parents] if (folder / MARKER).exists()), None)
