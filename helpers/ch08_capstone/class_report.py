"""A workshop's class report: the ledgers that participants' machines wrote, gathered into one HTML page with a
figure of each technique's speed-up per machine, grouped by CPU instruction set and GPU. Files that are not
ledgers, and entries that are incomplete, are reported by name and skipped."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from helpers.support.plots import STYLE

# hardware_report().cpu_label: '<model> (<ISA>, <n> logical CPUs)' ('<n> cores' in ledgers written before 2026-12);
# torch's ISA names include 'NO AVX' and 'Z VECTOR'.
CPU_LABEL = re.compile(r"\((?P<isa>[^,()]+), (?P<cpus>\d+) (?:logical CPUs|cores)\)\s*$")
# The GPU reference runs' ledgers, shipped inside the package (copied from results/gpu/ by tools/readme.py),
# so that chapter 8 has them wherever it runs, Colab included.
REFERENCE_LEDGERS = "reference_ledgers"
REQUIRED = {"chapter": int, "technique": str, "speedup": (int, float), "gain": str, "hardware": str}


@dataclass
class Participant:
    """One ledger file: its valid entries, and what was wrong with the others."""

    name: str
    entries: list[dict]
    problems: list[str] = field(default_factory=list)


def reference_ledgers() -> dict[str, Traversable]:
    """The reference runs' ledgers that ship with the package, by run name (e.g. 'nvidia-h200_cuda13.0_torch2.11.0')."""
    folder = files("helpers.ch08_capstone") / REFERENCE_LEDGERS
    return {entry.name.removesuffix(".json"): entry for entry in sorted(folder.iterdir(), key=lambda e: e.name)
            if entry.name.endswith(".json")}


def hardware_group(label: str) -> str:
    """'CPU AVX512, 2 logical CPUs' for a CPU label ('<model> (<ISA>, <n> logical CPUs)'); 'GPU <name>' for the
    other labels the chapters write (a GPU's name, for results measured on it)."""
    match = CPU_LABEL.search(label)
    return f"CPU {match['isa']}, {match['cpus']} logical CPUs" if match else f"GPU {label}"


def entry_problem(entry: object) -> str | None:
    """Why an entry cannot be used (a missing or mistyped field, a speed-up that is not positive), or None."""
    if not isinstance(entry, dict):
        return f"an entry is a {type(entry).__name__}, not an object"
    for key, kind in REQUIRED.items():
        if not isinstance(entry.get(key), kind) or isinstance(entry.get(key), bool):
            return f"entry {entry.get('technique', '?')!r}: field {key!r} missing or not a {getattr(kind, '__name__', 'number')}"
    if not (math.isfinite(entry["speedup"]) and entry["speedup"] > 0):
        return f"entry {entry['technique']!r}: speedup must be a positive number, got {entry['speedup']}"
    interval = entry.get("speedup_interval")
    if interval is not None and not (
            isinstance(interval, list) and len(interval) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf for v in interval)
            and interval[0] <= interval[1]):
        return (f"entry {entry['technique']!r}: speedup_interval must be null or two positive numbers, low first, "
                f"got {interval}")
    return None


def read_participant(path: Path) -> Participant:
    """A ledger file's valid entries; a file that is not a ledger yields no entries and one problem."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return Participant(path.stem, [], [f"not readable as JSON: {error}"])
    if not isinstance(stored, dict) or not isinstance(stored.get("entries"), list):
        return Participant(path.stem, [], ["not a course ledger: no 'entries' list"])
    # A reference run's shipped ledger names the chapters it ran in an earlier edition (their entries are left out).
    left_out = [f"left out, {note}" for note in stored.get("left_out", [])]
    entries, problems = [], list(left_out)
    for entry in stored["entries"]:
        problem = entry_problem(entry)
        if problem:
            problems.append(problem)
        else:
            entries.append(entry)
    if not entries and left_out:
        problems.append("the ledger holds no entries from today's chapters")
    elif not entries and not problems:
        problems.append("the ledger holds no entries yet")
    return Participant(path.stem, entries, problems)


def read_class(folder: Path | str) -> list[Participant]:
    """Every *.json file of folder, read as a participant's ledger, in name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"LEDGERS must be a folder of ledger .json files, got {folder}")
    return [read_participant(path) for path in sorted(folder.glob("*.json"))]


