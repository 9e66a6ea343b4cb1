"""Chapter 2's exercise answers, computed out of the learner's sight: a FLOP share, a prediction, shortfalls."""

from __future__ import annotations

import pandas as pd
import torch

from helpers.ch02_model_structure.layers import DepthwiseSeparableConv
from helpers.core.cost import count_flops
from helpers.core.validate import require_instance, require_int, require_number

# The shrink exercise 2 assumes pruning 50% gives: 4x for a convolution (both channel counts halve), 2x elsewhere.
CONV_SHRINK, OTHER_SHRINK = 4.0, 2.0


def depthwise_flop_share(out_channels: int, kernel: int) -> float:
    """Exercise 1: the depthwise half's share of a separable block's FLOPs, counted on a real block."""
    require_int("out_channels", out_channels, minimum=1)
    require_int("kernel", kernel, minimum=1)
    block = DepthwiseSeparableConv(32, out_channels, kernel, norm=False)
    x = torch.randn(1, 32, 16, 16)
    return count_flops(block.depthwise, x) / count_flops(block, x)


def assumed_shrink(kind: str) -> float:
    """The factor exercise 2 assumes for a layer kind."""
    return CONV_SHRINK if kind == "Conv2d" else OTHER_SHRINK


def expected_pruned_ms(dense_ms: pd.Series) -> float:
    """Exercise 2a: the dense per-kind times (a 'total' row left out), each divided by its assumed shrink."""
    require_instance("dense_ms", dense_ms, pd.Series)
    return sum(ms / assumed_shrink(kind) for kind, ms in dense_ms.drop("total").items())


def big_layer_kinds(dense_ms: pd.Series) -> list[str]:
    """The layer kinds that take at least 10% of the dense network's total time: exercise 2b's choices."""
    require_instance("dense_ms", dense_ms, pd.Series)
    return [kind for kind in dense_ms.index if kind != "total" and dense_ms[kind] >= 0.1 * dense_ms["total"]]


def kind_shortfall(dense_ms: pd.Series, pruned_ms: pd.Series, kind: str) -> float:
    """Exercise 2b: a layer kind's assumed shrink over its measured one (1.0: as assumed; above 1: it fell short)."""
    require_instance("dense_ms", dense_ms, pd.Series)
    require_instance("pruned_ms", pruned_ms, pd.Series)
    kinds = [k for k in dense_ms.index if k != "total" and k in pruned_ms.index]
    if kind not in kinds:
        raise ValueError(f"kind must be a layer kind of both tables ({', '.join(map(repr, kinds))}), got {kind!r}")
    return assumed_shrink(kind) / (dense_ms[kind] / pruned_ms[kind])


def best_ratio_within(sweep: pd.DataFrame, points: float) -> float:
    """Exercise 3: the fastest pruning ratio whose validation accuracy is within `points` of the unpruned one."""
    require_instance("sweep", sweep, pd.DataFrame)
    require_number("points", points, minimum=0)
    allowed = sweep[sweep["validation accuracy"] >= sweep.loc[0.0, "validation accuracy"] - points / 100]
    return float(allowed["latency_ms (batch 64)"].idxmin())
