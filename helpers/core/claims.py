"""Speed claims judged with their uncertainty: holds, does not hold here, or inconclusive.

How the interval is made, in two sentences a learner can repeat: the two variants run in
alternating rounds, and each round gives one ratio (baseline time / optimized time), so a slow
spell of the machine hits both sides of that ratio alike. We resample the rounds with replacement
thousands of times and take the middle 95% of the resampled medians as the interval (a bootstrap).

What it does not promise: with few rounds a percentile bootstrap is unreliable, so below 8 rounds
the interval is the range of the round ratios and says so ("range of 5 rounds"); as an interval for
the median, the range of 5, 6 and 7 rounds covers it with about 94%, 97% and 98% probability. At 8
to 12 rounds the bootstrap's coverage is somewhat below its nominal 95%. And the interval describes
the noise within this run, not how a run today differs from one tomorrow (another load, another
clock speed). A verdict is this run's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from IPython.display import Markdown

from helpers.core.validate import require_choice, require_int, require_number

VERDICTS = ("holds", "does not hold here", "inconclusive")
BOOTSTRAP_MIN_ROUNDS = 8  # below this, the interval is reported as the range of the round ratios
DIRECTIONS = ("at least", "at most")


@dataclass(frozen=True)
class Ratio:
    """A speed-up (> 1: the optimized variant is better) with its interval over paired rounds.

    The interval is a 95% bootstrap interval from 8 rounds up, and the range of the round ratios below.
    """

    median: float
    low: float
    high: float
    rounds: int

    @property
    def gain(self) -> str:
        """'gain' or 'loss' only when the whole interval is on one side of 1.0; otherwise 'no gain'."""
        if self.low > 1.0:
            return "gain"
        if self.high < 1.0:
            return "loss"
        return "no gain"

    @property
    def interval_label(self) -> str:
        """What the interval is: '95% interval, 12 rounds' or 'range of 5 rounds'."""
        if self.rounds < BOOTSTRAP_MIN_ROUNDS:
            return f"range of {self.rounds} rounds"
        return f"95% interval, {self.rounds} rounds"

    def text(self, digits: int = 2) -> str:
        """'1.28x (95% interval, 12 rounds: 1.10 to 1.38x)' with that many decimals."""
        return f"{self.median:.{digits}f}x ({self.interval_label}: {self.low:.{digits}f} to {self.high:.{digits}f}x)"

    def __str__(self) -> str:
        return self.text()


def _positive_values(name: str, values: Sequence[float]) -> np.ndarray:
    """The values as a float array, each checked to be a positive number."""
    return np.array([require_number(f"{name}[{i}]", v, strictly_positive=True) for i, v in enumerate(values)])


def paired_ratio(
    baseline: Sequence[float],
    optimized: Sequence[float],
    *,
    higher_is_better: bool = False,
    resamples: int = 4000,
    seed: int = 0,
) -> Ratio:
    """Median of the per-round ratios and its interval: a 95% bootstrap from 8 rounds, their range below.

    baseline[i] and optimized[i] were measured in the same round i (times by default; rates such as
    images/s with higher_is_better=True). The seed makes the interval repeat for the same data.
    """
    if len(baseline) != len(optimized):
        raise ValueError(f"baseline and optimized need one value per round each, got {len(baseline)} and "
                         f"{len(optimized)}")
    if len(baseline) < 3:
        raise ValueError(f"an interval needs at least 3 paired rounds, got {len(baseline)}")
    require_int("resamples", resamples, minimum=100)
    base, opt = _positive_values("baseline", baseline), _positive_values("optimized", optimized)
    ratios = opt / base if higher_is_better else base / opt
    if len(ratios) < BOOTSTRAP_MIN_ROUNDS:
        low, high = ratios.min(), ratios.max()
    else:
        picks = np.random.default_rng(seed).integers(0, len(ratios), size=(resamples, len(ratios)))
        low, high = np.percentile(np.median(ratios[picks], axis=1), [2.5, 97.5])
    return Ratio(float(np.median(ratios)), float(low), float(high), len(ratios))


def timing_ratio(baseline: object, optimized: object) -> Ratio:
    """paired_ratio of two Timings from the same measure_interleaved call (their per-round medians)."""
    for name, timing in (("baseline", baseline), ("optimized", optimized)):
        if not hasattr(timing, "round_medians_s"):
            raise TypeError(f"{name} must be a Timing from measure_interleaved, got {type(timing).__name__}")
    return paired_ratio(baseline.round_medians_s, optimized.round_medians_s)


@dataclass(frozen=True)
class Claim:
    """A named statement 'the optimized variant is {direction} {threshold}x better', judged on this machine."""

    chapter: int
    name: str
    statement: str
    threshold: float
    direction: str
    ratio: Ratio
    hardware: str
    condition: str = ""

    @property
    def verdict(self) -> str:
        """'holds' when the whole interval is on the claimed side of the threshold, 'does not hold here'
        when it is all on the other side, 'inconclusive' when the threshold lies inside it."""
        low, high = self.ratio.low, self.ratio.high
        if self.direction == "at most":
            low, high = -high, -low
            threshold = -self.threshold
        else:
            threshold = self.threshold
        if low >= threshold:
            return "holds"
        if high < threshold:
            return "does not hold here"
        return "inconclusive"

    def sentence(self) -> str:
        """'2.41x (range of 6 rounds: 2.10 to 2.70x) against a threshold of at least 3x: does not hold here'."""
        near = any(abs(bound - self.threshold) < 0.005 for bound in (self.ratio.low, self.ratio.high))
        return (f"{self.ratio.text(3 if near else 2)} against a threshold of {self.direction} {self.threshold:g}x: "
                f"{self.verdict}")

    def as_dict(self) -> dict:
        """Plain dict for the ledger, with the verdict spelled out."""
        return {**asdict(self), "verdict": self.verdict}


def make_claim(
    chapter: int,
    name: str,
    statement: str,
    *,
    threshold: float,
    ratio: Ratio,
    hardware: str,
    direction: str = "at least",
    condition: str = "",
) -> Claim:
    """Build a claim, checking its arguments."""
    require_int("chapter", chapter, minimum=1)
    for label, text in (("name", name), ("statement", statement), ("hardware", hardware)):
        if not isinstance(text, str) or not text:
            raise ValueError(f"{label} must be a non-empty string, got {text!r}")
    if not isinstance(ratio, Ratio):
        raise TypeError(f"ratio must be a Ratio (from paired_ratio), got {type(ratio).__name__}")
    require_choice("direction", direction, DIRECTIONS)
    threshold = require_number("threshold", threshold, strictly_positive=True)
    return Claim(chapter, name, statement, threshold, direction, ratio, hardware, condition)


def report_claim(claim: Claim, **readings: str) -> Markdown:
    """The claim, its measurement and verdict, then the reading for that verdict (keys: holds,
    does_not_hold, inconclusive), so the text under a measurement says what this machine showed."""
    allowed = {"holds", "does_not_hold", "inconclusive"}
    if not set(readings) <= allowed:
        raise ValueError(f"readings may only be {sorted(allowed)}, got {sorted(readings)}")
    readings.setdefault("inconclusive", "The threshold lies inside the interval: this run cannot tell either way. "
                        "Re-run the measurement on an idle machine, or with more rounds.")
    reading = readings.get(claim.verdict.replace("does not hold here", "does_not_hold"), "")
    condition = f" (applies to: {claim.condition})" if claim.condition else ""
    return Markdown(f"**Claim** `{claim.name}`{condition}: {claim.statement}  \n"
                    f"**Measured here:** {claim.sentence()}.  \n{reading}")


def claims_table(claims: Sequence[Claim | dict]) -> pd.DataFrame:
    """One row per claim: chapter, name, statement, measured ratio, its interval and what it is, threshold, verdict."""
    rows = []
    for claim in claims:
        c = claim.as_dict() if isinstance(claim, Claim) else claim
        ratio = c["ratio"]
        rows.append({"chapter": c["chapter"], "claim": c["name"], "statement": c["statement"],
                     "measured": ratio["median"], "low": ratio["low"], "high": ratio["high"],
                     "interval": Ratio(**ratio).interval_label,
                     "threshold": f'{c["direction"]} {c["threshold"]:g}x', "verdict": c["verdict"],
                     "hardware": c["hardware"]})
    columns = ["chapter", "claim", "statement", "measured", "low", "high", "interval", "threshold", "verdict",
               "hardware"]
    return pd.DataFrame(rows, columns=columns).set_index(["chapter", "claim"])
