"""tools/readme.py keeps the generated files current: the README's tables, helpers/README.md, shipped ledgers."""

import json
import subprocess
import sys

from tests.conftest import ROOT
from tools.course import chapter_table_markdown, load_course, load_reference_runs
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


def test_the_shipped_ledgers_hold_only_chapters_that_ran_as_they_are_today():
    """A reference run's entries for a chapter whose code has changed since are left out, and named as left out."""
    course = load_course()
    runs = load_reference_runs()
    assert {p.stem for p in SHIPPED_LEDGERS.glob("*.json")} == {run.folder.name for run in runs} != set()
    for run in runs:
        shipped = json.loads((SHIPPED_LEDGERS / f"{run.folder.name}.json").read_text())
        editions = {c: run.edition(c) for c in course.chapters if run.notebook(c)}
        current = {c.number for c, edition in editions.items() if edition.current}
        assert {e["chapter"] for e in shipped["entries"] + shipped["claims"]} <= current
        stale = [f"{'appendix' if c.is_appendix else 'chapter'} {c.key}: {edition.label}"
                 for c, edition in editions.items() if not edition.current]
        assert shipped["left_out"] == stale
