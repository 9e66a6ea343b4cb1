"""The Jupyter Book builds offline from book.toml and the stored outputs."""

import subprocess
import sys
from pathlib import Path

import pytest

from helpers.course import load_course

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built_book(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("book")
    subprocess.run([sys.executable, str(ROOT / "tools" / "build_book.py"), "--out", str(out)], check=True)
    return out / "html"


@pytest.mark.slow
def test_book_has_a_landing_page_and_every_chapter_with_a_figure(built_book: Path):
    assert "intro.html" in (built_book / "index.html").read_text()
    course = load_course()
    assert course.title in (built_book / "intro.html").read_text()
    for chapter in course.chapters:
        page = built_book / f"{chapter.stem}.html"
        assert page.exists(), f"{page.name} missing from the book"
        html = page.read_text()
        assert chapter.title in html
        assert "<img" in html, f"{page.name} shows no figure"


@pytest.mark.slow
def test_generated_configuration_is_not_committed():
    assert not (ROOT / "_config.yml").exists() and not (ROOT / "_toc.yml").exists()
