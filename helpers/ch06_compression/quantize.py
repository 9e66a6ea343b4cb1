"""int8 the current way: PT2E static quantization (torchao) for CNNs, compiled for inference, sized honestly."""

from __future__ import annotations

import copy
import logging
import types
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

# torchao's import logs a notice about torch's own pytree registration (not our code, not actionable): keep it quiet.
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)

from torchao.quantization.pt2e import allow_exported_model_train_eval  # noqa: E402
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e  # noqa: E402
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (  # noqa: E402
    X86InductorQuantizer, get_default_x86_inductor_quantization_config,
)
from torchao.quantization.quant_primitives import (  # noqa: E402
    MappingType, choose_qparams_affine, dequantize_affine, quantize_affine,
)
from torchao.utils import should_reduce_range  # noqa: E402

from helpers.core.validate import require_instance, require_int  # noqa: E402


def symmetric_int8_round_trip(values: torch.Tensor, block_size: tuple[int, ...]) -> torch.Tensor:
    """dequantize(quantize(values)) in symmetric int8 with one scale per block (torchao's primitives)."""
    require_instance("values", values, torch.Tensor)
    if len(block_size) != values.dim():
        raise ValueError(f"block_size needs one entry per dimension of values ({values.dim()}), got {block_size}")
    scale, zero_point = choose_qparams_affine(values, MappingType.SYMMETRIC, block_size, torch.int8)
    quantized = quantize_affine(values, block_size, scale, zero_point, torch.int8)
    return dequantize_affine(quantized, block_size, scale, zero_point, torch.int8)


def symmetric_int8_error(values: torch.Tensor, block_size: tuple[int, ...]) -> float:
    """Mean |x - dequantize(quantize(x))| relative to mean |x|, symmetric int8, one scale per block (torchao)."""
    error = symmetric_int8_round_trip(values, block_size) - values
    return (error.abs().mean() / values.abs().mean()).item()


def with_int8_weights(model: nn.Module, *, per_channel: bool) -> nn.Module:
    """A copy of model whose Conv2d and Linear weights went through symmetric int8 and back, one scale per output
    channel or one per tensor; everything else, activations included, stays fp32: weight rounding alone."""
    require_instance("model", model, nn.Module)
    rounded = copy.deepcopy(model)
    with torch.no_grad():
        for layer in rounded.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                shape = tuple(layer.weight.shape)
                layer.weight.copy_(symmetric_int8_round_trip(layer.weight, (1, *shape[1:]) if per_channel else shape))
    return rounded


def per_tensor_penalty(weights: torch.Tensor) -> float:
    """How many times the rounding error of one scale per tensor exceeds that of one scale per output channel."""
    return symmetric_int8_error(weights, tuple(weights.shape)) / symmetric_int8_error(weights, (1, *weights.shape[1:]))


def x86_quantizer(*, reduce_range: bool = False, is_qat: bool = False) -> X86InductorQuantizer:
    """int8 everywhere the x86 backend supports it: per-channel weights, per-tensor activations."""
    config = get_default_x86_inductor_quantization_config(is_qat=is_qat, reduce_range=reduce_range)
    return X86InductorQuantizer().set_global(config)


def export_for_pt2e(model: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """model exported by torch.export for a PT2E quantizer, each operation labelled with the module it came from.

    The x86 quantizer finds convolutions and linear layers by the `source_fn_stack` label, which torch.export's
    default (non-strict) tracing leaves out. torch 2.14 falls back to the module stack; torch 2.11 (Colab's)
    does not and quantizes nothing, silently. So each unlabelled operation gets the label of the innermost module
    in its `nn_module_stack` here.
    """
    require_instance("model", model, nn.Module)
    require_instance("example", example, torch.Tensor)
    exported = torch.export.export(model, (example,)).module()
    for node in exported.graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if node.op == "call_function" and stack and "source_fn_stack" not in node.meta:
            path = list(stack.values())[-1][0]
            node.meta["source_fn_stack"] = [(path, type(model.get_submodule(path)))]
    return exported


def quantized_activations(converted: torch.fx.GraphModule) -> int:
    """How many activations a converted PT2E graph quantizes to int8 (its quantize_per_tensor operations)."""
    require_instance("converted", converted, torch.fx.GraphModule)
    quantize = torch.ops.quantized_decomposed.quantize_per_tensor.default
    return sum(node.target == quantize for node in converted.graph.nodes)


def static_int8(model: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor], *,
                reduce_range: bool = False, quantizer: X86InductorQuantizer | None = None) -> torch.fx.GraphModule:
    """Post-training static int8 (PT2E): export, insert observers, calibrate on real batches, convert.

    quantizer: a configured X86InductorQuantizer to use instead of x86_quantizer(reduce_range=reduce_range).
    """
    require_instance("model", model, nn.Module)
    if quantizer is None:
        quantizer = x86_quantizer(reduce_range=reduce_range)
    require_instance("quantizer", quantizer, X86InductorQuantizer)
    prepared = prepare_pt2e(export_for_pt2e(model.eval(), example), quantizer)
    with torch.no_grad():
        for images in calibration:
            prepared(images)
    converted = convert_pt2e(prepared)
    if quantized_activations(converted) == 0:
        raise RuntimeError("PT2E quantized no operation of this model: the quantizer found no Conv2d or Linear it "
                           "supports, or every one was kept in fp32")
    return drop_unused_parameters(converted)


