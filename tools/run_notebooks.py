"""Execute chapter notebooks in a fresh kernel; print wall time and peak memory; optionally store outputs.

    python tools/run_notebooks.py            # run every chapter in book.toml, print the budget table
    python tools/run_notebooks.py --save     # ... and store the outputs in the notebooks (nbval's reference)
    python tools/run_notebooks.py --check    # ... and exit 1 if a chapter is over its budget
    python tools/run_notebooks.py --out DIR  # ... and write the executed copies into DIR (the GPU reference run)
    python tools/run_notebooks.py --keep-going --out DIR  # run every cell even after an error (new hardware)
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers.core.hardware import hardware_report  # noqa: E402
from helpers.core.memory import track_peak_memory  # noqa: E402
from tools.course import DEFAULT_PEAK_BUDGET_GB, load_course  # noqa: E402

KERNEL_NAME = "dl-perf-course"
BUDGET_S = 120.0
COURSE_BUDGET_S = 600.0  # the whole course, every chapter in a row


@dataclass(frozen=True)
class RunStats:
    """Wall time and peak resident memory (kernel and its child processes) of one notebook run."""

    notebook: str
    wall_s: float
    peak_bytes: int
    budget_bytes: float

    @property
    def within_budget(self) -> bool:
        return self.wall_s <= BUDGET_S and self.peak_bytes <= self.budget_bytes

    def as_metadata(self) -> dict:
        """What the stored notebook records about the run that produced its outputs (the README shows it)."""
        return {"wall_s": round(self.wall_s, 1), "peak_mb": round(self.peak_bytes / 1e6),
                "machine": hardware_report().summary_line()}


def peak_budget_bytes(path: Path) -> float:
    """The chapter's memory budget from book.toml (1.5 GB unless the chapter states another, with its reason)."""
    budgets = {Path(c.file).name: c.peak_budget_gb for c in load_course().chapters}
    return budgets.get(path.name, DEFAULT_PEAK_BUDGET_GB) * 1e9


def execute_notebook(path: Path, *, save: bool, out: Path | None = None, keep_going: bool = False) -> RunStats:
    """Run every cell of the notebook in a new kernel, measuring the kernel's process tree.

    save stores the outputs in the notebook itself; out writes the executed copy into that folder instead;
    keep_going runs the remaining cells after one fails (their errors stay in the outputs).
    """
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name=KERNEL_NAME, timeout=600, allow_errors=keep_going,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    with client.setup_kernel():
        # Reading PSS costs ~10 ms per process with torch loaded: sample twice a second, not to steal a core.
        with track_peak_memory(client.km.provisioner.pid, interval_s=0.5) as peak:
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
    stats = RunStats(path.name, time.perf_counter() - start, peak.peak_bytes, peak_budget_bytes(path))
    if save or out:
        nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3 (DL performance course)",
                                     "language": "python"}
        nb.metadata["course_run"] = stats.as_metadata()
        client.set_widgets_metadata()  # each widget's state, so the book can show its output without a kernel
        nbformat.write(nb, out / path.name if out else path)
    return stats


def print_table(stats: list[RunStats]) -> None:
    """The budget table: one row per notebook and a total."""
    print(f"{'notebook':32} {'wall (s)':>9} {'peak PSS (MB)':>14} {'budget (MB)':>12}  ({BUDGET_S:.0f} s each)")
    for s in stats:
        print(f"{s.notebook:32} {s.wall_s:9.1f} {s.peak_bytes / 1e6:14.0f} {s.budget_bytes / 1e6:12.0f}  "
              f"{'ok' if s.within_budget else 'OVER'}")
    total = sum(s.wall_s for s in stats)
    print(f"{'total':32} {total:9.1f} {'':14} {'':12}  ({COURSE_BUDGET_S:.0f} s for the course: "
          f"{'ok' if total <= COURSE_BUDGET_S else 'OVER'})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every chapter in book.toml")
    parser.add_argument("--save", action="store_true", help="store the outputs in the notebooks")
    parser.add_argument("--check", action="store_true", help="exit 1 if a notebook exceeds its budget")
    parser.add_argument("--out", type=Path, help="write the executed notebooks into this folder, not in place")
    parser.add_argument("--keep-going", action="store_true", help="run every cell even after one fails")
    args = parser.parse_args()
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    paths = args.notebooks or [ROOT / c.file for c in load_course().chapters]
    stats = []
    for path in paths:
        print(f"running {path} ...", flush=True)
        stats.append(execute_notebook(path.resolve(), save=args.save, out=args.out,
                                      keep_going=args.keep_going))
    print_table(stats)
    over = not all(s.within_budget for s in stats) or sum(s.wall_s for s in stats) > COURSE_BUDGET_S
    return 1 if args.check and over else 0


if __name__ == "__main__":
    raise SystemExit(main())