def class_table(participants: list[Participant]) -> pd.DataFrame:
    """One row per (participant, technique): the speed-up, its interval and the hardware group."""
    rows = [{"participant": p.name, "chapter": e["chapter"], "technique": e["technique"], "speedup": e["speedup"],
             "low": (e.get("speedup_interval") or [None, None])[0], "high": (e.get("speedup_interval") or [None, None])[1],
             "gain": e["gain"], "group": hardware_group(e["hardware"])}
            for p in participants for e in p.entries]
    return pd.DataFrame(rows, columns=["participant", "chapter", "technique", "speedup", "low", "high", "gain", "group"])


def class_figure(table: pd.DataFrame) -> Figure:
    """Each technique a row; each participant's speed-up a dot coloured by hardware group, on a log axis."""
    techniques = table.sort_values(["chapter", "technique"])[["chapter", "technique"]].drop_duplicates()
    rows = {(c, t): index for index, (c, t) in enumerate(techniques.itertuples(index=False))}
    fig = Figure(figsize=(8, 1.2 + 0.25 * len(rows)), dpi=STYLE["figure.dpi"], layout="constrained")
    ax = fig.subplots()
    groups = sorted(table["group"].unique())
    for offset, group in enumerate(groups):
        part = table[table["group"] == group]
        y = [rows[(c, t)] + (offset - (len(groups) - 1) / 2) * 0.15 for c, t in zip(part["chapter"], part["technique"])]
        ax.scatter(part["speedup"], y, label=group, s=18)
    ax.set_yticks(list(rows.values()), [f"ch{c} {t}" for c, t in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xlabel("speed-up against each result's own baseline (x, log): one dot per participant")
    ax.legend(fontsize=8, title="hardware group", title_fontsize=8)
    return fig


def _png_base64(fig: Figure) -> str:
    """The figure as an inline PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def group_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per technique and hardware group: 'median speed-up (n=participants who measured it)'."""
    summary = table.groupby(["chapter", "technique", "group"])["speedup"].agg(["median", "count"])
    cells = summary.apply(lambda row: f"{row['median']:.2f}x (n={int(row['count'])})", axis=1)
    return cells.unstack("group").fillna("")


def class_report_html(participants: list[Participant], *, title: str = "Class report") -> str:
    """The whole page: participants and their problems, the figure, and the per-group table."""
    usable = [p for p in participants if p.entries]
    table = class_table(usable)
    parts = [f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
             f"<body style='font-family: sans-serif; max-width: 1000px'><h1>{html.escape(title)}</h1>",
             f"<p>{len(usable)} of {len(participants)} ledger files used.</p><h2>Participants</h2><ul>"]
    for p in participants:
        groups = ", ".join(sorted({hardware_group(e["hardware"]) for e in p.entries})) or "none"
        chapters = ", ".join(str(c) for c in sorted({e["chapter"] for e in p.entries})) or "none"
        status = "skipped" if not p.entries else "used"
        parts.append(f"<li class='{status}'><b>{html.escape(p.name)}</b>: {status}; {len(p.entries)} entries; "
                     f"chapters {chapters}; hardware {html.escape(groups)}")
        if p.problems:
            parts.append("<ul>" + "".join(f"<li class='problem'>{html.escape(problem)}</li>" for problem in p.problems)
                         + "</ul>")
        parts.append("</li>")
    parts.append("</ul>")
    if table.empty:
        parts.append("<p>No usable entries: nothing to plot.</p>")
    else:
        parts.append(f"<h2>Speed-up per technique and machine</h2><img alt='class speed-ups' "
                     f"src='data:image/png;base64,{_png_base64(class_figure(table))}'>")
        parts.append("<h2>Median per hardware group</h2>" + group_summary(table).to_html(border=0))
    parts.append("</body></html>")
    return "\n".join(parts)
