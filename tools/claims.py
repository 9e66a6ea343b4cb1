"""Gather every chapter's speed claims, measured on this machine, into one table (a benchmark, not a test).

    python tools/claims.py                          # execute every chapter (outputs not saved), print the table
    python tools/claims.py notebooks/ch01_measure.ipynb   # only these chapters
    python tools/claims.py --ledger results/ledger.json   # print the claims a ledger already holds

Exit status 1 only when a claim clearly fails here (its whole interval on the wrong side of the
threshold) or a chapter does not run; an inconclusive claim is reported, not failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers.core.claims import claims_table  # noqa: E402
from helpers.support.ledger import LEDGER_ENV, load_claims  # noqa: E402
from tools.course import load_course  # noqa: E402
from run_notebooks import execute_notebook  # noqa: E402


def run_chapters(paths: list[Path], ledger: Path) -> None:
    """Execute the notebooks in fresh kernels that record their claims into `ledger`."""
    os.environ[LEDGER_ENV] = str(ledger)
    for path in paths:
        print(f"running {path.relative_to(ROOT)} ...", flush=True)
        stats = execute_notebook(path, save=False)
        print(f"  {stats.wall_s:.0f} s", flush=True)


def print_claims(claims: list[dict]) -> int:
    """The table, one row per claim; the number of claims that do not hold here."""
    table = claims_table(claims).reset_index()
    table["interval"] = [f"{lo:.2f} to {hi:.2f}x ({label})"
                         for lo, hi, label in zip(table["low"], table["high"], table["interval"])]
    table["measured"] = [f"{m:.2f}x" for m in table["measured"]]
    hardware = sorted(set(table["hardware"]))
    columns = ["chapter", "claim", "measured", "interval", "threshold", "verdict"]
    print(f"\nClaims measured on: {'; '.join(hardware)}")
    print(table[columns].to_string(index=False))
    counts = table["verdict"].value_counts()
    print("\n" + ", ".join(f"{counts.get(v, 0)} {v}" for v in ("holds", "inconclusive", "does not hold here")))
    return int(counts.get("does not hold here", 0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every chapter in book.toml")
    parser.add_argument("--ledger", type=Path, help="read this ledger instead of executing the chapters")
    args = parser.parse_args()
    if args.ledger:
        if not args.ledger.exists():
            parser.error(f"no ledger at {args.ledger}: run the chapters first (make execute or make claims)")
        claims = load_claims(args.ledger)
    else:
        paths = [p.resolve() for p in args.notebooks] or [ROOT / c.file for c in load_course().chapters]
        ledger = Path(tempfile.mkdtemp(prefix="course-claims-")) / "ledger.json"
        run_chapters(paths, ledger)
        claims = load_claims(ledger)
    if not claims:
        print("no claims recorded")
        return 1
    failed = print_claims(claims)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
