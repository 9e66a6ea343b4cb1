"""Tests of helpers/core/amp.py."""

import pytest
import torch

from helpers.core.amp import amp_train_step, make_grad_scaler, precision_mode, require_precision
from helpers.workload.models import small_cnn

CPU = torch.device("cpu")


def test_require_precision_rejects_unknown_names_and_tf32_off_cuda():
    with pytest.raises(ValueError, match="precision must be one of 'fp32', 'tf32', 'bf16', 'fp16'; got 'fp8'"):
        require_precision("fp8", CPU)
    with pytest.raises(ValueError, match="tf32 is a mode of NVIDIA tensor cores"):
        require_precision("tf32", CPU)
    assert require_precision("bf16", CPU) == "bf16"


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
    assert isinstance(loss, torch.Tensor) and loss.shape == () and not loss.requires_grad and loss.item() > 0
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_amp_train_step_does_not_read_the_loss_on_the_host(monkeypatch):
    def refuse(self):
        raise AssertionError("amp_train_step called .item(): a wait for the device at every step")

    monkeypatch.setattr(torch.Tensor, "item", refuse)
    model = small_cnn((4,))
    amp_train_step(model, torch.randn(2, 1, 8, 8), torch.tensor([0, 1]), torch.optim.SGD(model.parameters(), lr=0.1),
                   make_grad_scaler("fp32", CPU), "fp32")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_amp_train_step_keeps_the_fp32_math_switches_for_backward_and_the_optimizer_step(monkeypatch, precision):
    from contextlib import contextmanager

    import helpers.core.amp as amp_module

    inside = {"now": False}
    seen = {}

    @contextmanager
    def recording_fp32_math(name, device):
        inside["now"] = True
        try:
            yield
        finally:
            inside["now"] = False

    class Probe(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            seen["backward"] = inside["now"]
            return grad

    class Stepping(torch.optim.SGD):
        def step(self, closure=None):
            seen["step"] = inside["now"]
            return super().step(closure)

    monkeypatch.setattr(amp_module, "fp32_math", recording_fp32_math)
    layer = torch.nn.Linear(4, 3)
    model = torch.nn.Sequential(layer)
    model.forward = lambda x: layer(Probe.apply(x))
    amp_train_step(model, torch.randn(2, 4, requires_grad=True), torch.tensor([0, 1]),
                   Stepping(layer.parameters(), lr=0.1), make_grad_scaler(precision, CPU), precision)
    assert seen == {"backward": True, "step": True} and not inside["now"]
