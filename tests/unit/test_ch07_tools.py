"""Tests of helpers/ch07_tools/: profiler tables, the trace picture, ONNX Runtime and its int8 convolutions,
ResNet-18, the TensorRT checks, the exercise checks."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import onnx
import onnxruntime as ort
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function, schedule

from helpers.ch07_tools.exercises import (
    EXERCISE_SCHEDULE, check_float_convolutions, check_fp16_tolerance, check_recorded_steps, float_convolution_count,
    fp16_tolerance, recorded_steps,
)
from helpers.ch07_tools.gpu_memory import (
    NO_FRAME, STDLIB, alive_at_peak, allocation_timeline, blas_workspace_bytes, frame_label, is_our_code,
    peak_above_start, plot_allocation_timeline,
)
from helpers.ch07_tools.onnx_quantization import convolution_table, extended_int8_graph
from helpers.ch07_tools.onnx_runtime import (
    GRAPH_LEVELS, CalibrationBatches, model_files, operator_counts, operator_time_table, ort_predict, ort_session,
    profile_operators, reduce_range_advised,
)
from helpers.ch07_tools.profiling import (
    calls_per_step, hot_kernels, hot_operators, largest_allocations, region_table, step_ms,
)
from helpers.support.logs import quiet_profiler_logs
from helpers.ch07_tools.resnet import ResNet18
from helpers.ch07_tools.tensorrt_engine import (
    MINIMUM_MAJOR, TESTED_RELEASE, TORCH_DTYPES, EngineRunner, build_plan, check_profile, enqueue_on_stream,
    install_hint, model_digest, network_flags, plan_path_for, tensorrt_major, tensorrt_missing,
)
from helpers.ch07_tools.tensorrt_names import (
    MISSING, REMOVED, TENSORRT_10_BINDINGS, WEAK, bindings_cache, bindings_library, bindings_wheel, check_names,
    check_names_across, read_names, removed_names_table, tensorrt_names_used,
)
from helpers.ch07_tools.trace_plot import (
    busy_us, complete_events, device_time_table, plot_step_timeline, short_name, step_events,
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


class Branching(nn.Module):
    """A stem convolution whose output two convolutions read, then added: ResNet's block entry in miniature."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.left = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.right = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        return torch.relu(self.left(y)) + self.right(y)


@pytest.fixture(scope="module")
def branching(tmp_path_factory):
    """Branching exported as one file with a dynamic batch, and the session's extended graphs of its S8S8 and U8S8
    quantizations."""
    folder = tmp_path_factory.mktemp("branching")
    torch.manual_seed(0)
    path = folder / "branching.onnx"
    torch.onnx.export(Branching().eval(), (torch.rand(2, 1, 8, 8),), path, dynamo=True, verbose=False,
                      external_data=False, dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=64)}})
    extended = {}
    for activations in ("s8", "u8"):
        (folder / activations).mkdir()
        extended[activations] = extended_int8_graph(path, folder / activations, activations=activations)
    return path, extended


@pytest.fixture(scope="module")
def tensorrt_names():
    """TensorRT 11.4's bindings, installed with the course's packages."""
    library = bindings_library()
    assert library is not None, "tensorrt-cu13-bindings (requirements.txt) is not installed"
    return read_names(library)


@pytest.fixture(scope="module")
def tensorrt_10_names():
    """TensorRT 10.16's bindings, read from their wheel (make setup downloads it; else this downloads it once)."""
    try:
        wheel = bindings_wheel()
    except (RuntimeError, OSError) as error:
        if os.environ.get("CI"):
            pytest.fail(f"CI must check the names against TensorRT 10, but {error}")
        pytest.skip(f"TensorRT 10's bindings wheel is not in {bindings_cache()} and could not be downloaded: {error}")
    return read_names(wheel)


@pytest.fixture(scope="module")
def both_releases(tensorrt_10_names, tensorrt_names):
    return [tensorrt_10_names, tensorrt_names]


ENGINE_SOURCE = (ROOT / "helpers" / "ch07_tools" / "tensorrt_engine.py").read_text()
# What the engine module's docstring offers where a plan must move, and what TORCH_DTYPES' keys name.
OPTIONS_SOURCE = ("config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)\n"
                  "config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS\n"
                  + "".join(f"trt.DataType.{name}\n" for name in TORCH_DTYPES))


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
    with pytest.raises(ValueError, match="no GPU kernel"):
        hot_kernels(prof, steps=STEPS)


