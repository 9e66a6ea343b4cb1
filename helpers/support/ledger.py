"""The course's results ledger: each chapter records its measured results and claims; chapter 8 reads them all.

The file is JSON: {"format": 2, "entries": [...], "claims": [...], "runs": {"<chapter>": {...}}}. "runs" says
who wrote each chapter (torch, Python and course versions, when, on which platform). A file without "format" is
format 1, written before runs were recorded: its entries are read through upgrade_entry, which fills the fields that
later chapters added (the first edition's entries had no interval and no gain; later ones no baseline name,
kind, verdict or combination flag).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd
import torch

from helpers.core.accuracy import PairedDifference
from helpers.core.claims import Claim, Ratio
from helpers.core.validate import require_choice, require_instance, require_int, require_number
from helpers.support.course_folder import course_folder

LEDGER_ENV = "COURSE_LEDGER"
LEDGER_FORMAT = 2  # 1: no "format" field and no "runs" (the files of earlier editions); 2: both
FORMATS = (1, LEDGER_FORMAT)
DISTRIBUTION = "dl-perf-course-helpers"  # the helpers package's name as pip installs it
GIT_TIMEOUT_S = 2.0
# The chapters and appendices that write to the ledger and their notebooks (book.toml lists the same; a test keeps
# them equal). An appendix follows the eight chapters: its notebook's name starts with "app" and its letter.
COURSE_NOTEBOOKS = {
    1: "notebooks/ch01_measure.ipynb", 2: "notebooks/ch02_model_structure.ipynb", 3: "notebooks/ch03_hardware.ipynb",
    4: "notebooks/ch04_data_pipeline.ipynb", 5: "notebooks/ch05_distributed.ipynb",
    6: "notebooks/ch06_compression.ipynb", 7: "notebooks/ch07_tools.ipynb", 8: "notebooks/ch08_capstone.ipynb",
    9: "notebooks/appA_language_model.ipynb",
}
APPENDIX_PREFIX = "app"


def appendix_letter(number: int) -> str | None:
    """'A' for an appendix's ledger number; None for a chapter, or a number the course does not list."""
    stem = Path(COURSE_NOTEBOOKS.get(number, "")).stem
    return stem[len(APPENDIX_PREFIX)] if stem.startswith(APPENDIX_PREFIX) else None


def part_label(number: int, *, in_sentence: bool = False) -> str:
    """What a reader calls the part of the course with this ledger number: 'Chapter 3' ('chapter 3' inside a
    sentence) or 'Appendix A'."""
    require_choice("number", require_int("number", number, minimum=1), COURSE_NOTEBOOKS)
    letter = appendix_letter(number)
    return f"Appendix {letter}" if letter else f"{'chapter' if in_sentence else 'Chapter'} {number}"


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


def stored_format(stored: dict) -> int:
    """The format of a ledger file's content: its "format" field, 1 where it has none."""
    require_instance("stored", stored, dict)
    number = stored.get("format", 1)
    if isinstance(number, bool) or number not in FORMATS:
        raise ValueError(f"ledger format must be one of {FORMATS} (a newer course may have written it), got {number!r}")
    return number


def _interval_gain(interval: list | tuple | None, speedup: object) -> str | None:
    """The gain an entry of an earlier format implies: from its interval, else from its speed-up (None if neither)."""
    if interval is not None and len(interval) == 2 and all(isinstance(v, (int, float)) for v in interval):
        return "gain" if interval[0] > 1 else "loss" if interval[1] < 1 else "inconclusive"
    if isinstance(speedup, (int, float)) and not isinstance(speedup, bool):
        return "gain" if speedup > 1 else "loss" if speedup < 1 else "no gain"
    return None


NO_INTERVAL_KIND = "time ratio, no interval (an earlier format)"
TIME_UNITS = ("ns", "us", "µs", "ms", "s")


def _kind_without_interval(unit: object) -> str:
    """What an earlier entry without an interval measured: a time or a rate (a speed-up without its interval), or
    an exact ratio (bytes, counts)."""
    unit = unit if isinstance(unit, str) else ""
    return NO_INTERVAL_KIND if unit in TIME_UNITS or unit.endswith("/s") else "exact ratio"


