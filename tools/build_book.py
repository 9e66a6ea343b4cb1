"""Build the Jupyter Book (1.x, offline) from book.toml and the notebooks' stored outputs.

The Jupyter Book configuration (_config.yml, _toc.yml) is generated into the build folder,
never committed, so it cannot go stale. Notebooks are not re-executed: the book shows the
outputs stored in them (the same ones nbval checks). Each reference GPU run kept under
results/gpu/ (tools/gpu_run.sh) adds, under every chapter, a section page with that chapter
as executed on the GPU, so that a reader without one sees what a GPU does.

    python tools/build_book.py [--out _build]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.course import Chapter, Course, ReferenceRun, load_course, load_reference_runs, pinned_requirement  # noqa: E402


def config_yaml(course: Course) -> dict:
    """Jupyter Book's _config.yml: offline build of stored outputs."""
    return {
        "title": course.title,
        "author": ", ".join(course.authors),
        "only_build_toc_files": True,
        "execute": {"execute_notebooks": "off"},
        "repository": {"url": course.repository, "branch": course.branch},
        "html": {"use_repository_button": True, "use_issues_button": False},
        "sphinx": {"config": {"html_show_copyright": False, "suppress_warnings": ["mystnb.unknown_mime_type"]}},
    }


def gpu_page(run: ReferenceRun, chapter: Chapter) -> str:
    """Where the book keeps a reference run's copy of a chapter (relative to the book's source, no suffix)."""
    return f"{run.folder.name}/{chapter.stem}"


def shown_runs(runs: list[ReferenceRun], chapter: Chapter) -> list[ReferenceRun]:
    """The runs whose copy of the chapter the book shows: those where nearly all of today's code cells ran."""
    return [run for run in runs if run.notebook(chapter) and run.edition(chapter).shown]


def toc_yaml(course: Course, runs: list[ReferenceRun]) -> dict:
    """Jupyter Book's _toc.yml: a landing page, then book.toml's chapters and appendices, each with its GPU runs."""
    chapters = []
    for chapter in course.chapters:
        entry = {"file": chapter.stem}
        sections = [{"file": gpu_page(run, chapter)} for run in shown_runs(runs, chapter)]
        if sections:
            entry["sections"] = sections
        chapters.append(entry)
    return {"format": "jb-book", "root": "intro", "chapters": chapters}


def landing_page(readme: str) -> str:
    """The README as the book's first page, with links to notebooks pointing at the chapter pages."""
    return re.sub(r"\]\(notebooks/([\w-]+)\.ipynb\)", r"](\1.ipynb)", readme)


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_NOTE = ("*Live control: open this chapter in JupyterLab, Colab or Binder to move it. "
               "Below, its output at the default setting, measured when the chapter was executed.*")


def widget_outputs(state: dict, model_id: str) -> list[dict]:
    """The outputs a widget shows: those held by the Output widgets among it and its children."""
    model = state.get(model_id)
    if model is None:
        return []
    if model["model_name"] == "OutputModel":
        return list(model["state"]["outputs"])
    children = model["state"].get("children", [])
    return [output for child in children for output in widget_outputs(state, child.removeprefix("IPY_MODEL_"))]


def freeze_widgets(nb: nbformat.NotebookNode) -> None:
    """Replace each widget view (which needs a kernel) by a note and the outputs stored in its state."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        frozen = []
        for output in cell.outputs:
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                frozen.append(output)
                continue
            frozen.append(nbformat.v4.new_output("display_data", data={"text/markdown": WIDGET_NOTE}))
            frozen.extend(nbformat.from_dict(stored) for stored in widget_outputs(state, view["model_id"]))
        cell.outputs = frozen
    nb.metadata.pop("widgets", None)


def gpu_run_links(runs: list[ReferenceRun], chapter: Chapter) -> nbformat.NotebookNode | None:
    """A note for the chapter's page linking to its GPU runs (or saying why a run is not shown), None if none has it."""
    visible = shown_runs(runs, chapter)
    links = [f"[{run.label}]({gpu_page(run, chapter)}.ipynb) ({run.edition(chapter).label})" for run in visible]
    hidden = [f"{run.label} ({run.edition(chapter).label})" for run in runs
              if run.notebook(chapter) and run not in visible]
    if not links and not hidden:
        return None
    shown = (f"This chapter as executed on a GPU, with that run's tables and figures: {'; '.join(links)}. A run of "
             "an earlier edition executed other code: its numbers are that edition's, not comparable with this "
             "page's. ") if links else ""
    left_out = (f"Not shown: {'; '.join(hidden)}. Too much of the code it ran has changed since, so its text and "
                "numbers belong to another edition; it will return when the chapter is run on a GPU again."
                ) if hidden else ""
    return nbformat.v4.new_markdown_cell(f"*{shown}{left_out}*")


