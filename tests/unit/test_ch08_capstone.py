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
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from helpers.ch08_capstone.class_report import (
    MARK, Participant, anonymised, capstone_table, claims_table, class_report_html, class_table, disagreements,
    group_summary, hardware_group, progress_grid, read_class, read_participant, scoreboard, version_warnings,
    versions_table,
)
from helpers.ch08_capstone.decision_guide import (
    CATALOG, COLUMNS, EFFORTS, ORDER_NOTE, RISKS, coverage_percent, decision_guide, established_reason, group_ranks,
    guide_table, ratio_text, reading, try_first,
)
from helpers.ch08_capstone.exercises import check_measured_verdict, check_rule_disagreement, point_estimate_plan
from helpers.ch08_capstone.op_profile import FRAMEWORK, KINDS, operator_kind, time_by_operator_kind
from helpers.ch08_capstone.plots import LOSS_COLOR, plot_ledger, plot_waterfall
from helpers.ch08_capstone.versions import installed_version
from helpers.ch08_capstone.waterfall import (
    Stage, budget_is_clear, deployment_plan, flat_step_reason, paired_change_points, ratio_table, step_pays,
    waterfall_table, within_budget,
)
from helpers.ch08_capstone.your_model import StageSpec, run_waterfall
from helpers.core.accuracy import PairedDifference
from helpers.core.claims import Ratio, make_claim
from helpers.core.hardware import HardwareReport
from helpers.core.measure import Timing
from helpers.support.ledger import chapters_missing, ledger_table, make_entry, record_chapter
from tests.conftest import ARTIFACTS, ROOT
from tools.class_report import main as class_report_main


def timing(ms: float, jitter: float = 0.0) -> Timing:
    """A Timing of five rounds around ms (jitter alternates the rounds up and down)."""
    rounds = tuple((ms + (jitter if i % 2 else -jitter)) / 1e3 for i in range(5))
    return Timing(median_s=ms / 1e3, block_iqr_s=0.0, blocks=5, calls=50, round_medians_s=rounds)


def right(count: int, total: int = 450) -> torch.Tensor:
    """A correctness vector: the first `count` of `total` test images right."""
    return torch.arange(total) < count


