"""Keep the generated files in step: the README's badges and chapter table (from book.toml) and measured runs
(from the metadata that `make execute` stores in each notebook), helpers/README.md (from the docstrings of
the helpers package), and the reference runs' ledgers that ship inside the package for chapter 8.

    python tools/readme.py --write   # rewrite every generated file
    python tools/readme.py --check   # exit 1 if one is stale
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.course import (  # noqa: E402
    Course, ReferenceRun, chapter_table_markdown, course_badges, load_course, load_reference_runs,
)

README = ROOT / "README.md"
HELPERS = ROOT / "helpers"
SHIPPED_LEDGERS = HELPERS / "ch08_capstone" / "reference_ledgers"
# The order a learner reads the package in: the shared folders, then the chapters and the appendices.
SHARED_FOLDERS = ("core", "workload", "support")
HELPERS_INTRO = """# The course's helpers

Every chapter imports its tools from here, each name from the module that defines it, so the import cell
at the top of a chapter is also its map: `from helpers.core.measure import measure_interleaved` says
to open `core/measure.py`. **Read `core/` first**: it is how every number in the course is measured.

Rules the tests hold (`tests/test_layout.py`): each folder imports only the folders listed before it
here (`core/` imports nothing else, `workload/` only `core/`, a chapter's folder the shared folders and
earlier chapters, an appendix's folder any chapter's); nothing here reads a file outside the package at run time.

