"""Live controls: re-run a measurement when a knob moves, and show errors as a sentence, never a traceback."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable

import ipywidgets as widgets
from IPython.display import HTML

from helpers.core.validate import require_callable

RECOVERABLE = (ValueError, TypeError, RuntimeError, MemoryError)


def error_html(error: BaseException) -> HTML:
    """A short red message naming the problem, for display inside a widget."""
    return HTML(f'<p style="color:#b00020"><b>Could not run this setting:</b> {type(error).__name__}: {error}</p>')


def live_control(render: Callable[..., object], *, initial: object = None,
                 **controls: widgets.ValueWidget) -> widgets.VBox:
    """Controls above an output area; render(**values) runs now (or shows `initial`, a result already made for
    the controls' current values) and after every change."""
    require_callable("render", render)
    if not controls:
        raise ValueError("live_control needs at least one control, e.g. batch_size=IntSlider(...)")
    for name, control in controls.items():
        if not isinstance(control, widgets.ValueWidget):
            raise TypeError(f"control {name!r} must be an ipywidgets value widget, got {type(control).__name__}")
    output = widgets.Output()

    def refresh(_change: object = None) -> None:
        output.outputs = ()
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
                result = render(**{name: c.value for name, c in controls.items()})
        except RECOVERABLE as error:
            result = error_html(error)
        # Set from the kernel, in order: what render printed, then its result (capturing the prints
        # through the front end instead races with the result and can hide it).
        if printed.getvalue():
            output.append_stdout(printed.getvalue())
        if result is not None:
            output.append_display_data(result)

    for control in controls.values():
        control.observe(refresh, names="value")
    if initial is None:
        refresh()
    else:
        output.append_display_data(initial)
    row = widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap"))
    return widgets.VBox([row, output])