STAGES = [
    Stage("fp32", "baseline", timing(4.0), 400_000, right(446)),
    Stage("layout", "channels_last", timing(4.0, 0.2), 400_000, right(446), same_function=True),
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


def earlier_format(entry: dict, *, gain: bool = True) -> dict:
    """An entry as chapters wrote it in an earlier edition: with its interval and gain but without compared_with,
    kind, verdict and combination (commits b916484 to e3eef01), or without interval and gain too (2565b37)."""
    kept = ["chapter", "technique", "metric", "unit", "baseline", "optimized", "speedup", "hardware", "extras"]
    return {key: entry[key] for key in kept + (["speedup_interval", "gain"] if gain else [])}


def compile_claim(hardware: str, ratio: Ratio):
    """Chapter 3's claim that torch.compile is at least 2x faster, judged on that machine."""
    return make_claim(3, "compile_2x", "torch.compile is at least 2x faster", threshold=2.0, ratio=ratio,
                      hardware=hardware)


def write_class(folder) -> None:
    """Two machines, each with a claim: an AVX2 laptop whose ledger is of an earlier format, an AVX-512 server with
    a GPU written today (chapters 3 and 8); a malformed file and a partial ledger."""
    laptop = [earlier_format(entry) for entry in ledger_entries()[:2]]
    (folder / "laptop.json").write_text(json.dumps({"entries": laptop, "claims": [
        compile_claim(laptop[0]["hardware"], Ratio(1.5, 1.3, 1.7, 5)).as_dict()]}))
    cpu = dict(unit="ms", baseline=3.0, optimized=1.0, higher_is_better=False, hardware="Server CPU (AVX512, 16 cores)")
    record_chapter(3, [
        make_entry(3, "torch_compile", metric="latency", ratio=Ratio(3.0, 2.7, 3.3, 5), **cpu),
        make_entry(3, "mixed_precision_bf16", metric="step", ratio=Ratio(1.5, 1.2, 1.8, 5), **cpu),  # a loss on AVX2
        make_entry(3, "channels_last", metric="latency", unit="ms", baseline=3.0, optimized=1.0, higher_is_better=False,
                   hardware="NVIDIA H200", ratio=Ratio(3.0, 2.9, 3.1, 5)),
    ], [compile_claim(cpu["hardware"], Ratio(3.0, 2.7, 3.3, 5))], path=folder / "server.json")
    record_chapter(8, [make_entry(8, "capstone_latency", metric="digits CNN latency, batch 64, plan 'int8' against "
                                  "eager fp32", ratio=Ratio(3.0, 1.1, 4.5, 5), **cpu,
                                  extras={"budget_points": 1.0, "int8_route": "int8 ONNX Runtime",
                                          "carried": "distilled"})], path=folder / "server.json")
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


def test_the_paired_change_keeps_its_uncertainty_when_nothing_changes():
    change, low, high = paired_change_points(right(441, 449), right(441, 449))
    assert change == 0.0 and low == pytest.approx(-high) and 0.8 < high < 1.0  # about a Wilson interval's short side
    fewer = paired_change_points(right(196, 200), right(196, 200))
    assert fewer[2] > high  # fewer images, less certainty
    base, candidate = right(440), right(426)  # 14 images lost, none gained: a clear loss
    change, low, high = paired_change_points(base, candidate)
    assert change == pytest.approx(-100 * 14 / 450) and low < change < high < 0
    with pytest.raises(ValueError, match="bool tensors"):
        paired_change_points(right(10), torch.ones(450))


def test_a_stage_computing_its_parents_function_inherits_its_accuracy():
    table = waterfall_table(STAGES)
    assert table.loc["layout", "change_low_points"] < -0.9  # on its own it could not be shown within 0.5 points
    assert within_budget(table, 0.0)["layout"] and table.loc["layout", "changed_from_parent"] == 0
    moved = waterfall_table([STAGES[0], replace(STAGES[1], correct=right(445))])  # one prediction changed
    assert not within_budget(moved, 0.5)["layout"]
    plain = waterfall_table([STAGES[0], replace(STAGES[1], same_function=False)])
    assert not within_budget(plain, 0.5)["layout"]

def test_a_flat_step_says_why():
    table = waterfall_table(STAGES)
    assert flat_step_reason(table.loc["distilled"]) == "same work"
    assert flat_step_reason(table.loc["layout"]).startswith("no measurable gain here: 1.05x (range of 5 rounds: 0.95")


@pytest.mark.parametrize("stages, message", [
    (STAGES[:1], "at least one stage"),
    ([STAGES[0], STAGES[0]], "unique"),
    ([STAGES[0], "pruned"], "stages\\[1\\]"),
    ([STAGES[0], replace(STAGES[1], correct=right(10, 100))], "one flag per image"),
    ([STAGES[0], replace(STAGES[1], correct=torch.ones(450))], "bool"),
    ([STAGES[0], replace(STAGES[1], builds_on="int8")], "earlier stage"),
])
def test_bad_stages_are_refused(stages, message):
    with pytest.raises((ValueError, TypeError), match=message):
        waterfall_table(stages)


def test_a_stage_is_in_the_budget_only_when_its_interval_shows_it():
    table = waterfall_table(STAGES)
    assert list(within_budget(table, 1.5)) == [True, True, False, False, False]  # distilled's interval reaches -1.66
    assert list(within_budget(table, 1.7)) == [True, True, False, True, False]  # int8's reaches -1.99
    assert list(within_budget(table, 2.0)) == [True, True, False, True, True]
    assert within_budget(table, 5.5)["pruned"]  # -3.11 points, interval down to -5.19
    chained = waterfall_table([*STAGES[:3], Stage("int8", "int8", timing(0.5), 25_000, right(446))])
    assert not within_budget(chained, 2.0)["int8"]  # it loses nothing itself, but builds on the pruned stage

def test_a_step_pays_when_faster_or_smaller_and_not_slower():
    table = waterfall_table(STAGES)
    assert list(step_pays(table)) == [True, False, True, True, True]
    assert table.loc["fp32", "size_step"] == 1.0 and table.loc["int8", "size_step"] == pytest.approx(4.0)
    smaller_only = waterfall_table([STAGES[0], Stage("int8", "int8", timing(4.0, 0.2), 100_000, right(446))])
    assert smaller_only.loc["int8", "step_gain"] == "no gain" and step_pays(smaller_only)["int8"]
    slower = waterfall_table([STAGES[0], Stage("int8", "int8", timing(8.0), 100_000, right(446))])
    assert not step_pays(slower)["int8"]


def test_the_plan_is_the_fastest_stage_shown_within_the_budget_whose_step_pays():
    table = waterfall_table(STAGES)
    assert deployment_plan(table, 0.0) == "fp32"  # layout is within, but its step buys nothing
    assert deployment_plan(table, 1.7) == "distilled"
    assert deployment_plan(table, 2.0) == "int8"

def test_the_budget_decision_says_when_it_is_within_the_noise():
    clear = budget_is_clear(waterfall_table(STAGES), 1.0)
    assert list(clear) == [True, True, True, False, False]  # layout: -0.94 to +0.94 clears a 1-point line
    assert budget_is_clear(waterfall_table(STAGES), 0.5)["layout"]  # its parent's function, no prediction changed
    unclear = waterfall_table([STAGES[0], Stage("small", "prune", timing(1.0), 100_000, right(444)),
                               Stage("small, compiled", "compile", timing(0.5), 100_000, right(444), same_function=True)])
    assert list(budget_is_clear(unclear, 1.0)) == [True, False, False]  # the compiled copy takes its parent's answer


def test_ratio_table_reads_each_pair_from_the_same_rounds():
    timings = {"a": timing(4.0), "b": timing(2.0), "c": timing(4.0, 0.3)}
    table = ratio_table(timings, {"b over a": ("a", "b"), "c over a": ("a", "c")})
    assert table.loc["b over a", "speedup"] == pytest.approx(2.0) and table.loc["b over a", "reading"] == "gain"
    assert table.loc["c over a", "reading"] == "no gain" and table.loc["c over a", "low"] < 1 < table.loc["c over a", "high"]
    with pytest.raises(ValueError, match="was not timed"):
        ratio_table(timings, {"x": ("a", "z")})


def test_run_waterfall_times_every_stage_in_the_same_rounds_and_scores_them():
    torch.manual_seed(0)
    images, labels = torch.randn(20, 4), torch.randint(0, 3, (20,))
    wide, narrow = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    specs = [StageSpec("wide", "baseline", wide, 400), StageSpec("narrow", "smaller", narrow, 100),
             StageSpec("narrow again", "same work", narrow, 100, builds_on="wide", timed_as="narrow")]
    table, timings = run_waterfall(specs, images[:5], images, labels, also_time={"extra": lambda: wide(images[:5])},
                                   rounds=3, min_run_time=0.01)
    assert list(table.index) == ["wide", "narrow", "narrow again"] and set(timings) == {"wide", "narrow", "extra"}
    assert all(len(t.round_medians_s) == 3 for t in timings.values())
    with torch.no_grad():
        expected = (narrow(images).argmax(1) == labels).float().mean().item()
    assert table.loc["narrow", "accuracy_%"] == pytest.approx(100 * expected)
    assert table.loc["narrow again", "latency_ms"] == table.loc["narrow", "latency_ms"]
    with pytest.raises(ValueError, match="timed_as"):
        run_waterfall([specs[0], replace(specs[1], timed_as="nowhere")], images[:5], images, labels)
    with pytest.raises(ValueError, match="reuse stage names"):
        run_waterfall(specs[:1], images[:5], images, labels, also_time={"wide": lambda: None})
    with pytest.raises(TypeError, match="specs\\[0\\]"):
        run_waterfall(["wide"], images[:5], images, labels)


def test_operator_time_is_sorted_into_kinds():
    assert operator_kind("onednn::qconv_pointwise") == operator_kind("mkl::_mkl_linear") == KINDS[0][0]
    assert operator_kind("quantized::max_pool2d") == "pooling"
    assert operator_kind("## Call CompiledFxGraph abc ##") == KINDS[2][0]
    assert operator_kind("TorchDynamo Cache Lookup") == FRAMEWORK
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.MaxPool2d(2)).eval()
    table = time_by_operator_kind({"eager": lambda: model(torch.randn(2, 1, 8, 8))}, repeats=2, warmup=1)
    assert table.loc["convolutions and linear layers", "eager"] > 0 and table.loc["pooling", "eager"] > 0
    assert table.loc["total", "eager"] == pytest.approx(table["eager"].iloc[:-1].sum())
    with pytest.raises(ValueError, match="repeats"):
        time_by_operator_kind({}, repeats=0)
    with pytest.raises(ValueError, match="rounds"):
        time_by_operator_kind({}, rounds=0)


