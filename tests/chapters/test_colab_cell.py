"""Each chapter's Colab cell: generated from book.toml, silent off Colab, installs once on Colab.

The Colab runs are real pip installs into a throw-away folder, from this checkout instead of GitHub
(this machine has no internet): Python starts without site-packages (-S), so the helpers are
not importable until the cell installs them, and a `google.colab` module stands in for the runtime.
"""

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tools.course import ROOT, colab_setup_source, load_course

COURSE = load_course()
FAKE_COLAB = "import sys, types; sys.modules['google.colab'] = types.ModuleType('google.colab')\n"


@pytest.mark.parametrize("chapter", COURSE.chapters, ids=lambda c: c.stem)
def test_first_code_cell_is_the_generated_colab_cell(chapter):
    nb = nbformat.read(ROOT / chapter.file, as_version=4)
    first_code = next(cell for cell in nb.cells if cell.cell_type == "code")
    assert first_code.source == colab_setup_source(COURSE), "run `python tools/colab_cell.py --write`"
    assert first_code.outputs == [], "off Colab the cell prints nothing"
    assert first_code.metadata.get("jupyter", {}).get("source_hidden") is True, "collapsed in JupyterLab"
    title = nb.cells[nb.cells.index(first_code) - 1]
    assert title.cell_type == "markdown" and "The next cell is collapsed" in title.source


def test_colab_cell_installs_the_pinned_extra_packages():
    source = colab_setup_source(COURSE)
    assert f"git+{COURSE.repository}@{COURSE.branch}" in source
    assert '"torch-pruning==1.6.1"' in source


def _run_cell(tmp_path: Path, wheel: Path | None = None) -> subprocess.CompletedProcess:
    """Run the cell with python -S in tmp_path; on Colab (a wheel given) pip installs that wheel into tmp_path/site."""
    source = colab_setup_source(COURSE)
    on_colab = wheel is not None
    if on_colab:
        source = source.replace(f"git+{COURSE.repository}@{COURSE.branch}", wheel.as_uri())
    site = tmp_path / "site"
    env = {**os.environ, "PIP_TARGET": str(site), "PYTHONPATH": str(site)}
    code = (FAKE_COLAB if on_colab else "") + source
    result = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def test_colab_cell_does_nothing_elsewhere(tmp_path):
    result = _run_cell(tmp_path)
    assert result.stdout == "" and not (tmp_path / "site").exists()


@pytest.mark.slow
def test_colab_cell_installs_once_on_colab(tmp_path, helpers_wheel):
    first = _run_cell(tmp_path, helpers_wheel)
    assert first.stdout == "Colab: installed the course helpers\n"
    site = tmp_path / "site"
    assert (site / "helpers" / "core" / "measure.py").exists() and (site / "torch_pruning").is_dir()
    installed = {p: p.stat().st_mtime_ns for p in site.rglob("*")}
    second = _run_cell(tmp_path, helpers_wheel)
    assert second.stdout == ""
    assert {p: p.stat().st_mtime_ns for p in site.rglob("*")} == installed
