"""The Jupyter Book builds offline from book.toml and the stored outputs, and reads well in a browser."""

from pathlib import Path

import nbformat
import pytest

from tests.conftest import ARTIFACTS, ROOT
from tools.build_book import WIDGET_NOTE, WIDGET_VIEW, freeze_widgets, gpu_page, hide_solutions
from tools.course import load_course, load_reference_runs

COURSE = load_course()


@pytest.mark.slow
def test_book_has_a_landing_page_and_every_chapter_with_a_figure(built_book: Path):
    assert "intro.html" in (built_book / "index.html").read_text()
    assert COURSE.title in (built_book / "intro.html").read_text()
    for chapter in COURSE.chapters:
        page = built_book / f"{chapter.stem}.html"
        assert page.exists(), f"{page.name} missing from the book"
        html = page.read_text()
        assert chapter.title in html
        assert f"~{chapter.minutes} min" in html and chapter.hardware in html
        assert "<img" in html, f"{page.name} shows no figure"


@pytest.mark.slow
def test_book_chapter_8_shows_the_reference_machines_waterfall(built_book: Path, chromium):
    html = (built_book / "ch08_capstone.html").read_text()
    after = html[html.index("The whole waterfall with the data pipeline beside it"):]
    assert after.index("<img") < after.index("<h2"), "no figure right after the complete waterfall's text"
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto((built_book / "ch08_capstone.html").as_uri())
        page.locator("text=The whole waterfall with the data pipeline beside it").first.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "book-ch08-waterfall.png"))
    finally:
        page.close()


@pytest.mark.slow
def test_book_shows_widgets_as_their_stored_output(built_book: Path):
    for chapter in COURSE.chapters:
        html = (built_book / f"{chapter.stem}.html").read_text()
        assert WIDGET_VIEW not in html, f"{chapter.stem}: a widget view needs a kernel, the book cannot show it"
        assert "Live control: open this chapter" in html


@pytest.mark.parametrize("chapter", COURSE.chapters, ids=lambda c: c.stem)
def test_freezing_replaces_each_widget_by_its_measured_output(chapter):
    nb = nbformat.read(ROOT / chapter.file, as_version=4)
    widget_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
                    and any(WIDGET_VIEW in o.get("data", {}) for o in c.outputs)]
    assert widget_cells, "every chapter has a live control"
    freeze_widgets(nb)
    for index in widget_cells:
        outputs = nb.cells[index].outputs
        assert outputs[0].data["text/markdown"] == WIDGET_NOTE
        assert len(outputs) >= 2, f"cell {index}: no stored widget output; run `make execute`"
        assert not any(WIDGET_VIEW in o.get("data", {}) for o in outputs)
    assert "widgets" not in nb.metadata


@pytest.mark.parametrize("chapter", COURSE.chapters, ids=lambda c: c.stem)
def test_solutions_are_folded_in_jupyterlab_and_in_the_book(chapter):
    nb = nbformat.read(ROOT / chapter.file, as_version=4)
    solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert solutions, "every chapter has reference solutions"
    for cell in solutions:  # a learner who scrolls sees neither the code nor the answer it prints
        assert cell.metadata.get("jupyter") == {"outputs_hidden": True, "source_hidden": True}
    hide_solutions(nb)
    assert all({"solution", "hide-input", "hide-output"} <= set(c.metadata.tags) for c in solutions)


@pytest.mark.slow
def test_book_index_renders_in_chromium(built_book: Path, chromium):
    ARTIFACTS.mkdir(exist_ok=True)
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto((built_book / "index.html").as_uri())
        page.wait_for_url("**/intro.html")  # index.html redirects with a meta refresh: wait for its target
        page.wait_for_load_state("load")
        assert COURSE.title in page.title() or COURSE.title in page.inner_text("body")
        for chapter in COURSE.chapters:
            assert page.locator("nav a", has_text=chapter.title).count() >= 1, f"{chapter.title} not in the sidebar"
        page.screenshot(path=str(ARTIFACTS / "book-index.png"))
        page.goto((built_book / f"{COURSE.article_chapters[-1].stem}.html").as_uri())
        page.wait_for_load_state("load")
        page.locator("text=Live control: open this chapter").first.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "book-widget-output.png"))
    finally:
        page.close()


def test_generated_configuration_is_not_committed():
    assert not (ROOT / "_config.yml").exists() and not (ROOT / "_toc.yml").exists()


@pytest.mark.slow
def test_book_labels_every_gpu_run_of_an_earlier_edition_in_chromium(built_book: Path, chromium):
    """On the chapter's page (its link) and at the top of the run's own page, a reader sees the label first."""
    ARTIFACTS.mkdir(exist_ok=True)
    stale = [(run, chapter) for run in load_reference_runs() for chapter in COURSE.chapters
             if run.notebook(chapter) and not run.edition(chapter).current]
    with_page = [(run, chapter) for run, chapter in stale if run.edition(chapter).shown]
    page = chromium.new_page(viewport={"width": 1400, "height": 900})
    try:
        for run, chapter in stale:
            label = run.edition(chapter).label
            pages = [(f"{chapter.stem}.html", f"book-{chapter.stem}-gpu-link.png")]
            if (run, chapter) in with_page:
                pages.append((f"{gpu_page(run, chapter)}.html", f"book-{chapter.stem}-gpu-run.png"))
            else:  # a copy too old to show: the chapter's page names it, and the book has no page for it
                assert not (built_book / f"{gpu_page(run, chapter)}.html").exists()
            for html, shot in pages:
                page.goto((built_book / html).as_uri())
                shown = page.get_by_text(label).first
                shown.scroll_into_view_if_needed()
                assert shown.is_visible(), f"{html} does not show '{label}'"
                page.screenshot(path=str(ARTIFACTS / shot))
    finally:
        page.close()
