"""tools/readme.py keeps the generated files current: the README's tables, helpers/README.md, shipped ledgers."""

import subprocess
import sys

from tests.conftest import ROOT
from tools.course import chapter_table_markdown, load_course
from tools.readme import SHIPPED_LEDGERS, helpers_readme


def test_every_generated_file_is_current():
    assert chapter_table_markdown(load_course()) in (ROOT / "README.md").read_text(), "run `make readme`"
    subprocess.run([sys.executable, str(ROOT / "tools" / "readme.py"), "--check"], check=True)


def test_the_helpers_map_names_every_module_with_its_docstring():
    text = helpers_readme()
    assert "(no docstring)" not in text
    modules = [p for p in (ROOT / "helpers").rglob("*.py") if p.name != "__init__.py"]
    assert all(f"`{p.name}`" in text for p in modules)
    assert text.index("**`core/`**") < text.index("**`workload/`**") < text.index("**`ch01_measure/`**")


def test_the_shipped_ledgers_are_the_reference_runs_ledgers():
    shipped = {p.stem: p.read_text() for p in SHIPPED_LEDGERS.glob("*.json")}
    runs = {p.parent.name: p.read_text() for p in (ROOT / "results" / "gpu").glob("*/ledger.json")}
    assert shipped == runs and shipped, "run `make readme`"
