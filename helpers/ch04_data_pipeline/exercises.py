"""Chapter 4's exercise checks: predict a pipeline's throughput, then choose its workers and threads.

The checks compute their answers here, out of sight, and never print them.
"""

from __future__ import annotations

import numbers
import statistics
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from helpers.core.claims import make_claim, paired_ratio
from helpers.core.validate import require_int, require_number
from helpers.support.checks import FAIL, PASS, TODO, Verdict, announce, is_close
from helpers.ch04_data_pipeline.loading import make_loader, measure_training, prefetched_batches

THROUGHPUT_CASES = ((1000.0, 250.0), (300.0, 3000.0), (500.0, 500.0))


def _expected_throughput(loader_rate: float, step_rate: float, overlapped: bool) -> float:
    """Reference for the chapter's exercise (kept out of the notebook so the check does not show the answer)."""
    return min(loader_rate, step_rate) if overlapped else 1 / (1 / loader_rate + 1 / step_rate)


def _throughput_hint(got: float, loader_rate: float, step_rate: float, overlapped: bool) -> str:
    """What a wrong answer gets wrong, without the answer."""
    slower = min(loader_rate, step_rate)
    if got > slower * (1 + 1e-6):
        return "That is faster than the slower stage alone, which no pipeline can be."
    if not overlapped and is_close(got, slower, 1e-6):
        return ("That is what full overlap would give; here each image waits for both stages, one after the "
                "other.")
    if overlapped:
        return "With full overlap, the faster stage only waits for the slower one: nothing else costs time."
    return "Think in seconds per image rather than images per second."


def check_throughput_prediction(exercise: str, predict: Callable[[float, float, bool], float]) -> Verdict:
    """Check predict(loader_rate, step_rate, overlapped) on cases that tell formulas apart; a failure names the
    case and what is wrong with the answer, never the expected value."""
    if not callable(predict):
        raise TypeError(f"predict must be a function, got {type(predict).__name__}")
    cases = [(loader, step, overlapped) for loader, step in THROUGHPUT_CASES for overlapped in (False, True)]
    for loader, step, overlapped in cases:
        got = predict(loader, step, overlapped)
        call = f"predict_throughput({loader:g}, {step:g}, overlapped={overlapped})"
        if got is None or got is Ellipsis:
            return announce(TODO, exercise, f"not implemented yet: {call} returned {got!r}.", False)
        if isinstance(got, bool) or not isinstance(got, numbers.Real):
            return announce(FAIL, exercise, f"{call} returned {got!r}; it must return a number of images/s.", False)
        if not is_close(float(got), _expected_throughput(loader, step, overlapped), 1e-6):
            return announce(FAIL, exercise, f"{call} returned {float(got):.6g}, which is not the combined rate. "
                            f"{_throughput_hint(float(got), loader, step, overlapped)}", False)
    return announce(PASS, exercise, f"correct on all {len(cases)} cases.", True)


def check_pipeline_choice(exercise: str, num_workers: object, training_threads: object, predicted_rate: object, *,
                          dataset: Dataset, model: nn.Module, measured: Mapping[str, Sequence[float]],
                          configurations: Mapping[str, tuple[int, int]], device: torch.device | str = "cpu",
                          rounds: int = 8, timed_batches: int = 16, tolerance: float = 0.3) -> Verdict:
    """Train with a (num_workers, training threads) pair that `configurations` did not run, and with the fastest
    of them (by its median in `measured`, chosen here and never printed), in alternating rounds, each timed over
    the same `timed_batches` batches after both loaders' head start; pass when the prediction is within
    `tolerance` of the measured rate, and judge the claim that the choice's rate is at least the fastest one's."""
    if any(answer is None or answer is Ellipsis for answer in (num_workers, training_threads, predicted_rate)):
        return announce(TODO, exercise, "not answered yet: replace the three `...` with your prediction and your "
                        "choice, then re-run this cell.", False)
    require_int("num_workers", num_workers, minimum=0)
    require_int("training_threads", training_threads, minimum=1)
    predicted_rate = require_number("predicted_rate", predicted_rate, strictly_positive=True)
    require_int("rounds", rounds, minimum=5)
    require_int("timed_batches", timed_batches, minimum=1)
    require_number("tolerance", tolerance, strictly_positive=True, maximum=1.0)
    if not configurations:
        raise ValueError("configurations must name at least one (num_workers, training_threads) pipeline")
    for name, pair in configurations.items():
        if name not in measured or not measured[name]:
            raise ValueError(f"configuration {name!r} has no measured rates; measured names: {', '.join(measured)}")
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise TypeError(f"configurations[{name!r}] must be a (num_workers, training_threads) tuple, got {pair!r}")
    if (num_workers, training_threads) in configurations.values():
        return announce(FAIL, exercise, f"{num_workers} worker(s) and {training_threads} training thread(s) is one "
                        "of section 6's rows: its rate is in that table. Choose a pair section 6 did not run.", False)
    fastest = configurations[max(configurations, key=lambda name: statistics.median(measured[name]))]
    loaders = {"your choice": make_loader(dataset, num_workers=num_workers),
               "fastest measured": make_loader(dataset, num_workers=fastest[0])}
    # measure_training leaves the larger head start of the two loaders off the clock for both: time
    # `timed_batches` after it, whatever the worker count
    skip = max(prefetched_batches(loader) for loader in loaders.values())
    if len(loaders["your choice"]) < skip + timed_batches:
        raise ValueError(f"{num_workers} workers prefetch {skip} batches before the clock starts; with "
                         f"{timed_batches} timed batches that needs {skip + timed_batches}, and the dataset has "
                         f"{len(loaders['your choice'])}: choose fewer workers")
    rates = measure_training(loaders, model, device=device, rounds=rounds, max_batches=skip + timed_batches,
                             num_threads={"your choice": training_threads, "fastest measured": fastest[1]})
    worth_it = make_claim(4, "your_pipeline_at_least_the_fastest", "Your pair's training rate is at least that "
                          "of the fastest pipeline section 6 ran, in the same rounds.", threshold=1.0,
                          hardware="this machine", ratio=paired_ratio(rates["fastest measured"], rates["your choice"], higher_is_better=True))
    rate = statistics.median(rates["your choice"])
    error = predicted_rate / rate - 1
    result = (f"{num_workers} worker(s) and {training_threads} training thread(s) trained at {rate:.0f} images/s; "
              f"you predicted {predicted_rate:.0f} ({error:+.0%}). Claim: {worth_it.statement} Measured: "
              f"{worth_it.sentence()}.")
    if abs(error) > tolerance:
        return announce(FAIL, exercise, f"{result} The prediction is more than {tolerance:.0%} off: combine the "
                        "rates you used (the loader's, the step's) the way Exercise 1 does, from one call, and count "
                        "what the step and the workers take from each other's cores.", False)
    return announce(PASS, exercise, f"{result} The prediction is within {tolerance:.0%}.", True)