def test_the_measured_verdict_is_read_from_the_learners_own_timings(capsys):
    fast = {"eager": timing(4.0), "compiled": timing(2.0)}
    assert check_measured_verdict("E1", "holds", fast, baseline="eager", candidate="compiled", threshold=1.2)
    assert not check_measured_verdict("E1", "inconclusive", fast, baseline="eager", candidate="compiled", threshold=1.2)
    even = {"eager": timing(4.0, 0.3), "compiled": timing(4.0)}
    assert check_measured_verdict("E1", "inconclusive", even, baseline="eager", candidate="compiled", threshold=1.0)
    assert not check_measured_verdict("E1", "holds", {"eager": timing(4.0)}, baseline="eager", candidate="compiled",
                                      threshold=1.2)
    three = Timing(median_s=1e-3, block_iqr_s=0.0, blocks=3, calls=9, round_medians_s=(1e-3,) * 3)
    assert not check_measured_verdict("E1", "holds", {"eager": three, "compiled": three}, baseline="eager",
                                      candidate="compiled", threshold=1.2)
    assert not check_measured_verdict("E1", ..., ..., baseline="eager", candidate="compiled", threshold=1.2)
    both = fast | {"eager, 64": timing(16.0), "compiled, 64": timing(8.0)}
    pair = dict(also_timed=("eager, 64", "compiled, 64"),
                smaller_calls=(("eager", "eager, 64"), ("compiled", "compiled, 64")))
    assert check_measured_verdict("E1", "holds", both, baseline="eager", candidate="compiled", threshold=1.2, **pair)
    assert not check_measured_verdict("E1", "holds", fast, baseline="eager", candidate="compiled", threshold=1.2,
                                      **pair)  # the batch-64 pair was not timed in the same rounds
    swapped = both | {"eager": timing(16.0), "eager, 64": timing(4.0)}
    assert not check_measured_verdict("E1", "holds", swapped, baseline="eager", candidate="compiled", threshold=1.2,
                                      **pair)  # "eager" is the slower call: not measured on the smaller batch
    at_64 = both | {"compiled": timing(8.0)}  # "compiled" timed at batch 64 by mistake
    assert not check_measured_verdict("E1", "does not hold here", at_64, baseline="eager", candidate="compiled",
                                      threshold=1.2, **pair)
    printed = capsys.readouterr().out
    assert "was it measured on the smaller batch?" in printed and "needs a Timing named 'eager, 64'" in printed
    assert "needs a Timing named 'compiled'" in printed and "at least 5" in printed and "not answered yet" in printed
    wrong = next(line for line in printed.splitlines() if line.startswith("❌ E1: not 'inconclusive'"))
    assert "2.00x" in wrong  # the hint shows the learner's own ratio, which they must read


def test_the_rule_disagreement_check_compares_both_rules_on_every_budget(capsys):
    table = waterfall_table(STAGES)
    budgets = [0.0, 0.5, 1.0, 1.7, 2.0, 4.0]
    # point estimates: distilled (-0.44) is in from 0.44, int8 (-0.67) from 0.67; intervals need 1.66 and 1.99
    expected = [b for b in budgets if point_estimate_plan(table, b) != deployment_plan(table, b)]
    assert expected == [0.5, 1.0, 1.7]
    assert check_rule_disagreement("E2", [1.7, 0.5, 1.0], table, budgets)
    assert not check_rule_disagreement("E2", [1.0], table, budgets)
    assert not check_rule_disagreement("E2", "1.0", table, budgets)
    assert not check_rule_disagreement("E2", ..., table, budgets)
    printed = capsys.readouterr().out
    assert "correct: 3 of 6 budgets" in printed and "answer a list of budgets" in printed

