"""Tests of helpers/support/ledger.py."""

import json
import platform
import sys
from datetime import datetime, timedelta
from importlib.metadata import version

import pytest
import torch

from helpers.core.claims import Ratio, make_claim
from helpers.support.ledger import (
    LEDGER_ENV, LEDGER_FORMAT, course_version, ledger_path, ledger_table, load_claims, load_ledger, load_runs,
    NO_INTERVAL_KIND, appendix_letter, make_entry, part_label, record_chapter, upgrade_entry,
)


def entry(chapter=1, technique="batching", baseline=100.0, optimized=200.0, higher_is_better=True):
    return make_entry(chapter, technique, metric="throughput", unit="images/s", baseline=baseline,
                      optimized=optimized, higher_is_better=higher_is_better, hardware="test CPU")


FIELDS = {"chapter", "technique", "metric", "unit", "baseline", "optimized", "speedup", "speedup_interval", "gain",
          "hardware", "extras", "compared_with", "kind", "verdict", "combination"}


def test_a_part_of_the_course_is_named_as_a_chapter_or_an_appendix():
    assert (part_label(1), part_label(8), part_label(9)) == ("Chapter 1", "Chapter 8", "Appendix A")
    assert (part_label(3, in_sentence=True), part_label(9, in_sentence=True)) == ("chapter 3", "Appendix A")
    assert (appendix_letter(9), appendix_letter(3), appendix_letter(10)) == ("A", None, None)
    with pytest.raises(ValueError, match=r"number must be one of 1, 2, .*8, 9; got 10"):
        part_label(10)
    with pytest.raises(TypeError, match="number must be an int"):
        part_label("A")


def test_speedup_is_above_one_when_the_technique_helps_either_way():
    assert entry(baseline=100.0, optimized=200.0, higher_is_better=True).speedup == 2.0
    assert entry(baseline=10.0, optimized=5.0, higher_is_better=False).speedup == 2.0


def test_an_interval_that_includes_one_is_recorded_as_inconclusive():
    noisy = make_entry(2, "masking", metric="latency", unit="ms", baseline=10.0, optimized=9.2,
                       higher_is_better=False, hardware="h", ratio=Ratio(1.087, 0.95, 1.2, 6))
    assert noisy.speedup == 1.087 and noisy.speedup_interval == (0.95, 1.2) and noisy.gain == "inconclusive"
    clear = make_entry(2, "x", metric="latency", unit="ms", baseline=10.0, optimized=5.0,
                       higher_is_better=False, hardware="h", ratio=Ratio(2.0, 1.8, 2.2, 6))
    assert clear.gain == "gain"
    exact = entry(baseline=100.0, optimized=25.0, higher_is_better=False)
    assert exact.speedup_interval is None and exact.gain == "gain"
    table = ledger_table([noisy, exact])
    assert table.loc[(2, "masking"), "speedup_low"] == 0.95 and table.loc[(2, "masking"), "gain"] == "inconclusive"


def test_an_entry_names_its_baseline_and_says_what_kind_of_number_it_is():
    timed = make_entry(2, "folding", metric="latency", unit="ms", baseline=10.0, optimized=8.0, higher_is_better=False,
                       hardware="h", ratio=Ratio(1.2, 1.1, 1.3, 5), compared_with="the same network, BN unfolded")
    assert timed.compared_with == "the same network, BN unfolded"
    assert timed.kind == "time ratio, median of round ratios (range of 5 rounds)"
    assert entry(baseline=100.0, optimized=25.0, higher_is_better=False).kind == "exact ratio (sizes or counts)"
    assert not timed.combination and timed.verdict == ""
    with pytest.raises(TypeError, match="compared_with must be a str"):
        make_entry(2, "x", metric="m", unit="u", baseline=1.0, optimized=1.0, higher_is_better=False, hardware="h",
                   compared_with=None)


def test_claims_are_stored_beside_the_entries_and_replaced_per_chapter(tmp_path):
    path = tmp_path / "ledger.json"
    claim = make_claim(1, "fast", "it is at least 2x faster", threshold=2.0, ratio=Ratio(3.0, 2.5, 3.5, 5),
                       hardware="h")
    record_chapter(1, [entry(1)], [claim], path=path)
    record_chapter(2, [entry(2, "pruning")], [], path=path)
    stored = load_claims(path)
    assert [(c["chapter"], c["name"], c["verdict"]) for c in stored] == [(1, "fast", "holds")]
    assert stored[0]["ratio"] == {"median": 3.0, "low": 2.5, "high": 3.5, "rounds": 5}
    record_chapter(1, [entry(1)], [], path=path)
    assert load_claims(path) == []
    with pytest.raises(ValueError, match="claim names must be unique"):
        record_chapter(1, [], [claim, claim], path=path)


