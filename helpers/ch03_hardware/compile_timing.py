"""torch.compile for inference, checked: the first call's cost (cold or warm cache), freezing that really ran.

Inductor keeps what it compiled (generated C++ or Triton code and the built kernels) in an on-disk
cache directory, TORCHINDUCTOR_CACHE_DIR, and, within one process, in memory as well. A new process
pointed at an empty directory compiles everything (a cold start); a new process that finds the
directory filled by an earlier run loads from it (a warm start). forget_compiled_code lets one
notebook kernel measure both: it clears the in-memory caches and leaves the disk cache alone.

Freezing must be switched on in Inductor's global config while Dynamo traces: Dynamo reads the flag
to decide whether the weights become constants of the graph (pytorch/pytorch#139272). Passed as
torch.compile(options={"freezing": True}) it reaches Inductor only, too late: the graph compiles,
unfrozen, with no error and no warning. compile_for_inference therefore counts the passes freezing runs.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch._dynamo.utils import counters

from helpers.core.measure import synchronized_clock
from helpers.core.validate import require_instance

# Warnings that Inductor and torchao raise from their own code while compiling (quantized graphs above all).
INTERNAL_COMPILE_WARNINGS = ("To copy construct from a tensor", ".*does not implement _stable_hash_for_caching",
                             "TensorFloat32 tensor cores")

# torch.compile's isolate_recompiles (added in 2026: in torch 2.14) gives each call graphs of its own. Older
# torch (Colab's 2.11) has no such argument; there, not inlining nn.Modules makes Dynamo guard on the module itself.
ISOLATED = {"isolate_recompiles": True} if "isolate_recompiles" in inspect.signature(torch.compile).parameters else {}


def forget_compiled_code() -> None:
    """Clear this process's in-memory compile caches (Dynamo's and Inductor's), not Inductor's disk cache."""
    import torch._inductor.utils  # imported here: importing Inductor early would fix its settings early

    torch.compiler.reset()  # Dynamo: the traced graphs and their guards
    torch._inductor.utils.clear_caches()  # Inductor: the generated modules and kernels loaded in memory


def guard_on_module_identity() -> contextlib.AbstractContextManager:
    """On torch without isolate_recompiles: compile graphs that only this module object can reuse.

    There every nn.Sequential's graphs hang off one shared forward, so the recompile limit (8 graphs per
    function by default) is raised too: past it, torch.compile would silently run the model eagerly.
    """
    if ISOLATED:
        return contextlib.nullcontext()
    return torch._dynamo.config.patch(inline_inbuilt_nn_modules=False, recompile_limit=1024)


def graphs_compiled() -> int:
    """How many graphs Dynamo has compiled in this process: unchanged across a measurement means no recompile."""
    return counters["stats"]["unique_graphs"]


KERNEL_SUFFIXES = (".so", ".cubin")  # C++ kernels built on a CPU, Triton's on an NVIDIA GPU


def built_kernels() -> frozenset[Path]:
    """The kernels built into Inductor's cache directory so far: a compile that adds none reused them all (warm)."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir  # imported here, as in forget_compiled_code

    root = Path(cache_dir())
    return frozenset(path for path in root.rglob("*") if path.suffix in KERNEL_SUFFIXES) if root.is_dir() else frozenset()


def cache_hits() -> int:
    """How many compiled graphs this process has loaded from a cache (Inductor's and AOTAutograd's) instead of
    compiling them: a cache directory or loaded artifacts that served a compile show here."""
    return counters["inductor"]["fxgraph_cache_hit"] + counters["aot_autograd"]["autograd_cache_hit"]


def freezing_passes() -> dict[str, int]:
    """How often, in this process, Inductor's freezing passes folded an operation into a convolution or linear
    layer (batch norm's multiply and add) and packed a weight into oneDNN's layout: they run only on frozen graphs."""
    inductor = counters["inductor"]
    return {"folded": inductor["binary_folding"],
            "packed": sum(count for name, count in inductor.items() if "pack" in name and name.endswith("_count"))}


class InferenceCompiled:
    """A model compiled by compile_for_inference that stays what it was compiled as: every call runs under
    torch.no_grad(), and a call that would recompile (another shape, another grad mode, a changed guard) raises
    instead of silently compiling a new graph with whatever settings hold at that moment (freezing off, say)."""

    def __init__(self, compiled: Callable, *, frozen: bool) -> None:
        self.compiled, self.frozen = compiled, frozen

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), torch.compiler.set_stance("fail_on_recompile"):
            return self.compiled(*inputs)

    def __repr__(self) -> str:
        return f"InferenceCompiled({'frozen' if self.frozen else 'not frozen'})"


def compile_for_inference(model: nn.Module, example: torch.Tensor, *,
                          freezing: bool = True) -> tuple[InferenceCompiled, float]:
    """torch.compile for inference, with or without freezing; return the compiled model and its first call's seconds.

    The graph is compiled for example's shape only (dynamic=False), under torch.no_grad(): call it at that
    shape (any other raises rather than recompiling), and compile a separate copy of the model for each
    other batch size. Raises if no new graph was compiled, or if freezing was asked for and its passes did
    not run.
    """
    require_instance("model", model, nn.Module)
    require_instance("example", example, torch.Tensor)
    # Every nn.Sequential shares one forward, and Dynamo keeps compiled graphs per forward: without isolation a
    # later compile of another Sequential at the same shape would silently reuse this graph (other settings).
    compiled = torch.compile(model, dynamic=False, **ISOLATED)
    graphs_before, frozen_before = graphs_compiled(), sum(freezing_passes().values())
    start = synchronized_clock()
    with torch.no_grad(), torch._inductor.config.patch(freezing=freezing, cpp_cache_precompile_headers=False), \
            guard_on_module_identity(), warnings.catch_warnings():
        for message in INTERNAL_COMPILE_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        compiled(example)
    seconds = synchronized_clock() - start
    if graphs_compiled() == graphs_before:
        raise RuntimeError("torch.compile compiled no new graph for this model: it reused one compiled earlier")
    if freezing and sum(freezing_passes().values()) == frozen_before:
        raise RuntimeError("freezing was asked for, but its passes folded and packed nothing: the graph is not frozen")
    return InferenceCompiled(compiled, frozen=freezing), seconds