def test_the_waterfall_chart_marks_the_budget_and_refuses_other_tables():
    table = waterfall_table(STAGES)
    fig = plot_waterfall(table, 1.0, hardware="Test CPU", training={"files": (1000.0, "baseline", 1.0),
                                                                     "cache": (5000.0, "gain", 4.9)})
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert "at most 1 point of accuracy lost" in fig._suptitle.get_text()
    labels = [text.get_text() for text in fig.axes[0].texts]
    assert " flat | 99.1%" in labels and " 8.00x | 98.4%" in labels
    hatched = [patch for patch in fig.axes[0].patches if patch.get_hatch() == "//"]
    assert len(hatched) == 3  # pruned (3 points lost), distilled and int8 (intervals reach below -1 point)
    assert len([p for p in plot_waterfall(table, 2.0, hardware="Test CPU").axes[0].patches if p.get_hatch()]) == 1
    slower = waterfall_table([STAGES[0], Stage("runtime", "another runtime", timing(8.0), 500_000, right(446))])
    drawn = plot_waterfall(slower, 1.0, hardware="Test CPU")
    assert [text.get_text() for text in drawn.axes[0].texts][1] == " 0.50x | 99.1%"  # at its own level, not flat
    assert [bar.get_facecolor()[:3] for bar in drawn.axes[0].patches] == [to_rgb(LOSS_COLOR)]  # drawn as a loss
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
    table = guide_table(entries, HARDWARE).to_string()
    numbers = set(re.findall(r"\d+\.\d+", text))  # every measured number has decimals; counts and chapters not
    assert numbers <= allowed, numbers - allowed
    assert set(re.findall(r"\d+\.\d+", table)) <= allowed
    assert "9.00x" not in text and "1 from other hardware left out; 0 inconclusive" in text
    assert ORDER_NOTE in text and len(text.splitlines()) == 6  # header, blank, 3 goals, 1 combination
    # one line and no accuracy risk beats int8's larger ratio (a few lines, needs a check)
    assert ("*Try first*: torch.compile (one line; accuracy risk: none): 2.00x (range of 5 rounds, about 94% "
            "coverage: 1.80 to 2.20x) against latency (chapter 3; gained, no claim). Readings: 2 gained, no claim.") in text
    assert "**Throughput**. *Try first*: nothing gained here yet. Readings: 1 did not pay." in text
    assert "*Combination* (size, chapter 8): the capstone's plan, all stages together: 12.00x (exact)" in text
    assert "**Other results**" in text and "Readings: 1 accounted" in text


def test_the_guide_reads_each_entry_as_guide_section_5_says():
    timed = dict(kind="time ratio, median of round ratios (95% interval, 8 rounds)", gain="gain", verdict="",
                 speedup_interval=[1.1, 1.3])
    assert reading(timed) == "gained, no claim"  # only a claim that holds makes it "paid" (GUIDE section 5)
    assert reading(timed | {"verdict": "holds"}) == "paid"
    assert reading(timed | {"verdict": "inconclusive"}) == "gained, claim open"  # above 1, threshold inside
    assert reading(timed | {"gain": "inconclusive"}) == "inconclusive"  # not "did not pay"
    null = timed | {"gain": "inconclusive", "verdict": "does not hold here", "speedup_interval": [0.98, 1.01]}
    assert reading(null) == "no measurable effect"  # a narrow interval around 1: more rounds would not help
    assert reading(null | {"speedup_interval": [0.9, 1.3]}) == "inconclusive"
    assert reading(timed | {"gain": "loss", "verdict": "does not hold here"}) == "did not pay"
    assert reading(timed | {"verdict": "does not hold here"}) == "gained, short of its claim"  # 1.3x against 1.5x
    exact = dict(kind="exact ratio (sizes or counts)", gain="gain", verdict="")
    assert reading(exact) == "accounted"  # a size, bytes or a count: true by construction, never "paid"
    older = dict(speedup=1.1, speedup_interval=[0.9, 1.3], gain="no gain", verdict=None, kind=None)
    assert reading(older) == "inconclusive"  # an earlier edition's entry, its interval including 1
    first_edition = dict(speedup=2.0, speedup_interval=None, gain="gain", verdict="",
                         kind="time ratio, no interval (an earlier format)")
    assert reading(first_edition) == "inconclusive"  # a speed-up stored without its interval cannot be read
    assert established_reason(first_edition | {"chapter": 3, "technique": "torch_compile", "hardware": "x"},
                              HARDWARE).startswith("no interval recorded")


def timed_entry(chapter: int, technique: str, ratio: Ratio, *, against: str = "eager fp32", verdict: str = "",
                hardware: str = HARDWARE.cpu_label, combination: bool = False) -> dict:
    """A time-ratio entry as a chapter writes it, with a claim's verdict set where one was judged."""
    entry = make_entry(chapter, technique, metric="latency", unit="ms", baseline=2.0, optimized=1.0,
                       higher_is_better=False, hardware=hardware, ratio=ratio, compared_with=against,
                       combination=combination).__dict__
    return entry | {"verdict": verdict}


def test_the_guide_reads_the_hardware_and_handles_an_empty_ledger():
    lost = timed_entry(4, "dataloader_workers", Ratio(0.8, 0.7, 0.9, 5), against="no workers")
    assert "2 logical CPUs" in established_reason(lost, HARDWARE) and "chapter 4" in established_reason(lost, HARDWARE)
    int8 = timed_entry(6, "int8_static_pt2e", Ratio(0.9, 0.8, 0.95, 5), against="fp32, compiled with freezing")
    assert "AVX2" in established_reason(int8, HARDWARE) and "chapter 6" in established_reason(int8, HARDWARE)
    weight_only = timed_entry(6, "weight_only_int8", Ratio(0.9, 0.8, 0.95, 5), against="bf16")
    assert "saves bytes, not arithmetic" in established_reason(weight_only, HARDWARE)
    assert "no results from this machine" in decision_guide([], HARDWARE).data
    with pytest.raises(TypeError, match="hardware"):
        decision_guide(ledger_entries(), "a CPU")
    with pytest.raises(ValueError, match="missing"):
        guide_table([{"technique": "x"}], HARDWARE)


