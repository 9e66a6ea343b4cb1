"""Show the source of a helper in the notebook, so the lesson's code is visible and defined once."""

from __future__ import annotations

import ast
import importlib.util
import inspect
from pathlib import Path

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


def show_source_unimported(module: str, name: str) -> Code:
    """Like show_source, for a top-level function or class of a course module read from its file, not imported:
    a distributed job's imports (checkpointing, FSDP) would cost the kernel memory it never uses (chapter 5)."""
    if not (module == "helpers" or module.startswith("helpers.")):
        raise ValueError(f"module must be one of the course's helpers modules ('helpers....'), got {module!r}")
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"no module {module!r} in the course's helpers")
    text = Path(spec.origin).read_text()
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            code = "\n".join(text.splitlines()[first - 1:node.end_lineno])
            return Code(f"# {module.replace('.', '/')}.py\n{code}\n", language="python")
    raise ValueError(f"{module} defines no top-level function or class {name!r}")
