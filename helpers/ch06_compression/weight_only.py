"""Where weight-only quantization pays: bf16 Linear stacks at batch 1 and a large batch, each variant on its fast path.

At batch 1 a Linear layer reads every weight once and does one multiply-add with it, so its time is
the time to read its weight bytes: int8 weights halve them, int4 weights quarter them. At a large
batch every weight is reused across the rows, the layer is compute-bound, and a weight-only kernel
(which still multiplies in floating point, after unpacking) has nothing left to save.
measure_weight_only times bf16 against torchao's weight-only int8 and int4 (and, on request, dynamic
int8, which quantizes the activations too) in the same interleaved rounds, counts each variant's
weight bytes and names the matrix-multiply operators that really ran, from a profile. The same code
runs on a CUDA GPU (gpu_weight_only, with float8 added); a variant that cannot run there says why.

Each variant's fast path on a CPU (FAST_PATHS), read in torchao 0.18 and torch 2.14 and profiled:
- bf16: torch.compile with freezing, which packs each weight for oneDNN (mkldnn::_linear_pointwise).
- int8 weight-only: torchao's eager forward converts the whole int8 weight to bf16 before a bf16 matmul
  (slower than bf16 itself); torch.compile rewrites that into aten::_weight_int8pack_mm, which reads
  the int8 weight directly. Freezing changes nothing there (nothing to pack), so it is left off.
- int4 weight-only: torchao's CPU layout (the prototype Int4OpaqueTensor; the default Int4WeightOnlyConfig
  needs the mslk package) calls aten::_weight_int4pack_mm_for_cpu itself: eager is its fast path.
- int8 dynamic: quantizes each batch's activations, then aten::_int_mm; compiling fuses the quantization.
On a CUDA GPU every variant is compiled, without freezing (torchao's own recipe), and timed as a CUDA
graph replay, so that launching kernels from Python does not hide their time; int4 uses the tinygemm
layout ("tile_packed_to_4d", aten::_weight_int4pack_mm), which ships with PyTorch. There, too,
torch.compile turns int8 weight-only into aten::_weight_int8pack_mm, whose CUDA kernel multiplies in
fp32 on the ordinary cores, not on the tensor cores.

Every config is built with set_inductor_config=False: torchao's default (True) sets five of Inductor's
process-wide settings (coordinate-descent tuning among them) and never restores them. quantize_ has no
such argument in torchao 0.18: it is a field of each config.
"""

from __future__ import annotations

import copy
import gc
import importlib.util
import logging
import re
from pathlib import Path
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import pandas as pd
import torch
from torch import nn
from torch.profiler import profile, record_function
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

# torchao's import logs a notice about torch's own pytree registration (not our code, not actionable): keep it quiet.
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)

from torchao.core.config import AOBaseConfig
from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig
from torchao.quantization import (
    Float8DynamicActivationFloat8WeightConfig,
    Int4WeightOnlyConfig,
    Int8DynamicActivationInt8WeightConfig,
    Int8WeightOnlyConfig,
    quantize_,
)
from torchao.quantization.quantize_.workflows import Int4PackingFormat

from helpers.ch03_hardware.compile_timing import compile_for_inference
from helpers.ch03_hardware.gpu import cuda_graph_replay
from helpers.core.claims import Ratio, timing_ratio
from helpers.core.measure import Timing, measure_interleaved, torch_threads
from helpers.core.validate import (
    require_callable,
    require_choice,
    require_instance,
    require_int,
    require_number,
)
from helpers.support.logs import quiet_profiler_logs

BASELINE = "bf16"
WEIGHT_ONLY = (BASELINE, "int8 weight-only", "int4 weight-only")  # measure_weight_only's default variants
DYNAMIC_INT8 = "int8 dynamic"  # the contrast: activations quantized too (W8A8)
FLOAT8 = "float8 dynamic"
VARIANTS = (*WEIGHT_ONLY, DYNAMIC_INT8, FLOAT8)  # everything this module knows; gpu_weight_only runs them all
FAST_PATHS = {BASELINE: "compiled, frozen", "int8 weight-only": "compiled", "int4 weight-only": "eager",
              DYNAMIC_INT8: "compiled"}  # on a CPU (see the module's docstring)
