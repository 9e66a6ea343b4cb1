"""`make claims` (tools/claims.py) prints every claim with its interval and fails only on a clear miss."""

import subprocess
import sys

from helpers.core.claims import Ratio, make_claim
from helpers.support.ledger import record_chapter
from tests.conftest import ROOT


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "claims.py"), *args], capture_output=True, text=True)


def claim(name: str, threshold: float):
    return make_claim(1, name, "s", threshold=threshold, ratio=Ratio(2.0, 1.8, 2.2, 5), hardware="Test CPU (AVX2)")


def test_the_table_shows_each_claim_and_passes_without_a_clear_failure(tmp_path):
    ledger = tmp_path / "ledger.json"
    record_chapter(1, [], [claim("fast", 1.5), claim("borderline", 2.1)], path=ledger)
    result = run_tool("--ledger", str(ledger))
    assert result.returncode == 0, result.stderr
    assert "Test CPU (AVX2)" in result.stdout
    assert "fast" in result.stdout and "1.80 to 2.20x" in result.stdout and "at least 1.5x" in result.stdout
    assert "1 holds, 1 inconclusive, 0 does not hold here" in result.stdout


def test_a_claim_whose_whole_interval_misses_fails_the_benchmark(tmp_path):
    ledger = tmp_path / "ledger.json"
    record_chapter(1, [], [claim("too_ambitious", 3.0)], path=ledger)
    result = run_tool("--ledger", str(ledger))
    assert result.returncode == 1
    assert "does not hold here" in result.stdout


def test_a_missing_ledger_is_a_clear_error(tmp_path):
    result = run_tool("--ledger", str(tmp_path / "none.json"))
    assert result.returncode == 2 and "run the chapters first" in result.stderr