def test_the_guide_files_the_appendix_as_its_own_group_with_its_letter():
    kv = timed_entry(9, "lm_kv_cache", Ratio(3.0, 2.7, 3.8, 8), against="recomputing the prefix", verdict="holds")
    compiled = timed_entry(3, "torch_compile", Ratio(2.0, 1.8, 2.2, 8), verdict="holds")
    table = guide_table([kv, compiled], HARDWARE)
    row = table[table["goal"] == "generation"].iloc[0]
    assert row["chapter"] == "A" and table[table["goal"] == "latency"].iloc[0]["chapter"] == 3
    text = decision_guide([kv, compiled], HARDWARE).data
    assert "**Generation**. *Try first*: a KV cache for generation" in text and "(Appendix A; paid)" in text
    assert all(CATALOG[name].goal == "generation" for name in CATALOG if name.startswith("lm_"))


def test_in_the_appendix_s_group_the_kv_cache_comes_before_every_decode_step_built_on_it():
    gained = Ratio(1.5, 1.3, 1.8, 8)
    names = ("lm_kv_cache", "lm_sdpa_attention", "lm_bf16_decode", "lm_compile_decode", "lm_int8_weight_only_decode",
             "lm_int4_weight_only_decode", "lm_decode_batching")
    entries = [timed_entry(9, name, gained, against="its baseline", verdict="holds") for name in names]
    order = [CATALOG[name].words for name in names]
    rows = list(guide_table(entries, HARDWARE)["technique"])
    kv = rows.index(order[0])
    assert all(rows.index(words) > kv for words in order[2:])  # every decode step is measured with the cache
    assert rows.index(order[2]) < rows.index(order[3]) < rows.index(order[4])  # bf16, then compiled, then int8


def test_the_guide_gives_a_reason_only_where_a_chapter_measured_one():
    folding = timed_entry(2, "conv_bn_folding", Ratio(0.9, 0.8, 0.95, 5), verdict="does not hold here")
    paid = timed_entry(3, "torch_compile", Ratio(2.0, 1.8, 2.2, 5), verdict="holds")
    assert established_reason(folding, HARDWARE) == "" and established_reason(paid, HARDWARE) == ""
    table = guide_table([folding, paid], HARDWARE)
    assert "see that chapter" not in table.to_string() and set(table["reason"]) == {""}


def test_the_guide_ranks_only_like_with_like():
    entries = [
        timed_entry(3, "torch_compile", Ratio(1.5, 1.3, 1.7, 5)),
        timed_entry(6, "compile_freezing_teacher", Ratio(1.4, 1.35, 1.45, 5)),  # same baseline, surer gain
        timed_entry(3, "channels_last", Ratio(3.0, 2.9, 3.1, 5), against="NCHW, eager"),  # another baseline
        timed_entry(6, "int8_static_pt2e", Ratio(6.7, 6.0, 7.3, 5)),  # surest, but a few lines and a check
        make_entry(6, "bf16_inference", metric="bytes", unit="KB", baseline=2.0, optimized=1.0,
                   higher_is_better=False, hardware=HARDWARE.cpu_label, compared_with="eager fp32").__dict__,
    ]
    assert group_ranks(entries) == [2, 1, 0, 0, 0]  # ranked within (goal, baseline, kind) only: 2.9 ranks alone
    same_baseline = [entries[0], entries[1], entries[3]]
    assert try_first(same_baseline, "latency")["technique"] == "compile_freezing_teacher"  # a tie: the surer gain
    assert try_first(entries, "latency")["technique"] in ("channels_last", "compile_freezing_teacher")  # each first
    on_top = timed_entry(3, "torch_compile_freezing", Ratio(5.0, 4.9, 5.1, 5), against="torch.compile alone")
    assert try_first([*same_baseline, on_top], "latency") is entries[1]  # a step on top of compile comes after
    table = guide_table(entries, HARDWARE)
    assert sorted(table["reading"]) == ["accounted"] + ["gained, no claim"] * 4  # exact: not ranked with times
    assert list(table["effort"][:3]) == ["one line"] * 3 and table["effort"].iloc[3] == "a few lines"


def test_the_guide_lists_combinations_apart():
    entries = [timed_entry(3, "torch_compile", Ratio(1.5, 1.3, 1.7, 5)),
               timed_entry(6, "compression_combined", Ratio(9.0, 8.5, 9.5, 5), combination=True),
               timed_entry(8, "capstone_plan_latency", Ratio(5.0, 4.5, 5.5, 5), combination=True),
               timed_entry(8, "capstone_latency", Ratio(5.0, 4.5, 5.5, 5))]  # an older ledger's: no flag
    text = decision_guide(entries, HARDWARE).data
    assert try_first(entries, "latency")["technique"] == "torch_compile"
    assert group_ranks(entries)[0] == 0  # the same baseline, but no combination is ranked against it
    assert "Readings: 1 gained, no claim." in text and text.count("*Combination* (latency") == 3
    assert list(guide_table(entries, HARDWARE)["combination"]) == [False, True, True, True]


def test_the_guide_never_reads_inconclusive_as_did_not_pay():
    workers = timed_entry(4, "dataloader_workers", Ratio(1.16, 0.99, 1.30, 3), against="no workers")
    row = guide_table([workers], HARDWARE).iloc[0]
    assert row["reading"] == "inconclusive" and row["reason"] == "its interval includes 1: measure more rounds"
    text = decision_guide([workers], HARDWARE).data
    assert "1 inconclusive" in text and "did not pay" not in text


