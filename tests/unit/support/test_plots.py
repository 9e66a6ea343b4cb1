"""Tests of helpers/support/plots.py."""

import pytest
from matplotlib.figure import Figure

from helpers.support.plots import pareto_front, plot_breakdown, plot_comparison, plot_roofline, plot_sweep


def test_pareto_front_keeps_only_undominated_points():
    points = {"a": (1.0, 70.0), "b": (2.0, 80.0), "c": (3.0, 75.0), "d": (0.5, 60.0)}
    assert pareto_front(points) == ["d", "a", "b"]


def test_plot_comparison_annotates_ratios_against_the_first_bar():
    fig = plot_comparison({"fp32": 10.0, "int8": 4.0}, metric="latency", unit="ms", hardware="test CPU",
                          higher_is_better=False)
    assert isinstance(fig, Figure)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == [" 1.00x", " 2.50x"]
    assert "measured on test CPU" in fig.get_suptitle()


def test_plot_comparison_rejects_empty_or_non_positive_values():
    with pytest.raises(ValueError, match="at least one variant"):
        plot_comparison({}, metric="m", unit="u", hardware="h", higher_is_better=True)
    with pytest.raises(ValueError, match="must be > 0"):
        plot_comparison({"a": 0.0}, metric="m", unit="u", hardware="h", higher_is_better=True)


def test_sweep_roofline_and_breakdown_figures():
    assert len(plot_sweep([1, 2], {"a": [1, 2], "b": [3, 4]}, xlabel="x", ylabels={}, hardware="h").axes) == 2
    with pytest.raises(ValueError, match="has 1 points but x has 2"):
        plot_sweep([1, 2], {"a": [1]}, xlabel="x", ylabels={}, hardware="h")
    roof = plot_roofline(100.0, 10.0, {"add": (0.08, 0.8), "mm": (100.0, 90.0)}, hardware="h")
    assert roof.axes[0].get_xscale() == "log"
    with pytest.raises(ValueError, match="peak_gbps must be > 0"):
        plot_roofline(100.0, 0.0, {}, hardware="h")
    bars = plot_breakdown({"p": {"data": 1.0, "forward": 2.0}}, hardware="h")
    assert len(bars.axes[0].patches) == 2