def test_trace_timeline_nests_regions_and_operators(small_profile):
    _, trace = small_profile
    events = complete_events(trace)
    window, nested = step_events(events, 4)
    assert window["name"] == "ProfilerStep#4"
    top = [event["name"] for depth, event in nested if depth == 0]
    assert top == ["prepare", "model"]
    assert any(depth >= 1 and event["name"] == "aten::std" for depth, event in nested)
    fig = plot_step_timeline(trace, step=4, hardware="test CPU", top=3)
    ax = fig.axes[0]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["regions", "called at depth 1",
                                                                    "called at depth 2"]  # no GPU lane on a CPU
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert len(legend) == 4 and legend[-1] == "other operators" and "model" in legend
    with pytest.raises(ValueError, match="top must be at most"):
        plot_step_timeline(trace, step=4, hardware="test CPU", top=11)
    with pytest.raises(ValueError, match="no GPU kernel"):
        device_time_table(events)
    with pytest.raises(ValueError, match="no ProfilerStep#9"):
        step_events(events, 9)
    with pytest.raises(ValueError, match="no trace"):
        complete_events(trace.with_name("missing.json"))
    assert short_name("autograd::engine::evaluate_function: ConvolutionBackward0") == "ConvolutionBackward0"


def test_kernel_time_merges_overlapping_kernels():
    events = [{"name": "ProfilerStep#1", "ph": "X", "ts": 0.0, "dur": 100.0, "tid": 1},
              {"name": "k1", "cat": "kernel", "ph": "X", "ts": 10.0, "dur": 20.0, "tid": 7},
              {"name": "k2", "cat": "kernel", "ph": "X", "ts": 20.0, "dur": 20.0, "tid": 8},  # overlaps k1
              {"name": "k3", "cat": "kernel", "ph": "X", "ts": 90.0, "dur": 30.0, "tid": 7}]  # runs past the step
    busy = (40 - 10 + 100 - 90) / 100
    assert device_time_table(events).loc[1, "GPU idle (%)"] == pytest.approx(100 * (1 - busy))
    assert busy_us([(5, 6), (0, 2), (1, 3)]) == 4


def _gpu_trace(path: Path) -> Path:
    """A synthetic CUDA trace: one step on CPU thread (1, 1), its GPU annotation, kernels on GPU 0 stream 7."""
    cpu = {"ph": "X", "pid": 1, "tid": 1}
    gpu = {"ph": "X", "pid": 0, "tid": 7}
    events = [{**cpu, "name": "ProfilerStep#3", "cat": "user_annotation", "ts": 1000, "dur": 1000},
              {**gpu, "name": "ProfilerStep#3", "cat": "gpu_user_annotation", "ts": 1000, "dur": 1200},
              {**cpu, "name": "forward", "cat": "user_annotation", "ts": 1000, "dur": 600},
              {**cpu, "name": "aten::mm", "cat": "cpu_op", "ts": 1100, "dur": 250},
              {**cpu, "name": "cudaLaunchKernel", "cat": "cuda_runtime", "ts": 1150, "dur": 20},
              {**cpu, "name": "logging", "cat": "user_annotation", "ts": 1700, "dur": 300},
              {**gpu, "name": "gemm", "cat": "kernel", "ts": 1200, "dur": 100},
              {**gpu, "name": "relu", "cat": "kernel", "ts": 1500, "dur": 50},
              {**gpu, "name": "late", "cat": "kernel", "ts": 1950, "dur": 200},  # runs past the step
              {**gpu, "name": "next step", "cat": "kernel", "ts": 2500, "dur": 50},
              {"ph": "s", "name": "ac2g", "pid": 1, "tid": 1, "ts": 1150}]
    path.write_text(json.dumps({"traceEvents": events}))
    return path


def test_gpu_trace_adds_a_kernel_lane_and_a_per_step_table(tmp_path):
    trace = _gpu_trace(tmp_path / "gpu.json")
    events = complete_events(trace)
    window, nested = step_events(events, 3)
    assert window["cat"] == "user_annotation"  # the CPU's step, not the GPU's copy of the annotation
    assert [event["name"] for _, event in nested] == ["forward", "aten::mm", "cudaLaunchKernel", "logging"]
    table = device_time_table(events)
    assert list(table.index) == [3]
    assert table.loc[3].to_dict() == pytest.approx({"step ms": 1.0, "GPU kernel ms": 0.2, "GPU idle (%)": 80.0})
    ax = plot_step_timeline(trace, step=3, hardware="test GPU", depth=2).axes[0]
    assert [label.get_text() for label in ax.get_yticklabels()] == [
        "regions", "called at depth 1", "GPU 0 stream 7: busy 20%"]
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["forward", "logging", "mm", "other operators", "GPU kernel"]  # depth 2: no launch call


