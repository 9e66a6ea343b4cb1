import math

import pandas as pd
import pytest
import torch

from helpers.hardware_checks import (
    break_even_calls, check_break_even, check_loss_scale, mlp_saved_bytes, smallest_loss_scale,
)


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
    from helpers.hardware_checks import activation_bytes, check_activation_bytes_prediction

    batch = 64
    expected = activation_bytes(batch)
    assert expected == {"fp32": batch * 1536 * 4, "bf16": batch * 1536 * 2}
    assert check_activation_bytes_prediction("Ex", expected["fp32"], expected["bf16"], batch=batch)
    measured = mlp_saved_bytes(batch)
    assert abs(measured["bf16"] - expected["bf16"]) > 0.01 * expected["bf16"]  # the weight copy exceeds the tolerance
    assert check_activation_bytes_prediction("Ex", measured["fp32"], measured["bf16"], batch=batch)
    assert not check_activation_bytes_prediction("Ex", expected["fp32"], expected["fp32"], batch=batch)
    out = capsys.readouterr().out
    assert "your bf16 prediction" in out and "weight" not in out
    assert not check_activation_bytes_prediction("Ex", ..., 1, batch=batch)
    assert "not answered yet" in capsys.readouterr().out
