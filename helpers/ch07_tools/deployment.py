"""Chapter 7's third deployment route, AOTInductor: compile ahead of time into a package, then load it without
compiling.

`torch.export` fixes the graph (dimensions not declared dynamic become constants), Inductor compiles it with
freezing into a shared library, and `aoti_compile_and_package` writes that library and the weights into one
`.pt2` file. A serving process loads it with `aoti_load_package` (or AOTInductor's C++ runtime, without
Python): no compiler and no compilation at start-up. The package matches one device type and torch version.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from helpers.core.validate import require_instance


def compile_package(model: nn.Module, example: torch.Tensor, package_path: str | Path, *,
                    dynamic_shapes: Mapping | None = None) -> float:
    """Export model on example, compile it with freezing into an AOTInductor package; return the seconds it took."""
    require_instance("model", model, nn.Module)
    require_instance("example", example, torch.Tensor)
    if Path(package_path).suffix != ".pt2":
        raise ValueError(f"an AOTInductor package is a .pt2 file, got {package_path}")
    start = time.perf_counter()
    exported = torch.export.export(model.eval(), (example,), dynamic_shapes=dynamic_shapes)
    with torch._inductor.config.patch(freezing=True):
        torch._inductor.aoti_compile_and_package(exported, package_path=str(package_path))
    return time.perf_counter() - start


def load_package(package_path: str | Path) -> tuple[Callable[..., torch.Tensor], float]:
    """Load an AOTInductor package; return the callable model and the seconds the load took."""
    if not Path(package_path).is_file():
        raise ValueError(f"no AOTInductor package at {package_path}: make one with compile_package")
    start = time.perf_counter()
    loaded = torch._inductor.aoti_load_package(str(package_path))
    return loaded, time.perf_counter() - start