def prepare_qat(model: nn.Module, example: torch.Tensor, *, reduce_range: bool = False) -> torch.fx.GraphModule:
    """Quantization-aware training (PT2E): the exported model with fake-quantize nodes, ready to train.

    The export fixes the batch size: train it on batches of exactly example's size.
    """
    require_instance("model", model, nn.Module)
    quantizer = x86_quantizer(is_qat=True, reduce_range=reduce_range)
    prepared = prepare_qat_pt2e(export_for_pt2e(model.train(), example), quantizer)
    allow_train_eval(prepared)  # so that ordinary training loops may call .train() and .eval()
    return prepared


def convert_qat(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """The int8 model from a QAT-trained prepared model."""
    require_instance("prepared", prepared, torch.fx.GraphModule)
    prepared.eval()
    return drop_unused_parameters(convert_pt2e(prepared))


def drop_unused_parameters(graph_module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Delete parameters and buffers the graph no longer reads (convert_pt2e keeps the fp32 weights it replaced)."""
    require_instance("graph_module", graph_module, torch.fx.GraphModule)
    used = {node.target for node in graph_module.graph.nodes if node.op == "get_attr"}
    named = [*graph_module.named_parameters(), *graph_module.named_buffers()]
    for name, _ in named:
        if name not in used:
            owner_path, _, attribute = name.rpartition(".")
            delattr(graph_module.get_submodule(owner_path) if owner_path else graph_module, attribute)
    allow_train_eval(graph_module)
    return graph_module


def allow_train_eval(graph_module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Let training loops call .train() and .eval() on an exported graph, without resetting torch.compile.

    torchao's switch (allow_exported_model_train_eval) rewrites the graph's dropout and batch-norm patterns,
    exporting each pattern with strict torch.export, which resets Dynamo: every model compiled earlier in
    this process loses its compiled code and compiles again on its next call, with whatever settings hold
    then. A graph with neither has nothing to rewrite, so there only the mode flag changes.
    """
    require_instance("graph_module", graph_module, torch.fx.GraphModule)
    if any(name in str(node.target) for node in graph_module.graph.nodes for name in ("batch_norm", "dropout")):
        return allow_exported_model_train_eval(graph_module)

    def set_mode(self: torch.fx.GraphModule, mode: bool = True) -> torch.fx.GraphModule:
        self.training = mode
        return self

    graph_module.train = types.MethodType(set_mode, graph_module)
    graph_module.eval = types.MethodType(lambda self: set_mode(self, False), graph_module)
    return graph_module


@torch.no_grad()
def predict_in_fixed_batches(model: Callable, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits for all images, always calling model on exactly batch_size images (the last batch is padded)."""
    require_int("batch_size", batch_size, minimum=1)
    if len(images) == 0:
        raise ValueError("images must not be empty")
    padding = (-len(images)) % batch_size
    padded = torch.cat([images, images[:1].expand(padding, *images.shape[1:])])
    logits = [model(padded[start:start + batch_size]) for start in range(0, len(padded), batch_size)]
    return torch.cat(logits)[:len(images)].float()


def fixed_batch_accuracy(model: Callable, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 64) -> float:
    """Share of correctly classified images, calling model only at batch_size (see predict_in_fixed_batches)."""
    if len(images) != len(labels):
        raise ValueError(f"images and labels must have equal length, got {len(images)} and {len(labels)}")
    predictions = predict_in_fixed_batches(model, images, batch_size).argmax(dim=1)
    return (predictions == labels).sum().item() / len(labels)


def int8_reduce_range_needed() -> bool:
    """True on x86 CPUs without VNNI, where u8 x s8 products can saturate: quantize activations to 7 bits there."""
    return should_reduce_range(torch.device("cpu"))


def fold_batch_norm(model: nn.Sequential) -> nn.Sequential:
    """An eval-mode copy of model with each top-level Conv2d-BatchNorm2d pair folded into one convolution."""
    require_instance("model", model, nn.Sequential)
    layers, folded = list(copy.deepcopy(model).eval()), []
    while layers:
        layer = layers.pop(0)
        if isinstance(layer, nn.Conv2d) and layers and isinstance(layers[0], nn.BatchNorm2d):
            layer = fuse_conv_bn_eval(layer, layers.pop(0))
        folded.append(layer)
    return nn.Sequential(*folded).eval()
