"""book.toml is the one place that says what the course is; this module reads it."""

from __future__ import annotations

import json
import re
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BOOK_TOML = ROOT / "book.toml"
REFERENCE_RUNS = ROOT / "results" / "gpu"
VERSION_KEYS = ("gpu", "driver", "cuda", "torch", "python")
DEFAULT_PEAK_BUDGET_GB = 1.5
BINDER_MEMORY_GB = 2.0  # mybinder.org's limit for the kernel and every process it starts: no chapter may need more


@dataclass(frozen=True)
class Chapter:
    """One chapter or appendix notebook and what a learner needs to know before opening it."""

    number: int  # its place in the course and its key in the results ledger (Appendix A is 9)
    file: str
    title: str
    minutes: int
    hardware: str
    peak_budget_gb: float = DEFAULT_PEAK_BUDGET_GB
    budget_reason: str = ""
    appendix: str = ""  # "A", "B", ...: an appendix after the article's chapters; "" for a chapter

    def __post_init__(self) -> None:
        if self.appendix != "" and not (isinstance(self.appendix, str) and re.fullmatch(r"[A-Z]", self.appendix)):
            raise ValueError(f"entry {self.number} ({self.file}): appendix must be one capital letter (A, B, ...) "
                             f"or absent for a chapter, got {self.appendix!r}")
        if self.peak_budget_gb != DEFAULT_PEAK_BUDGET_GB and not self.budget_reason:
            raise ValueError(f"{self.label}: a memory budget other than {DEFAULT_PEAK_BUDGET_GB} GB needs a "
                             "budget_reason that says what was measured")
        if self.peak_budget_gb > BINDER_MEMORY_GB:
            raise ValueError(f"{self.label}: a memory budget of {self.peak_budget_gb} GB would not run on "
                             f"Binder, which allows {BINDER_MEMORY_GB} GB for the kernel and its processes")

    @property
    def stem(self) -> str:
        """File name without folder and suffix, e.g. 'ch01_measure'."""
        return Path(self.file).stem

    @property
    def is_appendix(self) -> bool:
        """True for an appendix, which follows the article's chapters."""
        return bool(self.appendix)

    @property
    def label(self) -> str:
        """What a reader calls it: 'Chapter 3' or 'Appendix A'."""
        return f"Appendix {self.appendix}" if self.is_appendix else f"Chapter {self.number}"

    @property
    def key(self) -> str:
        """Its short name in tables and on the command line: '3' or 'A'."""
        return self.appendix or str(self.number)


@dataclass(frozen=True)
class Course:
    """The course's title, authors, repository and chapters in order, the appendices last."""

    title: str
    authors: tuple[str, ...]
    repository: str
    branch: str
    chapters: tuple[Chapter, ...]
    colab_packages: tuple[str, ...] = ()

    @property
    def article_chapters(self) -> tuple[Chapter, ...]:
        """The chapters that follow the source article, without the appendices."""
        return tuple(c for c in self.chapters if not c.is_appendix)

    @property
    def appendices(self) -> tuple[Chapter, ...]:
        """The appendices, which come after every chapter."""
        return tuple(c for c in self.chapters if c.is_appendix)

    @property
    def github_path(self) -> str:
        """'owner/name' of the GitHub repository."""
        prefix = "https://github.com/"
        if not self.repository.startswith(prefix):
            raise ValueError(f"repository must start with {prefix}, got {self.repository!r}")
        return self.repository.removeprefix(prefix).rstrip("/")


