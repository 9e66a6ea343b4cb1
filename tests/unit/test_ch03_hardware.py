"""Tests of helpers/ch03_hardware/: the precision sweep, the GPU-only measurements, compile timing, exercise checks."""

import copy
import dataclasses
import gc
import importlib
import math
import weakref

import pandas as pd
import pytest
import torch
from torch._dynamo.utils import counters

from helpers.ch03_hardware.compile_timing import cache_hits, forget_compiled_code, built_kernels
from helpers.ch03_hardware.exercises import (
    break_even_calls, check_break_even, check_loss_scale, mlp_saved_bytes, smallest_loss_scale,
)
from helpers.ch03_hardware.gpu import (
    compare_host_to_device, compare_tf32_matmul, cuda_graph_replay, launch_versus_completion_ms,
)
from helpers.ch03_hardware.precision import explain_precision, precision_point, precision_sweep, saved_activation_bytes
from helpers.core.amp import PRECISIONS
from helpers.core.hardware import hardware_report
from helpers.workload.models import small_cnn

CPU = torch.device("cpu")


def test_bf16_saves_about_half_the_bytes_for_backward():
    model, x = small_cnn((8, 16)), torch.randn(8, 1, 16, 16)
    fp32, bf16 = (saved_activation_bytes(model, x, p) for p in ("fp32", "bf16"))
    assert fp32 > 0
    assert 0.4 < bf16 / fp32 < 0.75


def test_saved_activation_bytes_does_not_keep_memory_alive():
    model = small_cnn((4,))
    x = torch.randn(2, 1, 8, 8)
    saved_activation_bytes(model, x, "fp32")
    probe = weakref.ref(model)
    del model
    gc.collect()
    assert probe() is None


def test_precision_point_reports_the_measures_and_zero_error_for_fp32():
    torch.manual_seed(0)
    point = precision_point(small_cnn((4, 8)), torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 3]), "fp32",
                            min_run_time=0.01)
    assert set(point) == {"precision", "inference_ms", "train_step_ms", "saved_for_backward_MB", "relative_error"}
    assert point["relative_error"] == 0.0
    assert point["inference_ms"] > 0 and point["train_step_ms"] > 0


def test_precision_point_bf16_error_is_small_but_not_zero():
    torch.manual_seed(0)
    point = precision_point(small_cnn((4, 8)), torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 3]), "bf16",
                            min_run_time=0.01)
    assert 0 < point["relative_error"] < 0.05


def test_precision_sweep_times_every_precision_in_alternating_rounds():
    torch.manual_seed(0)
    table, steps = precision_sweep(small_cnn((4, 8)), torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 3]),
                                   ["fp32", "bf16"], rounds=3, min_run_time=0.03)
    assert list(table.index) == ["fp32", "bf16"]
    assert {"inference_ms", "train_step_ms", "saved_for_backward_MB", "relative_error"} <= set(table.columns)
    assert table.loc["fp32", "relative_error"] == 0.0 < table.loc["bf16", "relative_error"]
    assert set(steps) == {"fp32", "bf16"} and all(len(t.round_medians_s) == 3 for t in steps.values())


@pytest.mark.parametrize(("precisions", "message"), [([], "at least one"), (["fp32", "fp8"], "fp8"),
                                                     (["tf32"], "tf32 is a mode of NVIDIA tensor cores")])
def test_precision_sweep_rejects_what_this_device_cannot_run(precisions, message):
    if "tf32" in precisions and torch.cuda.is_available():
        pytest.skip("tf32 runs on this machine's GPU")
    with pytest.raises(ValueError, match=message):
        precision_sweep(small_cnn((4,)), torch.randn(2, 1, 8, 8), torch.tensor([0, 1]), precisions)


def test_explain_precision_names_the_instruction_sets_for_every_precision():
    report = hardware_report()
    for precision in PRECISIONS:
        assert isinstance(explain_precision(precision, report), str)
    if report.device == "cpu":
        assert "avx512_bf16" in explain_precision("bf16", report)
        assert "NVIDIA tensor cores" in explain_precision("tf32", report)
    with pytest.raises(ValueError, match="precision must be one of"):
        explain_precision("int8", report)