def test_the_guide_cites_the_capstone_workers_for_dataloader_workers():
    workers = timed_entry(4, "dataloader_workers", Ratio(1.16, 0.99, 1.30, 3), against="no workers")
    capstone = timed_entry(8, "capstone_workers", Ratio(1.31, 1.21, 1.44, 5), against="no workers", verdict="holds")
    table = guide_table([workers, capstone], HARDWARE).set_index("chapter")
    assert table.loc[4, "reason"] == ("chapter 8 measured 1.31x (range of 5 rounds, about 94% coverage: 1.21 to "
                                      "1.44x) with another thread split and model (paid)")
    unpaid = capstone | {"gain": "inconclusive"}
    assert "chapter 8" not in established_reason(workers, HARDWARE, [workers, unpaid])


def test_the_guide_explains_no_gpu_result_by_the_cpu_flag():
    hardware = replace(HARDWARE, device="cuda", gpu_name="NVIDIA H200", gpu_bf16=True)
    on_gpu = timed_entry(3, "mixed_precision_bf16", Ratio(0.8, 0.7, 0.9, 5), hardware="NVIDIA H200")
    on_cpu = timed_entry(3, "mixed_precision_bf16", Ratio(0.8, 0.7, 0.9, 5))
    assert established_reason(on_gpu, hardware) == ""
    assert "no native bf16" in established_reason(on_cpu, hardware)
    assert "**Decision guide for Test CPU (AVX2, 2 logical CPUs) and NVIDIA H200**" in decision_guide(
        [on_gpu], hardware).data


def test_the_guide_prints_a_range_of_rounds_with_its_coverage():
    assert (coverage_percent(5), coverage_percent(3), coverage_percent(7)) == (94, 75, 98)
    assert ratio_text(timed_entry(4, "x", Ratio(1.16, 0.99, 1.30, 3))) == (
        "1.16x (range of 3 rounds, about 75% coverage: 0.99 to 1.30x)")
    assert ratio_text(timed_entry(4, "x", Ratio(1.5, 1.2, 1.8, 12))) == "1.50x (95% interval, 12 rounds: 1.20 to 1.80x)"
    assert ratio_text(ledger_entries()[2]) == "4.00x (exact)"


def test_the_guide_prints_accuracy_in_points():
    entry = make_entry(6, "knowledge_distillation", metric="student accuracy", unit="%", baseline=80.0,
                       optimized=80.4, higher_is_better=True, hardware=HARDWARE.cpu_label,
                       difference=PairedDifference(0.4, -0.1, 0.9, 5, 0.5), compared_with="pseudo-labels").__dict__
    assert ratio_text(entry) == "+0.40 points (95% interval over 5 seeds: -0.10 to +0.90)"
    row = guide_table([entry], HARDWARE).iloc[0]
    assert row["goal"] == "accuracy" and row["reading"] == "inconclusive" and "x" not in row["result"]
    assert row["reason"] == "its interval includes 0 points: compare more seeds"  # not "more rounds"


def test_the_guide_table_has_its_columns_and_the_catalogue_its_costs():
    table = guide_table(ledger_entries(), HARDWARE)
    assert list(table.columns) == list(COLUMNS) and len(table) == 5  # the other machine's row is left out
    assert list(table.columns[:9]) == ["goal", "technique", "result", "against", "reading", "effort",
                                       "accuracy risk", "chapter", "combination"]
    assert all(t.effort in EFFORTS and t.risk in RISKS for t in CATALOG.values())
    assert {"capstone_workers", "capstone_cache", "capstone_plan_latency", "capstone_plan_size", "capstone_latency",
            "capstone_size", "capstone_pipeline"} <= set(CATALOG)
    assert CATALOG["capstone_plan_size"].combination and CATALOG["capstone_plan_size"].goal == "size"
    assert list(guide_table([], HARDWARE).columns) == list(COLUMNS)


def test_the_ledger_chart_and_the_missing_chapters():
    entries = ledger_entries()
    fig = plot_ledger(ledger_table(entries), hardware="Test CPU")
    assert isinstance(fig, Figure) and len(fig.axes[0].patches) == 4  # the time ratios; 2 exact ratios left out
    assert fig.axes[0].get_title(loc="left") == "left out of the chart: 2 exact ratios"
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert legend == ["gained, no claim", "did not pay"]  # coloured by reading
    assert chapters_missing(entries, [1, 3, 9]) == [1]
    with pytest.raises(ValueError, match="ledger_table"):
        plot_ledger(ledger_table([]), hardware="Test CPU")


