"""Execute one notebook in the current folder with the running Python's own kernel; print a JSON summary.

tools/colab_check.py runs this with the Python of its Colab-like environment, in an empty folder that holds
only the notebook. It uses nothing but nbclient and nbformat (Colab ships both), so it runs in that environment.

    python colab_run_chapter.py ch01_measure.ipynb
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

KERNEL = "colab-check"  # written into this environment by tools/colab_check.py: this Python, no other


def cell_errors(nb: nbformat.NotebookNode) -> list[dict]:
    """Every code cell whose outputs hold an error: its number among the code cells, the error's name and text."""
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    return [{"cell": number, "ename": output.ename, "evalue": output.evalue[:300]}
            for number, cell in enumerate(code_cells, start=1)
            for output in cell.get("outputs", []) if output.output_type == "error"]


def main() -> int:
    path = Path(sys.argv[1])
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name=KERNEL, timeout=600, allow_errors=True,
                            resources={"metadata": {"path": str(Path.cwd())}})
    start = time.perf_counter()
    client.execute()
    wall_s = time.perf_counter() - start
    nbformat.write(nb, path)  # the executed copy stays in the folder, for reading what failed
    code_cells = sum(cell.cell_type == "code" for cell in nb.cells)
    print(json.dumps({"wall_s": round(wall_s, 1), "code_cells": code_cells, "errors": cell_errors(nb)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
