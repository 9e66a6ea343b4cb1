"""Checks for chapter 3's exercises: each computes the expected value itself, out of the learner's sight."""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from helpers.core.validate import require_int, require_number
from helpers.support.checks import FAIL, PASS, TODO, Verdict, check_number
from helpers.ch03_hardware.precision import saved_activation_bytes


def smallest_loss_scale(gradient: float) -> float:
    """The smallest power of two that lifts |gradient| to fp16's normal range (at least its smallest normal)."""
    gradient = abs(require_number("gradient", gradient, strictly_positive=True))
    scale = 1.0
    while torch.tensor(gradient * scale, dtype=torch.float16).item() < torch.finfo(torch.float16).tiny:
        scale *= 2.0
    return scale


def check_loss_scale(exercise: str, answer: object, gradient: float) -> Verdict:
    """Check the smallest power-of-two loss scale that makes gradient a normal fp16 number."""
    return check_number(exercise, answer, smallest_loss_scale(gradient), rtol=0,
                        hint="Compare gradient x scale with torch.finfo(torch.float16).tiny, doubling the scale.")


def exercise_mlp() -> nn.Sequential:
    """The exercise's network: Linear(512, 1024), ReLU, Linear(1024, 10)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 10))


def mlp_saved_bytes(batch: int) -> dict[str, int]:
    """Bytes the exercise's network saves for backward at this batch size, in fp32 and under bf16 autocast."""
    require_int("batch", batch, minimum=1)
    model, inputs = exercise_mlp(), torch.randn(batch, 512)
    return {precision: saved_activation_bytes(model, inputs, precision) for precision in ("fp32", "bf16")}


def _said(mark: str, exercise: str, message: str, passed: bool) -> Verdict:
    print(f"{mark} {exercise}: {message}")
    return Verdict(passed)


def activation_bytes(batch: int) -> dict[str, int]:
    """Bytes of the activations alone that the exercise's network keeps for backward, in fp32 and in bf16."""
    fp32 = mlp_saved_bytes(batch)["fp32"]  # in fp32 the network saves its activations and nothing else
    return {"fp32": fp32, "bf16": fp32 // 2}


def check_activation_bytes_prediction(exercise: str, fp32_bytes: object, bf16_bytes: object, *,
                                      batch: int) -> Verdict:
    """Check predicted activation bytes kept for backward by the exercise's network, in fp32 and in bf16, within 1%."""
    if any(answer is None or answer is Ellipsis for answer in (fp32_bytes, bf16_bytes)):
        return _said(TODO, exercise, "not answered yet: replace both `...` with your predictions and re-run.", False)
    expected = activation_bytes(batch)
    wrong = [p for p, answer in (("fp32", fp32_bytes), ("bf16", bf16_bytes))
             if not isinstance(answer, (int, float)) or abs(answer - expected[p]) > 0.01 * expected[p]]
    if not wrong:
        return _said(PASS, exercise, "both predictions are right. Now measure them (next cell).", True)
    return _said(FAIL, exercise, f"your {' and '.join(wrong)} prediction is off by more than 1%. Count the "
                 "tensors each operation needs for its gradients (a Linear its input, ReLU its output; a tensor "
                 "kept by two operations counts once) and the bytes per value of each format.", False)


def break_even_calls(compile_s: float, eager_ms: float, compiled_ms: float) -> float:
    """Calls after which the time saved per call has paid for a compilation (inf if compiling saves nothing)."""
    require_number("compile_s", compile_s, minimum=0)
    saved_ms = require_number("eager_ms", eager_ms, strictly_positive=True) - require_number(
        "compiled_ms", compiled_ms, strictly_positive=True)
    return float("inf") if saved_ms <= 0 else compile_s * 1e3 / saved_ms


def check_break_even(exercise: str, cold_calls: object, warm_calls: object, *, cold_s: float, warm_s: float,
                     table: pd.DataFrame) -> Verdict:
    """Check the break-even call counts for a cold and a warm start against this run's measurements."""
    eager_ms, compiled_ms = table.loc["eager", "median_ms"], table.loc["torch.compile", "median_ms"]
    first = check_number(f"{exercise} (cold start)", cold_calls, break_even_calls(cold_s, eager_ms, compiled_ms),
                         rtol=0.01, hint="Divide the first call's time by the time saved per later call.")
    second = check_number(f"{exercise} (warm start)", warm_calls, break_even_calls(warm_s, eager_ms, compiled_ms),
                          rtol=0.01, hint="The same formula, with the warm start's first call.")
    return Verdict(bool(first) and bool(second))


def show_measured_bytes(exercise: str, fp32_bytes: object, bf16_bytes: object, *, batch: int) -> dict[str, int] | None:
    """Measure the bytes saved for backward and print them beside the (a) predictions, once those are right."""
    if any(answer is None or answer is Ellipsis for answer in (fp32_bytes, bf16_bytes)):
        _said(TODO, exercise, "predict in (a) first: the measurement is shown beside your predictions.", False)
        return None
    expected = activation_bytes(batch)
    if any(not isinstance(answer, (int, float)) or abs(answer - expected[p]) > 0.01 * expected[p]
           for p, answer in (("fp32", fp32_bytes), ("bf16", bf16_bytes))):
        _said(TODO, exercise, "(a) is not right yet: the measurement is shown once your predictions pass it.", False)
        return None
    measured = mlp_saved_bytes(batch)
    for precision, predicted in (("fp32", fp32_bytes), ("bf16", bf16_bytes)):
        print(f"{precision}: measured {measured[precision]:,} bytes, predicted {predicted:,.0f} "
              f"(measured minus predicted: {measured[precision] - predicted:+,.0f})")
    return measured