def test_the_ledger_chart_leaves_out_accuracy_and_draws_no_timed_result_as_a_note():
    accuracy = make_entry(6, "pseudo_labelling", metric="accuracy", unit="%", baseline=80.0, optimized=81.0,
                          higher_is_better=True, hardware="Test CPU",
                          difference=PairedDifference(1.0, 0.5, 1.5, 5, 0.06)).__dict__
    fig = plot_ledger(ledger_table([accuracy, ledger_entries()[2]]), hardware="Test CPU")
    assert fig.axes[0].get_title(loc="left") == "left out of the chart: 1 exact ratio, 1 accuracy difference"
    assert [text.get_text() for text in fig.axes[0].texts] == ["no time ratios measured in rounds yet"]


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
    assert "malformed: skipped" in done.stdout and "partial: 1 entries, 0 claims used" in done.stdout
    page = chromium.new_page(viewport={"width": 1100, "height": 900})
    page.goto(out.as_uri())
    headings = page.locator("section h2").all_inner_texts()
    assert headings == ["Participants", "Progress: chapters with entries", "Claims scoreboard",
                        "Where the class disagreed", "Speed-up per technique and machine", "Median per hardware group",
                        "Capstone plans (chapter 8)", "Versions"]
    assert page.locator("li.skipped b").all_inner_texts() == ["malformed"]
    assert "not readable as JSON" in page.locator("li.skipped").inner_text()
    assert page.locator("li.problem").count() == 3
    assert page.locator("li.claim").all_inner_texts() == [
        "ch3 compile_2x (torch.compile is at least 2x faster): held on 1 of 2 machines; did not hold on 1 "
        "(CPU AVX2, 2 logical CPUs: 1); median 2.25x across participants, 1.50 to 3.00x"]
    assert page.locator("li.host-cpu").inner_text().endswith("ch3 torch_compile, ch3 mixed_precision_bf16, "
                                                             "ch8 capstone_latency")
    assert page.locator("table.disagreements td").first.inner_text() == "ch3 mixed_precision_bf16"
    assert "format 1, versions not recorded" in page.locator("section#versions").inner_text()
    assert page.locator("table.capstone td").all_inner_texts()[1] == "int8"
    image = page.locator("img[alt='class speed-ups']")
    assert image.evaluate("img => img.naturalWidth") > 300
    headers = page.locator("table th").all_inner_texts()
    assert {"CPU AVX2, 2 logical CPUs", "CPU AVX512, 16 logical CPUs", "GPU NVIDIA H200"} <= set(headers)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "class-report.png"), full_page=True)
    page.close()


def test_an_empty_class_still_gives_a_page():
    assert "No usable entries" in class_report_html([])


