"""book.toml is the one place that says what the course is; this module reads it."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOOK_TOML = ROOT / "book.toml"


@dataclass(frozen=True)
class Chapter:
    """One chapter notebook and what a learner needs to know before opening it."""

    number: int
    file: str
    title: str
    minutes: int
    hardware: str

    @property
    def stem(self) -> str:
        """File name without folder and suffix, e.g. 'ch01_measure'."""
        return Path(self.file).stem


@dataclass(frozen=True)
class Course:
    """The course's title, authors, repository and chapters in order."""

    title: str
    authors: tuple[str, ...]
    repository: str
    branch: str
    chapters: tuple[Chapter, ...]

    @property
    def github_path(self) -> str:
        """'owner/name' of the GitHub repository."""
        prefix = "https://github.com/"
        if not self.repository.startswith(prefix):
            raise ValueError(f"repository must start with {prefix}, got {self.repository!r}")
        return self.repository.removeprefix(prefix).rstrip("/")


def load_course(path: Path | str = BOOK_TOML) -> Course:
    """Parse book.toml into a Course, checking that chapter numbers run 1, 2, 3, ... in order."""
    data = tomllib.loads(Path(path).read_text())
    meta = data["course"]
    chapters = tuple(Chapter(**entry) for entry in data["chapters"])
    numbers = [c.number for c in chapters]
    if numbers != list(range(1, len(chapters) + 1)):
        raise ValueError(f"chapter numbers in {path} must run 1, 2, ... in order, got {numbers}")
    return Course(meta["title"], tuple(meta["authors"]), meta["repository"], meta["branch"], chapters)


def launch_badges(course: Course, chapter: Chapter) -> str:
    """Markdown for the 'Open in Colab' and 'Launch Binder' badges of one chapter."""
    colab = f"https://colab.research.google.com/github/{course.github_path}/blob/{course.branch}/{chapter.file}"
    binder = f"https://mybinder.org/v2/gh/{course.github_path}/{course.branch}?labpath={chapter.file}"
    return (
        f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab}) "
        f"[![Launch Binder](https://mybinder.org/badge_logo.svg)]({binder})"
    )


def chapter_table_markdown(course: Course) -> str:
    """The README's chapter table."""
    lines = ["| # | Chapter | Notebook | Time | Hardware |", "|---|---|---|---|---|"]
    for c in course.chapters:
        lines.append(f"| {c.number} | {c.title} | [`{c.file}`]({c.file}) | ~{c.minutes} min | {c.hardware} |")
    return "\n".join(lines)
