"""Tests of helpers/ch08_capstone/: the waterfall, budget and plan; charts; the decision guide; the class report;
the package versions."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from matplotlib.figure import Figure

from helpers.ch08_capstone.class_report import class_report_html, hardware_group, read_class, read_participant
from helpers.ch08_capstone.decision_guide import decision_guide, likely_reason, ratio_text, reading
from helpers.ch08_capstone.exercises import check_latency_plan, check_plan_without
from helpers.ch08_capstone.plots import plot_ledger, plot_waterfall
from helpers.ch08_capstone.versions import installed_version
from helpers.ch08_capstone.waterfall import (
    Stage, budget_is_clear, deployment_plan, flat_step_reason, paired_change_points, waterfall_table, within_budget,
)
from helpers.core.claims import Ratio
from helpers.core.hardware import HardwareReport
from helpers.core.measure import Timing
from helpers.support.ledger import chapters_missing, ledger_table, make_entry
from tests.conftest import ARTIFACTS, ROOT


def timing(ms: float, jitter: float = 0.0) -> Timing:
    """A Timing of five rounds around ms (jitter alternates the rounds up and down)."""
    rounds = tuple((ms + (jitter if i % 2 else -jitter)) / 1e3 for i in range(5))
    return Timing(median_s=ms / 1e3, block_iqr_s=0.0, blocks=5, calls=50, round_medians_s=rounds)


def right(count: int, total: int = 450) -> torch.Tensor:
    """A correctness vector: the first `count` of `total` test images right."""
    return torch.arange(total) < count


STAGES = [
    Stage("fp32", "baseline", timing(4.0), 400_000, right(446)),
    Stage("layout", "channels_last", timing(4.0, 0.2), 400_000, right(446)),
    Stage("pruned", "prune", timing(1.0), 100_000, right(432)),  # 3.1 points lost
    Stage("distilled", "distil", timing(1.0), 100_000, right(444), builds_on="layout", note="same work"),
    Stage("int8", "int8", timing(0.5), 25_000, right(443)),
]


HARDWARE = HardwareReport(device="cpu", cpu_model="Test CPU", cpu_isa="AVX2", cpu_cores=2, cpu_native_bf16=False,
                          cpu_native_fp16=False, gpu_name=None, gpu_bf16=None, gpu_tensor_cores=None, gpu_tf32=None,
                          torch_version="2.14.1")


def ledger_entries() -> list[dict]:
    """Entries as chapters write them: a gain with an interval, a loss, an exact ratio of an unknown technique,
    an int8 result with a size ratio, and one measured on other hardware."""
    here = "Test CPU (AVX2, 2 logical CPUs)"
    return [
        make_entry(3, "torch_compile", metric="latency", unit="ms", baseline=2.0, optimized=1.0,
                   higher_is_better=False, hardware=here, ratio=Ratio(2.0, 1.8, 2.2, 5)).__dict__,
        make_entry(3, "mixed_precision_bf16", metric="step", unit="ms", baseline=1.0, optimized=4.0,
                   higher_is_better=False, hardware=here, ratio=Ratio(0.25, 0.2, 0.3, 5)).__dict__,
        make_entry(9, "something_new", metric="bytes", unit="B", baseline=4.0, optimized=1.0,
                   higher_is_better=False, hardware=here).__dict__,
        make_entry(6, "int8_static_pt2e", metric="latency against eager", unit="ms", baseline=3.0, optimized=1.0,
                   higher_is_better=False, hardware=here, ratio=Ratio(3.0, 1.5, 3.3, 5),
                   extras={"size_ratio": 3.7}).__dict__,
        make_entry(3, "channels_last", metric="latency", unit="ms", baseline=9.0, optimized=1.0,
                   higher_is_better=False, hardware="NVIDIA H200", ratio=Ratio(9.0, 8.5, 9.5, 5)).__dict__,
        make_entry(8, "capstone_size", metric="bytes", unit="KB", baseline=12.0, optimized=1.0,
                   higher_is_better=False, hardware=here).__dict__,  # a size result records no size_ratio
    ]


def write_class(folder) -> None:
    """Two machines (an AVX2 laptop, an AVX-512 server with a GPU), a malformed file and a partial ledger."""
    laptop, server = ledger_entries()[:2], ledger_entries()[:2]
    for entry in server:
        entry["hardware"] = "Server CPU (AVX512, 16 cores)"
        entry["speedup"] *= 1.5
    server.append({**ledger_entries()[0], "hardware": "NVIDIA H200", "speedup": 3.0})
    (folder / "laptop.json").write_text(json.dumps({"entries": laptop}))
    (folder / "server.json").write_text(json.dumps({"entries": server, "claims": []}))
    (folder / "malformed.json").write_text('{"entries": [{"chapter": 3,')
    (folder / "partial.json").write_text(json.dumps({"entries": [laptop[0], {"chapter": 3, "technique": "x"},
                                                                 {**laptop[1], "speedup_interval": [0.2]}]}))
    (folder / "notes.txt").write_text("not a ledger, not read")


def test_the_waterfall_table_has_steps_totals_sizes_and_accuracy_intervals():
    table = waterfall_table(STAGES)
    assert table.loc["pruned", "step_speedup"] == pytest.approx(3.8)  # the layout stage's round median is 3.8 ms
    assert table.loc["int8", "total_speedup"] == pytest.approx(8.0)
    assert table.loc["int8", "size_reduction"] == pytest.approx(16.0)
    assert table.loc["layout", "step_gain"] == "no gain" and table.loc["fp32", "step_gain"] == "baseline"
    assert table.loc["pruned", "accuracy_low_%"] < 96.0 < table.loc["pruned", "accuracy_high_%"]
    assert table.loc["pruned", "accuracy_change_points"] == pytest.approx(-100 * 14 / 450)
    assert table.loc["pruned", "change_low_points"] < -3.1 < table.loc["pruned", "change_high_points"] < 0
    assert list(table["builds_on"]) == ["", "fp32", "layout", "layout", "distilled"]
    assert table.loc["distilled", "step_speedup"] == pytest.approx(3.8)  # against the stage it builds on


def test_the_paired_change_is_exact_when_nothing_changes():
    assert paired_change_points(right(440), right(440)) == (0.0, 0.0, 0.0)


def test_a_stage_over_the_budget_takes_the_stages_built_on_it_out():
    table = waterfall_table(STAGES)
    assert list(within_budget(table, 1.0)) == [True, True, False, True, True]
    assert list(within_budget(table, 0.5)) == [True, True, False, True, False]  # int8 loses 0.67 points
    chained = waterfall_table([*STAGES[:3], Stage("int8", "int8", timing(0.5), 25_000, right(446))])
    assert not within_budget(chained, 1.0)["int8"]  # it loses nothing itself, but builds on the pruned stage


def test_the_plan_is_the_fastest_paying_stage_within_the_budget():
    table = waterfall_table(STAGES)
    assert deployment_plan(table, 1.0) == "int8"
    assert deployment_plan(table, 0.0) == "fp32"  # layout is within, but its step did not pay
    assert deployment_plan(table, 5.0) == "int8"


def test_the_budget_decision_says_when_it_is_within_the_noise():
    clear = budget_is_clear(waterfall_table(STAGES), 1.0)
    assert clear["pruned"] and clear["fp32"] and not clear["int8"]


def test_a_flat_step_says_why():
    table = waterfall_table(STAGES)
    assert flat_step_reason(table.loc["distilled"]) == "same work"
    assert flat_step_reason(table.loc["layout"]).startswith("no measurable gain here: 1.05x (95% interval 0.95")


@pytest.mark.parametrize("stages, message", [
    (STAGES[:1], "at least one stage"),
    ([STAGES[0], STAGES[0]], "unique"),
    ([STAGES[0], "pruned"], "stages\\[1\\]"),
    ([STAGES[0], replace(STAGES[1], correct=right(10, 100))], "one flag per test image"),
    ([STAGES[0], replace(STAGES[1], correct=torch.ones(450))], "bool"),
    ([STAGES[0], replace(STAGES[1], builds_on="int8")], "earlier stage"),
])
def test_bad_stages_are_refused(stages, message):
    with pytest.raises((ValueError, TypeError), match=message):
        waterfall_table(stages)


def test_the_exercise_checks_pass_the_right_plan_and_fail_another(capsys):
    table = waterfall_table(STAGES)
    assert check_latency_plan("E1", "pruned", table, latency_ms=1.0, budget_points=5.0)
    assert not check_latency_plan("E1", "int8", table, latency_ms=1.0, budget_points=5.0)
    assert check_latency_plan("E1", "none", table, latency_ms=0.1, budget_points=1.0)
    assert check_plan_without("E2", "distilled", table, size_KB=120, budget_points=2.0, excluded_prefix="int8")
    assert not check_plan_without("E2", "int8", table, size_KB=120, budget_points=2.0, excluded_prefix="int8")
    assert not check_latency_plan("E1", "fastest", table, latency_ms=1.0, budget_points=1.0)
    printed = capsys.readouterr().out
    assert "answer one of" in printed and "'none'" in printed
    wrong = next(line for line in printed.splitlines() if line.startswith("❌ E2: not 'int8'"))
    assert "distilled" not in wrong  # a wrong answer's hint does not name the right one


def test_the_waterfall_chart_marks_the_budget_and_refuses_other_tables():
    table = waterfall_table(STAGES)
    fig = plot_waterfall(table, 1.0, hardware="Test CPU", training={"files": (1000.0, "baseline", 1.0),
                                                                     "cache": (5000.0, "gain", 4.9)})
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert "at most 1 points of accuracy lost" in fig._suptitle.get_text()
    labels = [text.get_text() for text in fig.axes[0].texts]
    assert " flat | 99.1%" in labels and " 8.00x | 98.4%" in labels
    hatched = [patch for patch in fig.axes[0].patches if patch.get_hatch() == "//"]
    assert len(hatched) == 1  # the pruned stage, 3 points lost against a 1-point budget
    with pytest.raises(ValueError, match="waterfall_table"):
        plot_waterfall(table.drop(columns="step_gain"), 1.0, hardware="Test CPU")
    with pytest.raises(ValueError, match="budget_points"):
        plot_waterfall(table, -1.0, hardware="Test CPU")
    with pytest.raises(ValueError, match="rate, gain, ratio"):
        plot_waterfall(table, 1.0, hardware="Test CPU", training={"files": (1000.0, "baseline")})


def test_every_number_in_the_decision_guide_is_a_ledger_number():
    entries = ledger_entries()
    text = decision_guide(entries, HARDWARE).data
    allowed = set()
    for entry in entries:
        allowed |= set(re.findall(r"\d+\.\d+", ratio_text(entry)))
        allowed.add(f"{entry['extras'].get('size_ratio') or entry['speedup']:.1f}")
    numbers = set(re.findall(r"\d+\.\d+", text))  # every measured number has decimals; counts and chapters not
    assert numbers <= allowed, numbers - allowed
    assert "9.00x" not in text and "left out" in text  # the other machine's result is not used
    assert "Try first*: torch.compile: 2.00x (range of 5 rounds: 1.80 to 2.20x)" in text  # lower bound 1.8 beats 1.5
    assert "Try first*: the capstone's plan, all stages together: 12.0x smaller" in text
    assert "Also paid: static int8 with PT2E and freezing: 3.7x smaller" in text
    assert "Did not pay here: bf16 autocast" in text and "no native bf16" in text
    assert "Other results" in text and "Accounted, not timed: something_new: 4.00x on bytes" in text


def test_the_guide_reads_each_entry_as_guide_section_5_says():
    timed = dict(kind="time ratio, median of round ratios (95% interval, 8 rounds)", gain="gain", verdict="")
    assert reading(timed, "latency") == "paid"
    assert reading(timed | {"verdict": "holds"}, "latency") == "paid"
    assert reading(timed | {"verdict": "inconclusive"}, "latency") == "inconclusive"  # below the claimed threshold
    assert reading(timed | {"gain": "inconclusive"}, "latency") == "inconclusive"  # not "did not pay"
    assert reading(timed | {"gain": "loss", "verdict": "does not hold here"}, "latency") == "did not pay"
    assert reading(timed | {"verdict": "does not hold here"}, "latency") == "below its claim"  # 1.3x against 1.5x
    exact = dict(kind="exact ratio (sizes or counts)", gain="gain", verdict="")
    assert reading(exact, "memory") == "accounted" and reading(exact, "size") == "paid"


def test_the_guide_reads_the_hardware_and_handles_an_empty_ledger():
    assert "2 logical CPUs" in likely_reason("dataloader_workers", HARDWARE)
    assert "AVX2" in likely_reason("int8_static_pt2e", HARDWARE)
    assert "no results from this machine" in decision_guide([], HARDWARE).data
    with pytest.raises(TypeError, match="hardware"):
        decision_guide(ledger_entries(), "a CPU")


def test_the_ledger_chart_and_the_missing_chapters():
    entries = ledger_entries()
    assert isinstance(plot_ledger(ledger_table(entries), hardware="Test CPU"), Figure)
    assert chapters_missing(entries, [1, 3, 9]) == [1]
    with pytest.raises(ValueError, match="ledger_table"):
        plot_ledger(ledger_table([]), hardware="Test CPU")


def test_bad_and_partial_ledgers_are_named_and_skipped(tmp_path):
    write_class(tmp_path)
    participants = {p.name: p for p in read_class(tmp_path)}
    assert sorted(participants) == ["laptop", "malformed", "partial", "server"]
    assert participants["malformed"].entries == [] and "not readable as JSON" in participants["malformed"].problems[0]
    assert len(participants["partial"].entries) == 1 and "'speedup' missing" in participants["partial"].problems[0]
    assert "speedup_interval must be null or two positive numbers" in participants["partial"].problems[1]
    assert read_participant(tmp_path / "notes.txt").problems  # read directly, it is not a ledger either
    assert hardware_group("Server CPU (AVX512, 16 logical CPUs)") == "CPU AVX512, 16 logical CPUs"
    assert hardware_group("Old CPU (NO AVX, 4 cores)") == "CPU NO AVX, 4 logical CPUs"  # a label from before 2026-12
    assert hardware_group("NVIDIA H200") == "GPU NVIDIA H200"
    with pytest.raises(ValueError, match="folder"):
        read_class(tmp_path / "missing")


def test_the_class_report_page_is_written_and_looked_at_in_chromium(tmp_path, chromium):
    write_class(tmp_path)
    out = tmp_path / "class-report.html"
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "class_report.py"), str(tmp_path), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "malformed: skipped" in done.stdout and "partial: 1 entries used" in done.stdout
    page = chromium.new_page(viewport={"width": 1100, "height": 900})
    page.goto(out.as_uri())
    assert page.locator("li.skipped b").all_inner_texts() == ["malformed"]
    assert page.locator("li.problem").count() == 3
    image = page.locator("img[alt='class speed-ups']")
    assert image.evaluate("img => img.naturalWidth") > 300
    headers = page.locator("table th").all_inner_texts()
    assert {"CPU AVX2, 2 logical CPUs", "CPU AVX512, 16 logical CPUs", "GPU NVIDIA H200"} <= set(headers)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "class_report.png"), full_page=True)
    page.close()


def test_an_empty_class_still_gives_a_page():
    assert "No usable entries" in class_report_html([])


def test_installed_version_is_the_version_that_runs():
    name, number = installed_version("torch").split(" ")
    assert name == "torch" and number == torch.__version__.split("+")[0]  # the wheel's metadata omits +cu130


def test_a_missing_package_is_said_to_be_missing():
    assert installed_version("no-such-package-here") == "no-such-package-here: not installed here"
    with pytest.raises(TypeError, match="distribution"):
        installed_version(None)


def test_a_reference_ledger_names_the_chapters_it_left_out(tmp_path):
    """A shipped reference ledger whose chapters all ran an earlier edition is named as such and skipped."""
    path = tmp_path / "reference.json"
    left_out = ["chapter 4: GPU run of an earlier edition, 46 of 51 code cells differ"]
    path.write_text(json.dumps({"entries": [], "claims": [], "left_out": left_out}))
    participant = read_participant(path)
    assert participant.entries == []
    assert participant.problems == [f"left out, {left_out[0]}", "the ledger holds no entries from today's chapters"]