GPU_PATH = "compiled, CUDA graph"  # every variant on a GPU: one replay launches all its kernels
GROUP_SIZE = 128  # int4: one scale and zero point per 128 weights of a row
# The lowest compute capability torchao 0.18 accepts for a variant, and the feature it needs (its own checks).
MIN_CAPABILITY = {"int4 weight-only": ((8, 0), "the tinygemm int4 kernel needs compute capability 8.0 (Ampere)"),
                  FLOAT8: ((8, 9), "float8 matrix multiplies need compute capability 8.9 (Ada, Hopper)")}
NO_CPU_FLOAT8 = ("this device lacks the feature: torchao runs float8 dynamic quantization only on CUDA GPUs of "
                 "compute capability 8.9 or newer (or AMD MI300, Intel XPU), not on a CPU")
MATMUL_OPERATOR = re.compile(r"mm|gemm|linear|matmul", re.IGNORECASE)


def last_level_cache_mib() -> float | None:
    """The largest CPU cache the operating system reports for CPU 0, in MiB (Linux sysfs); None where unreadable.

    In a virtual machine this is what the hypervisor reports, which can differ from the physical cache."""
    sizes = []
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip()
        except OSError:
            continue
        if text[:-1].isdigit() and text[-1] in "KM":
            sizes.append(int(text[:-1]) / (1024 if text[-1] == "K" else 1))
    return max(sizes, default=None)


def linear_stack(width: int, layers: int = 4, *, device: str | torch.device = "cpu", seed: int = 0) -> nn.Sequential:
    """`layers` bias-free width x width bf16 Linear layers in sequence, weights ~ N(0, 1/width) drawn from `seed`."""
    require_int("width", width, minimum=GROUP_SIZE)
    if width % GROUP_SIZE:
        raise ValueError(f"width must be a multiple of {GROUP_SIZE} (int4's group size), got {width}")
    require_int("layers", layers, minimum=1)
    device = torch.device(device)
    generator = torch.Generator(device).manual_seed(require_int("seed", seed, minimum=0))
    stack = nn.Sequential(*[nn.Linear(width, width, bias=False, dtype=torch.bfloat16, device=device)
                            for _ in range(layers)])
    with torch.no_grad():
        for layer in stack:
            layer.weight.normal_(0.0, width ** -0.5, generator=generator)
    return stack.eval()


def quantization_config(variant: str, device_type: str) -> AOBaseConfig | None:
    """torchao's config for a variant on a device type (None for bf16), leaving Inductor's settings alone."""
    require_choice("variant", variant, VARIANTS)
    require_choice("device_type", device_type, ("cpu", "cuda"))
    if variant == "int4 weight-only" and device_type == "cpu":
        return PrototypeInt4WeightOnlyConfig(group_size=GROUP_SIZE, set_inductor_config=False)
    configs = {
        BASELINE: lambda: None,
        "int8 weight-only": lambda: Int8WeightOnlyConfig(set_inductor_config=False),
        "int4 weight-only": lambda: Int4WeightOnlyConfig(group_size=GROUP_SIZE, set_inductor_config=False,
                                                         int4_packing_format=Int4PackingFormat.TILE_PACKED_TO_4D),
        DYNAMIC_INT8: lambda: Int8DynamicActivationInt8WeightConfig(set_inductor_config=False),
        FLOAT8: lambda: Float8DynamicActivationFloat8WeightConfig(set_inductor_config=False),
    }
    return configs[variant]()


