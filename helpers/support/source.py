"""Show the source of a helper in the notebook, so the lesson's code is visible and defined once."""

from __future__ import annotations

import inspect

from IPython.display import Code


def source_file(obj: object) -> str:
    """Where obj is defined: its file within the package for the course's helpers ('helpers/core/measure.py'),
    else its module's name."""
    module = inspect.getmodule(obj)
    name = module.__name__ if module else obj.__module__
    if name == "helpers" or name.startswith("helpers."):
        return name.replace(".", "/") + ".py"
    return f"module {name}"


def show_source(obj: object) -> Code:
    """Syntax-highlighted source of a function or class, under a comment that names the file it comes from."""
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        raise TypeError(f"show_source takes a function or class, got {type(obj).__name__}")
    return Code(f"# {source_file(obj)}\n{inspect.getsource(obj)}", language="python")
