"""When post-training int8 loses accuracy: calibration data, observers, layers kept in fp32, and what a paired test
on one test set can detect."""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd
import torch
from torch import nn

# quantize before torchao: it quietens a log line that importing torchao prints
from helpers.ch06_compression.quantize import fold_batch_norm, static_int8
from helpers.ch06_compression.distill import train_student
from helpers.core.accuracy import paired_prediction_change
from helpers.core.validate import require_choice, require_instance, require_int, require_number
from helpers.workload.models import small_cnn
from torchao.quantization.pt2e import HistogramObserver, MinMaxObserver
from torchao.quantization.pt2e.quantizer import QuantizationConfig
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
    X86InductorQuantizer, get_default_x86_inductor_quantization_config,
)

OBSERVERS = {"histogram": HistogramObserver, "minmax": MinMaxObserver}


def folded_student(channels: Sequence[int], labelled: tuple[torch.Tensor, torch.Tensor], *, seed: int = 0,
                   steps: int = 300) -> nn.Sequential:
    """small_cnn(channels) initialised from seed, trained by train_student, batch norm folded into the convolutions."""
    require_int("seed", seed, minimum=0)
    with torch.random.fork_rng(devices=[]):  # the initial weights depend on seed only, not on the caller's RNG state
        torch.manual_seed(seed)
        model = small_cnn(channels)
    return fold_batch_norm(train_student(model, labelled, steps=steps, seed=seed))


def int8_config(*, observer: str = "histogram", reduce_range: bool = False) -> QuantizationConfig:
    """X86InductorQuantizer's default static int8 config, with the activation observer chosen by name."""
    require_choice("observer", observer, OBSERVERS)
    default = get_default_x86_inductor_quantization_config(reduce_range=reduce_range)
    observer_class = OBSERVERS[observer].with_args(eps=2**-12)  # the eps of the default config
    activations = dataclasses.replace(default.input_activation, observer_or_fake_quant_ctr=observer_class)
    return dataclasses.replace(default, input_activation=activations, output_activation=activations)


def quantizable_layers(model: nn.Module) -> list[str]:
    """Names of model's Conv2d and Linear modules, the layers X86InductorQuantizer computes in int8."""
    require_instance("model", model, nn.Module)
    return [name for name, module in model.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))]


def static_int8_variant(model: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor], *,
                        observer: str = "histogram", fp32_layers: Sequence[str] = (),
                        reduce_range: bool = False) -> torch.fx.GraphModule:
    """PT2E static int8 (quantize.static_int8) with a choice of activation observer and the named layers'
    weights and arithmetic left in fp32 (the quantizer still rounds such a layer's input where the previous
    operation's output is int8)."""
    require_instance("model", model, nn.Module)
    if isinstance(fp32_layers, str):
        raise TypeError(f"fp32_layers must be a sequence of layer names such as ['0'], got the string {fp32_layers!r}")
    unknown = sorted(set(fp32_layers) - set(quantizable_layers(model)))
    if unknown:
        raise ValueError(f"fp32_layers must name Conv2d or Linear modules of model {quantizable_layers(model)}, "
                         f"got {unknown}")
    quantizer = X86InductorQuantizer().set_global(int8_config(observer=observer, reduce_range=reduce_range))
    for name in fp32_layers:
        quantizer.set_module_name_qconfig(name, None)
    with warnings.catch_warnings():  # a pooling layer after an fp32 layer stays fp32, and torchao says so each time
        warnings.filterwarnings("ignore", message="The input of .* is not quantized", category=UserWarning)
        return static_int8(model, example, calibration, quantizer=quantizer)


