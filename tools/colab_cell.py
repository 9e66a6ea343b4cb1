"""Put the Colab set-up cell, generated from book.toml, first among each chapter's code cells.

    python tools/colab_cell.py --write   # insert or update the cell in every chapter notebook
    python tools/colab_cell.py --check   # exit 1 if a chapter's cell is missing or stale

Run `make sync` afterwards so that the paired scripts follow. A newly inserted cell has no stored
output until the chapter is executed again (`make execute`); on a machine that is not Colab it prints nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.course import COLAB_CELL_MARKER, colab_setup_source, load_course  # noqa: E402

HIDDEN = {"source_hidden": True}  # JupyterLab shows the cell collapsed; the markdown above says what it is


def update_notebook(nb: nbformat.NotebookNode, source: str) -> bool:
    """Make the first code cell the Colab cell, collapsed; return True if the notebook changed."""
    code = [index for index, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    first = nb.cells[code[0]] if code else None
    if first is None or not first.source.startswith(COLAB_CELL_MARKER):
        first = nbformat.v4.new_code_cell("")
        nb.cells.insert(code[0] if code else len(nb.cells), first)
    changed = first.source != source or first.metadata.get("jupyter") != HIDDEN
    first.source = source
    first.metadata["jupyter"] = dict(HIDDEN)
    return changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    course = load_course()
    stale = []
    for chapter in course.chapters:
        path = ROOT / chapter.file
        nb = nbformat.read(path, as_version=4)
        if update_notebook(nb, colab_setup_source(course)):
            stale.append(chapter.file)
            if args.write:
                nbformat.write(nb, path)
    if args.check and stale:
        print(f"the Colab cell is missing or stale in {', '.join(stale)}: run `python tools/colab_cell.py --write`")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