def _snapshot_entry(action: str, addr: int, size: int, time_us: int, frames: list | None = None) -> dict:
    """One allocator action as torch.cuda.memory._snapshot() records it in device_traces."""
    return {"action": action, "addr": addr, "size": size, "stream": 0, "time_us": time_us, "frames": frames or []}


TORCH_FRAME = {"filename": "/venv/lib/python3.11/site-packages/torch/nn/modules/conv.py", "line": 549,
               "name": "_conv_forward"}
CELL_FRAME = {"filename": "/tmp/ipykernel_4242/2971980820.py", "line": 51, "name": "step"}


def _snapshot() -> dict:
    """A window that frees a tensor from before it (1000 B), peaks at +500 B, and ends at +250 B."""
    trace = [_snapshot_entry("segment_alloc", 0, 2_097_152, 0),
             _snapshot_entry("alloc", 1, 100, 1_000, [TORCH_FRAME]),
             _snapshot_entry("alloc", 2, 300, 2_000, [TORCH_FRAME, CELL_FRAME]),
             _snapshot_entry("free_requested", 1, 100, 3_000),
             _snapshot_entry("free_completed", 1, 100, 3_000),
             _snapshot_entry("alloc", 3, 200, 4_000),  # no frame: autograd's backward thread
             _snapshot_entry("free_requested", 9, 1_000, 5_000),  # allocated before the window
             _snapshot_entry("alloc", 4, 750, 6_000, [CELL_FRAME])]
    return {"segments": [], "device_traces": [trace]}


def test_memory_snapshot_reads_the_window_s_peak():
    snapshot = _snapshot()
    assert peak_above_start(snapshot) == 500
    timeline = allocation_timeline(snapshot)
    assert timeline["ms"].tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert (timeline["MB above start"] * 1e6).round().tolist() == [0, 100, 400, 300, 500, -500, 250]
    table = alive_at_peak(snapshot)
    assert table["MB"].tolist() == [300e-6, 200e-6]  # at the peak; block 4, the largest, came after it
    assert table.loc[0, "allocated by"] == "_conv_forward (conv.py:549)"
    assert table.loc[0, "called from our code"] == "step (notebook cell, line 51)"
    assert table.loc[1, "allocated by"] == table.loc[1, "called from our code"] == NO_FRAME
    assert alive_at_peak({"device_traces": [[_snapshot_entry("alloc", 1, 8, 0, [TORCH_FRAME])]]}).loc[
        0, "called from our code"] == "(torch only)"
    assert isinstance(plot_allocation_timeline(timeline, hardware="test GPU"), Figure)


def test_memory_snapshot_checks_its_input():
    falling = {"device_traces": [[_snapshot_entry("free_requested", 9, 1_000, 0)]]}
    assert peak_above_start(falling) == 0 and alive_at_peak(falling).empty
    with pytest.raises(ValueError, match="no device_traces"):
        peak_above_start({"segments": []})
    with pytest.raises(ValueError, match="no allocator action recorded on device 1"):
        allocation_timeline(_snapshot(), device=1)
    with pytest.raises(ValueError, match="no time_us"):
        peak_above_start({"device_traces": [[{"action": "alloc", "addr": 1, "size": 8}]]})
    with pytest.raises(ValueError, match="top"):
        alive_at_peak(_snapshot(), top=0)
    with pytest.raises(ValueError, match="allocation_timeline"):
        plot_allocation_timeline(allocation_timeline(_snapshot()).rename(columns={"ms": "s"}), hardware="test")


def test_our_code_is_neither_torch_nor_the_standard_library():
    assert frame_label({"filename": "/work/train.py", "line": 7, "name": "step"}) == "step (train.py:7)"
    assert is_our_code(CELL_FRAME) and is_our_code({"filename": "/work/helpers/x.py", "line": 1, "name": "f"})
    assert not is_our_code(TORCH_FRAME)
    assert not is_our_code({"filename": f"{STDLIB}/contextlib.py", "line": 1, "name": "__enter__"})
    assert not is_our_code({"filename": "<string>", "line": 1, "name": "<module>"})


