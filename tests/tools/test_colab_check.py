"""tools/colab_check.py: Colab's image as published, the floors it proves, and its last recorded result."""

from __future__ import annotations

import json
import re
import tomllib

import nbformat

from tests.conftest import ROOT
from tools.colab_check import RESULT, RUNTIMES, course_imports
from tools.colab_run_chapter import cell_errors
from tools.course import colab_extra_packages, colab_setup_source, load_course

COURSE = load_course()


def test_colab_pins_drop_local_labels_and_cuda_packages():
    pins = RUNTIMES["cpu"].pins()
    assert pins["torch"] == "2.11.0" and pins["ipywidgets"].startswith("7.")
    assert not any(name.startswith(("nvidia-", "cuda-")) for name in pins)
    assert RUNTIMES["cpu"].python_version == RUNTIMES["gpu"].python_version == "3.13"


def test_the_check_installs_what_the_colab_cell_installs():
    cell = colab_setup_source(COURSE)
    assert all(f'"{package}"' in cell for package in colab_extra_packages(COURSE))
    assert '"--quiet", "--no-deps"' in cell
    assert {"torch", "ipywidgets", "ipykernel", "nbclient"} <= set(course_imports())


def test_the_declared_floors_are_versions_colab_ships():
    """Every floor in pyproject.toml is met by Colab's image, which `make colab-check` runs every chapter on."""
    pins = RUNTIMES["cpu"].pins()
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dependency in dependencies:
        name, floor = re.fullmatch(r"([\w-]+)>=([\d.]+)", dependency).groups()
        colab = tuple(int(part) for part in pins[name].split(".")[:len(floor.split("."))])
        assert colab == tuple(int(part) for part in floor.split(".")), f"{name}: floor {floor}, Colab {pins[name]}"


def test_the_last_colab_check_ran_every_chapter_on_todays_list():
    check = json.loads(RESULT.read_text())
    source = json.loads((ROOT / "tools" / "colab" / "source.json").read_text())
    assert check["image"] == source, "Colab's list changed since the last check: run `make colab-check`"
    assert sorted(row["chapter"] for row in check["rows"]) == [c.number for c in COURSE.chapters]
    assert [row["chapter"] for row in check["rows"] if row["errors"]] == []
    assert check["widget_tests"]["passed"] and check["versions"]["ipywidgets"].startswith("7.")


def test_cell_errors_names_each_failing_code_cell():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("text"), nbformat.v4.new_code_cell("1"),
        nbformat.v4.new_code_cell("1 / 0", outputs=[nbformat.v4.new_output("error", ename="ZeroDivisionError",
                                                                            evalue="division by zero", traceback=[])])])
    assert cell_errors(nb) == [{"cell": 2, "ename": "ZeroDivisionError", "evalue": "division by zero"}]
