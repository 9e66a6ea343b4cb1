"""Tests of helpers/ch07_tools/: profiler tables, the trace picture, ONNX Runtime, ResNet-18, the TensorRT checks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function, schedule

from helpers.ch07_tools.exercises import EXERCISE_SCHEDULE, check_fp16_tolerance, check_recorded_steps, recorded_steps
from helpers.ch07_tools.onnx_runtime import (
    CalibrationBatches, model_files, operator_counts, ort_predict, ort_session, reduce_range_advised,
)
from helpers.ch07_tools.profiling import calls_per_step, hot_operators, largest_allocations, region_table, step_ms
from helpers.support.logs import quiet_profiler_logs
from helpers.ch07_tools.resnet import ResNet18
from helpers.ch07_tools.tensorrt_engine import tensorrt_missing
from helpers.ch07_tools.tensorrt_names import (
    REMOVED, bindings_library, check_names, read_names, removed_names_table, tensorrt_names_used,
)
from helpers.ch07_tools.trace_plot import (
    complete_events, device_busy_share, plot_step_timeline, short_name, step_events,
)
from tests.conftest import ROOT

STEPS = 3


@pytest.fixture(scope="module")
def small_profile(tmp_path_factory):
    """Three recorded steps of a loop with two labelled regions; one region calls aten::std 4 times per step."""
    model = nn.Linear(16, 4)

    def step():
        with record_function("prepare"):
            rows = [torch.randn(16).std() for _ in range(4)]
        with record_function("model"):
            model(torch.randn(8, 16)).sum().backward()
        return rows

    with quiet_profiler_logs(), profile(activities=[ProfilerActivity.CPU], record_shapes=True, profile_memory=True,
                                        schedule=schedule(wait=1, warmup=1, active=STEPS)) as prof:
        for _ in range(2 + STEPS):
            step()
            prof.step()
    trace = tmp_path_factory.mktemp("trace") / "trace.json"
    prof.export_chrome_trace(str(trace))
    return prof, trace


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small CNN exported with a dynamic batch, weights in a side file (the exporter's default)."""
    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)).eval()
    path = folder / "cnn.onnx"
    torch.onnx.export(model, (torch.rand(4, 1, 8, 8),), path, dynamo=True, verbose=False,
                      dynamic_shapes={"input": {0: torch.export.Dim("batch", min=1, max=64)}})
    return model, path



@pytest.fixture(scope="module")
def tensorrt_names():
    library = bindings_library()
    assert library is not None, "tensorrt-cu13-bindings (requirements.txt) is not installed"
    return read_names(library)


def _names_in_code(path: Path) -> set[str]:
    """Attribute and variable names a Python file uses (strings and comments do not count)."""
    tree = ast.parse(path.read_text())
    return {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)} | {
        node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}


def test_profile_tables_read_per_step(small_profile):
    prof, _ = small_profile
    assert calls_per_step(prof, ["aten::std", "aten::addmm", "aten::nonexistent"], steps=STEPS).to_dict() == {
        "aten::std": 4, "aten::addmm": 1, "aten::nonexistent": 0}
    regions = region_table(prof, ["prepare", "model"], steps=STEPS)
    assert list(regions.columns) == ["ms per step", "share of step (%)"]
    assert (regions["ms per step"] > 0).all() and regions["share of step (%)"].sum() <= 100.5
    assert step_ms(prof, steps=STEPS) >= regions["ms per step"].sum() * 0.99
    hot = hot_operators(prof, steps=STEPS, top=3)
    assert len(hot) == 3 and hot["operator"].str.startswith("aten::").all()
    assert hot["self ms per step"].is_monotonic_decreasing
    assert (largest_allocations(prof, steps=STEPS)["MB allocated per step"] > 0).all()
    with pytest.raises(ValueError, match="regions not in the profile"):
        region_table(prof, ["missing"], steps=STEPS)
    with pytest.raises(ValueError):
        hot_operators(prof, steps=STEPS, top=0)


def test_trace_timeline_nests_regions_and_operators(small_profile):
    _, trace = small_profile
    events = complete_events(trace)
    window, nested = step_events(events, 4)
    assert window["name"] == "ProfilerStep#4"
    top = [event["name"] for depth, event in nested if depth == 0]
    assert top == ["prepare", "model"]
    assert any(depth >= 1 and event["name"] == "aten::std" for depth, event in nested)
    assert isinstance(plot_step_timeline(trace, step=4, hardware="test CPU"), Figure)
    with pytest.raises(ValueError, match="no ProfilerStep#9"):
        step_events(events, 9)
    with pytest.raises(ValueError, match="no trace"):
        complete_events(trace.with_name("missing.json"))
    assert short_name("autograd::engine::evaluate_function: ConvolutionBackward0") == "ConvolutionBackward0"


