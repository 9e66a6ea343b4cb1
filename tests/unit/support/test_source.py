"""Tests of helpers/support/source.py."""

import textwrap

import pytest

from helpers.ch02_model_structure.pruning import prune_channels
from helpers.core.measure import measure_interleaved
from helpers.support.source import show_source, show_source_unimported, source_file


def test_show_source_names_the_file_above_the_code():
    shown = show_source(prune_channels).data
    assert shown.startswith("# helpers/ch02_model_structure/pruning.py\n")
    assert "def prune_channels" in shown
    assert source_file(measure_interleaved) == "helpers/core/measure.py"
    assert source_file(textwrap.dedent) == "module textwrap"
    with pytest.raises(TypeError, match="function or class"):
        show_source(42)


def test_show_source_unimported_reads_the_file_as_show_source_would():
    shown = show_source_unimported("helpers.ch02_model_structure.pruning", "prune_channels").data
    assert shown == show_source(prune_channels).data
    with pytest.raises(ValueError, match="no top-level function or class 'nothing'"):
        show_source_unimported("helpers.ch02_model_structure.pruning", "nothing")
    with pytest.raises(ValueError, match="helpers modules"):
        show_source_unimported("textwrap", "dedent")
    with pytest.raises(ValueError, match="no module"):
        show_source_unimported("helpers.no_such_module", "f")
