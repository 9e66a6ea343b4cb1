"""A workshop's class report: the ledgers that participants' machines wrote, gathered into one HTML page for the
instructor. It shows who ran which chapters, each claim's scoreboard across machines, where the class disagreed,
each technique's speed-up per machine with its interval (grouped by CPU instruction set and GPU), the capstone
plans, and the versions that wrote each ledger. Files that are not ledgers, and entries or claims that are
incomplete, are reported by name and skipped; ledgers of earlier formats are read through the ledger's
upgrade_entry."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from dataclasses import dataclass, field, replace
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from helpers.core.claims import VERDICTS
from helpers.core.validate import require_instance
from helpers.support.ledger import COURSE_NOTEBOOKS, stored_format, upgrade_entry
from helpers.support.plots import STYLE
from helpers.ch08_capstone.decision_guide import kind_of

# hardware_report().cpu_label: '<model> (<ISA>, <n> logical CPUs)' ('<n> cores' in ledgers written before 2026-12);
# torch's ISA names include 'NO AVX' and 'Z VECTOR'.
CPU_LABEL = re.compile(r"\((?P<isa>[^,()]+), (?P<cpus>\d+) (?:logical CPUs|cores)\)\s*$")
# The GPU reference runs' ledgers, shipped inside the package (copied from results/gpu/ by tools/readme.py),
# so that chapter 8 has them wherever it runs, Colab included.
REFERENCE_LEDGERS = "reference_ledgers"
REQUIRED = {"chapter": int, "technique": str, "speedup": (int, float), "gain": str, "hardware": str}
CLAIM_REQUIRED = {"chapter": int, "name": str, "statement": str, "verdict": str, "hardware": str, "ratio": dict}
# A result is flagged noisy when its interval is wider than its median itself: (high - low) / median > 1.
NOISY_WIDTH = 1.0
NOISY_RULE = "noisy: an interval wider than its median itself, (high - low) / median > 1"
PLAN = re.compile(r"plan '(?P<plan>[^']+)'")  # chapter 8 names its plan in the metric: "..., plan 'int8' against ..."
MARK = "✓"
TABLE_COLUMNS = ["participant", "chapter", "technique", "label", "kind", "speedup", "low", "high", "gain", "verdict",
                 "noisy", "group", "hardware"]
CLAIM_COLUMNS = ["participant", "chapter", "claim", "statement", "threshold", "direction", "median", "low", "high",
                 "verdict", "group", "hardware"]
CSV_COLUMNS = ["participant", "kind", "measure", "chapter", "name", "speedup", "low", "high", "reading", "noisy",
               "group", "hardware", "statement"]
RUN_FIELDS = ("torch", "python", "course", "platform")


@dataclass
class Participant:
    """One ledger file: its valid entries and claims, what was wrong with the others, its format and run records."""

    name: str
    entries: list[dict]
    problems: list[str] = field(default_factory=list)
    claims: list[dict] = field(default_factory=list)
    format: int = 1
    runs: dict[str, dict] = field(default_factory=dict)


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


def _positive(value: object) -> bool:
    """Whether value is a finite number above zero (a bool is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf


def _wrong_field(item: dict, required: dict, what: str, name: str) -> str | None:
    """The first required field that is missing or of another type, said in a sentence, or None."""
    for key, kind in required.items():
        if not isinstance(item.get(key), kind) or isinstance(item.get(key), bool):
            kind_name = getattr(kind, "__name__", "number")
            return f"{what} {item.get(name, '?')!r}: field {key!r} missing or not a {kind_name}"
    return None


def entry_problem(entry: object) -> str | None:
    """Why an entry cannot be used (a missing or mistyped field, a speed-up that is not positive), or None."""
    if not isinstance(entry, dict):
        return f"an entry is a {type(entry).__name__}, not an object"
    wrong = _wrong_field(entry, REQUIRED, "entry", "technique")
    if wrong:
        return wrong
    if not _positive(entry["speedup"]):
        return f"entry {entry['technique']!r}: speedup must be a positive number, got {entry['speedup']}"
    interval = entry.get("speedup_interval")
    if interval is not None and not (isinstance(interval, list) and len(interval) == 2
                                     and all(map(_positive, interval)) and interval[0] <= interval[1]):
        return (f"entry {entry['technique']!r}: speedup_interval must be null or two positive numbers, low first, "
                f"got {interval}")
    return None


def claim_problem(claim: object) -> str | None:
    """Why a claim cannot be used (a missing or mistyped field, an unknown verdict, a ratio without bounds), or None."""
    if not isinstance(claim, dict):
        return f"a claim is a {type(claim).__name__}, not an object"
    wrong = _wrong_field(claim, CLAIM_REQUIRED, "claim", "name")
    if wrong:
        return wrong
    if claim["verdict"] not in VERDICTS:
        return f"claim {claim['name']!r}: verdict must be one of {', '.join(VERDICTS)}, got {claim['verdict']!r}"
    if not all(_positive(claim["ratio"].get(key)) for key in ("median", "low", "high")):
        return f"claim {claim['name']!r}: ratio needs a positive median, low and high, got {claim['ratio']}"
    return None


def _sift(items: object, problem_of, what: str) -> tuple[list[dict], list[str]]:
    """The usable items of a list and the problems of the others (one problem if it is not a list)."""
    if not isinstance(items, list):
        return [], [f"{what} is a {type(items).__name__}, not a list: none read"]
    problems = [problem_of(item) for item in items]
    return [item for item, problem in zip(items, problems) if not problem], [p for p in problems if p]


def _runs(stored: dict) -> tuple[dict[str, dict], list[str]]:
    """A ledger's run records by chapter, and a problem if they cannot be read."""
    runs = stored.get("runs", {})
    if not isinstance(runs, dict) or not all(isinstance(run, dict) for run in runs.values()):
        return {}, ["'runs' is not a mapping of chapter to versions: versions not shown"]
    return runs, []


def read_participant(path: Path) -> Participant:
    """A ledger file's valid entries and claims (of any format); a file that is not a ledger yields one problem."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return Participant(path.stem, [], [f"not readable as JSON: {error}"])
    if not isinstance(stored, dict) or not isinstance(stored.get("entries"), list):
        return Participant(path.stem, [], ["not a course ledger: no 'entries' list"])
    try:
        number = stored_format(stored)
    except ValueError as error:
        return Participant(path.stem, [], [str(error)])
    # A reference run's shipped ledger names the chapters it ran in an earlier edition (their entries are left out).
    left_out = [f"left out, {note}" for note in stored.get("left_out", [])]
    upgraded = [upgrade_entry(entry, number) if isinstance(entry, dict) else entry for entry in stored["entries"]]
    entries, entry_problems = _sift(upgraded, entry_problem, "'entries'")
    claims, claim_problems = _sift(stored.get("claims", []), claim_problem, "'claims'")
    runs, run_problems = _runs(stored)
    problems = left_out + entry_problems + claim_problems + run_problems
    if not entries and left_out:
        problems.append("the ledger holds no entries from today's chapters")
    elif not entries and not problems:
        problems.append("the ledger holds no entries yet")
    return Participant(path.stem, entries, problems, claims, number, runs)


def read_class(folder: Path | str) -> list[Participant]:
    """Every *.json file of folder, read as a participant's ledger, in name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"LEDGERS must be a folder of ledger .json files, got {folder}")
    return [read_participant(path) for path in sorted(folder.glob("*.json"))]


def _require_participants(participants: object) -> list[Participant]:
    """participants as a list of Participant (from read_class), else a TypeError naming the culprit."""
    require_instance("participants", participants, list)
    for index, participant in enumerate(participants):
        require_instance(f"participants[{index}]", participant, Participant)
    return participants


def _require_columns(table: object, columns: list[str], made_by: str) -> pd.DataFrame:
    """table if it is a DataFrame with these columns, else an error that names the function that makes it."""
    require_instance("table", table, pd.DataFrame)
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise ValueError(f"table lacks the columns {missing}: pass the table that {made_by} returns")
    return table


def anonymised(participants: list[Participant]) -> list[Participant]:
    """The same participants, in the same order, named P1, P2, ... in the order of their names (for a page shown to
    the class)."""
    names = sorted(p.name for p in _require_participants(participants))
    return [replace(p, name=f"P{names.index(p.name) + 1}") for p in participants]


def plan_of(entry: dict) -> str:
    """The plan an entry measured (chapter 8's capstone: extras' 'plan', else "plan '...'" in its metric), or ''."""
    extras = entry.get("extras") if isinstance(entry.get("extras"), dict) else {}
    if isinstance(extras.get("plan"), str):
        return extras["plan"]
    match = PLAN.search(str(entry.get("metric", "")))
    return match["plan"] if match else ""


def entry_label(entry: dict) -> str:
    """The technique's name, with its plan where it measured one: different plans are different results."""
    plan = plan_of(entry)
    return f"{entry['technique']}, plan '{plan}'" if plan else entry["technique"]


def is_noisy(speedup: float, interval: list | None) -> bool:
    """Whether an interval is wider than its median itself (NOISY_RULE); an exact result is never noisy."""
    return bool(interval) and (interval[1] - interval[0]) / speedup > NOISY_WIDTH


def class_table(participants: list[Participant]) -> pd.DataFrame:
    """One row per (participant, entry): what kind of number it is, the speed-up, its interval, its reading and the
    hardware group."""
    rows = [{"participant": p.name, "chapter": e["chapter"], "technique": e["technique"], "label": entry_label(e),
             "kind": kind_of(e), "speedup": e["speedup"], "low": (e["speedup_interval"] or [math.nan])[0],
             "high": (e["speedup_interval"] or [math.nan, math.nan])[1], "gain": e["gain"],
             "verdict": e.get("verdict", ""), "noisy": is_noisy(e["speedup"], e["speedup_interval"]),
             "group": hardware_group(e["hardware"]), "hardware": e["hardware"]}
            for p in _require_participants(participants) for e in p.entries]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def claims_table(participants: list[Participant]) -> pd.DataFrame:
    """One row per (participant, claim): the claim's median ratio, its interval, verdict and hardware group."""
    rows = [{"participant": p.name, "chapter": c["chapter"], "claim": c["name"], "statement": c["statement"],
             "threshold": c.get("threshold"), "direction": c.get("direction", ""), "median": c["ratio"]["median"],
             "low": c["ratio"]["low"], "high": c["ratio"]["high"], "verdict": c["verdict"],
             "group": hardware_group(c["hardware"]), "hardware": c["hardware"]}
            for p in _require_participants(participants) for c in p.claims]
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def _jitter(slot: int, slots: int) -> float:
    """A participant's vertical offset within a technique's row, so that no two participants' dots overlap."""
    return 0.0 if slots == 1 else (slot / (slots - 1) - 0.5) * 0.6


def class_figure(table: pd.DataFrame) -> Figure:
    """Each technique a row; each participant's speed-up a dot with its interval as a bar, coloured by hardware
    group, on a log axis (each participant keeps one offset in every row)."""
    _require_columns(table, ["participant", "chapter", "label", "speedup", "low", "high", "group"], "class_table")
    keys = table.sort_values(["chapter", "label"])[["chapter", "label"]].drop_duplicates()
    rows = {key: index for index, key in enumerate(keys.itertuples(index=False, name=None))}
    slots = table[["group", "participant"]].drop_duplicates().sort_values(["group", "participant"])
    offset = {key: _jitter(i, len(slots)) for i, key in enumerate(slots.itertuples(index=False, name=None))}
    fig = Figure(figsize=(9, 1.8 + 0.32 * len(rows)), dpi=STYLE["figure.dpi"], layout="constrained")
    ax = fig.subplots()
    for group, part in table.groupby("group", sort=True):
        y = [rows[(c, t)] + offset[(group, p)] for c, t, p in zip(part["chapter"], part["label"], part["participant"])]
        errors = [(part["speedup"] - part["low"]).fillna(0.0), (part["high"] - part["speedup"]).fillna(0.0)]
        ax.errorbar(part["speedup"], y, xerr=errors, fmt="o", ms=4, capsize=2, lw=1, label=group)
    ax.set_yticks(list(rows.values()), [f"ch{c} {t}" for c, t in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}x"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xlabel("speed-up against each result's own baseline (log axis); a dot per participant, its interval a bar")
    fig.legend(loc="outside lower center", ncol=3, fontsize=8, title="hardware group", title_fontsize=8,
               frameon=False)
    return fig


def _png_base64(fig: Figure) -> str:
    """The figure as an inline PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _summary_cell(row: pd.Series) -> str:
    """'1.52x (n=3; 1.20 to 1.80x; 1 noisy)': the median, the participants, their spread and the noisy ones."""
    spread = f"; {row['lowest']:.2f} to {row['highest']:.2f}x" if row["n"] > 1 else ""
    noisy = f"; {int(row['noisy'])} noisy" if row["noisy"] else ""
    return f"{row['median']:.2f}x (n={int(row['n'])}{spread}{noisy})"


def group_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per technique and hardware group: the median speed-up, participants, min to max across them and the noisy."""
    _require_columns(table, ["chapter", "label", "group", "speedup", "noisy"], "class_table")
    summary = table.groupby(["chapter", "label", "group"])[["speedup", "noisy"]].agg(
        median=("speedup", "median"), n=("speedup", "count"), lowest=("speedup", "min"), highest=("speedup", "max"),
        noisy=("noisy", "sum"))
    cells = summary.apply(_summary_cell, axis=1) if len(summary) else pd.Series(dtype=str, index=summary.index)
    return cells.unstack("group").fillna("").rename_axis(["chapter", "technique"])


def claim_sentence(rows: pd.DataFrame) -> str:
    """'held on 2 of 3 machines; did not hold on 1 (CPU AVX2, 2 logical CPUs: 1)': one claim's rows of claims_table."""
    text = f"held on {int((rows['verdict'] == 'holds').sum())} of {len(rows)} machines"
    for verdict, words in (("does not hold here", "did not hold"), ("inconclusive", "inconclusive")):
        others = rows[rows["verdict"] == verdict]
        if len(others):
            groups = ", ".join(f"{group}: {n}" for group, n in sorted(others["group"].value_counts().items()))
            text += f"; {words} on {len(others)} ({groups})"
    return text


def scoreboard(claims: pd.DataFrame) -> pd.DataFrame:
    """Per claim: on how many machines it held, did not hold or was inconclusive, and the median and spread (lowest
    to highest median) across participants."""
    _require_columns(claims, CLAIM_COLUMNS, "claims_table")
    rows = [{"chapter": chapter, "claim": name, "statement": part["statement"].iloc[0], "machines": len(part),
             **{verdict: int((part["verdict"] == verdict).sum()) for verdict in VERDICTS},
             "reading": claim_sentence(part), "median": part["median"].median(), "lowest": part["median"].min(),
             "highest": part["median"].max()}
            for (chapter, name), part in claims.groupby(["chapter", "claim"])]
    return pd.DataFrame(rows, columns=["chapter", "claim", "statement", "machines", *VERDICTS, "reading", "median",
                                       "lowest", "highest"])


def _who(rows: pd.DataFrame) -> str:
    """'CPU AVX2, 2 logical CPUs (2), GPU NVIDIA H200 (1)': the hardware groups of these rows, with counts."""
    return ", ".join(f"{group} ({n})" for group, n in sorted(rows["group"].value_counts().items()))


def _split(what: str, part: pd.DataFrame, reading: str, good: str, bad: str, value: str) -> dict | None:
    """One disagreement: where a result read good and where bad, and the spread of its values; None if it agreed."""
    goods, bads = part[part[reading] == good], part[part[reading] == bad]
    if goods.empty or bads.empty:
        return None
    shared = set(goods["group"]) & set(bads["group"])
    return {"result": what, "gain or holds on": _who(goods), "loss or does not hold on": _who(bads),
            "where": "within one hardware group" if shared else "between hardware groups",
            "spread (highest / lowest)": part[value].max() / part[value].min()}


def disagreements(table: pd.DataFrame, claims: pd.DataFrame) -> pd.DataFrame:
    """Where the class disagreed: techniques read as a gain on some machines and a loss on others, and claims that
    held on some and did not hold on others, the widest spread first; 'where' says whether machines of one hardware
    group disagreed (noise or set-up) or only different groups did (the hardware)."""
    _require_columns(table, ["chapter", "label", "gain", "speedup", "group"], "class_table")
    _require_columns(claims, CLAIM_COLUMNS, "claims_table")
    found = [_split(f"ch{c} {label}", part, "gain", "gain", "loss", "speedup")
             for (c, label), part in table.groupby(["chapter", "label"])]
    found += [_split(f"ch{c} claim {name}", part, "verdict", "holds", "does not hold here", "median")
              for (c, name), part in claims.groupby(["chapter", "claim"])]
    columns = ["result", "gain or holds on", "loss or does not hold on", "where", "spread (highest / lowest)"]
    rows = pd.DataFrame([row for row in found if row], columns=columns)
    return rows.sort_values(columns[-1], ascending=False, ignore_index=True)


def progress_grid(participants: list[Participant]) -> pd.DataFrame:
    """Participants by chapter (the course's chapters and any other with entries): a mark where one has entries."""
    participants = _require_participants(participants)
    chapters = sorted(set(COURSE_NOTEBOOKS) | {e["chapter"] for p in participants for e in p.entries})
    marks = [[MARK if chapter in {e["chapter"] for e in p.entries} else "" for chapter in chapters]
             for p in participants]
    return pd.DataFrame(marks, index=pd.Index([p.name for p in participants], name="participant"),
                        columns=pd.Index(chapters, name="chapter"))


def host_cpu_entries(participant: Participant) -> list[str]:
    """In a ledger with GPU results, its entries measured on the host CPU (a CPU label): ['ch3 channels_last', ...]."""
    require_instance("participant", participant, Participant)
    groups = [hardware_group(entry["hardware"]) for entry in participant.entries]
    if not any(group.startswith("GPU ") for group in groups):
        return []
    return [f"ch{e['chapter']} {e['technique']}" for e, g in zip(participant.entries, groups) if g.startswith("CPU ")]


CAPSTONE_PLANS = ("capstone_plan_latency", "capstone_latency")  # today's name, then the name before 2026-12


def capstone_table(participants: list[Participant]) -> pd.DataFrame:
    """Chapter 8's capstone per participant: the plan, its accuracy budget, what it carried and pruned, its change on
    the test set, the int8 route (ledgers before 2026-12) and the latency speed-up."""
    rows = []
    for p in _require_participants(participants):
        for e in (e for e in p.entries if e["technique"] in CAPSTONE_PLANS):
            extras = e["extras"] if isinstance(e.get("extras"), dict) else {}
            interval = e["speedup_interval"]
            rows.append({"participant": p.name, "plan": plan_of(e) or "not named",
                         "budget (points)": extras.get("budget_points", ""), "carried on": extras.get("carried", ""),
                         "pruned": extras.get("prune_fraction", ""),
                         "test change (points)": extras.get("test_change_points", ""),
                         "int8 route": extras.get("int8_route", ""), "speed-up": f"{e['speedup']:.2f}x" + (
                             f" ({interval[0]:.2f} to {interval[1]:.2f}x)" if interval else ""),
                         "group": hardware_group(e["hardware"])})
    return pd.DataFrame(rows, columns=["participant", "plan", "budget (points)", "carried on", "pruned",
                                       "test change (points)", "int8 route", "speed-up", "group"])


def _count(number: int, one: str, many: str) -> str:
    """'1 entry', '3 entries'."""
    return f"{number} {one if number == 1 else many}"


def _chapters_text(chapters: list[int]) -> str:
    """'1, 2, 5' or 'none'."""
    return ", ".join(str(c) for c in sorted(chapters)) or "none"


def versions_table(participants: list[Participant]) -> pd.DataFrame:
    """Per participant, the ledger format and, per set of chapters written alike, the torch, Python and course versions
    and the platform ('format 1, versions not recorded' for ledgers written before runs were recorded)."""
    rows = []
    for p in _require_participants(participants):
        chapters = {e["chapter"] for e in p.entries} | {int(c) for c in p.runs if str(c).isdigit()}
        if p.format == 1:
            rows.append({"participant": p.name, "format": 1, "chapters": _chapters_text(chapters),
                         **dict.fromkeys(RUN_FIELDS, ""), "torch": "format 1, versions not recorded"})
            continue
        alike: dict[tuple, list[int]] = {}
        for chapter in sorted(chapters):
            run = p.runs.get(str(chapter), {})
            key = tuple(str(run.get(name, "not recorded")) for name in RUN_FIELDS)
            alike.setdefault(key, []).append(chapter)
        rows += [{"participant": p.name, "format": p.format, "chapters": _chapters_text(numbers),
                  **dict(zip(RUN_FIELDS, key))} for key, numbers in alike.items()]
    return pd.DataFrame(rows, columns=["participant", "format", "chapters", *RUN_FIELDS])


def version_warnings(participants: list[Participant]) -> list[str]:
    """A line for torch and one for the course when participants ran different versions of them."""
    lines = []
    for name in ("torch", "course"):
        seen: dict[str, set[str]] = {}
        for p in _require_participants(participants):
            for run in p.runs.values():
                if isinstance(run.get(name), str):
                    seen.setdefault(run[name], set()).add(p.name)
        if len(seen) > 1:
            lines.append(f"Participants ran different {name} versions: " + "; ".join(
                f"{version} ({', '.join(sorted(names))})" for version, names in sorted(seen.items())))
    return lines


def participant_table(participants: list[Participant]) -> pd.DataFrame:
    """Every usable entry and claim of every participant, one row each: the table the CSV export writes."""
    entries = class_table(participants)
    claims = claims_table(participants)
    rows = [{**row, "kind": "entry", "measure": row["kind"], "name": row["label"], "reading": row["gain"],
             "statement": ""}
            for row in entries.to_dict("records")]
    rows += [{**row, "kind": "claim", "name": row["claim"], "speedup": row["median"], "reading": row["verdict"],
              "noisy": is_noisy(row["median"], [row["low"], row["high"]])} for row in claims.to_dict("records")]
    return pd.DataFrame(rows, columns=CSV_COLUMNS).sort_values(["participant", "kind", "chapter", "name"],
                                                               ignore_index=True)


def _table_html(table: pd.DataFrame, css: str, *, index: bool = False, empty: str = "nothing to show yet") -> str:
    """A table as HTML (its text escaped), or a sentence when it has no rows."""
    if table.empty:
        return f"<p class='{css} empty'>{html.escape(empty)}</p>"
    return table.to_html(border=0, classes=css, index=index, float_format=lambda v: f"{v:.2f}")


def _participant_html(p: Participant) -> str:
    """One participant's list item: used or skipped, what it covers, its problems and its host-CPU entries."""
    groups = ", ".join(sorted({hardware_group(e["hardware"]) for e in p.entries})) or "none"
    status = "skipped" if not p.entries else "used"
    notes = [f"<li class='problem'>{html.escape(problem)}</li>" for problem in p.problems]
    host = host_cpu_entries(p)
    if host:
        notes.append(f"<li class='host-cpu'>measured on this GPU machine's host CPU (a CPU label): "
                     f"{html.escape(', '.join(host))}</li>")
    return (f"<li class='{status}'><b>{html.escape(p.name)}</b>: {status}; {_count(len(p.entries), 'entry', 'entries')}, "
            f"{_count(len(p.claims), 'claim', 'claims')}; chapters {_chapters_text({e['chapter'] for e in p.entries})}; hardware "
            f"{html.escape(groups)}" + (f"; ledger format {p.format}" if p.entries else "")
            + (f"<ul>{''.join(notes)}</ul>" if notes else "") + "</li>")


def _scoreboard_html(board: pd.DataFrame) -> str:
    """One line per claim ('ch1 fast: held on 2 of 3 machines; ...; median 1.9x, 1.2 to 2.4x'), then the counts."""
    lines = [f"<li class='claim'><b>ch{row.chapter} {html.escape(row.claim)}</b> ({html.escape(row.statement)}): "
             f"{html.escape(row.reading)}; median {row.median:.2f}x across participants, {row.lowest:.2f} to "
             f"{row.highest:.2f}x</li>" for row in board.itertuples()]
    counts = board[["chapter", "claim", "machines", *VERDICTS]]
    return (f"<ul>{''.join(lines)}</ul>" + _table_html(counts, "scoreboard")) if lines else _table_html(
        board, "scoreboard", empty="No claims in these ledgers.")


def _section(anchor: str, heading: str, body: str) -> str:
    """A titled section of the page."""
    return f"<section id='{anchor}'><h2>{html.escape(heading)}</h2>\n{body}</section>"


def _figure_html(table: pd.DataFrame) -> str:
    """The speed-up figure inline, or a sentence when there is nothing to plot."""
    if table.empty:
        return "<p>No usable entries: nothing to plot.</p>"
    return (f"<img alt='class speed-ups' src='data:image/png;base64,{_png_base64(class_figure(table))}'>"
            "<p>Results that measured a plan (chapter 8's capstone) are named with it: different plans are different "
            "results.</p>")


def class_report_html(participants: list[Participant], *, title: str = "Class report") -> str:
    """The whole page: participants and their problems, progress, the claims' scoreboard, the disagreements, the
    figure, the per-group table, the capstone plans and the versions."""
    usable = [p for p in _require_participants(participants) if p.entries]
    require_instance("title", title, str)
    everything, claims = class_table(usable), claims_table(usable)
    table = everything[everything["kind"] == "time ratio"]  # sizes and accuracy differences are not speed-ups
    apart = len(everything) - len(table)
    warnings = "".join(f"<p class='warning'>{html.escape(line)}</p>" for line in version_warnings(usable))
    sections = [
        _section("participants", "Participants", f"<ul>{''.join(map(_participant_html, participants))}</ul>"),
        _section("progress", "Progress: chapters with entries", _table_html(
            progress_grid(participants), "progress", index=True, empty="No ledger files.")),
        _section("scoreboard", "Claims scoreboard", _scoreboard_html(scoreboard(claims))),
        _section("disagreements", "Where the class disagreed", _table_html(
            disagreements(table, claims), "disagreements",
            empty="No technique read as a gain on one machine and a loss on another, and no claim held on one and "
                  "not on another.") + "<p>A gain or a loss is read from each result's interval (all of it above or "
            "below 1x); the spread is the highest speed-up (or claim median) over the lowest, across participants.</p>"),
        _section("speedups", "Speed-up per technique and machine", _figure_html(table)
                 + f"<p>Only speed-ups (time ratios): {_count(apart, 'result', 'results')} that "
                   f"{'is' if apart == 1 else 'are'} not (exact ratios such as sizes and bytes, accuracy differences) "
                   "left out of the figure, the medians and the disagreements, and kept in the CSV. A speed-up that "
                   "an earlier ledger format stored without its interval is a dot without a bar.</p>"),
        _section("groups", "Median per hardware group", _table_html(
            group_summary(table), "groups", index=True, empty="No usable entries.")
            + f"<p>Each cell: the median across participants, n, their lowest to highest, and how many are "
              f"{html.escape(NOISY_RULE)}.</p>"),
        _section("capstone", "Capstone plans (chapter 8)", _table_html(
            capstone_table(usable), "capstone", empty="No capstone results yet.")),
        _section("versions", "Versions", warnings + _table_html(
            versions_table(usable), "versions", empty="No usable ledger files.")),
    ]
    return "\n".join([
        f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
        "table {border-collapse: collapse} th, td {padding: 2px 8px; text-align: left} .warning {color: #a34700}"
        "</style></head><body style='font-family: sans-serif; max-width: 1100px'>",
        f"<h1>{html.escape(title)}</h1><p>{len(usable)} of {len(participants)} ledger files used.</p>",
        *sections, "</body></html>"])
