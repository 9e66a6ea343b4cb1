"""The helpers package works on its own, as Colab installs it: a wheel of the checkout, installed with --no-deps
into an empty folder, imported and used from there with no repository beside it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import ROOT

# Run in the installed copy: every module imports, and the calls the chapters make with data that the
# repository holds (reference runs, package versions, the chapters' list) answer without the repository.
USE_THE_INSTALLED_PACKAGE = """
import importlib, json, pkgutil, sys
from importlib.resources import files
from pathlib import Path

import helpers
site = Path(sys.argv[1]).resolve()
assert Path(helpers.__file__).resolve().is_relative_to(site), f"imported {helpers.__file__}, not the installed copy"
names = [module.name for module in pkgutil.walk_packages(helpers.__path__, "helpers.")]
for name in names:
    importlib.import_module(name)

from helpers.ch08_capstone.class_report import read_class, reference_ledgers
from helpers.core.measure import measure_interleaved
from helpers.support.ledger import COURSE_NOTEBOOKS, ledger_path
from helpers.support.source import show_source
from helpers.ch08_capstone.versions import installed_version

references = reference_ledgers()
assert references, "the reference runs' ledgers ship with the package"
class_folder = Path("class")
class_folder.mkdir()
for name, ledger in references.items():
    (class_folder / f"{name}.json").write_text(ledger.read_text())
# A reference ledger carries entries, or names the chapters it ran in an earlier edition (left out).
assert all(participant.entries or any(problem.startswith('left out, chapter') for problem in participant.problems)
           for participant in read_class(class_folder))
assert installed_version("torch").startswith("torch ")
assert sorted(COURSE_NOTEBOOKS) == list(range(1, 10))
assert ledger_path() == Path.cwd().resolve() / "results" / "ledger.json"
assert show_source(measure_interleaved).data.startswith("# helpers/core/measure.py\\n")
assert (files("helpers") / "README.md").is_file()
print(f"{len(names)} modules imported; {len(references)} reference run(s)")
"""


@pytest.fixture
def installed(tmp_path, helpers_wheel) -> tuple[Path, Path, dict[str, str]]:
    """The wheel installed with --no-deps into site/, an empty work folder, and an environment that uses them."""
    site, work = tmp_path / "site", tmp_path / "work"
    work.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                    str(helpers_wheel)], check=True, capture_output=True)
    env = {key: value for key, value in os.environ.items() if key not in ("COURSE_LEDGER", "COURSE_CACHE")}
    env["PYTHONPATH"] = str(site)
    return site, work, env


@pytest.mark.slow
def test_the_installed_package_works_without_the_repository(installed):
    site, work, env = installed
    done = subprocess.run([sys.executable, "-c", USE_THE_INSTALLED_PACKAGE, str(site)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "modules imported" in done.stdout


# Run last in the chapter's kernel: which copy of the helpers it imported.
WHERE_FROM = "import helpers, pathlib; print('helpers from', pathlib.Path(helpers.__file__).resolve())"


@pytest.mark.slow
def test_chapter_8_runs_alone_in_an_empty_folder_with_the_installed_wheel(installed):
    """As on a Colab machine of its own: no repository, no ledger from chapters 1 to 7, helpers from the wheel."""
    site, work, env = installed
    nb = nbformat.read(ROOT / "notebooks" / "ch08_capstone.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(WHERE_FROM))
    client = NotebookClient(nb, kernel_name="dl-perf-course", timeout=600, allow_errors=True,
                            resources={"metadata": {"path": str(work)}})
    client.execute(env=env)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    errors = [(number, out.ename) for number, cell in enumerate(code, 1) for out in cell.outputs
              if out.output_type == "error"]
    assert errors == [], f"code cells that failed: {errors}"
    printed = "".join(out.get("text", "") for cell in code for out in cell.outputs)
    assert f"helpers from {site.resolve()}" in printed
    assert "not in the ledger yet: chapters 1, 2, 3, 4, 5, 6, 7" in printed
    assert (work / "results" / "ledger.json").exists(), "chapter 8 records its own results where it runs"
