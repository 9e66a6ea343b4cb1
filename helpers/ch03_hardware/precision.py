"""Chapter 3's precision sweep: what each precision costs and saves on this machine (the switches are core/amp.py)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from functools import partial

import pandas as pd
import torch
from torch import nn
from torchvision.models import resnet18

from helpers.core.amp import PRECISIONS, amp_train_step, make_grad_scaler, precision_mode, require_precision
from helpers.core.hardware import BF16_FLAGS, FP16_FLAGS, HardwareReport
from helpers.core.measure import Timing, measure_interleaved, measure_latency
from helpers.core.memory import track_peak_memory
from helpers.core.validate import require_choice, require_instance


def precision_workload(device: torch.device) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """ResNet-18 with a batch sized so one precision point takes seconds: 64 x 224x224 on a GPU, 8 x 48x48 elsewhere."""
    device = torch.device(device)
    batch, size = (64, 224) if device.type == "cuda" else (8, 48)
    model = resnet18(num_classes=10).to(device)
    inputs = torch.randn(batch, 3, size, size, device=device)
    return model, inputs, torch.randint(0, 10, (batch,), device=device)


def relative_error(output: torch.Tensor, reference: torch.Tensor) -> float:
    """Largest absolute difference, relative to the largest reference magnitude."""
    return ((output.float() - reference).abs().max() / reference.abs().max()).item()


def saved_activation_bytes(model: nn.Module, inputs: torch.Tensor, precision: str) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one forward: what lower precision shrinks.

    A saved-tensor hook sees every tensor autograd saves. We note the size of each one's memory block
    (its storage), so a block saved by two operations counts once, and skip the model's parameters,
    which exist anyway. No backward pass follows: the forward is run only to be counted.
    """
    require_instance("model", model, nn.Module)
    require_instance("inputs", inputs, torch.Tensor)
    parameter_blocks = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved_blocks: dict[int, int] = {}  # address of a memory block -> its size in bytes

    def record(tensor: torch.Tensor) -> torch.Tensor:
        block = tensor.untyped_storage()
        if block.data_ptr() not in parameter_blocks:
            saved_blocks[block.data_ptr()] = block.nbytes()
        # Keep the same memory without its autograd history: a saved output that held its own graph
        # would form a reference cycle that Python's garbage collector cannot free.
        return tensor.detach()

    def unpack(tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(record, unpack), precision_mode(precision, inputs.device):
        output = model(inputs)  # alive until we return, so no saved block is freed and its address reused
    del output
    return sum(saved_blocks.values())


def training_copy(model: nn.Module) -> nn.Module:
    """A copy of model in training mode, so that timing training steps leaves the original untouched."""
    require_instance("model", model, nn.Module)
    return copy.deepcopy(model).train()


def inference_latency(model: nn.Module, inputs: torch.Tensor, precision: str, *, min_run_time: float = 0.3) -> Timing:
    """Median time of one inference call of model (in eval mode) in that precision."""
    require_instance("model", model, nn.Module)
    require_precision(precision, inputs.device)
    model.eval()
    with torch.inference_mode(), precision_mode(precision, inputs.device):
        return measure_latency(lambda: model(inputs), min_run_time=min_run_time, warmup=1)


def train_step_latency(trainee: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, precision: str, *,
                       min_run_time: float = 0.3) -> Timing:
    """Median time of one amp_train_step of trainee (SGD) in that precision; trainee's weights change."""
    require_instance("trainee", trainee, nn.Module)
    optimizer = torch.optim.SGD(trainee.parameters(), lr=1e-3)
    scaler = make_grad_scaler(precision, inputs.device)
    return measure_latency(partial(amp_train_step, trainee, inputs, targets, optimizer, scaler, precision),
                           min_run_time=min_run_time, warmup=1)


def output_error(model: nn.Module, inputs: torch.Tensor, precision: str) -> float:
    """relative_error of model's output in that precision against its output in fp32."""
    require_instance("model", model, nn.Module)
    with torch.inference_mode():
        with precision_mode("fp32", inputs.device):
            reference = model(inputs).float()
        with precision_mode(precision, inputs.device):
            return relative_error(model(inputs), reference)


def gpu_step_peak_mb(trainee: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, precision: str) -> float:
    """Peak GPU memory (MiB) allocated during one training step of trainee in that precision."""
    if inputs.device.type != "cuda":
        raise ValueError(f"gpu_step_peak_mb measures CUDA memory; the inputs are on {inputs.device.type}")
    optimizer = torch.optim.SGD(trainee.parameters(), lr=1e-3)
    with track_peak_memory() as memory:
        amp_train_step(trainee, inputs, targets, optimizer, make_grad_scaler(precision, inputs.device), precision)
    return memory.cuda_peak_bytes / 2**20


def precision_costs(model: nn.Module, trainee: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                    precision: str) -> dict[str, float]:
    """What one precision costs besides time: bytes kept for backward, output error, and on CUDA the peak memory."""
    costs = {"saved_for_backward_MB": saved_activation_bytes(trainee, inputs, precision) / 2**20,
             "relative_error": output_error(model, inputs, precision)}
    if inputs.device.type == "cuda":
        costs["gpu_peak_MB"] = gpu_step_peak_mb(trainee, inputs, targets, precision)
    return costs


def precision_point(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, precision: str, *, min_run_time: float = 0.3
) -> dict:
    """One precision alone (for a widget): inference latency, training-step time, memory and output error."""
    require_precision(precision, inputs.device)
    trainee = training_copy(model)
    inference = inference_latency(model, inputs, precision, min_run_time=min_run_time)
    step = train_step_latency(trainee, inputs, targets, precision, min_run_time=min_run_time)
    return {"precision": precision, "inference_ms": inference.median_ms, "train_step_ms": step.median_ms,
            **precision_costs(model, trainee, inputs, targets, precision)}


def precision_sweep(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, precisions: Sequence[str], *,
    rounds: int = 3, min_run_time: float = 1.0,
) -> tuple[pd.DataFrame, dict[str, Timing]]:
    """Every precision's point, inference and training steps timed in alternating rounds (each time the median of
    the rounds' medians, as the ledger pairs them); also the step Timings.

    One trainee serves every precision (a step's time does not depend on the weights' values), so the
    sweep holds one extra copy of the model, not one per precision.
    """
    require_instance("model", model, nn.Module)
    if not precisions:
        raise ValueError(f"precisions must name at least one of {PRECISIONS}")
    for precision in precisions:
        require_precision(precision, inputs.device)
    model.eval()
    trainee = training_copy(model)
    optimizer = torch.optim.SGD(trainee.parameters(), lr=1e-3)
    scalers = {p: make_grad_scaler(p, inputs.device) for p in precisions}

    def infer(precision: str) -> torch.Tensor:
        with torch.inference_mode(), precision_mode(precision, inputs.device):
            return model(inputs)

    inference = measure_interleaved({p: partial(infer, p) for p in precisions}, rounds=rounds,
                                    min_run_time=min_run_time, warmup=1)
    steps = measure_interleaved(
        {p: partial(amp_train_step, trainee, inputs, targets, optimizer, scalers[p], p) for p in precisions},
        rounds=rounds, min_run_time=min_run_time, warmup=1)
    rows = [{"precision": p, "inference_ms": inference[p].round_median_ms, "train_step_ms": steps[p].round_median_ms,
             **precision_costs(model, trainee, inputs, targets, p)} for p in precisions]
    return pd.DataFrame(rows).set_index("precision"), steps


def explain_precision(precision: str, report: HardwareReport) -> str:
    """One sentence on why this precision is fast or slow on the device the report describes."""
    require_choice("precision", precision, PRECISIONS)
    if report.device not in ("cuda", "cpu"):
        return (f"{precision} on this {report.device} accelerator: half the bytes of fp32 or fewer; how much faster "
                "depends on the chip.")
    if report.device == "cuda":
        return _explain_cuda_precision(precision, report)
    if precision == "fp32":
        return f"fp32 on the CPU ({report.cpu_isa}): the format every CPU kernel is tuned for, the baseline."
    if precision == "tf32":
        return "tf32 exists only on NVIDIA tensor cores: there is nothing to measure on this device."
    native = report.cpu_native_bf16 if precision == "bf16" else report.cpu_native_fp16
    flags = " or ".join(sorted(BF16_FLAGS if precision == "bf16" else FP16_FLAGS))
    if native and precision == "fp16":
        return (f"This CPU has fp16 instructions ({flags}), which does not mean that PyTorch's CPU kernels (the "
                f"backward ones above all) use them: the measurement, not the flag, says whether fp16 pays here.")
    if native:
        return (f"This CPU has native {precision} instructions ({flags}): oneDNN can run convolutions and matmuls "
                f"in {precision} on half the bytes of fp32. Necessary, not sufficient: under autocast every call "
                f"also casts the weights, which a small batch may not repay (section 5 measures it).")
    return (f"This CPU has no native {precision} instructions ({flags} missing): {precision} is emulated (each "
            f"operation converts to fp32 and back, on slower code paths) and is expected to cost time; the "
            f"measurement says how much.")


def _explain_cuda_precision(precision: str, report: HardwareReport) -> str:
    """One sentence on a precision on the NVIDIA GPU the report describes."""
    gpu = report.gpu_name
    if precision == "fp32":
        return f"fp32 on {gpu}: full fp32 (TF32 switched off) on the ordinary GPU cores, the baseline."
    if precision == "tf32":
        if not report.gpu_tf32:
            return f"{gpu} has no TF32: it needs compute capability 8.0 (Ampere) or newer."
        return f"tf32 on {gpu}: fp32 tensors multiplied on the tensor cores with a 10-bit mantissa."
    if precision == "bf16" and not report.gpu_bf16:
        return f"{gpu} has no native bf16 (it needs compute capability 8.0): autocast emulates it, slowly."
    return (f"{precision} on {gpu}: matrix products and convolutions on the tensor cores, moving half the "
            f"bytes of fp32.")