def test_blas_workspaces_need_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU answers here")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        blas_workspace_bytes()


def test_onnx_runtime_session_matches_pytorch(exported):
    model, path = exported
    assert set(model_files(path)) == {"cnn.onnx", "cnn.onnx.data"}
    assert operator_counts(path)["Conv"] == 1
    images = torch.rand(5, 1, 8, 8)  # a batch size the example did not have: the batch is dynamic
    with torch.no_grad():
        expected = model(images)
    assert ("layout" in GRAPH_LEVELS) == hasattr(ort.GraphOptimizationLevel, "ORT_ENABLE_LAYOUT")
    for level in GRAPH_LEVELS:
        assert torch.allclose(ort_predict(ort_session(path, threads=1, level=level), images), expected, atol=1e-5)
    with pytest.raises(ValueError, match="level"):
        ort_session(path, threads=1, level="max")
    with pytest.raises(ValueError, match="threads"):
        ort_session(path, threads=0)
    with pytest.raises(ValueError, match="no ONNX model"):
        ort_session(path.with_name("missing.onnx"), threads=1)


def test_ort_profiler_table_per_operator_type(exported, tmp_path):
    _, path = exported
    table, trace = profile_operators(path, {"input": torch.rand(2, 1, 8, 8).numpy()}, runs=2, folder=tmp_path)
    assert trace.parent == tmp_path and trace.suffix == ".json"
    assert list(table.columns) == ["ms per run", "calls per run", "share of run (%)"]
    assert table.loc["Conv", "calls per run"] == 1 and (table["ms per run"] > 0).all()
    assert table["share of run (%)"].sum() <= 100 and table["ms per run"].is_monotonic_decreasing
    events = json.loads(trace.read_text())  # Chrome-trace JSON: a list of complete events
    assert sum(event["name"] == "model_run" for event in events) == 3  # the warm-up run and the two measured
    assert all(event["ph"] == "X" for event in events)
    assert operator_time_table(trace, skip_runs=2)["calls per run"].sum() == len(table) and len(table) >= 3
    with pytest.raises(ValueError, match="none left"):
        operator_time_table(trace, skip_runs=3)
    with pytest.raises(ValueError, match="no profile"):
        operator_time_table(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="runs"):
        profile_operators(path, {"input": torch.rand(2, 1, 8, 8).numpy()}, runs=0, folder=tmp_path)


def test_s8_tensors_read_by_two_nodes_keep_their_convolutions_float(branching):
    _, extended = branching
    signed = convolution_table(extended["s8"]).drop(columns="ONNX node")
    assert list(signed.index) == ["stem", "right", "left"]  # in the optimized graph's order
    # The stem's output is read by both branches: it stays int8, so the stem (uint8 in, int8 out) stays float;
    # so do both branches, which read it. Single-reader tensors became uint8.
    assert signed.loc["stem"].tolist() == ["float Conv", "uint8", 1, "int8", 2]
    assert signed.loc["left"].tolist() == signed.loc["right"].tolist() == ["float Conv", "int8", 2, "uint8", 1]
    assert float_convolution_count(branching[0]) == 3
    unsigned = convolution_table(extended["u8"])
    assert (unsigned["runs as"] == "int8 QLinearConv").all() and (unsigned["input quantized as"] == "uint8").all()
    assert unsigned.loc["stem", "readers of the quantized output"] == 2  # a uint8 tensor needs no conversion


def test_convolution_table_of_a_float_model_and_bad_arguments(exported, tmp_path):
    _, path = exported
    table = convolution_table(path)  # a float model: no quantize steps around its one convolution
    assert table.iloc[0][["runs as", "input quantized as", "output quantized as"]].tolist() == [
        "float Conv", "float", "float"]
    with pytest.raises(ValueError, match="no ONNX model"):
        convolution_table(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="activations"):
        extended_int8_graph(path, tmp_path, activations="s4")
    with pytest.raises(ValueError, match="does not exist"):
        extended_int8_graph(path, tmp_path / "missing", activations="s8")


def test_calibration_batches_then_none():
    reader = CalibrationBatches("x", [torch.zeros(2, 3), torch.ones(2, 3)])
    first, second = reader.get_next(), reader.get_next()
    assert first["x"].sum() == 0 and second["x"].sum() == 6 and reader.get_next() is None
    assert isinstance(reduce_range_advised(), bool)