def test_ledgers_written_before_entries_had_a_gain_are_all_read(tmp_path):
    """Two ledgers in the first edition's format (commit 2565b37: no interval, no gain, no claims, 'cores' labels)."""
    for name, label, factor in (("alice", "Old CPU (AVX2, 4 cores)", 1.0), ("bob", "Big CPU (AVX512, 8 cores)", 2.0)):
        entries = [earlier_format(entry, gain=False) | {"hardware": label, "speedup": entry["speedup"] * factor}
                   for entry in ledger_entries()]
        (tmp_path / f"{name}.json").write_text(json.dumps({"entries": entries}))
    alice, bob = read_class(tmp_path)
    assert (len(alice.entries), len(bob.entries), alice.problems, bob.problems) == (6, 6, [], [])
    # timings without an interval cannot be read as gains or losses; sizes (B, KB) are exact, read from the ratio
    assert [e["gain"] for e in alice.entries] == ["inconclusive", "inconclusive", "gain", "inconclusive",
                                                  "inconclusive", "gain"]
    assert alice.entries[0]["kind"] == "time ratio, no interval (an earlier format)" and alice.format == 1
    assert class_report_main([str(tmp_path), "--out", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text()  # their speed-ups are plotted; only the 2 x 2 sizes are left out
    assert "Only speed-ups (time ratios): 4 results that are not" in page and "torch_compile" in page
    measured = [entry | {"hardware": "New CPU (AVX512, 2 logical CPUs)", "speedup": 0.5, "gain": "loss",
                         "speedup_interval": [0.4, 0.6]} for entry in ledger_entries()[:1]]
    (tmp_path / "carol.json").write_text(json.dumps({"entries": measured}))
    table = class_table(read_class(tmp_path))
    assert disagreements(table, claims_table([])).empty  # a bare 2.0x is no gain to set against carol's loss


def test_the_scoreboard_counts_each_claim_s_verdicts_by_hardware_group(tmp_path):
    write_class(tmp_path)
    participants = read_class(tmp_path)
    third = Participant("third", participants[3].entries, claims=[
        compile_claim("Test CPU (AVX2, 2 logical CPUs)", Ratio(2.1, 1.9, 2.3, 5)).as_dict()])
    row = scoreboard(claims_table([*participants, third])).set_index("claim").loc["compile_2x"]
    assert (row["machines"], row["holds"], row["does not hold here"], row["inconclusive"]) == (3, 1, 1, 1)
    assert row["reading"] == ("held on 1 of 3 machines; did not hold on 1 (CPU AVX2, 2 logical CPUs: 1); "
                              "inconclusive on 1 (CPU AVX2, 2 logical CPUs: 1)")
    assert (row["median"], row["lowest"], row["highest"]) == (2.1, 1.5, 3.0)


def test_the_disagreements_list_what_read_both_ways_widest_spread_first(tmp_path):
    write_class(tmp_path)
    participants = read_class(tmp_path)
    found = disagreements(class_table(participants), claims_table(participants))
    assert list(found["result"]) == ["ch3 mixed_precision_bf16", "ch3 claim compile_2x"]  # 1.5/0.25, then 3.0/1.5
    assert found.loc[0, "gain or holds on"] == "CPU AVX512, 16 logical CPUs (1)"
    assert found.loc[0, "loss or does not hold on"] == "CPU AVX2, 2 logical CPUs (1)"
    assert found.loc[0, "spread (highest / lowest)"] == pytest.approx(6.0)
    assert found.loc[0, "where"] == "between hardware groups"
    twin = class_table([Participant("a", [timed_entry(3, "x", Ratio(2.0, 1.5, 2.5, 5))]),
                        Participant("b", [timed_entry(3, "x", Ratio(0.5, 0.4, 0.6, 5))])])
    assert disagreements(twin, claims_table([])).loc[0, "where"] == "within one hardware group"  # noise or set-up
    assert disagreements(class_table([]), claims_table([])).empty


def test_the_progress_grid_marks_each_participant_s_chapters(tmp_path):
    write_class(tmp_path)
    grid = progress_grid(read_class(tmp_path))
    assert list(grid.columns) == list(range(1, 10)) and list(grid.index) == ["laptop", "malformed", "partial", "server"]
    assert (grid.loc["server", 3], grid.loc["server", 8], grid.loc["server", 1]) == (MARK, MARK, "")
    assert (grid.loc["malformed"] == "").all()
    unknown = {**ledger_entries()[2], "chapter": 10}  # a part the course does not list yet still gets its column
    assert list(progress_grid([Participant("x", [unknown])]).columns) == list(range(1, 11))
    with pytest.raises(TypeError, match=r"participants\[0\] must be a Participant"):
        progress_grid(["alice.json"])


def test_the_tables_read_plans_noise_and_versions(tmp_path):
    write_class(tmp_path)
    participants = read_class(tmp_path)
    table = class_table(participants)
    assert "capstone_latency, plan 'int8'" in set(table["label"])  # a plan is named with its result
    assert list(table.loc[table["noisy"], "technique"]) == ["capstone_latency"]  # 1.10 to 4.50x around 3.00x
    summary = group_summary(table)
    assert summary.loc[(3, "torch_compile"), "CPU AVX2, 2 logical CPUs"] == "2.00x (n=2; 2.00 to 2.00x)"
    assert capstone_table(participants).iloc[0].to_dict() == {
        "participant": "server", "plan": "int8", "budget (points)": 1.0, "carried on": "distilled", "pruned": "",
        "test change (points)": "", "int8 route": "int8 ONNX Runtime", "speed-up": "3.00x (1.10 to 4.50x)",
        "group": "CPU AVX512, 16 logical CPUs"}
    today = make_entry(8, "capstone_plan_latency", metric="digits CNN latency, batch 64, plan 'pruned 50%, int8'",
                       unit="ms", baseline=3.0, optimized=1.0, higher_is_better=False, hardware="NVIDIA H200",
                       ratio=Ratio(3.0, 2.9, 3.1, 8), combination=True,
                       extras={"plan": "pruned 50%, int8", "budget_points": 0.5, "carried": "fine-tuned",
                               "prune_fraction": 0.5, "test_change_points": -0.22}).__dict__
    row = capstone_table([Participant("today", [today])]).iloc[0]
    assert (row["plan"], row["pruned"], row["test change (points)"], row["int8 route"]) == (
        "pruned 50%, int8", 0.5, -0.22, "")
    versions = versions_table(participants).set_index("participant")
    assert versions.loc["laptop", "torch"] == "format 1, versions not recorded"
    assert versions.loc["server", "torch"] == torch.__version__ and versions.loc["server", "chapters"] == "3, 8"
    assert version_warnings(participants) == []
    other = Participant("other", [], runs={"3": {"torch": "2.9.0", "course": "0.1.0"}}, format=2)
    warning = version_warnings([participants[3], other])[0]
    assert warning.startswith("Participants ran different torch versions: ") and "; 2.9.0 (other)" in warning


def test_the_csv_and_the_anonymised_page_name_participants_p1_p2(tmp_path, capsys):
    folder = tmp_path / "class"
    folder.mkdir()
    write_class(folder)
    out, csv = tmp_path / "report.html", tmp_path / "report.csv"
    assert class_report_main([str(folder), "--out", str(out), "--csv", str(csv), "--anonymise"]) == 0
    lines = csv.read_text().splitlines()
    assert lines[0] == "participant,kind,measure,chapter,name,speedup,low,high,reading,noisy,group,hardware,statement"
    assert {line.split(",")[0] for line in lines[1:]} == {"P1", "P3", "P4"}  # laptop, partial, server
    assert sorted(line.split(",")[8] for line in lines[1:] if ",claim," in line) == ["does not hold here", "holds"]
    page = out.read_text()
    assert "<b>P2</b>" in page and not any(name in page for name in ("laptop", "malformed", "partial", "server"))
    assert "laptop (shown as P1): 2 entries, 1 claims used" in capsys.readouterr().out
    assert [p.name for p in anonymised(read_class(folder))] == ["P1", "P2", "P3", "P4"]
    assert class_report_main([str(tmp_path / "missing")]) == 2


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


def test_the_class_report_keeps_sizes_and_accuracy_out_of_the_speed_ups():
    size = make_entry(8, "capstone_plan_size", metric="bytes", unit="KB", baseline=12.0, optimized=1.0,
                      higher_is_better=False, hardware=HARDWARE.cpu_label).__dict__
    page = class_report_html([Participant("a", [timed_entry(3, "torch_compile", Ratio(2.0, 1.8, 2.2, 5)), size])])
    assert "Only speed-ups (time ratios): 1 result that is not (exact ratios" in page
    groups = page[page.index("id='groups'"):page.index("id='capstone'")]
    assert "torch_compile" in groups and "capstone_plan_size" not in groups


def test_try_first_is_the_first_gained_row_of_the_guide_and_no_chapter_borrows_a_capstone_cost():
    entries = [timed_entry(3, "torch_compile", Ratio(1.5, 1.3, 1.7, 8)),
               timed_entry(6, "compile_freezing_teacher", Ratio(1.4, 1.35, 1.45, 8)),
               timed_entry(3, "channels_last", Ratio(1.2, 1.1, 1.3, 8), against="ResNet-18 fp32")]
    table = guide_table(entries, HARDWARE)
    first = table[table["reading"].str.startswith(("paid", "gained"))].iloc[0]
    assert CATALOG[try_first(entries, "latency")["technique"]].words == first["technique"]
    for name, technique in CATALOG.items():
        chain, below = [], technique.builds_on
        while below:
            chain.append(below)
            below = CATALOG[below].builds_on
        assert name.startswith("capstone") or not any(step.startswith("capstone") for step in chain), name