(Generated from the modules' docstrings by `make readme`: edit a docstring, not this file.)
"""
BADGES = ("<!-- badges:start (generated from book.toml by `make readme`) -->", "<!-- badges:end -->")
CHAPTERS = ("<!-- chapters:start (generated from book.toml by `make readme`) -->", "<!-- chapters:end -->")
RUNS = ("<!-- runs:start (generated from the notebooks' stored runs by `make readme`) -->", "<!-- runs:end -->")
COLAB = ("<!-- colab:start (generated from results/colab-check.json by `make readme`) -->", "<!-- colab:end -->")
COLAB_RESULT = ROOT / "results" / "colab-check.json"


def reference_run_time(run: ReferenceRun, chapter) -> str:
    """Wall time of the chapter in a reference GPU run, or a note that the run does not have it."""
    path = run.notebook(chapter)
    if path is None:
        return "not in this run"
    if not run.edition(chapter).current:
        return run.edition(chapter).label.removeprefix("GPU run of ")
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
            lines.append(f"| {chapter.key} | not recorded: run `make execute` | | |{gpu_cells}")
        else:
            machine = stats["machine"].replace(" | ", "; ")
            lines.append(f"| {chapter.key} | {stats['wall_s']:.0f} s | {stats['peak_mb']} MB | {machine} |{gpu_cells}")
    if runs:
        lines += ["", *(f"The *{r.gpu} run* (`{r.folder.relative_to(ROOT)}`): {r.label}, executed by "
                        "`tools/gpu_run.sh`; the book shows it under each chapter whose code it ran (nearly all of it)." for r in runs)]
    return "\n".join(lines)


def colab_check_markdown(course: Course) -> str:
    """The last `make colab-check` (tools/colab_check.py --save): when, which image, one row per chapter."""
    if not COLAB_RESULT.exists():
        return "No Colab check has been recorded: run `make colab-check`."
    check = json.loads(COLAB_RESULT.read_text())
    image, versions = check["image"], check["versions"]
    rows = {row["chapter"]: row for row in check["rows"]}
    lines = [f"Last run {check['date']}, Colab's {check['runtime'].upper()} runtime as published in "
             f"`{image['repository']}` at `{image['commit'][:7]}` ({image['date']}): "
             + ", ".join(f"{name} {version}" for name, version in versions.items()) + ".", "",
             "| # | Result | Wall time |", "|---|---|---|"]
    for chapter in course.chapters:
        row = rows.get(chapter.number)
        if row is None:
            lines.append(f"| {chapter.key} | not checked | |")
            continue
        errors = row["errors"]
        verdict = "ran, no error" if not errors else (
            f"failed at code cell {errors[0]['cell']}: {errors[0]['ename']} ({len(errors)} cells failed)")
        lines.append(f"| {chapter.key} | {verdict} | {row['wall_s']:.0f} s |")
    widgets = check["widget_tests"]
    lines += ["", f"The widget helpers' tests with ipywidgets {versions['ipywidgets']}: "
                  f"{'passed' if widgets['passed'] else 'FAILED'} ({widgets['summary']})."]
    return "\n".join(lines)


def summary(path: Path) -> str:
    """The first paragraph of a module's docstring, on one line."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or "(no docstring)"
    return " ".join(doc.split("\n\n")[0].split())


def folder_markdown(folder: Path, depth: int = 0) -> list[str]:
    """One line for a folder, then one per module and subfolder inside it."""
    indent = "  " * depth
    lines = [f"{indent}- **`{folder.relative_to(HELPERS)}/`**: {summary(folder / '__init__.py')}"]
    for path in sorted(folder.iterdir()):
        if path.suffix == ".py" and path.name != "__init__.py":
            lines.append(f"{indent}  - `{path.name}`: {summary(path)}")
        elif (path / "__init__.py").exists():
            lines += folder_markdown(path, depth + 1)
    return lines


def helpers_readme() -> str:
    """helpers/README.md: what each folder and module is for, in the order a learner reads them."""
    parts = [p for prefix in ("ch", "app") for p in sorted(HELPERS.glob(f"{prefix}*")) if (p / "__init__.py").exists()]
    lines = [HELPERS_INTRO]
    for folder in [HELPERS / name for name in SHARED_FOLDERS] + parts:
        lines += folder_markdown(folder)
    return "\n".join(lines) + "\n"


def generated_files() -> dict[Path, str]:
    """Every file this tool writes, with its fresh content."""
    fresh = {README: render(README.read_text()), HELPERS / "README.md": helpers_readme()}
    for run in load_reference_runs():
        fresh[SHIPPED_LEDGERS / f"{run.folder.name}.json"] = shipped_ledger(run, load_course())
    return fresh


def shipped_ledger(run: ReferenceRun, course: Course) -> str:
    """The run's ledger as chapter 8 gets it: only the chapters whose code it ran as it is today; the rest named."""
    stored = json.loads((run.folder / "ledger.json").read_text())
    editions = {chapter: run.edition(chapter) for chapter in course.chapters}
    current = {chapter.number for chapter, edition in editions.items() if edition is not None and edition.current}
    left_out = [f"{'appendix' if chapter.is_appendix else 'chapter'} {chapter.key}: {edition.label}"
                for chapter, edition in editions.items() if edition is not None and not edition.current]
    kept = {key: [item for item in stored.get(key, []) if item.get("chapter") in current]
            for key in ("entries", "claims")}
    return json.dumps({**kept, "left_out": left_out}, indent=1) + "\n"


def replace_between(text: str, markers: tuple[str, str], content: str) -> str:
    """text with what lies between the two markers replaced by content."""
    start, end = markers
    if start not in text or end not in text:
        raise ValueError(f"README.md must contain the markers {start!r} and {end!r}")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{content}\n{end}{tail}"


def render(text: str) -> str:
    """README text with its generated parts (badges, chapter table, measured runs) regenerated."""
    course = load_course()
    text = replace_between(text, BADGES, course_badges(course))
    text = replace_between(text, CHAPTERS, chapter_table_markdown(course))
    text = replace_between(text, COLAB, colab_check_markdown(course))
    return replace_between(text, RUNS, measured_runs_markdown(course))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    fresh = generated_files()
    stale = [path for path, text in fresh.items() if not path.exists() or path.read_text() != text]
    unknown = sorted(set(SHIPPED_LEDGERS.glob("*.json")) - set(fresh))
    if args.write:
        for path in stale:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(fresh[path])
        for path in unknown:
            path.unlink()
    elif args.check and (stale or unknown):
        names = ", ".join(str(path.relative_to(ROOT)) for path in [*stale, *unknown])
        print(f"generated files are stale ({names}): run `make readme`")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
