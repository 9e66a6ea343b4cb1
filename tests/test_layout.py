"""The floor plan of helpers/, held by tests: the layering rule, the one import rule, no repository files read
at run time, and a test file for every module (the package working on its own is test_package_alone.py)."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tools.course import load_course

HELPERS = ROOT / "helpers"
SHARED = ("core", "workload", "support")  # in this order: each shared folder imports only those before it
LAST_CHAPTER = max(c.number for c in load_course().article_chapters)  # the appendices come after it
# Where the course's own code imports helpers from: the chapters' scripts, the package, its tests and tools.
IMPORTERS = sorted([*(ROOT / "scripts").glob("*.py"), *HELPERS.rglob("*.py"), *(ROOT / "tests").rglob("*.py"),
                    *(ROOT / "tools").glob("*.py")])
# Modules whose only tests are the chapters' nbval runs, and why no unit test adds to that.
COVERED_BY_NBVAL = {
    "support/chapter.py": "setup_chapter runs first in every chapter, under nbval",
}


def modules() -> list[Path]:
    """Every module of the package except the folders' docstring-only __init__.py files."""
    return sorted(p for p in HELPERS.rglob("*.py") if p.name != "__init__.py")


def folder_of(path: Path) -> str:
    """'core', 'ch05_distributed', ...: the top-level folder of helpers/ that holds path."""
    return path.relative_to(HELPERS).parts[0]


def helpers_imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for each import of a helpers module in path; `import helpers.x as y` gives no names."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            found.append(("." * node.level + (node.module or ""), [a.name for a in node.names]))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "helpers":
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.split(".")[0] == "helpers"]
    return found


def chapter_number(folder: str) -> int | None:
    """8 for 'ch08_capstone', 9 for 'appA_language_model' (after the last chapter); None for a shared folder."""
    if folder.startswith("ch"):
        return int(folder[2:4])
    if folder.startswith("app"):
        return LAST_CHAPTER + ord(folder[3]) - ord("A") + 1
    return None


def allowed(importer: str, imported: str) -> bool:
    """Layering: core <- workload <- support <- ch01 <- ... <- ch08 <- appA; each imports what is to its left."""
    if importer in SHARED:
        return imported in SHARED and SHARED.index(imported) <= SHARED.index(importer)
    if imported in SHARED:
        return True
    return chapter_number(imported) <= chapter_number(importer)


def test_the_layering_rule_holds():
    """A chapter's folder builds on what came before it, never on a later chapter; shared code on no chapter."""
    broken = []
    for path in modules():
        for module, _ in helpers_imports(path):
            if module.startswith("."):
                broken.append(f"{path.relative_to(ROOT)}: relative import {module!r} (write helpers.<folder>...)")
            elif module.count(".") >= 1 and not allowed(folder_of(path), module.split(".")[1]):
                broken.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not broken, "\n".join(broken)


def test_a_chapter_uses_no_later_chapter_s_code():
    """The notebooks follow the same rule: chapter 5 cannot lean on what chapter 7 teaches, nor any on an appendix."""
    broken = [f"{script.relative_to(ROOT)} imports {module}"
              for script in sorted([*(ROOT / "scripts").glob("ch*.py"), *(ROOT / "scripts").glob("app*.py")])
              for module, _ in helpers_imports(script)
              if module.count(".") >= 1 and not allowed(script.stem, module.split(".")[1])]
    assert not broken, "\n".join(broken)


def test_no_private_name_crosses_a_module_line():
    """A name that starts with _ belongs to its module: chapters, helpers and tools never import one."""
    broken = [f"{path.relative_to(ROOT)}: from {module} import {name}"
              for path in IMPORTERS if "tests" not in path.relative_to(ROOT).parts[:1]
              for module, names in helpers_imports(path) for name in names if name.startswith("_")]
    assert not broken, "\n".join(broken)


@cache
def defined_names(module: str) -> frozenset[str]:
    """The names a helpers module defines at its top level (functions, classes, assignments), not those it imports."""
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.exists():
        return frozenset()
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return frozenset(names)


def test_every_name_is_imported_from_the_module_that_defines_it():
    """No hub and no re-export: the import line says which file to open."""
    broken = []
    for path in IMPORTERS:
        for module, names in helpers_imports(path):
            if not names and not (ROOT / (module.replace(".", "/") + ".py")).exists():
                broken.append(f"{path.relative_to(ROOT)}: import {module} (not a module of the package)")
            broken += [f"{path.relative_to(ROOT)}: from {module} import {name} (not defined there)"
                       for name in names if name not in defined_names(module)]
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("init", sorted(HELPERS.rglob("__init__.py")), ids=lambda p: str(p.relative_to(HELPERS)))
def test_every_init_is_a_docstring_and_nothing_else(init):
    body = ast.parse(init.read_text()).body
    assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), \
        f"{init.relative_to(ROOT)} must hold only its docstring (it would become a second index)"


# Repository files the package must not read at run time (on Colab only the installed package exists).
REPOSITORY_FILES = ("book.toml", "requirements.txt", "pyproject.toml", "environment.yml", "results/gpu")
# book.toml may only mark where the learner's course folder is (support/course_folder.py), never be read.
BOOK_TOML_AS_MARKER = {"support/course_folder.py"}


def code_strings(tree: ast.Module) -> list[str]:
    """The string constants of a module's code, docstrings left out."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


def test_the_package_reads_no_repository_file():
    broken = []
    for path in modules():
        tree, name = ast.parse(path.read_text()), str(path.relative_to(HELPERS))
        if any(isinstance(node, ast.Name) and node.id == "__file__" for node in ast.walk(tree)):
            broken.append(f"{name} finds files from its own location (__file__): use importlib.resources")
        for text in code_strings(tree):
            for repository_file in REPOSITORY_FILES:
                if repository_file in text and not (repository_file == "book.toml" and name in BOOK_TOML_AS_MARKER):
                    broken.append(f"{name} names the repository's {repository_file} ({text!r})")
    assert not broken, "\n".join(broken)


def test_every_module_has_its_test_file():
    """tests/unit mirrors helpers/: core/measure.py -> unit/core/test_measure.py; a chapter's folder -> one file,
    unit/test_chNN_name.py, which imports (or, for a torchrun job, launches) every module of that folder."""
    missing = []
    for path in modules():
        relative = path.relative_to(HELPERS)
        folder, dotted = relative.parts[0], "helpers." + ".".join(relative.with_suffix("").parts)
        expected = (ROOT / "tests" / "unit" / folder / f"test_{path.stem}.py" if folder in SHARED
                    else ROOT / "tests" / "unit" / f"test_{folder}.py")
        if str(relative) in COVERED_BY_NBVAL:
            continue
        if not expected.exists():
            missing.append(f"{relative}: {expected.relative_to(ROOT)} is missing")
        elif folder not in SHARED and dotted not in expected.read_text():
            missing.append(f"{relative}: {expected.relative_to(ROOT)} never imports or launches {dotted}")
    assert not missing, "\n".join(missing)
    stale = [name for name in COVERED_BY_NBVAL if not (HELPERS / name).exists()]
    assert not stale, f"COVERED_BY_NBVAL names modules that no longer exist: {stale}"


def test_the_folders_read_in_the_order_of_the_notebooks():
    chapters = sorted(p.name for p in HELPERS.iterdir()
                      if (p / "__init__.py").exists() and p.name.startswith(("ch", "app")))
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb") if p.stem.startswith(("ch", "app")))
    assert chapters == notebooks, "one helpers folder per chapter and appendix, named like its notebook"