def load_course(path: Path | str = BOOK_TOML) -> Course:
    """Parse book.toml into a Course, checking that chapter numbers are distinct and in increasing order, and that
    the appendices come after every chapter, lettered A, B, ... in order.

    A chapter still being written may be missing (chapter 6 can ship before chapter 5)."""
    data = tomllib.loads(Path(path).read_text())
    meta = data["course"]
    chapters = tuple(Chapter(**entry) for entry in data["chapters"])
    numbers = [c.number for c in chapters]
    if not numbers or numbers[0] < 1 or any(later <= earlier for earlier, later in zip(numbers, numbers[1:])):
        raise ValueError(f"chapter numbers in {path} must be positive and increasing, got {numbers}")
    kinds = [c.is_appendix for c in chapters]
    if kinds != sorted(kinds):
        raise ValueError(f"appendices in {path} must come after every chapter, got {[c.label for c in chapters]}")
    letters = [c.appendix for c in chapters if c.is_appendix]
    expected = [chr(ord("A") + index) for index in range(len(letters))]
    if letters != expected:
        raise ValueError(f"appendices in {path} must be lettered {', '.join(expected)} in order, got {letters}")
    return Course(meta["title"], tuple(meta["authors"]), meta["repository"], meta["branch"], chapters,
                  tuple(data.get("colab", {}).get("packages", ())))


@dataclass(frozen=True)
class ReferenceRun:
    """The chapters executed on a GPU by tools/gpu_run.sh: executed notebooks, ledger and versions in one folder."""

    folder: Path
    gpu: str
    driver: str
    cuda: str
    torch: str
    python: str

    @property
    def label(self) -> str:
        """What measured this run, for captions: GPU, driver, CUDA and torch versions."""
        return f"{self.gpu}, driver {self.driver}, CUDA {self.cuda}, torch {self.torch}"

    def notebook(self, chapter: Chapter) -> Path | None:
        """This run's executed copy of the chapter, or None if the run predates the chapter."""
        path = self.folder / Path(chapter.file).name
        return path if path.exists() else None

    def edition(self, chapter: Chapter) -> Edition | None:
        """How this run's copy of the chapter compares with the chapter's code today, or None if it has no copy."""
        copy = self.notebook(chapter)
        return None if copy is None else compare_code(ROOT / chapter.file, copy)


@dataclass(frozen=True)
class Edition:
    """A reference run's copy of a chapter against the chapter today: how many of today's code cells it lacks."""

    differing: int
    total: int

    @property
    def current(self) -> bool:
        """True when the run executed every code cell the chapter has today, unchanged."""
        return self.differing == 0

    @property
    def shown(self) -> bool:
        """True when nearly all of today's code cells (90%) ran in the copy: the book shows it, labelled.

        An older copy stays out: the cells that changed are most often the ones whose readings were corrected,
        so its text and numbers would teach what the chapter has since retracted.
        """
        return 10 * self.differing <= self.total

    @property
    def label(self) -> str:
        """What the run is, in words for captions and tables."""
        if self.current:
            return "GPU run of this edition"
        return f"GPU run of an earlier edition, {self.differing} of {self.total} code cells differ"


COLAB_CELL_MARKER = "# On Colab only:"  # the generated set-up cell: it runs on Colab only, so it is not compared


def code_cells(path: Path) -> list[str]:
    """The sources of a notebook's code cells, trailing spaces removed, without the Colab set-up cell."""
    nb = nbformat.read(path, as_version=4)
    sources = ["\n".join(line.rstrip() for line in cell.source.strip().splitlines())
               for cell in nb.cells if cell.cell_type == "code"]
    return [source for source in sources if not source.startswith(COLAB_CELL_MARKER)]


def compare_code(chapter: Path, copy: Path) -> Edition:
    """How many of the chapter's code cells the executed copy does not hold, word for word."""
    today, ran = code_cells(chapter), Counter(code_cells(copy))
    differing = 0
    for source in today:
        if ran[source]:
            ran[source] -= 1
        else:
            differing += 1
    return Edition(differing, len(today))


def reference_run_name(versions: dict) -> str:
    """Folder name for a run, from its GPU and software versions, e.g. 'nvidia-h200_cuda13.0_torch2.11.0'."""
    missing = [key for key in VERSION_KEYS if not versions.get(key)]
    if missing:
        raise ValueError(f"versions needs {', '.join(VERSION_KEYS)}; missing or empty: {', '.join(missing)}")
    gpu = re.sub(r"[^a-z0-9]+", "-", versions["gpu"].lower()).strip("-")
    torch_version = versions["torch"].split("+")[0]
    return f"{gpu}_cuda{versions['cuda']}_torch{torch_version}"