def gpu_title_cell(run: ReferenceRun, chapter: Chapter) -> nbformat.NotebookNode:
    """The first cell of a GPU run's page: what ran where, in place of the chapter's own title cell."""
    edition = run.edition(chapter)
    stale = "" if edition.current else (
        f"**{edition.label}.** This page is not today's chapter: it ran an earlier edition, and {edition.differing} "
        f"of the chapter's {edition.total} code cells differ from what ran here. Its text and numbers are that "
        f"edition's, some of them since corrected; do not read them beside the chapter's current run.\n\n")
    return nbformat.v4.new_markdown_cell(
        f"# {chapter.label} on {run.gpu}{'' if edition.current else ', an earlier edition'}\n\n{stale}"
        f"{chapter.label}, *{chapter.title}*, executed top to bottom by `tools/gpu_run.sh` on {run.label} "
        f"(Python {run.python}). The text is the chapter's own, written for any hardware; every table, figure and "
        f"claim verdict below was measured on that machine (its CPU ran the parts that stay on a CPU). The course "
        f"pins `{pinned_requirement('torch')}`; the GPU machine had torch {run.torch}, so compare what changes "
        f"with the hardware, not the last digit. Compare them with [the chapter's CPU run](../{chapter.stem}.ipynb).")


def hide_solutions(nb: nbformat.NotebookNode) -> None:
    """Fold each solution cell's code and output behind a toggle, as JupyterLab collapses both."""
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "solution" in tags:
            cell.metadata["tags"] = [*tags, *(t for t in ("hide-input", "hide-output") if t not in tags)]


def write_notebook(nb: nbformat.NotebookNode, path: Path) -> None:
    """Freeze the notebook's widgets, fold its solutions and write it into the book's source."""
    freeze_widgets(nb)
    hide_solutions(nb)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def write_sources(course: Course, source: Path, runs: list[ReferenceRun]) -> None:
    """Lay out the book's source folder: configuration, landing page, chapter notebooks, GPU runs."""
    if source.exists():
        shutil.rmtree(source)
    source.mkdir(parents=True)
    (source / "_config.yml").write_text(yaml.safe_dump(config_yaml(course), sort_keys=False))
    (source / "_toc.yml").write_text(yaml.safe_dump(toc_yaml(course, runs), sort_keys=False))
    (source / "intro.md").write_text(landing_page((ROOT / "README.md").read_text()))
    for chapter in course.chapters:
        nb = nbformat.read(ROOT / chapter.file, as_version=4)
        note = gpu_run_links(runs, chapter)
        if note:
            nb.cells.insert(1, note)
        write_notebook(nb, source / Path(chapter.file).name)
        for run in shown_runs(runs, chapter):
            gpu_nb = nbformat.read(run.notebook(chapter), as_version=4)
            gpu_nb.cells[0] = gpu_title_cell(run, chapter)
            write_notebook(gpu_nb, source / f"{gpu_page(run, chapter)}.ipynb")


def build_book(out: Path) -> Path:
    """Build HTML into out/html; return the path of its index page."""
    course = load_course()
    source = out / "book-src"
    write_sources(course, source, load_reference_runs())
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    subprocess.run([str(jupyter_book), "build", str(source), "--path-output", str(source), "--warningiserror",
                    "--keep-going", "--quiet"], check=True)
    html = out / "html"
    if html.exists():
        shutil.rmtree(html)
    shutil.copytree(source / "_build" / "html", html)
    return html / "index.html"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "_build")
    index = build_book(parser.parse_args().out.resolve())
    print(f"book built: {index}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