def test_ledger_path_follows_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(LEDGER_ENV, str(tmp_path / "x.json"))
    assert ledger_path() == tmp_path / "x.json"


def test_ledger_path_defaults_to_results_at_the_course_root(tmp_path, monkeypatch):
    monkeypatch.delenv(LEDGER_ENV)
    (tmp_path / "book.toml").write_text("")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert ledger_path() == tmp_path / "results" / "ledger.json"


def test_rerunning_a_chapter_replaces_its_entries_and_keeps_others(tmp_path):
    path = tmp_path / "ledger.json"
    record_chapter(1, [entry(1, "batching"), entry(1, "old_technique")], path=path)
    record_chapter(2, [entry(2, "pruning")], path=path)
    record_chapter(1, [entry(1, "batching", optimized=300.0)], path=path)
    rows = load_ledger(path)
    assert sorted((r["chapter"], r["technique"]) for r in rows) == [(1, "batching"), (2, "pruning")]
    assert next(r for r in rows if r["chapter"] == 1)["optimized"] == 300.0
    assert all(set(r) == FIELDS for r in rows)
    assert json.loads(path.read_text())["entries"] == rows
    assert [p.name for p in tmp_path.iterdir()] == ["ledger.json"], "no temporary file left behind"


def test_an_entry_from_a_claim_keeps_its_verdict_and_a_combination_says_so():
    claim = make_claim(2, "folding_1_1x", "Folding is at least 1.1x faster.", threshold=1.1,
                       ratio=Ratio(1.08, 0.97, 1.16, 12), hardware="h")
    judged = make_entry(2, "folding", metric="latency", unit="ms", baseline=10.0, optimized=9.3, higher_is_better=False,
                        hardware="h", claim=claim, combination=True, compared_with="BN unfolded")
    assert judged.verdict == "inconclusive" and judged.gain == "inconclusive" and judged.combination
    assert judged.speedup == 1.08 and judged.speedup_interval == (0.97, 1.16)
    assert ledger_table([judged]).loc[(2, "folding"), "verdict"] == "inconclusive"
    with pytest.raises(ValueError, match="at most one of ratio, claim"):
        make_entry(2, "x", metric="m", unit="u", baseline=1.0, optimized=1.0, higher_is_better=False, hardware="h",
                   claim=claim, ratio=claim.ratio)


def test_ledger_table_is_indexed_by_chapter_and_technique(tmp_path):
    table = ledger_table([entry(1, "batching")])
    assert table.index.names == ["chapter", "technique"]
    assert table.loc[(1, "batching"), "speedup"] == 2.0


def test_bad_entries_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="baseline must be > 0"):
        entry(baseline=0.0)
    with pytest.raises(ValueError, match="chapter must be an int >= 1"):
        entry(chapter=0)
    with pytest.raises(TypeError, match="higher_is_better must be a bool"):
        make_entry(1, "x", metric="m", unit="u", baseline=1.0, optimized=1.0, higher_is_better=1, hardware="h")
    with pytest.raises(ValueError, match="technique must be a non-empty string"):
        entry(technique="")
    with pytest.raises(ValueError, match="every entry must belong to chapter 2"):
        record_chapter(2, [entry(1)], path=tmp_path / "l.json")
    with pytest.raises(ValueError, match="entry names must be unique"):
        record_chapter(1, [entry(1), entry(1)], path=tmp_path / "l.json")


def test_an_accuracy_difference_keeps_its_interval_and_reads_an_interval_through_zero_as_inconclusive():
    from helpers.core.accuracy import paired_difference

    common = dict(metric="accuracy", unit="%", baseline=90.0, optimized=91.0, higher_is_better=True, hardware="cpu",
                  compared_with="pseudo-labels")
    unclear = make_entry(6, "kd", difference=paired_difference([0.9, 0.91, 0.92], [0.91, 0.90, 0.93]), **common)
    assert unclear.gain == "inconclusive" and unclear.kind.startswith("accuracy difference over 3 paired seeds")
    clear = make_entry(6, "kd", difference=paired_difference([0.9, 0.91, 0.92], [0.92, 0.93, 0.94]), **common)
    assert clear.gain == "gain" and clear.extras["difference_points"][0] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="at most one"):
        make_entry(6, "kd", difference=paired_difference([0.9, 0.91, 0.92], [0.9, 0.9, 0.9]),
                   ratio=Ratio(1.0, 0.9, 1.1, 5), **common)


