"""Tests of helpers/support/plots.py."""

import pytest
from matplotlib.figure import Figure

from helpers.core.roofs import Roofs
from helpers.support.plots import (
    pareto_front, plot_breakdown, plot_comparison, plot_roofline, plot_sweep, plot_together, plot_tradeoff,
)


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
    roofs = Roofs(gflops=100.0, read_gbps=10.0, in_place_gbps=20.0, new_output_gbps=15.0, footprint_bytes=2**20)
    roof = plot_roofline(roofs, {"add": (0.08, 0.8), "mm": (100.0, 90.0)}, hardware="h")
    assert roof.axes[0].get_xscale() == "log"
    assert len(roof.axes[0].lines) == 3  # the read, in-place and new-output roofs
    with pytest.raises(TypeError, match="roofs must be"):
        plot_roofline((100.0, 10.0), {}, hardware="h")
    bars = plot_breakdown({"p": {"data": 1.0, "forward": 2.0}}, hardware="h")
    assert len(bars.axes[0].patches) == 2


def test_plot_tradeoff_draws_a_front_only_where_asked():
    points = {"a": (1.0, 70.0), "b": (2.0, 80.0), "c": (3.0, 75.0)}
    with_front = plot_tradeoff(points, xlabel="cost", ylabel="quality", hardware="h")
    assert [tuple(line.get_xdata()) for line in with_front.axes[0].lines] == [(1.0, 2.0)]
    two_costs = plot_tradeoff(points, xlabel="FLOPs", ylabel="latency", hardware="h", pareto=False)
    assert len(two_costs.axes[0].lines) == 0 and two_costs.axes[0].get_legend() is None
    with pytest.raises(TypeError, match="pareto must be a bool"):
        plot_tradeoff(points, xlabel="x", ylabel="y", hardware="h", pareto="no")


def test_plot_together_shares_one_axis_with_intervals_and_a_reference():
    fig = plot_together([1, 2], {"measured": [1.5, 2.5], "theory": [7.0, 8.0]}, xlabel="x", ylabel="speed-up",
                        hardware="h", intervals={"measured": ([1.0, 2.0], [2.0, 3.0])}, reference=("one", 1.0))
    assert len(fig.axes) == 1
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["one", "measured", "theory"]
    with pytest.raises(ValueError, match="does not hold its value"):
        plot_together([1], {"m": [5.0]}, xlabel="x", ylabel="y", hardware="h", intervals={"m": ([1.0], [2.0])})
    with pytest.raises(ValueError, match="one low and one high per point"):
        plot_together([1, 2], {"m": [1.0, 2.0]}, xlabel="x", ylabel="y", hardware="h", intervals={"m": ([1.0], [2.0])})
    with pytest.raises(ValueError, match="do not exist"):
        plot_together([1], {"m": [1.0]}, xlabel="x", ylabel="y", hardware="h", intervals={"other": ([1.0], [1.0])})
    with pytest.raises(ValueError, match="has 1 points but x has 2"):
        plot_together([1, 2], {"m": [1.0]}, xlabel="x", ylabel="y", hardware="h")