def unavailable_reason(variant: str, device: str | torch.device) -> str | None:
    """Why a variant cannot run on this device, in words (a package is missing, or the device lacks a feature);
    None if it can."""
    require_choice("variant", variant, VARIANTS)
    device = torch.device(device)
    require_choice("device type", device.type, ("cpu", "cuda"))
    if device.type == "cpu":
        return NO_CPU_FLOAT8 if variant == FLOAT8 else None
    if importlib.util.find_spec("triton") is None:
        return "a package is missing: triton (torch.compile generates its GPU code with it)"
    needed, feature = MIN_CAPABILITY.get(variant, ((0, 0), ""))
    capability = torch.cuda.get_device_capability(device)
    if capability < needed:
        return (f"this GPU lacks the feature: {torch.cuda.get_device_name(device)} has compute capability "
                f"{capability[0]}.{capability[1]}; {feature}")
    return None


def quantized_copy(stack: nn.Sequential, variant: str) -> nn.Sequential:
    """A copy of a bf16 Linear stack with its weights quantized for the variant, copied one layer at a time (so
    that at most one layer's bf16 copy exists on top of the stack)."""
    require_instance("stack", stack, nn.Sequential)
    require_choice("variant", variant, VARIANTS[1:])
    device_type = next(stack.parameters()).device.type
    layers = []
    for layer in stack:
        layers.append(copy.deepcopy(layer))
        quantize_(layers[-1], quantization_config(variant, device_type))
    return nn.Sequential(*layers).eval()


def stored_tensors(tensor: torch.Tensor) -> list[torch.Tensor]:
    """The plain tensors that hold a tensor's data: itself, or a torchao tensor's int data, scales, zero points."""
    if not is_traceable_wrapper_subclass(tensor):
        return [tensor]
    names, _ = tensor.__tensor_flatten__()
    return [inner for name in names for inner in stored_tensors(getattr(tensor, name))]


def weight_bytes(model: nn.Module) -> int:
    """Bytes that a model's parameters and buffers occupy, quantized ones counted by the tensors that store them."""
    require_instance("model", model, nn.Module)
    return sum(inner.nbytes for tensor in (*model.parameters(), *model.buffers()) for inner in stored_tensors(tensor))


def matmul_operators(calls: Mapping[object, Callable[[], object]]) -> dict[object, tuple[str, ...]]:
    """The matrix-multiply operators (names with mm, gemm, linear or matmul) that one call of each callable ran,
    read from one profile of them all."""
    require_instance("calls", calls, Mapping)
    for key, call in calls.items():
        require_callable(f"calls[{key!r}]", call)
    labels = {f"weight_only call {index}": key for index, key in enumerate(calls)}
    with quiet_profiler_logs(), profile() as prof:
        for label, key in labels.items():
            with record_function(label):
                calls[key]()
    found: dict[object, set[str]] = {key: set() for key in calls}
    for event in prof.events():
        owner = event.cpu_parent
        while owner is not None and owner.name not in labels:
            owner = owner.cpu_parent
        if owner is not None and MATMUL_OPERATOR.search(event.name) and "CompiledFxGraph" not in event.name:
            found[labels[owner.name]].add(event.name)
    return {key: tuple(sorted(names)) for key, names in found.items()}


def frozen_per_batch(model: nn.Module, examples: Mapping[int, torch.Tensor]) -> dict[int, Callable]:
    """The model compiled with freezing for each example's batch size (a copy for each but the last), keeping only
    the frozen, packed weights: the model's own parameters are discarded, so it cannot run eagerly afterwards."""
    if not examples:
        raise ValueError("examples must map at least one batch size to an input")
    last = list(examples)[-1]
    with torch._inductor.config.patch(freezing_discard_parameters=True):
        return {batch: compile_for_inference(model if batch == last else copy.deepcopy(model), x)[0]
                for batch, x in examples.items()}


