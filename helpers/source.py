"""Show the source of a helper in the notebook, so the lesson's code is visible and defined once."""

from __future__ import annotations

import inspect

from IPython.display import Code


def show_source(obj: object) -> Code:
    """Syntax-highlighted source of a function or class from helpers."""
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        raise TypeError(f"show_source takes a function or class, got {type(obj).__name__}")
    return Code(inspect.getsource(obj), language="python")