def upgrade_entry(entry: dict, format: int) -> dict:
    """A copy of an entry written in that ledger format, with every field of today's entries (earlier ones derived).

    Format 1 covers three earlier shapes: the first edition's (no interval, no gain), then no baseline name or kind,
    then no verdict or combination flag. A missing gain follows from the interval (its low bound above 1: gain, its
    high bound below 1: loss, else inconclusive) or, without one, from the speed-up; 'no gain' beside an interval
    (how entries said it before 'inconclusive') reads 'inconclusive'; a time or a rate stored without an interval
    reads 'inconclusive' (its direction kept in extras). A field that cannot be derived stays missing,
    for the reader to name the entry.
    """
    require_instance("entry", entry, dict)
    require_choice("format", format, FORMATS)
    upgraded = dict(entry)
    interval = upgraded.setdefault("speedup_interval", None)
    derived = _interval_gain(interval, upgraded.get("speedup"))
    if "gain" not in upgraded and derived is not None:
        upgraded["gain"] = derived
    elif interval is not None and upgraded.get("gain") == "no gain":
        upgraded["gain"] = "inconclusive"
    upgraded.setdefault("extras", {})
    upgraded.setdefault("compared_with", "")
    upgraded.setdefault("kind", "time ratio" if interval is not None else _kind_without_interval(upgraded.get("unit")))
    if upgraded["kind"] == NO_INTERVAL_KIND and upgraded.get("gain") in ("gain", "loss", "no gain"):
        # a speed-up without its interval cannot be read as a gain or a loss: its direction is kept as a note only
        if isinstance(upgraded["extras"], dict):
            upgraded["extras"] = {**upgraded["extras"], "direction_without_interval": upgraded["gain"]}
        upgraded["gain"] = "inconclusive"
    upgraded.setdefault("verdict", "")
    upgraded.setdefault("combination", False)
    return upgraded


def _read(path: Path | None) -> dict:
    """The ledger file's format, entries, claims and runs (empty, format 2, if the file does not exist yet)."""
    path = ledger_path() if path is None else Path(path)
    stored = json.loads(path.read_text()) if path.exists() else {"format": LEDGER_FORMAT}
    number = stored_format(stored)
    return {"format": number, "entries": [upgrade_entry(e, number) for e in stored.get("entries", [])],
            "claims": stored.get("claims", []), "runs": stored.get("runs", {})}


def load_ledger(path: Path | None = None) -> list[dict]:
    """All result entries in the ledger (empty list if it does not exist yet), in today's format."""
    return _read(path)["entries"]


def load_claims(path: Path | None = None) -> list[dict]:
    """All claims in the ledger, each with its interval and verdict."""
    return _read(path)["claims"]


def load_runs(path: Path | None = None) -> dict[int, dict]:
    """Who wrote each chapter, by chapter: torch, python, course, written (UTC) and platform (empty for format 1)."""
    return {int(chapter): run for chapter, run in sorted(_read(path)["runs"].items(), key=lambda item: int(item[0]))}


def course_version() -> str:
    """The installed helpers' version, with the commit in a git checkout: '0.1.0 (git 4b6dc40)'."""
    try:
        text = version(DISTRIBUTION)
    except PackageNotFoundError:
        text = "helpers not installed"
    folder = course_folder()
    if folder is None or not (folder / ".git").exists():
        return text
    try:
        done = subprocess.run(["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return text
    commit = done.stdout.strip()
    return f"{text} (git {commit})" if done.returncode == 0 and commit else text


def run_record() -> dict[str, str]:
    """What wrote a chapter's results now: torch, Python and course versions, the UTC time and the platform."""
    return {"torch": torch.__version__, "python": platform.python_version(), "course": course_version(),
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds"), "platform": sys.platform}


def _write_atomically(path: Path, content: dict) -> None:
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
    """Replace every ledger entry and claim of `chapter` with these, and its run record; other chapters are kept
    (their entries in today's format: the file is rewritten as format 2)."""
    require_int("chapter", chapter, minimum=1)
    _unique_names("entry", chapter, list(entries), LedgerEntry, lambda e: e.technique)
    _unique_names("claim", chapter, list(claims), Claim, lambda c: c.name)
    path = ledger_path() if path is None else Path(path)
    stored = _read(path)
    runs = {key: run for key, run in stored["runs"].items() if key != str(chapter)}
    _write_atomically(path, {
        "format": LEDGER_FORMAT,
        "entries": [e for e in stored["entries"] if e["chapter"] != chapter] + [asdict(e) for e in entries],
        "claims": [c for c in stored["claims"] if c["chapter"] != chapter] + [c.as_dict() for c in claims],
        "runs": dict(sorted({**runs, str(chapter): run_record()}.items(), key=lambda item: int(item[0]))),
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
