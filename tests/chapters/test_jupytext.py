"""Every notebook has a py:percent partner in scripts/ with the same cells (jupytext pairing, `make sync`)."""

from pathlib import Path

import jupytext
import pytest

from tests.conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_and_script_are_in_sync(notebook: Path):
    script = ROOT / "scripts" / f"{notebook.stem}.py"
    assert script.exists(), f"{script.name} is missing: run `make sync`"
    from_notebook = jupytext.read(notebook)
    from_script = jupytext.read(script)
    cells = lambda nb: [(c.cell_type, c.source.strip()) for c in nb.cells]  # noqa: E731
    assert cells(from_notebook) == cells(from_script), f"{notebook.name} and {script.name} differ: run `make sync`"


def test_pairing_is_configured():
    assert 'formats = "notebooks///ipynb,scripts///py:percent"' in (ROOT / "jupytext.toml").read_text()