def test_explain_precision_tells_old_and_new_nvidia_gpus_apart():
    report = hardware_report()
    t4 = dataclasses.replace(report, device="cuda", gpu_name="Tesla T4", gpu_bf16=False, gpu_tensor_cores=True,
                             gpu_tf32=False)
    h200 = dataclasses.replace(t4, gpu_name="NVIDIA H200", gpu_bf16=True, gpu_tf32=True)
    assert "no TF32" in explain_precision("tf32", t4) and "emulates" in explain_precision("bf16", t4)
    assert "tensor cores" in explain_precision("fp16", t4)
    assert "10-bit mantissa" in explain_precision("tf32", h200) and "tensor cores" in explain_precision("bf16", h200)
    assert "TF32 switched off" in explain_precision("fp32", h200)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown on machines without CUDA")
def test_gpu_measurements_say_clearly_that_they_need_cuda():
    for call in (lambda: compare_host_to_device(8), lambda: compare_tf32_matmul(128),
                 lambda: launch_versus_completion_ms(lambda: None),
                 lambda: cuda_graph_replay(small_cnn((4,)), torch.randn(1, 1, 8, 8))):
        with pytest.raises(ValueError, match="needs a CUDA GPU; this machine has none"):
            call()


def test_relative_error_is_the_largest_difference_over_the_largest_reference():
    from helpers.ch03_hardware.precision import relative_error

    assert relative_error(torch.tensor([1.0, 2.5]), torch.tensor([1.0, 2.0])) == 0.25


def test_saved_activation_bytes_counts_a_shared_block_once_and_skips_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    x = torch.randn(3, 8)
    # the first Linear keeps its input; ReLU keeps its output, which the second Linear keeps again (once);
    # the weights are parameters and are not counted
    assert saved_activation_bytes(model, x, "fp32") == 3 * 8 * 4 + 3 * 16 * 4


def test_saved_activation_bytes_rejects_what_is_not_a_model_or_a_tensor():
    with pytest.raises(TypeError, match="model must be a Module"):
        saved_activation_bytes("net", torch.randn(1, 2), "fp32")
    with pytest.raises(TypeError, match="inputs must be a Tensor"):
        saved_activation_bytes(torch.nn.Linear(2, 2), [1.0, 2.0], "fp32")


def test_the_small_precision_functions_each_do_their_one_job():
    from helpers.ch03_hardware.precision import (
        inference_latency, output_error, precision_costs, train_step_latency, training_copy,
    )

    torch.manual_seed(0)
    model, x, y = small_cnn((4, 8)), torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 3])
    trainee = training_copy(model.eval())
    assert trainee.training and not model.training and trainee is not model
    assert inference_latency(model, x, "fp32", min_run_time=0.01).median_ms > 0
    before = [p.detach().clone() for p in trainee.parameters()]
    assert train_step_latency(trainee, x, y, "fp32", min_run_time=0.01).median_ms > 0
    assert any(not torch.equal(b, p) for b, p in zip(before, trainee.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), training_copy(model).state_dict().values()))
    assert output_error(model, x, "fp32") == 0.0 < output_error(model, x, "bf16")
    assert set(precision_costs(model, trainee, x, y, "bf16")) == {"saved_for_backward_MB", "relative_error"}


def test_the_small_precision_functions_check_their_arguments():
    from helpers.ch03_hardware.precision import gpu_step_peak_mb, inference_latency, output_error, training_copy

    with pytest.raises(TypeError, match="model must be a Module"):
        training_copy(object())
    with pytest.raises(ValueError, match="precision must be one of"):
        inference_latency(small_cnn((4,)), torch.randn(1, 1, 8, 8), "fp8")
    with pytest.raises(TypeError, match="model must be a Module"):
        output_error(None, torch.randn(1, 1, 8, 8), "fp32")
    with pytest.raises(ValueError, match="measures CUDA memory; the inputs are on cpu"):
        gpu_step_peak_mb(small_cnn((4,)), torch.randn(1, 1, 8, 8), torch.tensor([0]), "fp32")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown on machines without CUDA")
