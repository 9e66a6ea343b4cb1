"""book.toml is the course's single description: the notebooks, README and environment must agree with it."""

import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from helpers.support.ledger import COURSE_NOTEBOOKS
from tools.course import ROOT, launch_badges, load_course

COURSE = load_course()


def test_book_toml_lists_exactly_the_notebooks_present():
    listed = sorted(c.file for c in COURSE.chapters)
    present = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert listed == present


def test_chapter_entries_are_complete():
    for chapter in COURSE.chapters:
        assert chapter.title and chapter.hardware and chapter.minutes > 0
        prefix = f"app{chapter.appendix}_" if chapter.is_appendix else f"ch{chapter.number:02d}_"
        assert chapter.stem.startswith(prefix), f"{chapter.label}'s notebook must be named {prefix}..."


def test_the_course_is_eight_chapters_then_the_appendices():
    assert [c.label for c in COURSE.article_chapters] == [f"Chapter {n}" for n in range(1, 9)]
    assert [(c.label, c.key, c.number) for c in COURSE.appendices] == [("Appendix A", "A", 9)]
    assert COURSE.chapters == COURSE.article_chapters + COURSE.appendices
    third = COURSE.chapters[2]
    assert (third.label, third.key, third.is_appendix) == ("Chapter 3", "3", False)


@pytest.mark.parametrize("letter", ["a", "AB", "1", 1])
def test_an_appendix_is_one_capital_letter(letter):
    from tools.course import Chapter
    with pytest.raises(ValueError, match="appendix must be one capital letter"):
        Chapter(number=9, file="notebooks/appA_x.ipynb", title="x", minutes=1, hardware="any", appendix=letter)


def test_a_larger_memory_budget_needs_its_reason():
    from tools.course import DEFAULT_PEAK_BUDGET_GB, Chapter
    entry = dict(number=9, file="notebooks/ch09_x.ipynb", title="x", minutes=1, hardware="any")
    assert Chapter(**entry).peak_budget_gb == DEFAULT_PEAK_BUDGET_GB
    with pytest.raises(ValueError, match="budget_reason"):
        Chapter(**entry, peak_budget_gb=1.8)
    assert Chapter(**entry, peak_budget_gb=1.8, budget_reason="measured 1.7 GB: four processes").peak_budget_gb == 1.8
    assert [c.number for c in COURSE.chapters if c.peak_budget_gb != DEFAULT_PEAK_BUDGET_GB] == [4, 5, 7]


def test_no_chapter_may_need_more_memory_than_binder_gives():
    from tools.course import BINDER_MEMORY_GB, Chapter
    entry = dict(number=9, file="notebooks/ch09_x.ipynb", title="x", minutes=1, hardware="any")
    with pytest.raises(ValueError, match="Binder"):
        Chapter(**entry, peak_budget_gb=2.5, budget_reason="measured 2.4 GB")
    assert all(c.peak_budget_gb <= BINDER_MEMORY_GB for c in COURSE.chapters)


def test_chapter_five_states_the_budget_book_toml_gives_it():
    """Chapter 5 reads no repository file at run time (it must run on Colab): its budget is a stated constant."""
    script = (ROOT / "scripts" / "ch05_distributed.py").read_text()
    budget = next(c.peak_budget_gb for c in COURSE.chapters if c.number == 5)
    assert f"\nbudget_gb = {budget}\n" in script


def test_the_ledger_knows_the_chapters_book_toml_lists():
    assert COURSE_NOTEBOOKS == {c.number: c.file for c in COURSE.chapters}


@pytest.mark.parametrize("chapter", COURSE.chapters, ids=lambda c: c.stem)
def test_title_cell_matches_book_toml(chapter):
    first = nbformat.read(ROOT / chapter.file, as_version=4).cells[0]
    assert first.cell_type == "markdown"
    assert first.source.startswith(f"# {chapter.label} — {chapter.title}\n")
    assert launch_badges(COURSE, chapter) in first.source
    assert f"**Estimated time:** ~{chapter.minutes} min · **Hardware:** {chapter.hardware}" in first.source


