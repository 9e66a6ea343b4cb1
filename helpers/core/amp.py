"""Mixed precision the current way: torch.amp autocast, GradScaler for fp16, TF32 switches on NVIDIA GPUs.

Chapter 3 teaches it; chapters 2, 4 and 6 train with it (workload/training.py, chapter 4's loaders).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from helpers.core.validate import require_choice

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def require_precision(precision: str, device: torch.device) -> str:
    """Return precision if this device can run it, else raise a ValueError saying what it can run."""
    require_choice("precision", precision, PRECISIONS)
    device = torch.device(device)
    if precision == "tf32" and device.type != "cuda":
        raise ValueError(f"tf32 is a mode of NVIDIA tensor cores (Ampere or newer); on {device.type} "
                         f"choose fp32, bf16 or fp16")
    if precision == "tf32" and torch.cuda.get_device_capability(device) < (8, 0):
        raise ValueError(f"tf32 needs an NVIDIA GPU of compute capability 8.0 (Ampere) or newer; "
                         f"{torch.cuda.get_device_name(device)} has {torch.cuda.get_device_capability(device)}: "
                         f"choose fp32, bf16 or fp16")
    return precision


@contextmanager
def _cuda_fp32_math(mode: str) -> Iterator[None]:
    """Set how cuBLAS matmuls and cuDNN convolutions compute fp32 ("ieee" or "tf32") inside the block; restore after.

    PyTorch's defaults differ between the two: matmuls in full fp32, cuDNN convolutions in TF32. Setting
    both makes "fp32" mean fp32 everywhere and "tf32" mean TF32 everywhere.
    """
    saved = torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = mode
    torch.backends.cudnn.conv.fp32_precision = mode
    try:
        yield
    finally:
        torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = saved


@contextmanager
def fp32_math(precision: str, device: torch.device) -> Iterator[None]:
    """The fp32 math switches of a precision, for a whole training step (forward, backward, optimizer step).

    On CUDA, "fp32" sets cuBLAS and cuDNN to full fp32 ("ieee") and "tf32" sets both to TF32; bf16 and
    fp16 keep PyTorch's defaults for what autocast leaves in fp32. Elsewhere (CPU, MPS) it changes nothing.
    """
    device = torch.device(device)
    require_precision(precision, device)
    if device.type == "cuda" and precision in ("fp32", "tf32"):
        with _cuda_fp32_math("tf32" if precision == "tf32" else "ieee"):
            yield
    else:
        yield


@contextmanager
def autocast_mode(precision: str, device: torch.device) -> Iterator[None]:
    """torch.autocast for bf16 and fp16 (around a forward pass only); nothing for fp32 and tf32."""
    device = torch.device(device)
    require_precision(precision, device)
    if precision in AUTOCAST_DTYPES:
        with torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision]):
            yield
    else:
        yield


@contextmanager
def precision_mode(precision: str, device: torch.device) -> Iterator[None]:
    """Run a forward-only block in that precision: autocast for bf16 and fp16, TF32 math for tf32, true fp32 for fp32."""
    with fp32_math(precision, device), autocast_mode(precision, device):
        yield


def make_grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler that scales only for fp16: bf16 keeps fp32's exponent range, so its gradients do not underflow."""
    require_precision(precision, device)
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")


def amp_train_step(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    precision: str,
) -> torch.Tensor:
    """One training step: forward and loss under autocast, backward outside it, the fp16 loss scaled.

    The fp32 math switches (fp32_math: true fp32 or TF32 on CUDA) cover the whole step, backward and
    optimizer step included; autocast covers the forward pass and the loss only.
    Returns the loss as a detached tensor, still on the device: reading it (`.item()`) would make
    the CPU wait for the GPU at every step, so callers read it only when they need the number.
    """
    with fp32_math(precision, inputs.device):
        with autocast_mode(precision, inputs.device):
            loss = nn.functional.cross_entropy(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return loss.detach()
