"""The course's results ledger: each chapter records its measured results; chapter 8 reads them all."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from .validate import require_instance, require_int, require_number

LEDGER_ENV = "COURSE_LEDGER"


def ledger_path() -> Path:
    """$COURSE_LEDGER if set, else results/ledger.json at the course root (the folder with book.toml)."""
    if os.environ.get(LEDGER_ENV):
        return Path(os.environ[LEDGER_ENV])
    here = Path.cwd().resolve()
    for folder in [here, *here.parents]:
        if (folder / "book.toml").exists():
            return folder / "results" / "ledger.json"
    return here / "results" / "ledger.json"


@dataclass(frozen=True)
class LedgerEntry:
    """One measured result: a technique's effect on one metric, against its baseline."""

    chapter: int
    technique: str
    metric: str
    unit: str
    baseline: float
    optimized: float
    speedup: float
    hardware: str
    extras: dict = field(default_factory=dict)


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
    extras: dict | None = None,
) -> LedgerEntry:
    """Build an entry; speedup > 1 means the technique helped, whichever way the metric points."""
    require_int("chapter", chapter, minimum=1)
    for name, text in (("technique", technique), ("metric", metric), ("unit", unit), ("hardware", hardware)):
        require_instance(name, text, str)
        if not text:
            raise ValueError(f"{name} must be a non-empty string")
    baseline = require_number("baseline", baseline, strictly_positive=True)
    optimized = require_number("optimized", optimized, strictly_positive=True)
    require_instance("higher_is_better", higher_is_better, bool)
    speedup = optimized / baseline if higher_is_better else baseline / optimized
    extras = {} if extras is None else dict(require_instance("extras", extras, dict))
    return LedgerEntry(chapter, technique, metric, unit, baseline, optimized, speedup, hardware, extras)


def load_ledger(path: Path | None = None) -> list[dict]:
    """All entries in the ledger (empty list if it does not exist yet)."""
    path = ledger_path() if path is None else Path(path)
    if not path.exists():
        return []
    return json.loads(path.read_text())["entries"]


def _write_atomically(path: Path, entries: list[dict]) -> None:
    """Write to a temporary file beside the target, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ledger-", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump({"entries": entries}, handle, indent=2)
    os.replace(tmp, path)


def record_chapter(chapter: int, entries: list[LedgerEntry], path: Path | None = None) -> Path:
    """Replace every ledger entry of `chapter` with `entries`; other chapters are kept."""
    require_int("chapter", chapter, minimum=1)
    techniques = [require_instance("entry", e, LedgerEntry).technique for e in entries]
    if any(e.chapter != chapter for e in entries):
        raise ValueError(f"every entry must belong to chapter {chapter}")
    if len(set(techniques)) != len(techniques):
        raise ValueError(f"technique ids must be unique within a chapter, got {techniques}")
    path = ledger_path() if path is None else Path(path)
    kept = [e for e in load_ledger(path) if e["chapter"] != chapter]
    _write_atomically(path, kept + [asdict(e) for e in entries])
    return path


def ledger_table(entries: list[dict] | list[LedgerEntry]) -> pd.DataFrame:
    """Entries as a table indexed by (chapter, technique)."""
    rows = [asdict(e) if isinstance(e, LedgerEntry) else e for e in entries]
    columns = ["chapter", "technique", "metric", "unit", "baseline", "optimized", "speedup", "hardware"]
    return pd.DataFrame(rows, columns=columns).set_index(["chapter", "technique"])
