"""Chapter 7's exercise checks: the expected answers are measured or computed here, out of the learner's sight."""

from __future__ import annotations

import math
import numbers
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, schedule

from helpers.ch07_tools.onnx_quantization import RUNS_AS, convolution_table, extended_int8_graph
from helpers.support.checks import FAIL, PASS, TODO, Verdict, announce, check_number
from helpers.support.logs import quiet_profiler_logs

EXERCISE_SCHEDULE = {"wait": 2, "warmup": 1, "active": 3, "repeat": 2}
EXERCISE_STEPS = 20
FP16_UNIT_ROUNDOFF = 2.0 ** -11  # float16 keeps 11 significant bits
EXERCISE_TERMS, EXERCISE_LAYERS, EXERCISE_LOGIT_SCALE = 2304, 50, 10.0
NOT_ANSWERED = "not answered yet: replace the `...` with your answer and re-run this cell."


def recorded_steps(total_steps: int = EXERCISE_STEPS, **schedule_arguments: int) -> int:
    """Run the real profiler with this schedule over trivial steps; count the steps it kept in all its cycles."""
    with quiet_profiler_logs(), profile(activities=[ProfilerActivity.CPU], acc_events=True,
                                        schedule=schedule(**schedule_arguments)) as prof:
        for _ in range(total_steps):
            torch.ones(4).add_(1)
            prof.step()
    return sum(event.name.startswith("ProfilerStep") for event in prof.events())


def check_recorded_steps(exercise: str, answer: object) -> Verdict:
    """Exercise 1: how many steps schedule(wait=2, warmup=1, active=3, repeat=2) keeps over 20 steps."""
    return check_number(exercise, answer, recorded_steps(**EXERCISE_SCHEDULE), rtol=0,
                        hint="Only active steps are kept; count how many cycles run before `repeat` stops it.")


def fp16_tolerance() -> float:
    """Section 3.2's linear-in-depth rule, u x sqrt(K) x layers x logit scale, for Exercise 2's float16 network."""
    return FP16_UNIT_ROUNDOFF * math.sqrt(EXERCISE_TERMS) * EXERCISE_LAYERS * EXERCISE_LOGIT_SCALE


def _check_yes_no(exercise: str, answer: object, expected: bool, *, hint: str) -> Verdict:
    """Check a True/False answer; say only that it is wrong, and where to look."""
    if answer is None or answer is Ellipsis:
        return announce(TODO, exercise, NOT_ANSWERED, False)
    if not isinstance(answer, bool):
        return announce(FAIL, exercise, f"answer True or False, got {type(answer).__name__} {answer!r}.", False)
    if answer == expected:
        return announce(PASS, exercise, "correct.", True)
    return announce(FAIL, exercise, f"not {answer}. {hint}", False)


def check_fp16_tolerance(exercise: str, tolerance: object, rule_can_catch_a_wrong_export: object = ...) -> Verdict:
    """Exercise 2: the rule's float16 tolerance, and whether that tolerance could still flag a wrong export.

    Passes only if both answers are right. The second is judged once the first is right, since it rests on it;
    left out, it counts as not answered yet.
    """
    expected = fp16_tolerance()
    computed = check_number(f"{exercise} (tolerance)", tolerance, expected, rtol=0.05,
                            hint="Redo section 3.2's float32 computation, changing each of its four factors to "
                                 "this network's values.")
    second = f"{exercise} (can the rule catch a wrong export?)"
    if not computed:
        return announce(TODO, second, "judged once the tolerance is right: the answer rests on it.", False)
    return _check_yes_no(second, rule_can_catch_a_wrong_export, expected < EXERCISE_LOGIT_SCALE,
                         hint="A wrong export changes the logits by about their own size: put the tolerance beside "
                              "the logits' scale and ask whether such a change would exceed it.")


class ResidualExercise(nn.Module):
    """Exercise 3's network: a stem convolution, one residual block with an identity skip, a last convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.block_a, self.block_b = (nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1),
                                                 nn.Conv2d(8, 8, 3, padding=1))
        self.last, self.head = nn.Conv2d(8, 16, 3, padding=1), nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        y = torch.relu(self.block_b(torch.relu(self.block_a(y))) + y)
        return self.head(torch.relu(self.last(y)).mean(dim=(2, 3)))


def float_convolution_count(model_path: str | Path) -> int:
    """How many convolutions of a float ONNX file a session on this CPU leaves in float after S8S8 QDQ quantization."""
    with tempfile.TemporaryDirectory(prefix="ch07-exercise-") as folder:
        table = convolution_table(extended_int8_graph(model_path, folder, activations="s8"))
    return int((table["runs as"] == RUNS_AS["Conv"]).sum())


def residual_float_convolutions() -> int:
    """Export Exercise 3's network (untrained, 16x16 images) and count its convolutions left in float under S8S8."""
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="ch07-exercise-") as folder:
        path = Path(folder) / "residual.onnx"
        torch.onnx.export(ResidualExercise().eval(), (torch.rand(2, 1, 16, 16),), path, dynamo=True, verbose=False,
                          external_data=False, dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=64)}})
        return float_convolution_count(path)


def check_float_convolutions(exercise: str, answer: object) -> Verdict:
    """Exercise 3: how many of ResidualExercise's 4 convolutions stay float under S8S8 QDQ; quantized live."""
    if answer is None or answer is Ellipsis:
        return announce(TODO, exercise, NOT_ANSWERED, False)
    if isinstance(answer, bool) or not isinstance(answer, numbers.Integral):
        return announce(FAIL, exercise, f"expected a whole number of convolutions, got {type(answer).__name__} "
                                        f"{answer!r}.", False)
    expected = residual_float_convolutions()
    if answer == expected:
        return announce(PASS, exercise, f"correct: {expected} of the 4 convolutions left in float on this CPU.", True)
    return announce(FAIL, exercise, f"{answer} is too {'high' if answer > expected else 'low'}. Follow each quantized "
                                    "tensor: on x86 a convolution stays float when the tensor it reads, or the one "
                                    "it writes, has two readers (on ARM, signed activations fuse everywhere).", False)
