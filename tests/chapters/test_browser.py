"""Learners use the widgets in JupyterLab: drive a real Chromium through each chapter's widgets.

JupyterLab serves a throw-away copy of the notebooks (autosave must not touch the stored outputs).
Each chapter is run top to bottom in the course's kernel, once; then each of its widgets in turn has
its main control moved to both extremes and back, and after each move the widget's output must change
and no traceback may appear. Screenshots, named per widget, land in test-artifacts/. Without Chromium
the test is skipped, except on CI, where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ARTIFACTS, ROOT, require_browser

TOKEN = "course-browser-test"
CHAPTER_TIMEOUT_S = 1800  # a whole chapter in the browser; on a loaded 2-core machine ch06 took about 15 min
SETTING_TIMEOUT_S = 180  # one widget setting: ch06 compiles a new precision or trains a student on first use


@dataclass(frozen=True)
class WidgetTour:
    """How to find one widget's main control in its chapter, the settings to visit, and text every result shows."""

    cell_marker: str
    control: str
    settings: tuple[str, ...]
    result_marker: str

    @property
    def name(self) -> str:
        """The name before '=' in the marker ('ratio' for 'ratio=widgets.FloatSlider'): names the screenshots."""
        return self.cell_marker.split("=")[0].strip()


@dataclass(frozen=True)
class ChapterTour:
    """Which chapter to open (it runs once) and its widgets to drive afterwards, in order."""

    notebook: str
    widgets: tuple[WidgetTour, ...]


TOURS = [
    ChapterTour("ch02_model_structure.ipynb", (
        WidgetTour("ratio=widgets.FloatSlider", "slider", ("0.9", "0", "0.5"), "latency_ms (batch 64)"),
    )),
    ChapterTour("ch03_hardware.ipynb", (
        WidgetTour("precision=widgets.ToggleButtons", "buttons", ("fp16", "bf16", "fp32"), "train_step_ms"),
    )),
    ChapterTour("ch04_data_pipeline.ipynb", (
        WidgetTour("num_workers=widgets.IntSlider", "slider", ("4", "0", "2"), "first batch, epoch 2 (ms)"),
    )),
    ChapterTour("ch05_distributed.ipynb", (
        WidgetTour("parameters_m=widgets.FloatLogSlider", "slider", ("250", "1", "25"), "efficiency"),
    )),
    ChapterTour("ch06_compression.ipynb", (
        WidgetTour("temperature=widgets.FloatSlider", "slider", ("2", "10", "1"), "validation accuracy"),
        WidgetTour("precision=widgets.ToggleButtons", "buttons", ("int8 static", "int8 dynamic", "bf16"),
                   "largest logit difference"),
    )),
    ChapterTour("ch07_tools.ipynb", (
        WidgetTour("runtime=widgets.ToggleButtons", "buttons", ("ONNX Runtime int8 (static, U8S8)",
                                                               "eager, channels_last", "eager"), "images per second"),
    )),
    ChapterTour("ch08_capstone.ipynb", (
        WidgetTour("budget_points=budget_slider", "slider", ("5", "0", "1"), "x faster"),
    )),
    ChapterTour("appA_language_model.ipynb", (
        WidgetTour("generation_widget = ", "slider", ("128", "16", "64"), "tokens/s"),
    )),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, process: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {process.returncode}")
        try:
            urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer at {url} within {timeout_s} s")


@pytest.fixture(scope="module")
def lab_url(tmp_path_factory) -> Iterator[str]:
    """A JupyterLab server on 127.0.0.1 serving a copy of the notebooks, with every cell in the DOM."""
    require_browser()
    work = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", work / "notebooks")
    settings = work / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(work / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces"), "COURSE_STRICT_WARNINGS": "1"}
    port = _free_port()
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--ServerApp.token={TOKEN}", "--ServerApp.allow_root=True", f"--ServerApp.root_dir={work}"]
    with open(work / "server.log", "w") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(url, server)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def _shut_down_kernels(url: str) -> None:
    """Stop every kernel the server runs, so that the next chapter has the machine's memory to itself."""
    with urllib.request.urlopen(f"{url}/api/kernels?token={TOKEN}", timeout=10) as response:
        kernels = json.load(response)
    for kernel in kernels:
        request = urllib.request.Request(f"{url}/api/kernels/{kernel['id']}?token={TOKEN}", method="DELETE")
        urllib.request.urlopen(request, timeout=30).close()


def _menu(page, menu: str, item: str) -> None:
    """Click a JupyterLab menu item, e.g. Run > Run All Cells."""
    page.locator(".lm-MenuBar-itemLabel", has_text=menu).first.click()
    page.locator(".lm-Menu-itemLabel", has_text=item).first.click()


def _run_all_cells(page) -> None:
    """Clear the stored outputs, run the notebook top to bottom, and wait until every visible prompt shows [n]."""
    page.locator(".jp-NotebookPanel .jp-Notebook").wait_for(timeout=60_000)
    page.locator("#jp-main-statusbar").get_by_text("Idle").wait_for(timeout=90_000)
    _menu(page, "Edit", "Clear Outputs of All Cells")
    _menu(page, "Run", "Run All Cells")
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
                .map(p => p.textContent.trim()).filter(p => p !== '');
            return prompts.length > 0 && prompts.every(p => /^\\[\\d+\\]:?$/.test(p));
        }""",
        timeout=CHAPTER_TIMEOUT_S * 1000, polling=1000)


def _widget_cell(page, marker: str):
    """The code cell whose source contains marker."""
    cell = page.locator(".jp-CodeCell").filter(has=page.locator(".jp-InputArea", has_text=marker))
    assert cell.count() == 1, f"expected one cell containing {marker!r}, found {cell.count()}"
    return cell


def _set_control(cell, control: str, value: str) -> None:
    """Move the cell's main control to value, the way a learner would."""
    if control == "slider":
        readout = cell.locator(".widget-readout").first
        readout.click()
        readout.press("Control+a")
        readout.type(value)
        readout.press("Enter")
    elif control == "buttons":
        cell.locator(".widget-toggle-button", has_text=value).first.click()
    else:
        raise ValueError(f"unknown control kind {control!r}")


def _output_text(cell) -> str:
    return cell.locator(".widget-output").first.inner_text()


def _assert_no_traceback(page, where: str) -> None:
    tracebacks = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                              has_text="Traceback")
    assert tracebacks.count() == 0, f"traceback on screen {where}: {tracebacks.first.inner_text()[:500]}"
    assert page.locator(".jp-OutputArea-output", has_text="Traceback (most recent call last)").count() == 0


