"""Each chapter's Colab cell: generated from book.toml, silent off Colab, installs once on Colab.

The Colab runs are real pip installs into a throw-away folder, from this checkout instead of GitHub
(this machine has no internet): Python starts without site-packages (-S), so the helpers are
not importable until the cell installs them, and a `google.colab` module stands in for the runtime.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers.course import ROOT, colab_setup_source, load_course

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


def _package_wheel(folder: Path) -> Path:
    """A wheel of the helpers package, built from a copy so that build files stay out of the checkout.

    The cell then installs a ready wheel: pip's isolated build would refuse the PIP_TARGET the test sets.
    """
    wheels = folder / "wheels"
    if not wheels.exists():
        source = folder / "source"
        shutil.copytree(ROOT / "helpers", source / "helpers", ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(ROOT / name, source / name)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(source), "-w", str(wheels)],
                       check=True, capture_output=True)
    return next(wheels.glob("*.whl"))


def _run_cell(tmp_path: Path, *, on_colab: bool) -> subprocess.CompletedProcess:
    """Run the cell with python -S in tmp_path, pip installing into tmp_path/site a wheel of this checkout."""
    source = colab_setup_source(COURSE)
    if on_colab:
        wheel = _package_wheel(tmp_path / "package")
        source = source.replace(f"git+{COURSE.repository}@{COURSE.branch}", wheel.as_uri())
    site = tmp_path / "site"
    env = {**os.environ, "PIP_TARGET": str(site), "PYTHONPATH": str(site)}
    code = (FAKE_COLAB if on_colab else "") + source
    result = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def test_colab_cell_does_nothing_elsewhere(tmp_path):
    result = _run_cell(tmp_path, on_colab=False)
    assert result.stdout == "" and not (tmp_path / "site").exists()


@pytest.mark.slow
def test_colab_cell_installs_once_on_colab(tmp_path):
    first = _run_cell(tmp_path, on_colab=True)
    assert first.stdout == "Colab: installed the course helpers\n"
    site = tmp_path / "site"
    assert (site / "helpers" / "course.py").exists() and (site / "torch_pruning").is_dir()
    installed = {p: p.stat().st_mtime_ns for p in site.rglob("*")}
    second = _run_cell(tmp_path, on_colab=True)
    assert second.stdout == ""
    assert {p: p.stat().st_mtime_ns for p in site.rglob("*")} == installed