def test_exercise_checks_measure_their_answers():
    assert recorded_steps(**EXERCISE_SCHEDULE) == EXERCISE_SCHEDULE["active"] * EXERCISE_SCHEDULE["repeat"]
    assert check_recorded_steps("t", 6).passed and not check_recorded_steps("t", 5).passed
    assert fp16_tolerance() == pytest.approx(11.72, abs=0.01)
    assert check_fp16_tolerance("t", 2 ** -11 * 48 * 50 * 10, False).passed
    assert not check_fp16_tolerance("t", 2 ** -11 * 48 * 50 * 10, True).passed  # 11.7 exceeds logits of 10
    assert not check_fp16_tolerance("t", 2 ** -24 * 48 * 50 * 10, False).passed  # float32's roundoff instead
    assert not check_fp16_tolerance("t", 11.7, "no").passed and not check_fp16_tolerance("t", ..., ...).passed
    assert not check_fp16_tolerance("t", 11.7).passed  # the second answer left out: not answered yet


def test_float_convolution_check_quantizes_live_and_cleans_up(branching, exported, tmp_path, monkeypatch):
    path, _ = branching
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # every temporary folder goes here
    assert float_convolution_count(exported[1]) == 0  # one convolution, no branch: fused
    assert float_convolution_count(path) == 3  # the stem writes, the two branches read, a tensor with two readers
    # Exercise 3's block: the stem writes and block_a reads the block's input (two readers); block_b and last fuse.
    assert check_float_convolutions("t", 2).passed
    assert not check_float_convolutions("t", 1).passed and not check_float_convolutions("t", ...).passed
    assert not check_float_convolutions("t", True).passed and not check_float_convolutions("t", 2.0).passed
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="no ONNX model"):
        float_convolution_count(tmp_path / "missing.onnx")


