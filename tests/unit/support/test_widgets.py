"""Tests of helpers/support/widgets.py."""

import ipywidgets as widgets
import pandas as pd
import pytest

from helpers.support.widgets import live_control


def test_live_control_renders_now_and_on_every_change():
    calls = []
    slider = widgets.IntSlider(value=1, min=0, max=3)
    box = live_control(lambda n: calls.append(n), n=slider)
    slider.value = 3
    assert calls == [1, 3]
    assert isinstance(box, widgets.VBox)


def test_live_control_shows_an_initial_result_without_rendering_it_again():
    calls = []
    slider = widgets.IntSlider(value=1, min=0, max=3)
    box = live_control(lambda n: calls.append(n) or pd.DataFrame({"n": [n]}), initial=pd.DataFrame({"n": [1]}),
                       n=slider)
    assert calls == [] and "text/html" in box.children[1].outputs[0]["data"]
    slider.value = 2
    assert calls == [2]


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