@pytest.mark.parametrize("chapter", COURSE.chapters, ids=lambda c: c.stem)
def test_notebook_has_stored_outputs_and_the_course_kernel(chapter):
    nb = nbformat.read(ROOT / chapter.file, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert all(c.execution_count is not None for c in code), "run `make execute` to store outputs"
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
    assert nb.metadata["kernelspec"]["name"] == "dl-perf-course"


def test_environment_yml_installs_requirements_txt_with_the_same_python():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_packages = [d for d in env["dependencies"] if isinstance(d, str)]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "python=3.11" in conda_packages
    assert "-r requirements.txt" in pip_section, "Binder/conda must install the same pinned packages"
    requirement_names = {line.split("==")[0].lower() for line in (ROOT / "requirements.txt").read_text().splitlines()
                         if line and not line.startswith("#")}
    conda_names = {d.split("=")[0].lower() for d in conda_packages}
    assert conda_names <= {"python", "pip"}, "conda must not install a second copy of a pip-pinned package"
    assert requirement_names, "requirements.txt lists packages"


def test_requirements_are_pinned_exactly():
    lines = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert all("==" in line for line in lines), [line for line in lines if "==" not in line]
    assert "torch==2.14.1" in lines and "torchvision==0.29.1" in lines


def test_binder_installs_the_same_requirements_with_cpu_torch():
    env = yaml.safe_load((ROOT / "binder" / "environment.yml").read_text())
    root_env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_packages = [d for d in env["dependencies"] if isinstance(d, str)]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert conda_packages == [d for d in root_env["dependencies"] if isinstance(d, str)]
    assert pip_section == ["--extra-index-url https://download.pytorch.org/whl/cpu", "-r ../requirements.txt"]


def test_binder_post_build_installs_the_helpers_and_the_chapters_kernel():
    post_build = ROOT / "binder" / "postBuild"
    assert os.access(post_build, os.X_OK), "Binder runs postBuild only when it is executable"
    text = post_build.read_text()
    kernel = nbformat.read(ROOT / COURSE.chapters[0].file, as_version=4).metadata["kernelspec"]["name"]
    assert "pip install --quiet --no-deps -e ." in text
    assert f"ipykernel install --sys-prefix --name {kernel} " in text


def test_jupyterlab_never_asks_to_fetch_news_from_the_internet():
    """The course runs offline: `make setup` installs settings that turn the news feed and update check off."""
    import json

    overrides = json.loads((ROOT / "tools" / "jupyterlab_overrides.json").read_text())
    notification = overrides["@jupyterlab/apputils-extension:notification"]
    assert notification == {"fetchNews": "false", "checkForUpdates": False}
    makefile = (ROOT / "Makefile").read_text()
    assert "cp tools/jupyterlab_overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json" in makefile
    if (Path(sys.prefix) / ".course-installed").exists():  # running in the environment `make setup` built
        installed = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
        assert json.loads(installed.read_text()) == overrides


def test_the_set_up_picks_its_torch_source_without_waiting_on_a_time_out():
    start = time.monotonic()
    done = subprocess.run(["make", "--no-print-directory", "-s", "torch-source"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    elapsed = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in ("", "--extra-index-url https://download.pytorch.org/whl/cpu")
    assert elapsed < 15, f"choosing the torch source took {elapsed:.0f} s"


def write_book(folder, numbers: list[int], appendices: dict[int, str] | None = None) -> str:
    """A minimal book.toml listing chapters with these numbers; those in appendices are appendices, lettered so."""
    letters = appendices or {}
    chapters = "".join(
        (f'\n[[chapters]]\nnumber = {n}\nappendix = "{letters[n]}"\nfile = "notebooks/app{letters[n]}_x.ipynb"\n'
         if n in letters else f'\n[[chapters]]\nnumber = {n}\nfile = "notebooks/ch{n:02d}_x.ipynb"\n')
        + f'title = "Part {n}"\nminutes = 10\nhardware = "Any CPU"\n' for n in numbers)
    path = folder / "book.toml"
    path.write_text('[course]\ntitle = "T"\nauthors = ["A"]\nrepository = "https://github.com/o/r"\n'
                    f'branch = "main"\n{chapters}')
    return str(path)


def test_load_course_accepts_a_gap_in_the_chapter_numbers(tmp_path):
    course = load_course(write_book(tmp_path, [1, 3]))
    assert [c.number for c in course.chapters] == [1, 3]
    assert course.chapters[1].stem == "ch03_x"


@pytest.mark.parametrize("numbers", [[2, 1], [1, 3, 2], [1, 1], [1, 2, 2], [0, 1], [-1, 2]])
def test_load_course_rejects_decreasing_repeated_or_non_positive_numbers(tmp_path, numbers):
    with pytest.raises(ValueError, match="must be positive and increasing"):
        load_course(write_book(tmp_path, numbers))


def test_load_course_accepts_appendices_after_the_chapters(tmp_path):
    course = load_course(write_book(tmp_path, [1, 2, 5, 6], {5: "A", 6: "B"}))
    assert [c.key for c in course.article_chapters] == ["1", "2"]
    assert [(c.label, c.stem) for c in course.appendices] == [("Appendix A", "appA_x"), ("Appendix B", "appB_x")]


def test_load_course_rejects_an_appendix_before_a_chapter(tmp_path):
    with pytest.raises(ValueError, match="appendices .* must come after every chapter"):
        load_course(write_book(tmp_path, [1, 2, 3], {2: "A"}))


@pytest.mark.parametrize("letters", [{3: "B"}, {3: "A", 4: "C"}, {3: "B", 4: "A"}, {3: "A", 4: "A"}])
def test_load_course_rejects_appendices_not_lettered_a_b_in_order(tmp_path, letters):
    with pytest.raises(ValueError, match="must be lettered A"):
        load_course(write_book(tmp_path, [1, 2, *letters], letters))