def test_overlap_and_pinning_measurements_say_clearly_that_they_need_cuda():
    from helpers.ch03_hardware.gpu import compare_copy_compute_overlap, pin_memory_cost

    for call in (lambda: compare_copy_compute_overlap(8), lambda: pin_memory_cost(8)):
        with pytest.raises(ValueError, match="needs a CUDA GPU; this machine has none"):
            call()


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: importlib.import_module("helpers.ch03_hardware.gpu").compare_copy_compute_overlap(0), ValueError, "megabytes must be an int >= 1"),
    (lambda: importlib.import_module("helpers.ch03_hardware.gpu").compare_copy_compute_overlap(8, matrix_size=16), ValueError,
     "matrix_size must be an int >= 64"),
    (lambda: importlib.import_module("helpers.ch03_hardware.gpu").compare_copy_compute_overlap(8, rounds=2), ValueError,
     "rounds must be an int >= 3"),
    (lambda: importlib.import_module("helpers.ch03_hardware.gpu").pin_memory_cost(1.5), TypeError, "megabytes must be an int"),
])
def test_overlap_and_pinning_check_their_arguments_first(call, error, message):
    with pytest.raises(error, match=message):
        call()



def test_smallest_loss_scale_lifts_the_gradient_to_a_normal_fp16_number():
    scale = smallest_loss_scale(1e-8)
    tiny = torch.finfo(torch.float16).tiny
    assert math.log2(scale).is_integer()
    assert torch.tensor(1e-8 * scale, dtype=torch.float16).item() >= tiny
    assert torch.tensor(1e-8 * scale / 2, dtype=torch.float16).item() < tiny
    assert smallest_loss_scale(1.0) == 1.0
    with pytest.raises(ValueError, match="gradient must be > 0"):
        smallest_loss_scale(0.0)


def test_check_loss_scale_passes_the_right_scale_and_explains_a_wrong_one(capsys):
    assert check_loss_scale("Ex", smallest_loss_scale(1e-8), gradient=1e-8)
    assert not check_loss_scale("Ex", 65536, gradient=1e-8)
    out = capsys.readouterr().out
    assert "✅" in out and "❌" in out and "finfo" in out
    assert not check_loss_scale("Ex", ..., gradient=1e-8)


def test_mlp_saved_bytes_follow_from_what_each_operation_keeps():
    batch = 4
    saved = mlp_saved_bytes(batch)
    assert saved["fp32"] == batch * 512 * 4 + batch * 1024 * 4
    assert saved["bf16"] == batch * 512 * 2 + batch * 1024 * 2 + 10 * 1024 * 2
    with pytest.raises(ValueError, match="batch must be an int >= 1"):
        mlp_saved_bytes(0)


def test_break_even_calls_and_its_check():
    assert break_even_calls(3.0, 10.0, 7.0) == pytest.approx(1000.0)
    assert break_even_calls(3.0, 7.0, 10.0) == math.inf
    with pytest.raises(ValueError, match="eager_ms must be > 0"):
        break_even_calls(1.0, 0.0, 1.0)
    table = pd.DataFrame({"median_ms": [10.0, 7.0]}, index=["eager", "torch.compile"])
    assert check_break_even("Ex", 10000.0, 1000.0, cold_s=30.0, warm_s=3.0, table=table)
    assert not check_break_even("Ex", 1000.0, 1000.0, cold_s=30.0, warm_s=3.0, table=table)


