"""Chapter 4's exercise checks: predict a pipeline's throughput, then choose its workers and threads."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import Dataset

from helpers.core.claims import paired_ratio
from helpers.core.validate import require_int
from helpers.support.checks import FAIL, PASS, TODO, Verdict, announce, check_function
from helpers.ch04_data_pipeline.loading import make_loader, measure_training


def _expected_throughput(loader_rate: float, step_rate: float, overlapped: bool) -> float:
    """Reference for the chapter's exercise (kept out of the notebook so the check does not show the answer)."""
    return min(loader_rate, step_rate) if overlapped else 1 / (1 / loader_rate + 1 / step_rate)


def check_throughput_prediction(exercise: str, predict: Callable[[float, float, bool], float]) -> Verdict:
    """Check predict(loader_rate, step_rate, overlapped) against the reference on cases that tell formulas apart."""
    cases = [((loader, step, overlapped), _expected_throughput(loader, step, overlapped))
             for loader, step in ((1000.0, 250.0), (300.0, 3000.0), (500.0, 500.0)) for overlapped in (False, True)]
    return check_function(exercise, predict, cases, rtol=1e-6,
                          hint="Serial: the time per image is the sum of both times per image. Overlapped: the "
                               "slower stage sets the pace.")


def check_pipeline_choice(exercise: str, num_workers: object, training_threads: object, *, dataset: Dataset,
                          model: nn.Module, best: tuple[int, int], device: torch.device | str = "cpu",
                          rounds: int = 3, max_batches: int = 16) -> Verdict:
    """Train with the chosen (num_workers, training threads) and the best measured (workers, threads), in
    alternating rounds; the choice passes when the best's lead over it is not significant (interval reaches 1)."""
    if any(answer is None or answer is Ellipsis for answer in (num_workers, training_threads)):
        return announce(TODO, exercise, "not answered yet: replace both `...` with your choice and re-run this cell.",
                    False)
    require_int("num_workers", num_workers, minimum=0)
    require_int("training_threads", training_threads, minimum=1)
    if not (isinstance(best, tuple) and len(best) == 2):
        raise TypeError(f"best must be a (num_workers, training_threads) tuple, got {best!r}")
    if (num_workers, training_threads) == best:
        return announce(PASS, exercise, f"{num_workers} worker(s) and {training_threads} training thread(s): the best "
                    "configuration measured in section 6.", True)
    loaders = {"your choice": make_loader(dataset, num_workers=num_workers),
               "best measured": make_loader(dataset, num_workers=best[0])}
    rates = measure_training(loaders, model, device=device, rounds=rounds, max_batches=max_batches,
                             num_threads={"your choice": training_threads, "best measured": best[1]})
    ratio = paired_ratio(rates["best measured"], rates["your choice"], higher_is_better=True)
    if ratio.high >= 1.0:
        return announce(PASS, exercise, f"your choice trains at {ratio} the rate of the best measured configuration "
                    f"({best[0]} workers, {best[1]} threads): as fast, within the interval.", True)
    return announce(FAIL, exercise, f"your choice trains at {ratio} the rate of the best measured configuration "
                f"({best[0]} workers, {best[1]} threads). Count the threads that want a core: the workers, "
                "the training threads, and the cores there are.", False)