def fast_path(variant: str, device: str | torch.device) -> str:
    """How the variant runs fastest on this device: FAST_PATHS on a CPU, GPU_PATH on a CUDA GPU."""
    require_choice("variant", variant, VARIANTS)
    if torch.device(device).type != "cpu":
        return GPU_PATH
    if variant not in FAST_PATHS:
        raise ValueError(NO_CPU_FLOAT8)
    return FAST_PATHS[variant]


def fast_path_per_batch(model: nn.Module, variant: str, examples: Mapping[int, torch.Tensor]) -> dict[int, Callable]:
    """The variant's model on its fast path (see fast_path), one callable per batch size."""
    path = fast_path(variant, next(iter(examples.values())).device)
    if path == "compiled, frozen":
        return frozen_per_batch(model, examples)
    if path == "eager":
        return dict.fromkeys(examples, model)
    return {batch: compile_for_inference(model, x, freezing=False)[0] for batch, x in examples.items()}


def timed_call(fn: Callable, example: torch.Tensor) -> Callable[[], object]:
    """fn on example; on a GPU replayed from a CUDA graph, so that launching its kernels from Python does not
    hide their time (at batch 1 a layer's kernel can be shorter than its launch)."""
    if example.device.type == "cuda":
        return partial(cuda_graph_replay(fn, example), example)
    return partial(fn, example)


@dataclass(frozen=True)
class WidthResult:
    """One width's variants at each batch size, all timed in the same rounds; keys are (batch, variant)."""

    width: int
    layers: int
    device: str
    timings: dict[tuple[int, str], Timing]
    weight_bytes: dict[str, int]
    paths: dict[str, str]
    operators: dict[tuple[int, str], tuple[str, ...]]
    unavailable: dict[str, str]

    def ratio(self, batch: int, variant: str) -> Ratio:
        """bf16's time over the variant's at that batch size, one ratio per round (> 1: the variant is faster)."""
        for key in ((batch, BASELINE), (batch, variant)):
            if key not in self.timings:
                raise ValueError(f"no timing for batch {key[0]}, variant {key[1]!r} at width {self.width}; "
                                 f"timed: {sorted(self.timings)}")
        return timing_ratio(self.timings[batch, BASELINE], self.timings[batch, variant])


def _runnable_models(base: nn.Sequential, variants: Sequence[str],
                     device: torch.device) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """Each variant's model (bf16: base itself) and, for those that cannot run here, why not."""
    models, unavailable = {}, {}
    for variant in variants:
        if (reason := unavailable_reason(variant, device)) is not None:
            unavailable[variant] = reason
        elif variant == BASELINE:
            models[variant] = base
        else:
            try:
                models[variant] = quantized_copy(base, variant)
            except ImportError as error:
                unavailable[variant] = f"a package is missing: {error}"
    return models, unavailable


def measure_width(width: int, batches: Sequence[int], *, layers: int = 4, variants: Sequence[str] = WEIGHT_ONLY,
                  device: str | torch.device = "cpu", rounds: int = 5, min_run_time: float = 0.1,
                  num_threads: int = 1, seed: int = 0) -> WidthResult:
    """Time every runnable variant at every batch size for one width, all in the same interleaved rounds.

    min_run_time is the timed seconds of each variant at each batch size, spread over the rounds (each
    round also runs at least one block of calls long enough to dwarf the clock's own cost).
    """
    for variant in variants:
        require_choice("variant", variant, VARIANTS)
    if BASELINE not in variants:
        raise ValueError(f"variants must include the baseline {BASELINE!r}, got {list(variants)}")
    if not batches:
        raise ValueError("batches must name at least one batch size")
    batches = [require_int("batch", batch, minimum=1) for batch in batches]
    require_int("rounds", rounds, minimum=3)
    require_number("min_run_time", min_run_time, strictly_positive=True)
    require_int("num_threads", num_threads, minimum=1)
    device = torch.device(device)
    base = linear_stack(width, layers, device=device, seed=seed)
    examples = {batch: torch.randn(batch, width, dtype=torch.bfloat16, device=device) for batch in batches}
    models, unavailable = _runnable_models(base, variants, device)
    if BASELINE in unavailable:
        raise ValueError(f"the {BASELINE} baseline cannot run here: {unavailable[BASELINE]}")
    sizes = {variant: weight_bytes(model) for variant, model in models.items()}
    calls, timed = {}, {}
    with torch_threads(num_threads), torch.no_grad():
        for variant in sorted(models, key=lambda v: v == BASELINE):  # bf16 last: freezing discards base's weights
            for batch, fn in fast_path_per_batch(models[variant], variant, examples).items():
                calls[batch, variant] = partial(fn, examples[batch])
                timed[batch, variant] = timed_call(fn, examples[batch])
        timings = measure_interleaved(timed, rounds=rounds, min_run_time=min_run_time, num_threads=num_threads)
        operators = matmul_operators(calls)
    paths = {variant: fast_path(variant, device) for variant in models}
    return WidthResult(width, layers, device.type, timings, sizes, paths, operators, unavailable)