def multiply_adds(model: nn.Module, example: torch.Tensor) -> pd.Series:
    """Multiply-adds per input of each Conv2d and Linear layer of model, counted by forward hooks on example
    (one input, in eval mode, so that batch-norm statistics do not move; model's mode is restored)."""
    require_instance("example", example, torch.Tensor)
    counts, hooks = {}, []

    def count(name: str, layer: nn.Module, output: torch.Tensor) -> None:
        per_output = layer.in_features if isinstance(layer, nn.Linear) else (
            layer.in_channels // layer.groups * math.prod(layer.kernel_size))
        counts[name] = output[0].numel() * per_output

    for name, layer in model.named_modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            hooks.append(layer.register_forward_hook(
                lambda layer, inputs, output, name=name: count(name, layer, output)))
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(example[:1])
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return pd.Series(counts, name="multiply-adds per input", dtype="int64")


def _conv_pair(model: nn.Module, first: str, second: str) -> tuple[nn.Conv2d, nn.Conv2d]:
    """model's Conv2d modules first and second, checked to be joined by first's output channels."""
    modules = dict(model.named_modules())
    for name in (first, second):
        if not isinstance(modules.get(name), nn.Conv2d):
            raise ValueError(f"{name!r} must name a Conv2d of model, one of {quantizable_layers(model)}")
    conv1, conv2 = modules[first], modules[second]
    if conv2.groups != 1 or conv1.out_channels != conv2.in_channels or conv1.bias is None:
        raise ValueError(f"layer {second!r} must read all {conv1.out_channels} output channels of layer {first!r} "
                         f"(groups=1), and {first!r} must have a bias (fold batch norm first)")
    return conv1, conv2


def rescale_channels(model: nn.Module, first: str, second: str, scales: torch.Tensor) -> nn.Module:
    """A copy of model with output channel i of conv `first` multiplied by scales[i] and the matching input
    channel of conv `second` divided by it: the same function when only ReLU or max-pooling (unchanged by a
    positive factor) lies between them."""
    conv1, conv2 = _conv_pair(model, first, second)
    require_instance("scales", scales, torch.Tensor)
    if scales.shape != (conv1.out_channels,) or not bool((scales > 0).all()):
        raise ValueError(f"scales must hold {conv1.out_channels} positive factors, one per channel, "
                         f"got shape {tuple(scales.shape)}")
    rescaled = copy.deepcopy(model)
    conv1, conv2 = _conv_pair(rescaled, first, second)
    with torch.no_grad():
        conv1.weight.mul_(scales.view(-1, 1, 1, 1))
        conv1.bias.mul_(scales)
        conv2.weight.div_(scales.view(1, -1, 1, 1))
    return rescaled


def equalization_scales(model: nn.Module, first: str, second: str) -> torch.Tensor:
    """Cross-layer equalization (Nagel et al., 2019): per-channel factors for rescale_channels that give
    channel i the same weight range in both convolutions, sqrt(range in second / range in first)."""
    conv1, conv2 = _conv_pair(model, first, second)
    range1 = conv1.weight.detach().abs().amax(dim=(1, 2, 3))
    range2 = conv2.weight.detach().abs().amax(dim=(0, 2, 3))
    return torch.sqrt(range2 / range1)


def activation_ranges(converted: torch.fx.GraphModule) -> pd.Series:
    """The largest value each activation quantizer of a converted graph can represent, named by the module whose
    output it quantizes ("input" for the model's input), in graph order; empty where nothing was quantized."""
    require_instance("converted", converted, torch.fx.GraphModule)
    quantize = torch.ops.quantized_decomposed.quantize_per_tensor.default
    ranges = {}
    for node in converted.graph.nodes:
        if node.op == "call_function" and node.target == quantize:
            source, scale, zero_point, _, quant_max, _ = node.args
            path, kind = list(source.meta.get("nn_module_stack", {"": ("input", "")}).values())[-1]
            kind = getattr(kind, "__name__", str(kind)).rpartition(".")[2]  # a qualified name or a class
            ranges[f"{path} ({kind})" if kind else path] = (quant_max - zero_point) * scale
    return pd.Series(ranges, name="largest representable value", dtype=float)  # empty if nothing was quantized


def paired_table(predictions: Mapping[str, torch.Tensor], labels: torch.Tensor, *, reference: str) -> pd.DataFrame:
    """One row per model: test accuracy, its change against the reference in points, and how the two models'
    predictions differ on the same images (paired_prediction_change: McNemar's exact p)."""
    if reference not in predictions:
        raise ValueError(f"reference must be one of the models {list(predictions)}, got {reference!r}")
    accuracy = {name: (predicted == labels).sum().item() / len(labels) for name, predicted in predictions.items()}
    rows = {name: {"test accuracy": accuracy[name], "change (points)": 100 * (accuracy[name] - accuracy[reference]),
                   **paired_prediction_change(predictions[reference], predicted, labels)}
            for name, predicted in predictions.items()}
    table = pd.DataFrame(rows).T
    counts = ["predictions changed", "only the reference right", "only the candidate right"]
    table[counts] = table[counts].astype(int)
    return table


def detectable_difference(discordant: int, n_images: int = 450, *, alpha: float = 0.05) -> float | None:
    """Smallest accuracy difference (a fraction of n_images) that McNemar's exact test, as paired_prediction_change
    computes it, calls significant at level alpha when `discordant` images are right for one model only; None if
    no split of them is significant."""
    discordant = require_int("discordant", discordant, minimum=0)
    n_images = require_int("n_images", n_images, minimum=1)
    require_number("alpha", alpha, strictly_positive=True, maximum=1.0)
    if discordant > n_images:
        raise ValueError(f"discordant must be at most n_images ({n_images}), got {discordant}")
    tail, most_even_split = 0, None  # the most images on the minority side that still give p < alpha
    for minority in range(discordant // 2 + 1):
        tail += math.comb(discordant, minority)
        if min(1.0, 2 * tail / 2**discordant) >= alpha:
            break
        most_even_split = minority
    return None if most_even_split is None else (discordant - 2 * most_even_split) / n_images
