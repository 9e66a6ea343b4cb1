"""One decode step as a timed call, in each precision and weight format, fast path per format (chapter 6).

Every variant runs the same static-shape step (Decoder.decode_at at a fixed position, the cache
already filled by a prefill), so the variants differ only in how the weights are stored and
multiplied. The fast path of each weight format on a CPU is chapter 6's finding: int8 weight-only
needs torch.compile (which turns it into aten::_weight_int8pack_mm), int4 weight-only's CPU layout
runs its packed kernel eagerly. The head (a 256-row matrix product) stays in the model's precision:
it shares its weights with the embedding table, whose lookup needs them unquantized.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

import pandas as pd
import torch
from torch import nn
from torch.profiler import profile

from helpers.core.validate import require_choice, require_int
from helpers.ch03_hardware.compile_timing import INTERNAL_COMPILE_WARNINGS
from helpers.ch06_compression.weight_only import (  # first: quietens torchao
    FAST_PATHS, MATMUL_OPERATOR, quantization_config)
from helpers.support.logs import quiet_profiler_logs
from torchao.quantization import quantize_
from helpers.appA_language_model.model import VOCAB, Decoder, KVCache

WEIGHT_FORMATS = ("fp32", "bf16", "int8 weight-only", "int4 weight-only")


def _blocks_linear(module: nn.Module, name: str) -> bool:
    """The Linear layers inside the blocks (the tied head is left alone)."""
    return isinstance(module, nn.Linear) and name.startswith("blocks.")


def decoder_in_format(model: Decoder, weight_format: str) -> Decoder:
    """The decoder with its weights in the format: itself for fp32; a copy in bf16, or in bf16 with its blocks' Linear
    weights quantized weight-only by torchao (int8 per channel, int4 in groups of 128)."""
    require_choice("weight_format", weight_format, WEIGHT_FORMATS)
    if weight_format == "fp32" and next(model.parameters()).dtype == torch.float32:
        return model
    dtype = torch.float32 if weight_format == "fp32" else torch.bfloat16
    with torch.device("meta"):
        copied = Decoder(model.config).to(dtype)  # no fp32 copy of the weights on the way to bf16
    copied = copied.to_empty(device=next(model.parameters()).device)
    copied.head.weight = copied.embed.weight  # to_empty gave each its own tensor: tie them again
    copied.load_state_dict(model.state_dict())
    if weight_format.endswith("weight-only"):
        quantize_(copied, quantization_config(weight_format, "cpu"), filter_fn=_blocks_linear)
    return copied.eval()


PATHS = tuple(dict.fromkeys(("eager", *FAST_PATHS.values())))  # eager, and chapter 6's fast paths on a CPU


def decode_call(model: Decoder, *, batch: int, position: int, path: str = "eager") -> Callable[[], torch.Tensor]:
    """A callable that runs one decode step of batch sequences at position, the cache (position + 1 long) filled up
    to it by a prefill;
    path "compiled" runs the step through torch.compile (one graph, compiled here), "compiled, frozen" also folds
    the weights into it as constants (Inductor's freezing: oneDNN packs them)."""
    require_int("batch", batch, minimum=1)
    require_int("position", position, minimum=1)
    require_choice("path", path, PATHS)
    parameter = next(model.parameters())
    cache = KVCache(model.config, batch, positions=position + 1, dtype=parameter.dtype, device=parameter.device)
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, VOCAB, (batch, position), generator=generator).to(parameter.device)
    token, where = prompt[:, -1:].clone(), torch.tensor([position], device=parameter.device)
    step = model.decode_at if path == "eager" else torch.compile(model.decode_at, fullgraph=True, dynamic=False)
    with torch.no_grad(), torch._inductor.config.patch(freezing=path == "compiled, frozen"), \
            warnings.catch_warnings():
        for message in INTERNAL_COMPILE_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        model(prompt, cache)
        step(token, cache, where)  # compiles here, under the freezing setting asked for

    @torch.no_grad()
    def run() -> torch.Tensor:
        return step(token, cache, where)

    return run


def matmul_ms_profiled(calls: Mapping[str, Callable[[], object]], *, repeats: int = 20) -> pd.Series:
    """Self CPU time per call (ms) of each variant's matrix-multiply operators, from one profile of `repeats` calls.

    The products are a few long kernels, so the profiler's own cost (which grows with the number of operators, and
    so weighs on an eager step far more than on a compiled one) inflates them little: subtract them from a timed
    step, not from a profiled one, to get the rest of the step."""
    found = {}
    for name, call in calls.items():
        call()
        with quiet_profiler_logs(), profile() as prof:
            for _ in range(repeats):
                call()
        found[name] = sum(e.self_cpu_time_total for e in prof.events() if MATMUL_OPERATOR.search(e.name)
                          and "CompiledFxGraph" not in e.name) / 1e3 / repeats
    return pd.Series(found, name="matrix products, profiled (ms)")