def measure_weight_only(batches_by_width: Mapping[int, Sequence[int]], *, layers: int = 4,
                        variants: Sequence[str] = WEIGHT_ONLY, device: str | torch.device = "cpu", rounds: int = 5,
                        min_run_time: float = 0.1, num_threads: int = 1, seed: int = 0) -> dict[int, WidthResult]:
    """measure_width for each width and its batch sizes; the results keyed by width, narrowest first.

    The widest runs first, so that its memory peak (the largest) meets nothing the others leave behind.
    One thread by default: on a shared machine, a second thread waits for a core another process holds.
    """
    if not isinstance(batches_by_width, Mapping) or not batches_by_width:
        raise ValueError("batches_by_width must map each width to its batch sizes, e.g. {4096: (1,), 1024: (1, 128)}")
    results = {}
    for width, batches in sorted(batches_by_width.items(), reverse=True):
        results[width] = measure_width(width, batches, layers=layers, variants=variants, device=device,
                                       rounds=rounds, min_run_time=min_run_time, num_threads=num_threads, seed=seed)
        gc.collect()  # the quantized copies and their compiled graphs sit in reference cycles: free them now
    return dict(sorted(results.items()))


def weight_only_table(results: Mapping[int, WidthResult]) -> pd.DataFrame:
    """One row per width, batch and variant: weight MiB, median ms, speed-up over bf16 with its interval, the
    matrix-multiply operators that ran, or why the variant could not run."""
    rows = []
    for result in results.values():
        for batch in sorted({batch for batch, _ in result.timings}):
            for variant in (*result.weight_bytes, *result.unavailable):
                row = {"width": result.width, "batch": batch, "variant": variant}
                if variant in result.unavailable:
                    rows.append({**row, "why not": result.unavailable[variant]})
                    continue
                ratio = result.ratio(batch, variant)
                rows.append({**row, "path": result.paths[variant], "weight_MiB": result.weight_bytes[variant] / 2**20,
                             "median_ms": result.timings[batch, variant].round_median_ms, "speedup": ratio.median,
                             "low": ratio.low, "high": ratio.high, "interval": ratio.interval_label,
                             "operators": ", ".join(result.operators[batch, variant]), "why not": ""})
    return pd.DataFrame(rows).set_index(["width", "batch", "variant"])


def gpu_weight_only(width: int = 4096, batches: Sequence[int] = (1, 64), *, layers: int = 4, rounds: int = 8,
                    min_run_time: float = 1.0) -> dict[int, WidthResult]:
    """The same measurement on the CUDA GPU with every variant: bf16, int8 and int4 weight-only, int8 and float8
    dynamic (a variant this GPU cannot run is listed with the reason)."""
    if not torch.cuda.is_available():
        raise ValueError("gpu_weight_only needs a CUDA GPU; this machine has none")
    return measure_weight_only({width: batches}, layers=layers, variants=VARIANTS, device="cuda", rounds=rounds,
                               min_run_time=min_run_time)
