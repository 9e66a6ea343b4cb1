"""Attention written out by hand against F.scaled_dot_product_attention, and which kernel SDPA chose.

The hand-written version builds the whole (positions x positions) score matrix, masks it, takes
its softmax and multiplies by the values: memory that grows with the square of the sequence.
SDPA dispatches to a fused kernel that never stores that matrix: FlashAttention-style tiling on a
CPU and on recent NVIDIA GPUs, a memory-efficient kernel, or the plain math path as a fallback.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.profiler import profile

from helpers.core.validate import require_int
from helpers.support.logs import quiet_profiler_logs


def attention_by_hand(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention the textbook way: scores, mask, softmax, weighted sum of the values."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    future = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).triu(1)
    return scores.masked_fill(future, float("-inf")).softmax(dim=-1) @ v


def attention_fused(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The same causal attention through PyTorch's fused entry point."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


IMPLEMENTATIONS = {"by hand": attention_by_hand, "SDPA": attention_fused}


def attention_inputs(positions: int, *, heads: int = 4, head_dim: int = 64, batch: int = 1,
                     dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random queries, keys and values of shape (batch, heads, positions, head_dim)."""
    for name, value in (("positions", positions), ("heads", heads), ("head_dim", head_dim), ("batch", batch)):
        require_int(name, value, minimum=1)
    generator = torch.Generator(device=device).manual_seed(0)
    return tuple(torch.randn(batch, heads, positions, head_dim, generator=generator, dtype=dtype, device=device)
                 for _ in range(3))


def score_matrix_bytes(positions: int, *, heads: int = 4, batch: int = 1, bytes_per_value: int = 4) -> int:
    """Bytes of one (positions x positions) score matrix per head: what the hand-written version stores, twice
    (scores, then their softmax)."""
    require_int("positions", positions, minimum=1)
    return batch * heads * positions * positions * bytes_per_value


def operators_and_peak(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> tuple[tuple[str, ...], float]:
    """The attention and softmax operators one call ran (fused kernels by name), and the peak MB held between them:
    the running total, in order, of what each operator left allocated (scratch an operator frees before returning,
    such as SDPA's per-thread tiles, is not seen)."""
    with quiet_profiler_logs(), profile(profile_memory=True) as prof:
        fn(*inputs)
    events = sorted(prof.events(), key=lambda event: event.time_range.start)
    names = tuple(sorted({event.name for event in events
                          if "attention" in event.name or event.name in ("aten::softmax", "aten::_softmax")}))
    held = peak = 0
    for event in events:
        held += event.self_cpu_memory_usage
        peak = max(peak, held)
    return names, peak / 1e6
