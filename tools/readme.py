"""Keep the README's chapter table in step with book.toml.

    python tools/readme.py --write   # rewrite the table between the markers
    python tools/readme.py --check   # exit 1 if the table is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers.course import chapter_table_markdown, load_course  # noqa: E402

README = ROOT / "README.md"
START, END = "<!-- chapters:start (generated from book.toml by `make readme`) -->", "<!-- chapters:end -->"


def render(text: str) -> str:
    """README text with the chapter table between the markers regenerated."""
    if START not in text or END not in text:
        raise ValueError(f"README.md must contain the markers {START!r} and {END!r}")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{chapter_table_markdown(load_course())}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    current = README.read_text()
    fresh = render(current)
    if args.write:
        README.write_text(fresh)
    if args.check and fresh != current:
        print("README.md's chapter table is stale: run `make readme`")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
