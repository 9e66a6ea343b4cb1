import dataclasses
import gc
import weakref

import pytest
import torch

from helpers import hardware_report, small_cnn, tensor_loader
from helpers.gpu import compare_host_to_device, compare_tf32_matmul, cuda_graph_replay, launch_versus_completion_ms
from helpers.precision import (
    PRECISIONS, amp_train_step, check_precision, explain_precision, make_grad_scaler, precision_mode, precision_point,
    precision_sweep,
    saved_activation_bytes,
)
from helpers.training import train_epochs

CPU = torch.device("cpu")


def test_check_precision_rejects_unknown_names_and_tf32_off_cuda():
    with pytest.raises(ValueError, match="precision must be one of 'fp32', 'tf32', 'bf16', 'fp16'; got 'fp8'"):
        check_precision("fp8", CPU)
    with pytest.raises(ValueError, match="tf32 is a mode of NVIDIA tensor cores"):
        check_precision("tf32", CPU)
    assert check_precision("bf16", CPU) == "bf16"


@pytest.mark.parametrize(("precision", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_precision_mode_runs_linear_layers_in_the_chosen_dtype(precision, dtype):
    layer = torch.nn.Linear(4, 3)
    with precision_mode(precision, CPU):
        assert layer(torch.randn(2, 4)).dtype == dtype


def test_grad_scaler_scales_only_fp16():
    assert make_grad_scaler("fp16", CPU).is_enabled()
    assert not make_grad_scaler("bf16", CPU).is_enabled()
    assert not make_grad_scaler("fp32", CPU).is_enabled()


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_amp_train_step_updates_the_weights_and_keeps_them_fp32(precision):
    torch.manual_seed(0)
    model = small_cnn((4, 8))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = amp_train_step(model, torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 3]), optimizer,
                          make_grad_scaler(precision, CPU), precision)
    assert isinstance(loss, float) and loss > 0
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


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


def test_train_epochs_accepts_a_precision_and_rejects_unknown_ones():
    loader = tensor_loader(torch.randn(8, 1, 8, 8), torch.arange(8) % 2, batch_size=4, shuffle=False)
    losses = train_epochs(small_cnn((4,), num_classes=2), loader, epochs=2, precision="bf16", anneal=True, progress=False)
    assert len(losses) == 2
    with pytest.raises(ValueError, match="precision must be one of"):
        train_epochs(small_cnn((4,), num_classes=2), loader, epochs=1, precision="half", progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown on machines without CUDA")
def test_gpu_measurements_say_clearly_that_they_need_cuda():
    for call in (lambda: compare_host_to_device(8), lambda: compare_tf32_matmul(128),
                 lambda: launch_versus_completion_ms(lambda: None),
                 lambda: cuda_graph_replay(small_cnn((4,)), torch.randn(1, 1, 8, 8))):
        with pytest.raises(ValueError, match="needs a CUDA GPU; this machine has none"):
            call()


def test_relative_error_is_the_largest_difference_over_the_largest_reference():
    from helpers.precision import relative_error

    assert relative_error(torch.tensor([1.0, 2.5]), torch.tensor([1.0, 2.0])) == 0.25