def test_device_busy_share_merges_overlapping_kernels():
    events = [{"name": "ProfilerStep#1", "ph": "X", "ts": 0.0, "dur": 100.0, "tid": 1},
              {"name": "k1", "cat": "kernel", "ph": "X", "ts": 10.0, "dur": 20.0, "tid": 7},
              {"name": "k2", "cat": "kernel", "ph": "X", "ts": 20.0, "dur": 20.0, "tid": 8},  # overlaps k1
              {"name": "k3", "cat": "kernel", "ph": "X", "ts": 90.0, "dur": 30.0, "tid": 7}]  # runs past the step
    assert device_busy_share(events, 1) == pytest.approx((40 - 10 + 100 - 90) / 100)


def test_onnx_runtime_session_matches_pytorch(exported):
    model, path = exported
    assert set(model_files(path)) == {"cnn.onnx", "cnn.onnx.data"}
    assert operator_counts(path)["Conv"] == 1
    images = torch.rand(5, 1, 8, 8)  # a batch size the example did not have: the batch is dynamic
    with torch.no_grad():
        expected = model(images)
    for level in ("off", "basic", "extended", "all"):
        assert torch.allclose(ort_predict(ort_session(path, threads=1, level=level), images), expected, atol=1e-5)
    with pytest.raises(ValueError, match="level"):
        ort_session(path, threads=1, level="max")
    with pytest.raises(ValueError, match="threads"):
        ort_session(path, threads=0)
    with pytest.raises(ValueError, match="no ONNX model"):
        ort_session(path.with_name("missing.onnx"), threads=1)


def test_calibration_batches_then_none():
    reader = CalibrationBatches("x", [torch.zeros(2, 3), torch.ones(2, 3)])
    first, second = reader.get_next(), reader.get_next()
    assert first["x"].sum() == 0 and second["x"].sum() == 6 and reader.get_next() is None
    assert isinstance(reduce_range_advised(), bool)


def test_exercise_checks_measure_their_answers():
    assert recorded_steps(**EXERCISE_SCHEDULE) == EXERCISE_SCHEDULE["active"] * EXERCISE_SCHEDULE["repeat"]
    assert check_recorded_steps("t", 6).passed and not check_recorded_steps("t", 5).passed
    assert check_fp16_tolerance("t", 2 ** -11 * 48 * 50 * 10).passed
    assert not check_fp16_tolerance("t", 2 ** -24 * 48 * 50 * 10).passed  # float32's roundoff instead


def test_tensorrt_is_reported_missing_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU answers here")
    assert "GPU" in tensorrt_missing()


def test_every_tensorrt_name_the_course_uses_exists_in_tensorrt_11(tensorrt_names):
    table = check_names((ROOT / "helpers" / "ch07_tools" / "tensorrt_engine.py").read_text(), tensorrt_names)
    assert len(table) >= 20
    assert (table["found as"] != "MISSING").all(), table[table["found as"] == "MISSING"]
    assert ("IExecutionContext", "execute_async_v3") in tensorrt_names_used(
        (ROOT / "helpers" / "ch07_tools" / "tensorrt_engine.py").read_text())


def test_the_check_catches_the_old_api(tensorrt_names):
    old = "engine = builder.build_engine(network, config)\ncontext.execute_async_v2(bindings, stream)\n" \
          "config.set_flag(trt.BuilderFlag.FP16)\n"
    table = check_names(old, tensorrt_names).set_index("name")["found as"]
    assert table["build_engine"] == table["execute_async_v2"] == table["FP16"] == "MISSING"
    assert not removed_names_table(tensorrt_names)["in TensorRT's module"].any()


def test_no_removed_tensorrt_name_in_the_course_code():
    files = sorted((ROOT / "helpers").rglob("*.py")) + sorted((ROOT / "scripts").glob("*.py"))
    used = {path.name: _names_in_code(path) & (set(REMOVED) | {"INT8", "BF16"}) for path in files}
    assert not {name: names for name, names in used.items() if names}


def test_resnet18_is_torchvision_resnet18():
    torchvision = pytest.importorskip("torchvision")
    theirs = torchvision.models.resnet18(num_classes=10).eval()
    ours = ResNet18(num_classes=10).eval()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(images), theirs(images))
    with pytest.raises(ValueError):
        ResNet18(num_classes=0)