def test_tensorrt_is_reported_missing_without_a_gpu(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU answers here")
    assert "no CUDA GPU answers here" in tensorrt_missing()
    monkeypatch.setattr(torch.version, "cuda", None)
    assert "CPU build" in tensorrt_missing() and "Change runtime type" not in tensorrt_missing()
    monkeypatch.setitem(sys.modules, "google.colab", SimpleNamespace())
    assert "Runtime > Change runtime type" in tensorrt_missing()


def test_the_install_hint_depends_on_where_it_runs(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.chdir(ROOT)
    if importlib.util.find_spec("tensorrt") is None:
        assert tensorrt_missing() == (f"TensorRT is not installed: `pip install tensorrt-cu13=={TESTED_RELEASE}` "
                                      "(or `make tensorrt` in the course folder)")
    monkeypatch.setattr(torch.version, "cuda", "12.6")  # the Makefile installs the CUDA 13 build only
    assert install_hint() == f"`pip install tensorrt-cu12=={TESTED_RELEASE}`"
    monkeypatch.setitem(sys.modules, "google.colab", SimpleNamespace())
    assert install_hint() == f"run `!pip install tensorrt-cu12=={TESTED_RELEASE}` in a cell, then this cell again"
    monkeypatch.setattr(torch.version, "cuda", None)
    assert "CPU build" in install_hint()


def test_the_tested_release_is_the_one_the_course_installs():
    assert f"TENSORRT := tensorrt-cu13=={TESTED_RELEASE}\n" in (ROOT / "Makefile").read_text()
    assert f"tensorrt-cu13-bindings=={TESTED_RELEASE}\n" in (ROOT / "requirements.txt").read_text()
    assert f"TENSORRT10_BINDINGS := {TENSORRT_10_BINDINGS}\n" in (ROOT / "Makefile").read_text()
    assert tensorrt_major(TESTED_RELEASE) == 11 and tensorrt_major(TENSORRT_10_BINDINGS.split("==")[1]) == 10
    assert MINIMUM_MAJOR == 10


def test_network_flags_ask_for_strong_typing_only_on_tensorrt_10():
    flag = SimpleNamespace(STRONGLY_TYPED=1)
    assert network_flags(SimpleNamespace(__version__="10.16.1.11", NetworkDefinitionCreationFlag=flag)) == 2
    assert network_flags(SimpleNamespace(__version__="11.4.0.106", NetworkDefinitionCreationFlag=flag)) == 0
    assert network_flags(SimpleNamespace(__version__="12.0.0")) == 0  # no flag needed, none looked up
    with pytest.raises(ValueError, match="looks like"):
        tensorrt_major("ten")


def test_the_plan_name_changes_with_the_model_its_weights_and_the_profile(exported, tmp_path):
    _, original = exported
    for name in ("cnn.onnx", "cnn.onnx.data"):
        shutil.copy(original.parent / name, tmp_path / name)
    onnx_path, shapes = tmp_path / "cnn.onnx", ((1, 1, 8, 8), (4, 1, 8, 8), (64, 1, 8, 8))

    def plan(**changes):
        settings = {"shapes": shapes, "gpu_name": "NVIDIA H200", "tensorrt_version": "11.4.0.106"} | changes
        return plan_path_for(onnx_path, tmp_path / "plans", **settings)

    first = plan()
    assert first == plan() and first.parent == tmp_path / "plans" and first.suffix == ".plan"
    assert first.name.startswith(f"cnn-{model_digest(onnx_path)}-1x1x8x8_4x1x8x8_64x1x8x8-trt11.4.0.106-NVIDIA-H200")
    others = {plan(shapes=((1, 1, 8, 8), (8, 1, 8, 8), (64, 1, 8, 8))), plan(gpu_name="NVIDIA H100 80GB HBM3"),
              plan(tensorrt_version="10.16.1.11")}
    weights = tmp_path / "cnn.onnx.data"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\1")  # retrained: the graph file is unchanged
    others.add(plan())
    graph = onnx.load(str(onnx_path), load_external_data=False)
    graph.doc_string = "another graph, the same weights"
    onnx.save_model(graph, str(onnx_path))
    others.add(plan())
    assert first not in others and len(others) == 5


def test_the_plan_settings_are_checked(exported, tmp_path):
    _, onnx_path = exported
    good = {"shapes": ((1, 3), (2, 3), (4, 3)), "gpu_name": "GPU", "tensorrt_version": "11.4.0.106"}
    for changes, message in [({"shapes": ((1, 3), (2, 3))}, "min_shape, opt_shape, max_shape"),
                             ({"shapes": ((1, 3), (8, 3), (4, 3))}, "min <= opt <= max"),
                             ({"shapes": ((1, 3), (2, 3), (4, 3, 1))}, "same rank"),
                             ({"shapes": ((0, 3), (2, 3), (4, 3))}, ">= 1"),
                             ({"gpu_name": " "}, "gpu_name"), ({"tensorrt_version": None}, "tensorrt_version")]:
        with pytest.raises(ValueError, match=message):
            plan_path_for(onnx_path, tmp_path, **(good | changes))
    with pytest.raises(ValueError, match="no ONNX model"):
        plan_path_for(tmp_path / "missing.onnx", tmp_path, **good)
    with pytest.raises(TypeError):
        check_profile((1.5, 3), (2, 3), (4, 3))
    with pytest.raises(ValueError, match="workspace_bytes"):  # checked before TensorRT is imported
        build_plan(onnx_path, tmp_path / "x.plan", input_name="input", min_shape=(1, 1, 8, 8),
                   opt_shape=(4, 1, 8, 8), max_shape=(64, 1, 8, 8), workspace_bytes=1024)


def test_every_tensorrt_name_the_course_uses_exists_in_tensorrt_10_and_11(both_releases):
    table = check_names_across(ENGINE_SOURCE, both_releases)
    versions = [column for column in table.columns if column.startswith("TensorRT ")]
    assert versions == ["TensorRT 10.16.1.11", "TensorRT 11.4.0.106"]
    assert len(table) >= 30
    assert (table[versions] != MISSING).all().all(), table
    used = tensorrt_names_used(ENGINE_SOURCE)
    for pair in [("IExecutionContext", "execute_async_v3"), ("NetworkDefinitionCreationFlag", "STRONGLY_TYPED"),
                 ("tensorrt", "__version__"), ("MemoryPoolType", "WORKSPACE")]:
        assert pair in used
    options = check_names_across(OPTIONS_SOURCE, both_releases)
    assert (options[versions] != MISSING).all().all(), options


def test_most_names_have_more_than_a_string_match(both_releases):
    """Review, minor 17: "registered name" cannot fail for a common word; most names now have better evidence."""
    table = check_names_across(ENGINE_SOURCE, both_releases).set_index(["class", "name"])
    for column in table.columns:
        assert (table[column] == WEAK).sum() <= 6, table[column]
    assert table.loc[("IOptimizationProfile", "set_shape")].eq(
        "IOptimizationProfile.set_shape in NVIDIA's text").all()  # a docstring of the module writes it so
    assert table.loc[("Logger", "WARNING")].eq("Logger.WARNING in NVIDIA's text").all()  # the wheel's Python code
    assert table.loc[("tensorrt", "Builder")].eq("documented class").all()
    assert table.loc[("ICudaEngine", "num_io_tensors")].eq("documented attribute").all()
    assert table.loc[("tensorrt", "__version__")].eq("set in tensorrt's __init__.py").all()


def test_the_check_catches_the_old_api(both_releases):
    tensorrt_10, tensorrt_11 = both_releases
    old = "engine = builder.build_engine(network, config)\ncontext.execute_async_v2(bindings, stream)\n" \
          "config.set_flag(trt.BuilderFlag.FP16)\nnetwork = builder.create_network(1 << int(" \
          "trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))\n"
    found = check_names_across(old, both_releases).set_index("name")
    assert (found.loc[["build_engine", "execute_async_v2", "FP16", "EXPLICIT_BATCH"], "TensorRT 11.4.0.106"]
            == MISSING).all()
    assert (found.loc[["build_engine", "execute_async_v2"], "TensorRT 10.16.1.11"] == MISSING).all()
    assert (found.loc[["FP16", "EXPLICIT_BATCH"], "TensorRT 10.16.1.11"] != MISSING).all()  # removed in 11 only
    removed = removed_names_table(tensorrt_10, tensorrt_11).set_index("name")
    assert not removed["in TensorRT 11.4.0.106"].any()
    assert (removed["in TensorRT 10.16.1.11"] == (removed["removed in"] == "TensorRT 11")).all(), removed


def test_self_attributes_count_as_the_variables_they_hold():
    assert tensorrt_names_used("self.context.execute_async_v3(handle)\nself.engine.num_io_tensors\n") == [
        ("ICudaEngine", "num_io_tensors"), ("IExecutionContext", "execute_async_v3")]
    with pytest.raises(ValueError, match="no TensorRT names"):
        check_names("x = 1\n", read_names(bindings_library()))


def test_bindings_wheels_are_found_or_fetched_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    assert bindings_cache() == tmp_path / "tensorrt-bindings"
    with pytest.raises(ValueError, match="package==version"):
        bindings_wheel("tensorrt-cu13-bindings")
    with pytest.raises(FileNotFoundError, match="download=False"):
        bindings_wheel(download=False)
    fake = tmp_path / "tensorrt-bindings" / "tensorrt_cu13_bindings-10.16.1.11-cp311-none-any.whl"
    fake.parent.mkdir()
    with zipfile.ZipFile(fake, "w") as wheel:
        wheel.writestr("tensorrt_bindings/__init__.py", "__version__ = '10.16.1.11'\n")
    assert bindings_wheel(download=False) == fake
    with pytest.raises(ValueError, match="not a TensorRT bindings wheel"):
        read_names(fake)


class FakeTensorRT:
    """Just enough of the tensorrt module for build_plan and EngineRunner to run on a CPU, recording the calls."""

    def __init__(self, version: str) -> None:
        self.__version__, self.calls = version, []
        self.Logger = type("Logger", (), {"WARNING": "warning", "__init__": lambda logger, severity: None})
        self.NetworkDefinitionCreationFlag = SimpleNamespace(STRONGLY_TYPED=1)
        self.MemoryPoolType = SimpleNamespace(WORKSPACE="workspace")
        self.TensorIOMode = SimpleNamespace(INPUT="input", OUTPUT="output")

    def record(self, name: str, result: object = None):
        return lambda *args: self.calls.append((name, *args)) or result

    def Builder(self, logger):
        config = SimpleNamespace(set_memory_pool_limit=self.record("set_memory_pool_limit"),
                                 add_optimization_profile=self.record("add_optimization_profile"))
        profile = SimpleNamespace(set_shape=self.record("set_shape"))
        return SimpleNamespace(create_network=self.record("create_network", "network"),
                               create_builder_config=lambda: config, create_optimization_profile=lambda: profile,
                               build_serialized_network=self.record("build", b"plan bytes"))

    def OnnxParser(self, network, logger):
        return SimpleNamespace(parse_from_file=self.record("parse_from_file", True), num_errors=0)

    def Runtime(self, logger):
        modes = {"x": "input", "logits": "output"}
        engine = SimpleNamespace(num_io_tensors=2, get_tensor_name=["x", "logits"].__getitem__,
                                 get_tensor_mode=modes.__getitem__, create_execution_context=lambda: "context",
                                 get_tensor_dtype=lambda name: SimpleNamespace(name="HALF"))
        return SimpleNamespace(deserialize_cuda_engine=lambda data: engine if data == b"plan bytes" else None)


@pytest.mark.parametrize("version, flags", [("10.16.1.11", 2), ("11.4.0.106", 0)])
def test_build_plan_makes_a_strongly_typed_network_on_10_and_11(monkeypatch, tmp_path, version, flags):
    fake = FakeTensorRT(version)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    shapes = {"min_shape": (1, 3, 8, 8), "opt_shape": (4, 3, 8, 8), "max_shape": (16, 3, 8, 8)}
    plan = build_plan(tmp_path / "m.onnx", tmp_path / "plans" / "m.plan", input_name="x", **shapes)
    assert plan.read_bytes() == b"plan bytes"
    names = [call[0] for call in fake.calls]
    assert fake.calls[0] == ("create_network", flags) and "set_memory_pool_limit" not in names
    assert ("set_shape", "x", *shapes.values()) in fake.calls
    fake.calls.clear()
    build_plan(tmp_path / "m.onnx", plan, input_name="x", workspace_bytes=1 << 30, **shapes)
    assert ("set_memory_pool_limit", "workspace", 1 << 30) in fake.calls


def test_the_engine_runner_sorts_its_tensors_and_checks_its_batch(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT("11.4.0.106"))
    monkeypatch.setattr(torch.cuda, "Stream", lambda: SimpleNamespace(device=torch.device("cuda", 0)))
    (tmp_path / "m.plan").write_bytes(b"plan bytes")
    runner = EngineRunner(tmp_path / "m.plan")
    assert (runner.inputs, runner.outputs, runner.context) == (["x"], ["logits"], "context")
    with pytest.raises(ValueError, match="needs a tensor on cuda:0, got one on cpu"):
        runner(torch.zeros(2, 3, 8, 8, dtype=torch.float16))
    (tmp_path / "stale.plan").write_bytes(b"another release's plan")
    with pytest.raises(RuntimeError, match="delete it to rebuild"):
        EngineRunner(tmp_path / "stale.plan")


def test_the_engine_runs_on_its_own_stream_in_order_with_the_caller(monkeypatch):
    calls = []

    class Stream:
        def __init__(self, name: str) -> None:
            self.name, self.device, self.cuda_stream = name, torch.device("cuda", 0), 1234

        def wait_stream(self, other) -> None:
            calls.append(f"{self.name} waits for {other.name}")

    class Tensor:
        def __init__(self, name: str) -> None:
            self.name = name

        def record_stream(self, stream) -> None:
            calls.append(f"{self.name} recorded on {stream.name}")

    caller, own = Stream("caller"), Stream("engine stream")
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device: caller)
    context = SimpleNamespace(execute_async_v3=lambda handle: calls.append(f"engine queued on {handle}") or True)
    enqueue_on_stream(context, own, (Tensor("input"), Tensor("output")))
    assert calls == ["engine stream waits for caller", "engine queued on 1234", "input recorded on engine stream",
                     "output recorded on engine stream", "caller waits for engine stream"]
    with pytest.raises(RuntimeError, match="execute_async_v3 failed"):
        enqueue_on_stream(SimpleNamespace(execute_async_v3=lambda handle: False), own, ())


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


class TinyResidual(nn.Module):
    """A convolution with batch norm, a residual block, pooling and a Linear layer: ResNet-18 in miniature."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        return self.head(torch.relu(self.block(y) + y).mean(dim=(2, 3)))


@pytest.mark.slow
def test_an_aot_package_compiles_loads_and_matches_eager_at_any_batch(tmp_path):
    from helpers.ch07_tools.deployment import compile_package, load_package

    torch.manual_seed(0)
    model = TinyResidual().eval()  # what ResNet-18 brings: batch norms to freeze, a residual addition
    batch = torch.export.Dim("batch", min=1, max=64)
    example = torch.rand(4, 3, 16, 16)
    seconds = compile_package(model, example, tmp_path / "tiny.pt2", dynamic_shapes={"x": {0: batch}})
    loaded, load_seconds = load_package(tmp_path / "tiny.pt2")
    assert load_seconds < seconds / 5  # loading a package is not compiling it
    for size in (1, 4, 9):
        x = torch.rand(size, 3, 16, 16)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"\.pt2"):
        compile_package(model, example, tmp_path / "tiny.so")
    with pytest.raises(ValueError, match="no AOTInductor package"):
        load_package(tmp_path / "missing.pt2")
