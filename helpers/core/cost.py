"""What a model costs before it runs: parameters, FLOPs, bytes on disk."""

from __future__ import annotations

import io

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from helpers.core.validate import require_instance


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (weights and biases); buffers such as BN statistics are not counted."""
    require_instance("model", model, nn.Module)
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, example_input: torch.Tensor) -> int:
    """Floating-point operations of one forward pass (a multiply-add counts as 2), via FlopCounterMode.

    FlopCounterMode counts matrix products, convolutions and attention only: batch norm, activations,
    pooling and element-wise additions count 0, so this is the arithmetic of the heavy layers.
    """
    require_instance("model", model, nn.Module)
    require_instance("example_input", example_input, torch.Tensor)
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(example_input)
    model.train(was_training)
    return counter.get_total_flops()


def serialized_size_bytes(model: nn.Module) -> int:
    """Bytes of the model's state_dict as torch.save writes it."""
    require_instance("model", model, nn.Module)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def model_cost(model: nn.Module, example_input: torch.Tensor) -> dict[str, int]:
    """Parameters, forward FLOPs and serialized size in one dict."""
    return {
        "parameters": count_parameters(model),
        "flops": count_flops(model, example_input),
        "size_bytes": serialized_size_bytes(model),
    }
