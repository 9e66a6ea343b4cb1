"""Serving many requests: what a bigger decode batch buys, and static against continuous batching.

A decode step at batch B reads the weights once for B sequences, so while it stays memory-bound
its time barely grows with B and tokens per second grow almost B-fold; each request still waits
one step per token. Static batching starts a batch and waits for its longest request; continuous
batching (Orca, vLLM, SGLang) refills a slot the moment its request ends. The schedules here run
on a clock made of measured step times, one per number of active sequences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from helpers.core.validate import require_int


def step_time_at(step_ms: Mapping[int, float], active: int) -> float:
    """Step time (ms) for `active` sequences, interpolated between the measured batch sizes (linear in the batch)."""
    require_int("active", active, minimum=1)
    sizes = sorted(step_ms)
    if not sizes or active > sizes[-1]:
        raise ValueError(f"step times are measured for batches {sizes}; {active} sequences lie outside them")
    return float(np.interp(active, sizes, [step_ms[size] for size in sizes]))


def request_lengths(requests: int, *, shortest: int = 8, longest: int = 200, seed: int = 0) -> list[int]:
    """Output lengths of requests, most short and a few long (log-uniform between shortest and longest)."""
    require_int("requests", requests, minimum=1)
    rng = np.random.default_rng(seed)
    return [int(round(x)) for x in np.exp(rng.uniform(np.log(shortest), np.log(longest), requests))]


@dataclass(frozen=True)
class Schedule:
    """When each request finished (ms from the start), and the steps the server ran."""

    finish_ms: tuple[float, ...]
    first_token_ms: tuple[float, ...]
    steps: int
    lengths: tuple[int, ...]

    @property
    def total_ms(self) -> float:
        """Time until the last request finished."""
        return max(self.finish_ms)

    @property
    def tokens_per_s(self) -> float:
        """Generated tokens per second over the whole run."""
        return sum(self.lengths) / self.total_ms * 1e3

    def latency_percentile_ms(self, percent: float) -> float:
        """A percentile of the time from the start until a request's last token."""
        return float(np.percentile(self.finish_ms, percent))

    def first_token_percentile_ms(self, percent: float) -> float:
        """A percentile of the time from the start until a request's first token (its wait for a slot included)."""
        return float(np.percentile(self.first_token_ms, percent))


def static_batches(lengths: Sequence[int], slots: int, step_ms: Mapping[int, float]) -> Schedule:
    """Requests in order, `slots` at a time; a batch runs until its longest request ends, finished rows idle."""
    require_int("slots", slots, minimum=1)
    clock, finish, first, steps = 0.0, [], [], 0
    for start in range(0, len(lengths), slots):
        batch = list(lengths[start:start + slots])
        for step in range(1, max(batch) + 1):
            clock += step_time_at(step_ms, len(batch))  # finished rows still occupy the batch
            steps += 1
            first += [clock] * (len(batch) if step == 1 else 0)
            finish += [clock] * sum(length == step for length in batch)
    return Schedule(tuple(finish), tuple(first), steps, tuple(lengths))


def continuous_batches(lengths: Sequence[int], slots: int, step_ms: Mapping[int, float]) -> Schedule:
    """Up to `slots` requests at once; when one ends, the next waiting request takes its slot at the next step."""
    require_int("slots", slots, minimum=1)
    waiting, running, clock, finish, first, steps = list(lengths), [], 0.0, [], [], 0
    while waiting or running:
        admitted = 0
        while waiting and len(running) < slots:
            running.append(waiting.pop(0))
            admitted += 1
        clock += step_time_at(step_ms, len(running))
        steps += 1
        first += [clock] * admitted
        running = [left - 1 for left in running]
        finish += [clock] * running.count(0)
        running = [left for left in running if left > 0]
    return Schedule(tuple(finish), tuple(first), steps, tuple(lengths))