def test_record_chapter_writes_the_format_and_who_wrote_each_chapter(tmp_path):
    path = tmp_path / "ledger.json"
    record_chapter(1, [entry(1)], path=path)
    record_chapter(2, [entry(2, "pruning")], path=path)
    stored = json.loads(path.read_text())
    assert stored["format"] == LEDGER_FORMAT == 2 and list(stored["runs"]) == ["1", "2"]
    runs = load_runs(path)
    assert list(runs) == [1, 2] and set(runs[1]) == {"torch", "python", "course", "written", "platform"}
    assert runs[1]["torch"] == torch.__version__ and runs[1]["python"] == platform.python_version()
    assert runs[1]["course"].startswith(version("dl-perf-course-helpers")) and runs[1]["platform"] == sys.platform
    assert datetime.fromisoformat(runs[1]["written"]).utcoffset() == timedelta(0)
    assert load_runs(tmp_path / "none-yet.json") == {}


def test_the_course_version_never_fails_without_git(tmp_path, monkeypatch):
    monkeypatch.setattr("helpers.support.ledger.course_folder", lambda: tmp_path)
    assert course_version() == version("dl-perf-course-helpers")  # no .git: the installed version alone
    (tmp_path / ".git").mkdir()

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr("helpers.support.ledger.subprocess.run", no_git)
    assert course_version() == version("dl-perf-course-helpers")
    monkeypatch.setattr("helpers.support.ledger.course_folder", lambda: None)
    assert course_version() == version("dl-perf-course-helpers")


# Entries as chapters wrote them before the ledger had a format: the first edition's (commit 2565b37: no interval,
# no gain, no claims), then with interval and gain ('no gain' for an interval across 1; b916484 to e3eef01).
FIRST_EDITION = {"chapter": 1, "technique": "batching", "metric": "inference throughput", "unit": "images/s",
                 "baseline": 100.0, "optimized": 250.0, "speedup": 2.5, "hardware": "Old CPU (AVX2, 4 cores)",
                 "extras": {"best_batch_size": 64}}
WITH_GAIN = FIRST_EDITION | {"technique": "masking", "speedup": 1.05, "speedup_interval": [0.9, 1.2], "gain": "no gain"}


@pytest.mark.parametrize("stored, gain, kind", [
    (FIRST_EDITION, "inconclusive", NO_INTERVAL_KIND),  # images/s: a speed-up without its interval cannot be read
    (FIRST_EDITION | {"speedup": 0.5, "unit": "ms"}, "inconclusive", NO_INTERVAL_KIND),
    (FIRST_EDITION | {"speedup": 1.0, "unit": "KB"}, "no gain", "exact ratio"),  # bytes: exact
    (FIRST_EDITION | {"speedup_interval": [1.1, 1.3]}, "gain", "time ratio"),
    (FIRST_EDITION | {"speedup_interval": [0.7, 0.9]}, "loss", "time ratio"),
    (FIRST_EDITION | {"speedup_interval": [0.9, 1.1]}, "inconclusive", "time ratio"),
    (WITH_GAIN, "inconclusive", "time ratio"),
    (FIRST_EDITION | {"gain": "gain"}, "inconclusive", NO_INTERVAL_KIND),  # a stored gain without its interval
])
def test_an_entry_of_an_earlier_format_is_upgraded(stored, gain, kind):
    upgraded = upgrade_entry(stored, 1)
    assert set(upgraded) == FIELDS and upgraded["gain"] == gain and upgraded["kind"] == kind
    if kind == NO_INTERVAL_KIND:
        assert upgraded["extras"]["direction_without_interval"] in ("gain", "loss")  # kept, but not read
    assert (upgraded["compared_with"], upgraded["verdict"], upgraded["combination"]) == ("", "", False)
    assert set(stored) < FIELDS  # the stored entry is left as it was


def test_upgrade_entry_leaves_what_it_cannot_derive_and_refuses_unknown_formats():
    assert "gain" not in upgrade_entry({"chapter": 1, "technique": "x"}, 1)  # no speed-up: the reader names it
    assert upgrade_entry(entry(1).__dict__, 2) == entry(1).__dict__
    with pytest.raises(ValueError, match="format must be one of 1, 2"):
        upgrade_entry(FIRST_EDITION, 3)
    with pytest.raises(TypeError, match="entry must be a dict"):
        upgrade_entry([1], 1)


def test_a_ledger_of_an_earlier_format_is_read_and_rewritten_as_today_s(tmp_path):
    path = tmp_path / "ledger.json"
    path.write_text(json.dumps({"entries": [FIRST_EDITION, WITH_GAIN]}))
    assert [e["gain"] for e in load_ledger(path)] == ["inconclusive", "inconclusive"] and load_runs(path) == {}
    record_chapter(2, [entry(2, "pruning")], path=path)
    stored = json.loads(path.read_text())
    assert stored["format"] == 2 and list(stored["runs"]) == ["2"]  # chapter 1's run was never recorded
    assert all(set(e) == FIELDS for e in stored["entries"])
    path.write_text(json.dumps({"format": 3, "entries": []}))
    with pytest.raises(ValueError, match="a newer course may have written it"):
        load_ledger(path)