def test_check_activation_bytes_prediction_accepts_the_activations_and_leaves_the_weight_copy_to_explain(capsys):
    from helpers.ch03_hardware.exercises import activation_bytes, check_activation_bytes_prediction

    batch = 64
    expected = activation_bytes(batch)
    assert expected == {"fp32": batch * 1536 * 4, "bf16": batch * 1536 * 2}
    assert check_activation_bytes_prediction("Ex", expected["fp32"], expected["bf16"], batch=batch)
    measured = mlp_saved_bytes(batch)
    assert abs(measured["bf16"] - expected["bf16"]) > 0.01 * expected["bf16"]  # the weight copy exceeds the tolerance
    assert not check_activation_bytes_prediction("Ex", measured["fp32"], measured["bf16"], batch=batch)  # pasted
    assert not check_activation_bytes_prediction("Ex", expected["fp32"], expected["fp32"], batch=batch)
    out = capsys.readouterr().out
    assert "your bf16 prediction" in out and "weight" not in out
    assert not check_activation_bytes_prediction("Ex", ..., 1, batch=batch)
    assert "not answered yet" in capsys.readouterr().out


def test_after_forget_compiled_code_a_compile_is_served_by_the_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    forget_compiled_code()

    def double_relu(x):
        return torch.relu(x) * 2

    x = torch.randn(8)
    assert built_kernels() == frozenset()  # an empty cache directory
    assert torch.equal(torch.compile(double_relu)(x), double_relu(x))  # cold: compiled and written to disk
    cold_files = built_kernels()
    assert cold_files and all(path.is_relative_to(tmp_path) and path.suffix == ".so" for path in cold_files)
    hits_before, inductor_hits_before = cache_hits(), counters["inductor"]["fxgraph_cache_hit"]
    forget_compiled_code()
    assert torch.equal(torch.compile(double_relu)(x), double_relu(x))  # warm: read back from disk
    assert built_kernels() == cold_files  # a warm compile builds nothing new
    assert counters["inductor"]["fxgraph_cache_hit"] == inductor_hits_before + 1
    assert cache_hits() >= hits_before + 1
    forget_compiled_code()


def test_show_measured_bytes_waits_for_the_predictions_then_prints_the_differences(capsys):
    from helpers.ch03_hardware.exercises import activation_bytes, show_measured_bytes

    assert show_measured_bytes("Ex", ..., ..., batch=8) is None
    assert "predict in (a) first" in capsys.readouterr().out
    assert show_measured_bytes("Ex", 0, 0, batch=8) is None  # a guess cannot unlock the measurement
    assert "not right yet" in capsys.readouterr().out
    expected = activation_bytes(8)
    measured = show_measured_bytes("Ex", expected["fp32"], expected["bf16"], batch=8)
    assert measured == mlp_saved_bytes(8)
    out = capsys.readouterr().out
    assert "(measured minus predicted: +0)" in out and f"{measured['bf16'] - expected['bf16']:+,}" in out


def test_compile_for_inference_freezes_only_when_asked_and_proves_it():
    from helpers.ch03_hardware.compile_timing import compile_for_inference, freezing_passes, graphs_compiled
    from helpers.workload.models import small_cnn

    model, x = small_cnn((4,)).eval(), torch.randn(2, 1, 8, 8)
    graphs, passes = graphs_compiled(), freezing_passes()
    plain, _ = compile_for_inference(copy.deepcopy(model), x, freezing=False)
    assert graphs_compiled() == graphs + 1 and freezing_passes() == passes
    frozen, first_call_s = compile_for_inference(copy.deepcopy(model), x, freezing=True)
    after = freezing_passes()
    assert first_call_s > 0 and after["folded"] > passes["folded"] and after["packed"] > passes["packed"]
    with torch.no_grad():
        assert torch.allclose(frozen(x), model(x), atol=1e-4) and torch.allclose(plain(x), model(x), atol=1e-4)
    graphs = graphs_compiled()
    assert not frozen(x).requires_grad and graphs_compiled() == graphs, "a call in grad mode must not recompile"
    with pytest.raises(RuntimeError, match="recompile"):
        frozen(torch.randn(3, 1, 8, 8))  # another shape would compile a new graph, without freezing: refused
    assert graphs_compiled() == graphs and repr(frozen) == "InferenceCompiled(frozen)"
    with pytest.raises(TypeError, match="example must be"):
        compile_for_inference(model, "not a tensor")
