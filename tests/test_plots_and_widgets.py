import ipywidgets as widgets
import pandas as pd
import pytest
from matplotlib.figure import Figure

from helpers.plots import plot_breakdown, plot_comparison, plot_roofline, plot_sweep
from helpers.widgets import live_control


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


def test_live_control_renders_now_and_on_every_change():
    calls = []
    slider = widgets.IntSlider(value=1, min=0, max=3)
    box = live_control(lambda n: calls.append(n), n=slider)
    slider.value = 3
    assert calls == [1, 3]
    assert isinstance(box, widgets.VBox)


def test_live_control_shows_an_error_message_instead_of_a_traceback():
    def render(ratio):
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")

    box = live_control(render, ratio=widgets.FloatSlider(value=1.5, max=2.0))
    output = box.children[1]
    html = output.outputs[0]["data"]["text/html"]
    assert "ratio must be in [0, 1), got 1.5" in html and "Traceback" not in html


def test_live_control_rejects_bad_controls():
    with pytest.raises(ValueError, match="at least one control"):
        live_control(lambda: None)
    with pytest.raises(TypeError, match="must be an ipywidgets value widget"):
        live_control(lambda n: None, n=3)


def test_live_control_shows_what_render_printed_then_its_result():
    def render(n):
        print(f"warned about {n}")
        return pd.DataFrame({"n": [n]})

    slider = widgets.IntSlider(value=1, min=0, max=3)
    output = live_control(render, n=slider).children[1]
    slider.value = 2
    assert [o["output_type"] for o in output.outputs] == ["stream", "display_data"]
    assert output.outputs[0]["text"] == "warned about 2\n"
    assert "text/html" in output.outputs[1]["data"]
