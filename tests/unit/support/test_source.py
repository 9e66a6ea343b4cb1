"""Tests of helpers/support/source.py."""

import textwrap

import pytest

from helpers.ch02_model_structure.pruning import prune_channels
from helpers.core.measure import measure_interleaved
from helpers.support.source import show_source, source_file


def test_show_source_names_the_file_above_the_code():
    shown = show_source(prune_channels).data
    assert shown.startswith("# helpers/ch02_model_structure/pruning.py\n")
    assert "def prune_channels" in shown
    assert source_file(measure_interleaved) == "helpers/core/measure.py"
    assert source_file(textwrap.dedent) == "module textwrap"
    with pytest.raises(TypeError, match="function or class"):
        show_source(42)