def load_reference_runs(root: Path = REFERENCE_RUNS) -> list[ReferenceRun]:
    """Every reference run kept under root (one folder each, with its versions.json), sorted by folder name."""
    runs = []
    for versions_file in sorted(Path(root).glob("*/versions.json")):
        versions = json.loads(versions_file.read_text())
        reference_run_name(versions)  # raises a ValueError naming what the file lacks
        runs.append(ReferenceRun(versions_file.parent, *(str(versions[key]) for key in VERSION_KEYS)))
    return runs


def pinned_requirement(name: str, requirements: Path = ROOT / "requirements.txt") -> str:
    """The 'name==version' line for a package in requirements.txt."""
    for line in requirements.read_text().splitlines():
        if line.split("==")[0].strip().lower() == name.lower():
            return line.strip()
    raise ValueError(f"{name} is not pinned in {requirements}")


COLAB_PIP_OPTIONS = ("--quiet", "--no-deps")  # Colab's own torch, numpy, ... stay as Colab ships them


def colab_extra_packages(course: Course) -> list[str]:
    """What the Colab cell installs beside the helpers: book.toml's [colab] packages, pinned as requirements.txt."""
    return [pinned_requirement(name) for name in course.colab_packages]


def colab_setup_source(course: Course) -> str:
    """Every chapter's first code cell: on Colab only, install the helpers (and what Colab lacks) once, quietly."""
    packages = [f"dl-perf-course-helpers @ git+{course.repository}@{course.branch}", *colab_extra_packages(course)]
    options = "".join(f'"{option}", ' for option in COLAB_PIP_OPTIONS)
    package_lines = "".join(f'        "{package}",\n' for package in packages)
    return (
        f"{COLAB_CELL_MARKER} install the course's helpers once (elsewhere `make lab` has installed them)\n"
        "import importlib.util\n"
        "import subprocess\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules and importlib.util.find_spec("helpers") is None:\n'
        "    packages = [\n"
        f"{package_lines}"
        "    ]\n"
        f'    subprocess.run([sys.executable, "-m", "pip", "install", {options}*packages], check=True)\n'
        "    importlib.invalidate_caches()\n"
        '    print("Colab: installed the course helpers")'
    )


COLAB_BADGE = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
BINDER_BADGE = "[![Launch Binder](https://mybinder.org/badge_logo.svg)]"


def colab_url(course: Course, chapter: Chapter) -> str:
    """Colab opens the chapter straight from GitHub."""
    return f"https://colab.research.google.com/github/{course.github_path}/blob/{course.branch}/{chapter.file}"


def binder_url(course: Course, query: str) -> str:
    """Binder builds the repository, then opens what query names (labpath=... or urlpath=...)."""
    return f"https://mybinder.org/v2/gh/{course.github_path}/{course.branch}?{query}"


def launch_badges(course: Course, chapter: Chapter) -> str:
    """Markdown for the 'Open in Colab' and 'Launch Binder' badges of one chapter."""
    return f"{COLAB_BADGE}({colab_url(course, chapter)}) {BINDER_BADGE}({binder_url(course, f'labpath={chapter.file}')})"


def course_badges(course: Course) -> str:
    """Markdown badges for the whole course: Binder opens JupyterLab on notebooks/, Colab opens chapter 1."""
    return (f"{BINDER_BADGE}({binder_url(course, 'urlpath=lab/tree/notebooks')}) "
            f"{COLAB_BADGE}({colab_url(course, course.chapters[0])})")


def chapter_table_markdown(course: Course) -> str:
    """The README's chapter table, with each chapter's launch badges."""
    lines = ["| # | Chapter | Notebook | Time | Hardware | Launch |", "|---|---|---|---|---|---|"]
    for c in course.chapters:
        lines.append(f"| {c.key} | {c.title} | [`{c.file}`]({c.file}) | ~{c.minutes} min | {c.hardware} "
                     f"| {launch_badges(course, c)} |")
    return "\n".join(lines)
