"""Where does a training step spend its time? Data, forward, backward, optimizer, timed inside real steps."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from helpers.core.measure import synchronize
from helpers.core.rounds import round_order
from helpers.core.validate import require_choice, require_instance, require_int

PHASES = ("data", "forward", "backward", "optimizer")
Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def epochs_of(batches: Batches) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches from `batches`, iterated afresh at the end of each epoch (a loader re-shuffles and re-loads)."""
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ValueError("batches yielded nothing in an epoch: give a loader or a list (a generator is used up "
                             "after one pass)")


@dataclass(frozen=True)
class PhaseTimes:
    """Median milliseconds of each phase, and of the whole step, over the measured full-size steps.

    mean_ms holds the means of the same (phases and "step"): shares of the total time, as Amdahl's
    law needs them, are ratios of means, not of medians. round_mean_ms holds each round's mean of
    every phase and of the step: the per-round values that a speed-up's interval is built from.
    """

    phases_ms: dict[str, float]
    step_ms: float
    steps: int
    round_mean_ms: dict[str, tuple[float, ...]]
    mean_ms: dict[str, float]

    @property
    def round_step_ms(self) -> tuple[float, ...]:
        """Each round's mean step time."""
        return self.round_mean_ms["step"]

    def round_step_without_ms(self, phase: str) -> tuple[float, ...]:
        """Each round's mean step time less one phase's: the rest of the step, which Amdahl assumes unchanged."""
        require_choice("phase", phase, PHASES)
        return tuple(step - part for step, part in zip(self.round_step_ms, self.round_mean_ms[phase]))

    def fractions(self) -> dict[str, float]:
        """Each phase's share of the summed phase medians."""
        total = sum(self.phases_ms.values())
        return {name: ms / total for name, ms in self.phases_ms.items()}


class _StepRunner:
    """Runs one training pipeline step by step, reading a synchronised clock at each phase boundary."""

    def __init__(self, model: nn.Module, batches: Batches, optimizer: torch.optim.Optimizer, device: torch.device):
        self.model = require_instance("model", model, nn.Module).to(device).train()
        self.optimizer = require_instance("optimizer", optimizer, torch.optim.Optimizer)
        self.source, self.device = epochs_of(batches), device
        self.loss_fn = nn.CrossEntropyLoss()
        self.full_batch: int | None = None
        self.samples: dict[str, list[float]] = {name: [] for name in (*PHASES, "step")}
        self.rounds: list[dict[str, list[float]]] = []

    def step(self) -> dict[str, float]:
        """One training step; the milliseconds of each phase and of the whole step, and the batch size."""
        marks = [time.perf_counter()]
        inputs, targets = next(self.source)
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        synchronize()
        marks.append(time.perf_counter())
        loss = self.loss_fn(self.model(inputs), targets)
        synchronize()
        marks.append(time.perf_counter())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        synchronize()
        marks.append(time.perf_counter())
        self.optimizer.step()
        synchronize()
        marks.append(time.perf_counter())
        times = {name: (end - start) * 1e3 for name, start, end in zip(PHASES, marks[:-1], marks[1:])}
        return {**times, "step": (marks[-1] - marks[0]) * 1e3, "batch": len(inputs)}

    def warm_up(self, steps: int) -> None:
        """Run steps that are not recorded; the largest batch seen is the full batch size."""
        for _ in range(steps):
            self.full_batch = max(self.full_batch or 0, self.step()["batch"])

    def run_round(self, steps: int) -> None:
        """Run steps and record the full-size ones (a ragged last batch of an epoch would skew the medians)."""
        self.rounds.append({name: [] for name in self.samples})
        while len(self.rounds[-1]["step"]) < steps:
            times = self.step()
            self.full_batch = self.full_batch or times["batch"]
            if times["batch"] < self.full_batch:
                continue
            for name in self.samples:
                self.samples[name].append(times[name])
                self.rounds[-1][name].append(times[name])

    def summary(self) -> PhaseTimes:
        medians = {name: statistics.median(self.samples[name]) for name in PHASES}
        return PhaseTimes(medians, statistics.median(self.samples["step"]), len(self.samples["step"]),
                          {name: tuple(statistics.fmean(r[name]) for r in self.rounds) for name in self.samples},
                          {name: statistics.fmean(times) for name, times in self.samples.items()})


def compare_step_phases(
    pipelines: Mapping[str, tuple[nn.Module, Batches, torch.optim.Optimizer]],
    *,
    rounds: int = 5,
    steps_per_round: int = 6,
    warmup: int = 3,
    device: torch.device | str = "cpu",
) -> dict[str, PhaseTimes]:
    """Time several (model, batches, optimizer) pipelines in alternating rounds; medians per phase.

    The phases depend on each other (backward needs this step's forward), so a benchmark Timer
    cannot time them in isolation: we read the clock at each boundary of real steps. Alternating
    rounds (in reverse order every other round) spreads slow spells of a shared machine over all pipelines instead of one. Each loader
    is iterated afresh every epoch, so its data cost is paid every step, as in real training; steps
    on a batch smaller than the full one (an epoch's ragged end) run but are not recorded.
    """
    if not isinstance(pipelines, Mapping) or not pipelines:
        raise ValueError("pipelines must be a non-empty mapping of name -> (model, batches, optimizer)")
    require_int("rounds", rounds, minimum=1)
    require_int("steps_per_round", steps_per_round, minimum=1)
    require_int("warmup", warmup, minimum=0)
    runners = {name: _StepRunner(*parts, torch.device(device)) for name, parts in pipelines.items()}
    for runner in runners.values():
        runner.warm_up(warmup)
    for round_index in range(rounds):
        for name in round_order(runners, round_index):  # reversed in odd rounds: neither always runs first
            runners[name].run_round(steps_per_round)
    return {name: runner.summary() for name, runner in runners.items()}


def time_step_phases(
    model: nn.Module,
    batches: Batches,
    optimizer: torch.optim.Optimizer,
    *,
    steps: int = 30,
    warmup: int = 5,
    device: torch.device | str = "cpu",
) -> PhaseTimes:
    """Median time of each phase of one training pipeline over `steps` steps after `warmup`."""
    require_int("steps", steps, minimum=1)
    pipeline = {"pipeline": (model, batches, optimizer)}
    return compare_step_phases(pipeline, rounds=1, steps_per_round=steps, warmup=warmup, device=device)["pipeline"]
