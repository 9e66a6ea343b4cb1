"""Keep the README's generated parts in step: the badges and chapter table (from book.toml) and the
measured runs (from the metadata that `make execute` stores in each notebook with its outputs).

    python tools/readme.py --write   # rewrite the table between the markers
    python tools/readme.py --check   # exit 1 if the table is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers.course import (  # noqa: E402
    Course, ReferenceRun, chapter_table_markdown, course_badges, load_course, load_reference_runs,
)

README = ROOT / "README.md"
BADGES = ("<!-- badges:start (generated from book.toml by `make readme`) -->", "<!-- badges:end -->")
CHAPTERS = ("<!-- chapters:start (generated from book.toml by `make readme`) -->", "<!-- chapters:end -->")
RUNS = ("<!-- runs:start (generated from the notebooks' stored runs by `make readme`) -->", "<!-- runs:end -->")


def reference_run_time(run: ReferenceRun, chapter) -> str:
    """Wall time of the chapter in a reference GPU run, or a note that the run does not have it."""
    path = run.notebook(chapter)
    if path is None:
        return "not in this run"
    stats = nbformat.read(path, as_version=4).metadata.get("course_run")
    return f"{stats['wall_s']:.0f} s" if stats else "not recorded"


def measured_runs_markdown(course: Course) -> str:
    """Wall time and peak memory of the run behind each chapter's stored outputs, the machine, and the GPU runs."""
    runs = load_reference_runs()
    lines = ["| # | Executed in | Peak memory (PSS) | Machine |" + "".join(f" {r.gpu} run |" for r in runs),
             "|---|---|---|---|" + "---|" * len(runs)]
    for chapter in course.chapters:
        stats = nbformat.read(ROOT / chapter.file, as_version=4).metadata.get("course_run")
        gpu_cells = "".join(f" {reference_run_time(r, chapter)} |" for r in runs)
        if stats is None:
            lines.append(f"| {chapter.number} | not recorded: run `make execute` | | |{gpu_cells}")
        else:
            machine = stats["machine"].replace(" | ", "; ")
            lines.append(f"| {chapter.number} | {stats['wall_s']:.0f} s | {stats['peak_mb']} MB | {machine} |{gpu_cells}")
    if runs:
        lines += ["", *(f"The *{r.gpu} run* (`{r.folder.relative_to(ROOT)}`): {r.label}, executed by "
                        "`tools/gpu_run.sh`; the book shows it under each chapter." for r in runs)]
    return "\n".join(lines)


def replace_between(text: str, markers: tuple[str, str], content: str) -> str:
    """text with what lies between the two markers replaced by content."""
    start, end = markers
    if start not in text or end not in text:
        raise ValueError(f"README.md must contain the markers {start!r} and {end!r}")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{content}\n{end}{tail}"


def render(text: str) -> str:
    """README text with both generated tables regenerated."""
    course = load_course()
    text = replace_between(text, BADGES, course_badges(course))
    text = replace_between(text, CHAPTERS, chapter_table_markdown(course))
    return replace_between(text, RUNS, measured_runs_markdown(course))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    current = README.read_text()
    fresh = render(current)
    if args.write:
        README.write_text(fresh)
    if args.check and fresh != current:
        print("README.md's generated tables are stale: run `make readme`")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
