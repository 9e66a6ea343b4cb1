"""Chapter 7's exercise checks: the expected answers are measured here, out of the learner's sight."""

from __future__ import annotations

import math

import torch
from torch.profiler import ProfilerActivity, profile, schedule

from helpers.support.checks import Verdict, check_number
from helpers.support.logs import quiet_profiler_logs

EXERCISE_SCHEDULE = {"wait": 2, "warmup": 1, "active": 3, "repeat": 2}
EXERCISE_STEPS = 20
FP16_UNIT_ROUNDOFF = 2.0 ** -11  # float16 keeps 11 significant bits
EXERCISE_TERMS, EXERCISE_LAYERS, EXERCISE_LOGIT_SCALE = 2304, 50, 10.0


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


def check_fp16_tolerance(exercise: str, answer: object) -> Verdict:
    """Exercise 2: section 3.2's tolerance rule for a float16 network (K = 2304, 50 layers, logits up to 10)."""
    expected = FP16_UNIT_ROUNDOFF * math.sqrt(EXERCISE_TERMS) * EXERCISE_LAYERS * EXERCISE_LOGIT_SCALE
    return check_number(exercise, answer, expected, rtol=0.05,
                        hint="Section 3.2's rule: unit roundoff x square root of the terms per dot product x "
                             "layers x the logits' scale, with float16's unit roundoff.")
