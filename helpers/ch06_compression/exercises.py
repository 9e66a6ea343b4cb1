"""Chapter 6's exercise checks: which layer one scale per tensor hurts most and by how much, and an asymmetric
uint8 quantizer written by hand, against torchao's primitives."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from helpers.ch06_compression.quantize import per_tensor_penalty  # first: it quietens torchao's import log line
from torchao.quantization.quant_primitives import MappingType, choose_qparams_affine, quantize_affine  # noqa: E402

from helpers.core.validate import require_callable
from helpers.support.checks import FAIL, PASS, TODO, Verdict, announce, check_choice, check_number


def check_granularity_prediction(exercise: str, answer: object, weights: Mapping[str, torch.Tensor]) -> Verdict:
    """Pass when answer names the weight tensor whose per-tensor int8 error exceeds its per-channel error most."""
    if not weights:
        raise ValueError("weights must map at least one layer name to its weight tensor")
    penalties = {name: per_tensor_penalty(w) for name, w in weights.items()}
    return check_choice(exercise, answer, max(penalties, key=penalties.get), list(weights),
                        hint="One per-tensor scale is set by the largest filter; the filters that lose most are the "
                             "ones whose own largest weight is far below it. Which table row has them?")


def check_granularity_ratio(exercise: str, answer: object, weights: Mapping[str, torch.Tensor]) -> Verdict:
    """Pass when answer is, within 2%, the largest ratio of per-tensor to per-channel int8 error among weights."""
    if not weights:
        raise ValueError("weights must map at least one layer name to its weight tensor")
    largest = max(per_tensor_penalty(w) for w in weights.values())
    return check_number(exercise, answer, largest, rtol=0.02,
                        hint="Divide symmetric_int8_error with one block for the whole tensor by the error with one "
                             "block per output channel, for each layer, and keep the largest ratio.")


def reference_uint8(values: torch.Tensor) -> tuple[torch.Tensor, float, int]:
    """torchao's asymmetric uint8 quantization of the whole tensor: (codes, scale, zero point)."""
    block = tuple(values.shape)
    scale, zero_point = choose_qparams_affine(values, MappingType.ASYMMETRIC, block, torch.uint8)
    codes = quantize_affine(values, block, scale, zero_point, torch.uint8)
    return codes, scale.item(), int(zero_point.item())


def _compare(got: object, values: torch.Tensor) -> str:
    """'' when got matches torchao's (codes, scale, zero point) for values, else what differs."""
    if not (isinstance(got, tuple) and len(got) == 3 and isinstance(got[0], torch.Tensor)):
        return f"return a tuple (codes tensor, scale, zero point), got {type(got).__name__}"
    codes, scale, zero_point = got
    expected_codes, expected_scale, expected_zero = reference_uint8(values)
    if abs(float(scale) - expected_scale) > 1e-4 * expected_scale:
        return f"scale {float(scale):.6g}, expected {expected_scale:.6g}"
    if int(zero_point) != expected_zero:
        return f"zero point {int(zero_point)}, expected {expected_zero}"
    if codes.shape != values.shape or codes.min() < 0 or codes.max() > 255:
        return "codes must have the input's shape and lie in [0, 255]"
    off = (codes.to(torch.int32) - expected_codes.to(torch.int32)).abs()
    if off.max() > 1 or (off > 0).float().mean() > 0.01:
        return f"{int((off > 0).sum())} of {len(values)} codes differ from torchao's"
    return ""


def check_uint8_quantizer(exercise: str, candidate: Callable[[torch.Tensor], object],
                          cases: Sequence[torch.Tensor]) -> Verdict:
    """Run candidate on each tensor; pass when scale, zero point and codes match torchao's asymmetric uint8."""
    require_callable("candidate", candidate)
    for index, values in enumerate(cases, start=1):
        got = candidate(values)
        if got is None or got is Ellipsis:
            return announce(TODO, exercise, f"not implemented yet: {candidate.__name__} returned {got!r}.", False)
        problem = _compare(got, values)
        if problem:
            return announce(FAIL, exercise, f"case {index}: {problem}. The range must include 0; z is the code that 0 "
                        "maps to.", False)
    return announce(PASS, exercise, f"scale, zero point and codes match torchao's on all {len(cases)} cases.", True)
