"""The course's results ledger: each chapter records its measured results and claims; chapter 8 reads them all."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from helpers.core.accuracy import PairedDifference
from helpers.core.claims import Claim, Ratio
from helpers.core.validate import require_instance, require_int, require_number
from helpers.support.course_folder import course_folder

LEDGER_ENV = "COURSE_LEDGER"
# The chapters that write to the ledger and their notebooks (book.toml lists the same; a test keeps them equal).
COURSE_NOTEBOOKS = {
    1: "notebooks/ch01_measure.ipynb", 2: "notebooks/ch02_model_structure.ipynb", 3: "notebooks/ch03_hardware.ipynb",
    4: "notebooks/ch04_data_pipeline.ipynb", 5: "notebooks/ch05_distributed.ipynb",
    6: "notebooks/ch06_compression.ipynb", 7: "notebooks/ch07_tools.ipynb", 8: "notebooks/ch08_capstone.ipynb",
}


def ledger_path() -> Path:
    """$COURSE_LEDGER if set, else results/ledger.json at the course root (the folder with book.toml)."""
    if os.environ.get(LEDGER_ENV):
        return Path(os.environ[LEDGER_ENV])
    return (course_folder() or Path.cwd().resolve()) / "results" / "ledger.json"


@dataclass(frozen=True)
class LedgerEntry:
    """One measured result: a technique's effect on one metric, against its named baseline.

    compared_with names the baseline (eager fp32, the same step without the knob, ...); kind says what
    the number is: a time ratio measured in rounds (with its interval) or an exact ratio (sizes, bytes,
    counts: true by construction, not a speed-up); verdict is the verdict of the claim behind a time
    ratio, if one was judged; combination marks several techniques measured together, which a guide
    never ranks against single ones. The course's guide, section 5, says why each matters.
    """

    chapter: int
    technique: str
    metric: str
    unit: str
    baseline: float
    optimized: float
    speedup: float
    speedup_interval: tuple[float, float] | None
    gain: str
    hardware: str
    extras: dict = field(default_factory=dict)
    compared_with: str = ""
    kind: str = ""
    verdict: str = ""
    combination: bool = False


def make_entry(
    chapter: int,
    technique: str,
    *,
    metric: str,
    unit: str,
    baseline: float,
    optimized: float,
    higher_is_better: bool,
    hardware: str,
    ratio: Ratio | None = None,
    claim: Claim | None = None,
    difference: PairedDifference | None = None,
    extras: dict | None = None,
    compared_with: str = "",
    combination: bool = False,
) -> LedgerEntry:
    """Build an entry; speedup > 1 means the technique helped, whichever way the metric points.

    A measured speed-up passes its `ratio` (median and interval over paired rounds), or the `claim`
    judged on it (the entry then keeps the claim's verdict too): the entry keeps the interval, records
    'inconclusive' when the interval includes 1.0, and its kind says 'time ratio, median of round
    ratios'. Pass as baseline and optimized the medians of the round medians (Timing.round_median_ms),
    the numbers the ratio was paired from. Without a ratio the numbers are exact (sizes, counts), the
    kind says so, and the gain follows from the speed-up alone. An accuracy compared over paired seeds passes
    its `difference` instead (points, with a 95% t interval): the gain then follows from that interval.
    """
    require_int("chapter", chapter, minimum=1)
    for name, text in (("technique", technique), ("metric", metric), ("unit", unit), ("hardware", hardware)):
        require_instance(name, text, str)
        if not text:
            raise ValueError(f"{name} must be a non-empty string")
    baseline = require_number("baseline", baseline, strictly_positive=True)
    optimized = require_number("optimized", optimized, strictly_positive=True)
    require_instance("higher_is_better", higher_is_better, bool)
    extras = {} if extras is None else dict(require_instance("extras", extras, dict))
    require_instance("compared_with", compared_with, str)
    require_instance("combination", combination, bool)
    if sum(x is not None for x in (ratio, claim, difference)) > 1:
        raise ValueError("pass at most one of ratio, claim (which carries its ratio) and difference")
    if difference is not None:
        require_instance("difference", difference, PairedDifference)
        kind = f"accuracy difference over {difference.pairs} paired seeds: {difference}"
        gain = {"higher": "gain", "lower": "loss"}.get(difference.verdict, "inconclusive")
        speedup = optimized / baseline if higher_is_better else baseline / optimized
        extras["difference_points"] = [difference.mean, difference.low, difference.high]
        return LedgerEntry(chapter, technique, metric, unit, baseline, optimized, speedup, None, gain, hardware,
                           extras, compared_with, kind, "", combination)
    if claim is not None:
        ratio = require_instance("claim", claim, Claim).ratio
    if ratio is not None:
        require_instance("ratio", ratio, Ratio)
        kind = f"time ratio, median of round ratios ({ratio.interval_label})"
        gain = "inconclusive" if ratio.gain == "no gain" else ratio.gain
        return LedgerEntry(chapter, technique, metric, unit, baseline, optimized, ratio.median,
                           (ratio.low, ratio.high), gain, hardware, extras, compared_with, kind,
                           claim.verdict if claim is not None else "", combination)
    speedup = optimized / baseline if higher_is_better else baseline / optimized
    gain = "gain" if speedup > 1 else "loss" if speedup < 1 else "no gain"
    return LedgerEntry(chapter, technique, metric, unit, baseline, optimized, speedup, None, gain, hardware, extras,
                       compared_with, "exact ratio (sizes or counts)", "", combination)


def _read(path: Path | None) -> dict[str, list[dict]]:
    """The ledger file's entries and claims (both empty if the file does not exist yet)."""
    path = ledger_path() if path is None else Path(path)
    stored = json.loads(path.read_text()) if path.exists() else {}
    return {"entries": stored.get("entries", []), "claims": stored.get("claims", [])}


def load_ledger(path: Path | None = None) -> list[dict]:
    """All result entries in the ledger (empty list if it does not exist yet)."""
    return _read(path)["entries"]


def load_claims(path: Path | None = None) -> list[dict]:
    """All claims in the ledger, each with its interval and verdict."""
    return _read(path)["claims"]


def _write_atomically(path: Path, content: dict[str, list[dict]]) -> None:
    """Write to a temporary file beside the target, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ledger-", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(content, handle, indent=2)
    os.replace(tmp, path)


def _unique_names(kind: str, chapter: int, items: list, cls: type, name_of) -> None:
    """Each item is a cls of this chapter, and no name repeats."""
    names = [name_of(require_instance(kind, item, cls)) for item in items]
    if any(item.chapter != chapter for item in items):
        raise ValueError(f"every {kind} must belong to chapter {chapter}")
    if len(set(names)) != len(names):
        raise ValueError(f"{kind} names must be unique within a chapter, got {names}")


def record_chapter(chapter: int, entries: list[LedgerEntry], claims: list[Claim] = (), *,
                   path: Path | None = None) -> Path:
    """Replace every ledger entry and claim of `chapter` with these; other chapters are kept."""
    require_int("chapter", chapter, minimum=1)
    _unique_names("entry", chapter, list(entries), LedgerEntry, lambda e: e.technique)
    _unique_names("claim", chapter, list(claims), Claim, lambda c: c.name)
    path = ledger_path() if path is None else Path(path)
    stored = _read(path)
    _write_atomically(path, {
        "entries": [e for e in stored["entries"] if e["chapter"] != chapter] + [asdict(e) for e in entries],
        "claims": [c for c in stored["claims"] if c["chapter"] != chapter] + [c.as_dict() for c in claims],
    })
    return path


def ledger_table(entries: list[dict] | list[LedgerEntry]) -> pd.DataFrame:
    """Entries as a table indexed by (chapter, technique); the interval as two columns (empty when exact)."""
    rows = [asdict(e) if isinstance(e, LedgerEntry) else dict(e) for e in entries]
    for row in rows:
        row["speedup_low"], row["speedup_high"] = row.get("speedup_interval") or (None, None)
    columns = ["chapter", "technique", "metric", "unit", "compared_with", "baseline", "optimized", "speedup",
               "speedup_low", "speedup_high", "gain", "verdict", "kind", "combination", "hardware"]
    return pd.DataFrame(rows, columns=columns).set_index(["chapter", "technique"])


def chapters_missing(entries: list[dict], chapters: list[int]) -> list[int]:
    """The chapters (of those listed) that have no entry in the ledger yet."""
    present = {entry["chapter"] for entry in entries}
    return [number for number in chapters if number not in present]
