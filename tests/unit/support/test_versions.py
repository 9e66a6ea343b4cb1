"""Tests of helpers/support/versions.py."""

import pytest
import torch

from helpers.support.versions import installed_version


def test_installed_version_is_the_version_that_runs():
    assert installed_version("torch") == f"torch {torch.__version__}"


def test_a_missing_package_is_said_to_be_missing():
    assert installed_version("no-such-package-here") == "no-such-package-here: not installed here"
    with pytest.raises(TypeError, match="distribution"):
        installed_version(None)
