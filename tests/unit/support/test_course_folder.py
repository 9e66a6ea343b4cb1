"""Tests of helpers/support/course_folder.py."""

from helpers.support.course_folder import course_folder
from tests.conftest import ROOT


def test_the_course_folder_is_found_from_any_folder_inside_it(monkeypatch):
    monkeypatch.chdir(ROOT / "notebooks")
    assert course_folder() == ROOT.resolve()


def test_outside_the_course_there_is_none(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert course_folder() is None
