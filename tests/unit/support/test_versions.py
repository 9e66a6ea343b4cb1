"""Tests of helpers/support/versions.py."""

import pytest
import torch

from helpers.support.versions import installed_version


def test_installed_version_is_the_version_that_runs():
    name, number = installed_version("torch").split(" ")
    assert name == "torch" and number == torch.__version__.split("+")[0]  # the wheel's metadata omits +cu130


def test_a_missing_package_is_said_to_be_missing():
    assert installed_version("no-such-package-here") == "no-such-package-here: not installed here"
    with pytest.raises(TypeError, match="distribution"):
        installed_version(None)
