"""The chapters' kernels turn deprecation warnings from our code into errors under `make test`."""

import os

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def run_cells(*sources: str) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    NotebookClient(nb, kernel_name="dl-perf-course", timeout=120).execute()


@pytest.mark.slow
def test_a_deprecated_call_in_a_notebook_fails_the_run():
    assert os.environ["COURSE_STRICT_WARNINGS"] == "1"
    setup = "from helpers.support.chapter import setup_chapter\nhw = setup_chapter(1)"
    with pytest.raises(CellExecutionError, match="FutureWarning"):
        run_cells(setup, "import torch\nwith torch.cuda.amp.autocast(enabled=False):  # the article's API\n    pass")
    with pytest.raises(CellExecutionError, match="DeprecationWarning"):
        run_cells(setup, "import warnings\nwarnings.warn('old API', DeprecationWarning)")
    run_cells(setup, "import warnings\nwarnings.warn('only a hint', UserWarning)")
