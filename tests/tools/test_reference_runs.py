"""Reference GPU runs (tools/gpu_run.sh): kept complete under results/gpu/, named for their versions, shown by the
book and the README."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.conftest import ROOT
from tools.build_book import gpu_page, gpu_run_links, gpu_title_cell, toc_yaml
from tools.course import ReferenceRun, compare_code, load_course, load_reference_runs, reference_run_name
from tools.readme import measured_runs_markdown

COURSE = load_course()
RUNS = load_reference_runs()
VERSIONS = {"gpu": "NVIDIA H200", "driver": "580.159.04", "cuda": "13.0", "torch": "2.11.0+cu130", "python": "3.12.3"}


def test_the_repository_keeps_a_reference_gpu_run():
    assert RUNS, "results/gpu/ holds no reference run: make one with tools/gpu_run.sh on a CUDA machine"


@pytest.mark.parametrize("run", RUNS, ids=lambda r: r.folder.name)
def test_reference_run_is_complete_and_named_for_its_versions(run: ReferenceRun):
    """A run may predate a chapter (the README and the book then say so); every chapter it has ran whole on a GPU."""
    versions = json.loads((run.folder / "versions.json").read_text())
    assert run.folder.name == reference_run_name(versions)
    present = [chapter for chapter in COURSE.chapters if run.notebook(chapter)]
    assert present, f"{run.folder.name} holds no chapter: re-run tools/gpu_run.sh"
    for chapter in present:
        path = run.notebook(chapter)
        nb = nbformat.read(path, as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors, f"{path.name} has an error output: {errors[0].get('ename')}"
        assert "device=cuda" in nb.metadata["course_run"]["machine"], f"{path.name} did not run on a GPU"
    ledger = json.loads((run.folder / "ledger.json").read_text())
    assert {e["chapter"] for e in ledger["entries"]} == {c.number for c in present}
    assert all(claim["verdict"] in ("holds", "does not hold here", "inconclusive") for claim in ledger["claims"])


def test_run_name_comes_from_gpu_cuda_and_torch_versions():
    assert reference_run_name(VERSIONS) == "nvidia-h200_cuda13.0_torch2.11.0"


def test_run_name_says_which_version_is_missing():
    with pytest.raises(ValueError, match="driver"):
        reference_run_name({**VERSIONS, "driver": ""})


def test_runs_are_found_by_their_versions_file(tmp_path: Path):
    (tmp_path / "not-a-run").mkdir()
    run_folder = tmp_path / reference_run_name(VERSIONS)
    run_folder.mkdir()
    (run_folder / "versions.json").write_text(json.dumps(VERSIONS))
    (run_folder / "ch01_measure.ipynb").write_text("{}")
    [run] = load_reference_runs(tmp_path)
    assert run.label == "NVIDIA H200, driver 580.159.04, CUDA 13.0, torch 2.11.0+cu130"
    assert run.notebook(COURSE.chapters[0]) == run_folder / "ch01_measure.ipynb"
    assert run.notebook(COURSE.chapters[1]) is None


def test_a_versions_file_without_the_gpu_is_refused(tmp_path: Path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "versions.json").write_text(json.dumps({**VERSIONS, "gpu": None}))
    with pytest.raises(ValueError, match="gpu"):
        load_reference_runs(tmp_path)


def test_a_copy_of_the_chapter_is_current_and_an_edited_copy_is_an_earlier_edition(tmp_path: Path):
    chapter = ROOT / COURSE.chapters[0].file
    nb = nbformat.read(chapter, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    same = tmp_path / "same.ipynb"
    nbformat.write(nb, same)
    assert compare_code(chapter, same).current
    code[-1].source += "\nprint('changed')"
    code[-2].source = "# another edition"
    edited = tmp_path / "edited.ipynb"
    nbformat.write(nb, edited)
    edition = compare_code(chapter, edited)
    assert not edition.current and edition.differing == 2 and edition.shown  # nearly all of the chapter still ran
    assert edition.label == f"GPU run of an earlier edition, 2 of {edition.total} code cells differ"
    for cell in code[: len(code) // 10 + 1]:
        cell.source = "# another edition"
    nbformat.write(nb, edited)
    assert not compare_code(chapter, edited).shown  # over a tenth of today's code never ran in it


def test_a_stale_run_is_labelled_wherever_it_is_shown():
    """The README's table gives its edition instead of its time; the book's links and page title cell say it."""
    table = measured_runs_markdown(COURSE)
    for run in RUNS:
        for chapter in (c for c in COURSE.chapters if run.notebook(c)):
            edition = run.edition(chapter)
            row = next(line for line in table.splitlines() if line.startswith(f"| {chapter.key} |"))
            assert (edition.label.removeprefix("GPU run of ") in row) == (not edition.current), row
            assert edition.label in gpu_run_links(RUNS, chapter).source
            title = gpu_title_cell(run, chapter).source
            assert (f"**{edition.label}.**" in title) == (not edition.current)


def test_book_puts_each_gpu_run_under_its_chapter_and_links_it():
    toc = toc_yaml(COURSE, RUNS)
    for chapter, entry in zip(COURSE.chapters, toc["chapters"]):
        assert entry["file"] == chapter.stem
        having = [run for run in RUNS if run.notebook(chapter)]
        shown = [run for run in having if run.edition(chapter).shown]
        assert [s["file"] for s in entry.get("sections", [])] == [gpu_page(run, chapter) for run in shown]
        links = gpu_run_links(RUNS, chapter)
        assert (links is None) == (not having) and all(run.gpu in links.source for run in having)
        assert all(f"Not shown: {run.label}" in links.source for run in having if run not in shown)


def test_readme_run_table_has_a_column_per_gpu_run():
    table = measured_runs_markdown(COURSE)
    header = table.splitlines()[0]
    assert all(f"{run.gpu} run" in header for run in RUNS)
    rows = [line for line in table.splitlines() if line.startswith(tuple(f"| {c.key} |" for c in COURSE.chapters))]
    assert len(rows) == len(COURSE.chapters)
    assert all(line.count("|") == header.count("|") for line in rows)
    for run in RUNS:
        for chapter, row in zip(COURSE.chapters, rows):
            assert ("not in this run" in row) == (run.notebook(chapter) is None), row


@pytest.mark.slow
def test_book_shows_the_gpu_run_with_its_versions(built_book: Path):
    for run in RUNS:
        for chapter in (c for c in COURSE.chapters if run.notebook(c)):
            page = built_book / f"{gpu_page(run, chapter)}.html"
            if not run.edition(chapter).shown:  # too old to show: no page, and the chapter's page names it
                assert not page.exists() and run.label in (built_book / f"{chapter.stem}.html").read_text()
                continue
            html = page.read_text()
            assert run.label in html and f"{chapter.label} on {run.gpu}" in html
            assert run.edition(chapter).current or run.edition(chapter).label in html
            assert "<img" in html, f"the GPU run of {chapter.stem} shows no figure"
            assert run.folder.name in (built_book / f"{chapter.stem}.html").read_text()


@pytest.mark.slow
def test_runner_keeps_going_after_an_error_and_writes_the_copy_elsewhere(tmp_path: Path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 / 0"), nbformat.v4.new_code_cell("print('after')")])
    source = tmp_path / "broken.ipynb"
    nbformat.write(nb, source)
    out = tmp_path / "out"
    subprocess.run([sys.executable, str(ROOT / "tools" / "run_notebooks.py"), "--keep-going", "--out", str(out),
                    str(source)], check=True, capture_output=True)
    ran = nbformat.read(out / "broken.ipynb", as_version=4)
    assert ran.cells[0].outputs[0].output_type == "error" and "after" in ran.cells[1].outputs[0].text
    assert not nbformat.read(source, as_version=4).cells[0].outputs, "the source notebook must stay untouched"
