"""Gather a class's ledgers into one HTML page: `make class-report LEDGERS=folder/` (see the README's instructor notes).

Each participant copies their results/ledger.json into the folder under their own name (alice.json, ...).
Files that are not ledgers, and entries that are incomplete, are named on the page and in the output, and skipped.
Ledgers of earlier course editions (format 1) are read too. --csv writes every participant's entries and claims as
one table; --anonymise names the participants P1, P2, ... (in name order) on the page and in the CSV.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.ch08_capstone.class_report import (  # noqa: E402
    anonymised, class_report_html, participant_table, read_class,
)


def main(argv: list[str] | None = None) -> int:
    """Write the report (and the CSV); print one line per participant. Exit 1 when no ledger at all is usable, 2
    when LEDGERS is not a folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ledgers", type=Path, help="folder holding one ledger .json file per participant")
    parser.add_argument("--out", type=Path, default=Path("class-report.html"), help="the HTML file to write")
    parser.add_argument("--title", default="Class report: what each technique gained on each machine")
    parser.add_argument("--csv", type=Path, help="also write every participant's entries and claims to this CSV file")
    parser.add_argument("--anonymise", action="store_true",
                        help="name the participants P1, P2, ... in name order, on the page and in the CSV")
    args = parser.parse_args(argv)
    try:
        participants = read_class(args.ledgers)
    except ValueError as error:
        print(f"class-report: {error}", file=sys.stderr)
        return 2
    shown = anonymised(participants) if args.anonymise else participants
    for p, alias in zip(participants, shown):
        status = f"{len(p.entries)} entries, {len(p.claims)} claims used" if p.entries else "skipped"
        name = f"{p.name} (shown as {alias.name})" if args.anonymise else p.name
        print(f"{name}: {status}" + "".join(f"\n  - {problem}" for problem in p.problems))
    args.out.write_text(class_report_html(shown, title=args.title))
    print(f"wrote {args.out}")
    if args.csv:
        participant_table(shown).to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    return 0 if any(p.entries for p in participants) else 1


if __name__ == "__main__":
    sys.exit(main())
