"""Test-session settings shared by the unit tests and by nbval's kernels (which inherit the environment)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.package import build_helpers_wheel

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"


def pytest_configure(config) -> None:
    """Strict warnings in every kernel; a throw-away ledger so tests never touch results/."""
    os.environ["COURSE_STRICT_WARNINGS"] = "1"
    ledger_dir = Path(tempfile.mkdtemp(prefix="course-ledger-"))
    os.environ["COURSE_LEDGER"] = str(ledger_dir / "ledger.json")


def missing_browser_reason() -> str | None:
    """Why Chromium cannot be driven here, or None when it can."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (make test installs it with apt when run as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (make setup installs it)"
    return None


def require_browser() -> None:
    """Skip the calling test without Chromium, except on CI, where the browser tests must run."""
    reason = missing_browser_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests, but {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """Debian's Chromium, headless, driven by Playwright."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> Path:
    """The Jupyter Book built once per test session from the stored outputs; its html folder."""
    out = tmp_path_factory.mktemp("book")
    subprocess.run([sys.executable, str(ROOT / "tools" / "build_book.py"), "--out", str(out)], check=True)
    return out / "html"


@pytest.fixture(scope="session")
def helpers_wheel(tmp_path_factory) -> Path:
    """A wheel of the helpers package, built once per test session from a copy of the checkout."""
    return build_helpers_wheel(tmp_path_factory.mktemp("package"))