def _screenshot_name(stem: str, widget: WidgetTour, setting: str) -> str:
    """E.g. 'ch06_compression-precision-int8-static.png'."""
    return f"{stem}-{widget.name}-{setting.replace(' ', '-')}.png"


def _tour_widget(page, stem: str, widget: WidgetTour) -> None:
    """Move one widget's control through its settings; after each, its output must change and show no error."""
    cell = _widget_cell(page, widget.cell_marker)
    cell.scroll_into_view_if_needed()
    cell.locator(".widget-output").first.wait_for()
    previous = _output_text(cell)
    assert previous.strip(), f"the {widget.name} widget shows nothing after the chapter ran"
    cell.screenshot(path=str(ARTIFACTS / _screenshot_name(stem, widget, "initial")))
    for value in widget.settings:
        _set_control(cell, widget.control, value)
        page.wait_for_function(
            "([el, before, marker]) => el.innerText !== before && el.innerText.includes(marker)",
            arg=[cell.locator(".widget-output").first.element_handle(), previous, widget.result_marker],
            timeout=SETTING_TIMEOUT_S * 1000, polling=250)
        page.locator("#jp-main-statusbar").get_by_text("Idle").wait_for(timeout=SETTING_TIMEOUT_S * 1000)
        current = _output_text(cell)
        _assert_no_traceback(page, f"after setting {widget.name} to {value}")
        assert "Could not run this setting" not in current, current
        cell.screenshot(path=str(ARTIFACTS / _screenshot_name(stem, widget, value)))
        previous = current


@pytest.mark.parametrize("tour", TOURS, ids=[t.notebook for t in TOURS])
def test_widgets_respond_in_jupyterlab(lab_url, chromium, tour: ChapterTour):
    ARTIFACTS.mkdir(exist_ok=True)
    stem = Path(tour.notebook).stem
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    try:
        # A workspace of its own, so that no other chapter's tab is restored next to this one.
        page.goto(f"{lab_url}/lab/workspaces/{stem}/tree/notebooks/{tour.notebook}?token={TOKEN}&reset")
        _run_all_cells(page)
        _assert_no_traceback(page, "after running the chapter")
        for widget in tour.widgets:
            _tour_widget(page, stem, widget)
    finally:
        page.screenshot(path=str(ARTIFACTS / f"{stem}-page.png"))
        page.close()
        _shut_down_kernels(lab_url)
