"""Tests of helpers/ch06_compression/: the distillation loss, loop and split, int8 quantization (PT2E), calibration
and the layers kept in fp32, weight-only quantization (no speed asserted), the charts, the exercise checks. Tiny
models on random 16x16 images, a few steps each."""

import copy
import importlib.util
import math
import warnings

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn
from torchao.prototype.quantization.int4 import Int4OpaqueTensor, PrototypeInt4WeightOnlyConfig
from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import get_default_x86_inductor_quantization_config
from torchao.quantization.quantize_.workflows.int8.int8_tensor import Int8Tensor

import helpers.ch06_compression.quantize  # noqa: F401  first: it quietens the log line that importing torchao prints
from helpers.ch03_hardware.compile_timing import compile_for_inference
from helpers.ch06_compression.calibration import (
    OBSERVERS, activation_ranges, detectable_difference, equalization_scales, folded_student, int8_config,
    multiply_adds, paired_table, quantizable_layers, rescale_channels, static_int8_variant,
)
from helpers.ch06_compression.distill import (
    TARGETS, soft_target_loss, split_for_distillation, teacher_logits, train_student,
)
from helpers.ch06_compression.exercises import (
    check_granularity_prediction, check_granularity_ratio, check_uint8_quantizer,
)
from helpers.ch06_compression.plots import plot_distributions, plot_spread, plot_stages
from helpers.ch06_compression.quantize import (
    allow_train_eval, convert_qat, drop_unused_parameters, export_for_pt2e, fixed_batch_accuracy, fold_batch_norm,
    int8_reduce_range_needed, per_tensor_penalty, predict_in_fixed_batches, prepare_qat, quantized_activations,
    static_int8, symmetric_int8_error, symmetric_int8_round_trip, with_int8_weights, x86_quantizer,
)
from helpers.ch06_compression.weight_only import (
    BASELINE, FLOAT8, VARIANTS, WEIGHT_ONLY, WidthResult, fast_path, frozen_per_batch, gpu_weight_only,
    last_level_cache_mib, linear_stack,
    matmul_operators, measure_weight_only, measure_width, quantization_config, quantized_copy, stored_tensors,
    unavailable_reason, weight_bytes, weight_only_table,
)
from helpers.core.accuracy import paired_prediction_change
from helpers.core.cost import serialized_size_bytes
from helpers.workload.models import small_cnn


def hand_soft_target_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * sum over classes of p_t (log p_t - log p_s), averaged over the batch; terms with p_t = 0 count 0."""
    student, teacher = student.double() / temperature, teacher.double() / temperature
    p_teacher = teacher.softmax(dim=-1)
    terms = p_teacher * (teacher.log_softmax(dim=-1) - student.log_softmax(dim=-1))
    return temperature**2 * torch.where(p_teacher > 0, terms, 0.0).sum() / len(student)


def images(n: int, seed: int = 0) -> torch.Tensor:
    """n random one-channel 16x16 images."""
    return torch.randn(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def tiny_cnn(seed: int = 0) -> nn.Sequential:
    """small_cnn((4, 8)) with reproducible weights and non-trivial batch-norm parameters and statistics."""
    torch.manual_seed(seed)
    model = small_cnn((4, 8))
    with torch.no_grad():
        for bn in (m for m in model if isinstance(m, nn.BatchNorm2d)):
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-0.5, 0.5)
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
    return model


def labels(n: int, seed: int = 0) -> torch.Tensor:
    """n random labels of 10 classes."""
    return torch.randint(10, (n,), generator=torch.Generator().manual_seed(seed))


def transfer_set(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Transfer images and a (random) teacher's logits for them."""
    x = images(n, seed=5)
    return x, teacher_logits(tiny_cnn(seed=9), x)


LABELLED = (images(32), labels(32))


def trained_parameters(seed: int, targets: str = "soft targets") -> list[torch.Tensor]:
    """Parameters of a fixed initial student after a few steps with this training seed."""
    transfer = None if targets == "labels only" else transfer_set()
    student = train_student(tiny_cnn(), LABELLED, transfer=transfer, targets=targets, steps=4, batch_size=8,
                            seed=seed)
    return [p.detach().clone() for p in student.parameters()]


class RecordingStudent(nn.Module):
    """A linear classifier that records the first column of every batch it sees (the images' ids)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.batches: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x[:, 0].clone())
        return self.linear(x)


def labelled_batches(targets: str, steps: int = 3, batch_size: int = 4) -> list[list[float]]:
    """The labelled images (by id) a student with these targets trains on, step by step."""
    labelled = (torch.arange(40.0).view(10, 4), torch.arange(10) % 3)
    transfer = (-1 - torch.arange(40.0).view(10, 4), torch.randn(10, 3))
    student = RecordingStudent()
    train_student(student, labelled, transfer=None if targets == "labels only" else transfer, targets=targets,
                  steps=steps, batch_size=batch_size, seed=7)
    return [batch[:batch_size].tolist() for batch in student.batches]


def used_attributes(graph_module: torch.fx.GraphModule) -> set[str]:
    """Names of the parameters and buffers the graph reads."""
    return {node.target for node in graph_module.graph.nodes if node.op == "get_attr"}


def stored_names(module: nn.Module) -> set[str]:
    """Names of the module's parameters and buffers."""
    return {name for name, _ in [*module.named_parameters(), *module.named_buffers()]}


def _uint8_by_hand(values: torch.Tensor) -> tuple[torch.Tensor, float, int]:
    low, high = min(values.min().item(), 0.0), max(values.max().item(), 0.0)
    scale = (high - low) / 255
    zero_point = round(-low / scale)
    return torch.clamp(torch.round(values / scale) + zero_point, 0, 255), scale, zero_point


@pytest.mark.parametrize("temperature", [1.0, 2.5, 8.0])
def test_soft_target_loss_matches_the_hand_computation(temperature):
    student, teacher = torch.randn(6, 10, generator=torch.Generator().manual_seed(1)), torch.randn(6, 10) * 3
    loss = soft_target_loss(student, teacher, temperature)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(hand_soft_target_loss(student, teacher, temperature).item(), rel=1e-5)
    assert soft_target_loss(teacher, teacher, temperature).item() == pytest.approx(0.0, abs=1e-6)


def test_soft_target_loss_stays_finite_when_a_teacher_logit_is_extremely_negative():
    student = torch.tensor([[0.5, -0.2, 0.1], [2.0, 0.0, -1e4]], requires_grad=True)
    teacher = torch.tensor([[0.0, 1.0, -1e4], [-1e4, 3.0, 0.0]])
    loss = soft_target_loss(student, teacher, 2.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()
    assert loss.item() == pytest.approx(hand_soft_target_loss(student.detach(), teacher, 2.0).item(), rel=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_soft_target_loss_gradient_is_t_times_the_difference_of_softened_distributions(temperature):
    student, teacher = torch.randn(4, 10, requires_grad=True), torch.randn(4, 10)
    soft_target_loss(student, teacher, temperature).backward()
    difference = (student / temperature).softmax(-1) - (teacher / temperature).softmax(-1)
    assert torch.allclose(student.grad, temperature * difference.detach() / len(student), atol=1e-6)


def test_the_t_squared_factor_keeps_the_gradient_magnitude_independent_of_temperature():
    """Hinton et al.: soft-target gradients scale as 1/T^2, so the loss is multiplied by T^2 to undo that."""
    generator = torch.Generator().manual_seed(2)
    student, teacher = torch.randn(8, 10, generator=generator), torch.randn(8, 10, generator=generator)

    def gradient_norms(temperature: float) -> tuple[float, float]:
        logits = student.clone().requires_grad_()
        with_factor = torch.autograd.grad(soft_target_loss(logits, teacher, temperature), logits)[0]
        plain_kl = F.kl_div(F.log_softmax(logits / temperature, -1), F.softmax(teacher / temperature, -1),
                            reduction="batchmean")
        without_factor = torch.autograd.grad(plain_kl, logits)[0]
        return with_factor.norm().item(), without_factor.norm().item()

    (scaled_8, plain_8), (scaled_16, plain_16) = gradient_norms(8.0), gradient_norms(16.0)
    assert scaled_16 / scaled_8 == pytest.approx(1.0, abs=0.1)
    assert plain_8 / plain_16 == pytest.approx(4.0, rel=0.1)
    assert scaled_8 == pytest.approx(64 * plain_8, rel=1e-4)


def test_soft_target_loss_rejects_mismatched_shapes_and_non_positive_temperatures():
    with pytest.raises(ValueError, match=r"same shape, got \(2, 10\) and \(2, 9\)"):
        soft_target_loss(torch.zeros(2, 10), torch.zeros(2, 9), 2.0)
    for temperature in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            soft_target_loss(torch.zeros(2, 10), torch.zeros(2, 10), temperature)


def test_teacher_logits_are_eval_mode_outputs_without_autograd_whatever_the_batch_size():
    teacher = tiny_cnn().train()
    statistics = copy.deepcopy({k: v for k, v in teacher.state_dict().items() if "running" in k or "batches" in k})
    x = images(10)
    one_by_one = teacher_logits(teacher, x, batch_size=1)
    all_at_once = teacher_logits(teacher, x, batch_size=512)
    assert teacher.training and all(m.training for m in teacher.modules()), "the caller's mode must be restored"
    assert one_by_one.shape == (10, 10) and not one_by_one.requires_grad
    assert torch.allclose(one_by_one, all_at_once, atol=1e-6, rtol=0)
    with torch.no_grad():
        assert torch.allclose(all_at_once, teacher.eval()(x), atol=1e-6, rtol=0)
    for name, value in statistics.items():
        assert torch.equal(teacher.state_dict()[name], value), f"{name} changed"


def test_split_for_distillation_is_disjoint_stratified_and_labels_a_few_per_class_of_the_pool():
    x, y = torch.arange(300.0).reshape(300, 1, 1, 1), torch.arange(300) % 10
    split = split_for_distillation(x, y, teacher_size=100, validation_size=50, labelled_per_class=3)
    ids = {name: set(part.flatten().tolist()) for name, part in
           (("teacher", split.teacher[0]), ("pool", split.pool), ("validation", split.validation[0]))}
    assert [len(v) for v in ids.values()] == [100, 150, 50]
    assert not (ids["teacher"] & ids["pool"]) and not (ids["teacher"] & ids["validation"]) \
        and not (ids["pool"] & ids["validation"])
    assert set(split.labelled[0].flatten().tolist()) <= ids["pool"]
    assert torch.bincount(split.labelled[1]).tolist() == [3] * 10
    assert torch.equal(split.pool_labels, split.pool.flatten().long() % 10)
    assert torch.bincount(split.teacher[1]).tolist() == [10] * 10


def test_split_for_distillation_validates_its_arguments():
    x, y = torch.zeros(30, 1, 1, 1), torch.arange(30) % 10
    with pytest.raises(ValueError, match="more images than"):
        split_for_distillation(x, y, teacher_size=20, validation_size=10)
    with pytest.raises(ValueError, match="fewer than 5 images of some class"):
        split_for_distillation(x, y, teacher_size=10, validation_size=10)


def test_teacher_logits_validates_its_arguments():
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        teacher_logits(tiny_cnn(), images(2), batch_size=0)
    with pytest.raises(TypeError, match="teacher must be a Module"):
        teacher_logits(lambda x: x, images(2))


@pytest.mark.parametrize(("options", "message"), [
    ({"targets": "teacher's logits"}, "targets must be one of"),
    ({"alpha": -0.1}, "alpha must be >= 0"),
    ({"alpha": 1.5}, "alpha must be <= 1"),
    ({"temperature": 0.0}, "temperature must be > 0"),
    ({"steps": 0}, "steps must be an int >= 1"),
    ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ({"targets": "labels only", "transfer": transfer_set()}, "exactly when targets is not 'labels only'"),
    ({"targets": "soft targets"}, "exactly when targets is not 'labels only'"),
    ({"targets": "hard labels"}, "exactly when targets is not 'labels only'"),
])
def test_train_student_rejects_bad_arguments(options, message):
    with pytest.raises(ValueError, match=message):
        train_student(tiny_cnn(), LABELLED, **{"steps": 1, **options})


@pytest.mark.parametrize("targets", TARGETS)
def test_train_student_trains_with_every_kind_of_target_and_returns_the_module_in_eval_mode(targets):
    student = tiny_cnn()
    before = copy.deepcopy(student.state_dict())
    transfer = None if targets == "labels only" else transfer_set()
    trained = train_student(student, LABELLED, transfer=transfer, targets=targets, steps=3, batch_size=8)
    assert trained is student and not trained.training
    assert all(not m.training for m in trained.modules())
    assert any(not torch.equal(before[k], v) for k, v in trained.state_dict().items() if k.endswith("weight"))
    with torch.no_grad():
        assert torch.isfinite(trained(images(4))).all()


def test_train_student_is_reproducible_for_a_seed():
    first, again, other = trained_parameters(3), trained_parameters(3), trained_parameters(4)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert any(not torch.equal(a, b) for a, b in zip(first, other))


def test_distillation_arms_train_on_the_same_labelled_batches():
    hard, soft = labelled_batches("hard labels"), labelled_batches("soft targets")
    assert hard == soft
    assert all(value >= 0 for batch in hard for value in batch), "labelled images come first in each batch"


def test_labels_only_arm_trains_on_the_same_labelled_batches_as_the_distillation_arms():
    assert labelled_batches("labels only") == labelled_batches("soft targets")


def test_static_int8_is_smaller_than_fp32_and_keeps_only_what_its_graph_reads():
    model = tiny_cnn().eval()
    calibration = [images(16, seed) for seed in range(3)]
    quantized = static_int8(model, calibration[0], calibration)
    assert isinstance(quantized, torch.fx.GraphModule)
    assert serialized_size_bytes(quantized) < serialized_size_bytes(model)
    assert stored_names(quantized) == used_attributes(quantized)
    with torch.no_grad():
        reference, result = model(calibration[0]), quantized(calibration[0])
    assert result.shape == reference.shape == (16, 10)
    assert (result - reference).abs().max() < 0.1 * reference.abs().max()


def test_drop_unused_parameters_removes_the_fp32_weights_convert_pt2e_keeps():
    model, x = tiny_cnn().eval(), images(8)
    prepared = prepare_pt2e(torch.export.export(model, (x,)).module(), x86_quantizer())
    prepared(x)
    converted = convert_pt2e(prepared)
    with torch.no_grad():
        before = converted(x)
    size_before, unused = serialized_size_bytes(converted), stored_names(converted) - used_attributes(converted)
    assert unused, "convert_pt2e keeps the replaced fp32 weights"
    dropped = drop_unused_parameters(converted)
    assert stored_names(dropped) == used_attributes(dropped)
    assert not unused & stored_names(dropped)
    assert serialized_size_bytes(dropped) < size_before
    with torch.no_grad():
        assert torch.equal(dropped(x), before)
    with pytest.raises(TypeError, match="graph_module must be a GraphModule"):
        drop_unused_parameters(model)


def test_predict_in_fixed_batches_calls_the_model_only_at_batch_size_and_keeps_the_order():
    calls = []

    def fake_model(batch: torch.Tensor) -> torch.Tensor:
        calls.append(len(batch))
        return (batch.flatten(1)[:, :1] * torch.tensor([1.0, -1.0])).to(torch.bfloat16)

    x = torch.arange(10.0).view(10, 1, 1, 1)
    logits = predict_in_fixed_batches(fake_model, x, 4)
    assert calls == [4, 4, 4]
    assert logits.dtype == torch.float32
    assert torch.equal(logits, torch.stack([torch.arange(10.0), -torch.arange(10.0)], dim=1))
    calls.clear()
    assert len(predict_in_fixed_batches(fake_model, x[:8], 4)) == 8 and calls == [4, 4]
    calls.clear()
    assert len(predict_in_fixed_batches(fake_model, x[:3], 64)) == 3 and calls == [64]


def test_predict_in_fixed_batches_validates_its_arguments():
    with pytest.raises(ValueError, match="images must not be empty"):
        predict_in_fixed_batches(lambda b: b, torch.zeros(0, 1, 4, 4), 4)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        predict_in_fixed_batches(lambda b: b, torch.zeros(2, 1, 4, 4), 0)


def test_fixed_batch_accuracy_counts_correct_predictions_and_validates_lengths():
    def predicts_id_mod_3(batch: torch.Tensor) -> torch.Tensor:
        return F.one_hot(batch.flatten().long() % 3, 3).float()

    x = torch.arange(5.0).view(5, 1, 1, 1)  # predictions 0, 1, 2, 0, 1
    assert fixed_batch_accuracy(predicts_id_mod_3, x, torch.tensor([0, 1, 2, 0, 0]), batch_size=2) == pytest.approx(0.8)
    assert fixed_batch_accuracy(predicts_id_mod_3, x, torch.tensor([0, 1, 2, 0, 1]), batch_size=64) == 1.0
    with pytest.raises(ValueError, match="equal length, got 5 and 4"):
        fixed_batch_accuracy(predicts_id_mod_3, x, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="must not be empty"):
        fixed_batch_accuracy(predicts_id_mod_3, x[:0], torch.zeros(0, dtype=torch.long))


def test_fold_batch_norm_removes_batch_norm_without_changing_eval_outputs():
    model = tiny_cnn().train()
    folded = fold_batch_norm(model)
    assert isinstance(folded, nn.Sequential)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model) == 2 and model.training, "the original is untouched"
    with torch.no_grad():
        assert torch.allclose(folded.eval()(images(6)), model.eval()(images(6)), atol=1e-5)
    with pytest.raises(TypeError, match="model must be a Sequential"):
        fold_batch_norm(nn.ModuleList(model))


def test_quantization_aware_training_gives_an_int8_graph_module():
    x = images(8)
    prepared = prepare_qat(fold_batch_norm(tiny_cnn()), x)  # as chapter 6 does: fold first, then fake-quantize
    assert isinstance(prepared, torch.fx.GraphModule)
    trained = train_student(prepared, (images(32, seed=1), labels(32)), steps=2, batch_size=8)
    assert trained is prepared
    quantized = convert_qat(trained)
    assert isinstance(quantized, torch.fx.GraphModule)
    assert stored_names(quantized) == used_attributes(quantized)
    with torch.no_grad():
        logits = quantized(x)
    assert logits.shape == (8, 10) and torch.isfinite(logits).all()
    with pytest.raises(TypeError, match="prepared must be a GraphModule"):
        convert_qat(tiny_cnn())


def test_compile_for_inference_matches_eager_fp32():
    model, x = small_cnn((4,)).eval(), images(4)
    compiled, first_call_s = compile_for_inference(model, x, freezing=True)
    assert first_call_s > 0
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-4, rtol=0)


def test_int8_reduce_range_needed_is_a_bool():
    assert isinstance(int8_reduce_range_needed(), bool)


def test_plot_spread_draws_one_row_per_method():
    fig = plot_spread({"labels only": [0.80, 0.82, 0.81], "soft targets": [0.85]}, hardware="test CPU",
                      reference=("teacher", 0.9))
    assert isinstance(fig, Figure)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["labels only", "soft targets"]
    for empty in ({}, {"labels only": []}):
        with pytest.raises(ValueError, match="non-empty list"):
            plot_spread(empty, hardware="test CPU")


def test_plot_distributions_draws_one_series_per_label():
    fig = plot_distributions({"T=1": [0.9, 0.09, 0.01], "T=4": [0.5, 0.3, 0.2]}, title="softened")
    assert isinstance(fig, Figure)
    assert len(fig.axes[0].patches) == 6
    for bad in ({}, {"a": []}, {"a": [0.5, 0.5], "b": [1.0]}):
        with pytest.raises(ValueError, match="at least one distribution"):
            plot_distributions(bad)


def test_plot_stages_draws_one_panel_per_column():
    table = pd.DataFrame({"size (KB)": [100.0, 30.0], "accuracy": [0.95, 0.94]}, index=["fp32", "int8"])
    fig = plot_stages(table, ["size (KB)", "accuracy"], hardware="test CPU")
    assert isinstance(fig, Figure)
    assert [ax.get_xlabel() for ax in fig.axes] == ["size (KB)", "accuracy"]
    with pytest.raises(ValueError, match=r"missing: \['latency'\]"):
        plot_stages(table, ["size (KB)", "latency"], hardware="test CPU")
    with pytest.raises(ValueError, match="columns must name its columns"):
        plot_stages(table, [], hardware="test CPU")
    with pytest.raises(ValueError, match="table must have rows"):
        plot_stages(table.iloc[:0], ["size (KB)"], hardware="test CPU")
    shaded = plot_stages(table, ["size (KB)"], hardware="test CPU", baseline="int8")
    fp32_bar, int8_bar = shaded.axes[0].patches
    assert fp32_bar.get_facecolor() != int8_bar.get_facecolor()
    first_shaded = plot_stages(table, ["size (KB)"], hardware="test CPU").axes[0].patches[0]
    assert int8_bar.get_facecolor() == first_shaded.get_facecolor()
    with pytest.raises(ValueError, match=r"baseline must name a row of table \['fp32', 'int8'\], got 'bf16'"):
        plot_stages(table, ["size (KB)"], hardware="test CPU", baseline="bf16")


def test_uint8_check_passes_a_correct_quantizer_and_explains_wrong_ones(capsys):
    cases = [torch.relu(torch.randn(500, generator=torch.Generator().manual_seed(1))),
             torch.randn(500, generator=torch.Generator().manual_seed(2))]  # the second has a non-zero zero point
    assert check_uint8_quantizer("E", _uint8_by_hand, cases)
    assert not check_uint8_quantizer("E", lambda v: None, cases)
    assert not check_uint8_quantizer("E", lambda v: (v, 1.0, 0), cases)  # no quantization at all
    assert not check_uint8_quantizer("E", lambda v: (_uint8_by_hand(v)[0], _uint8_by_hand(v)[1], 0), cases[1:])
    shown = capsys.readouterr().out
    assert "not implemented yet" in shown and "scale" in shown and "zero point 0" in shown


def pixel_images(n: int, seed: int = 0) -> torch.Tensor:
    """n random one-channel 16x16 images with pixels in [0, 1]."""
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def tiny_folded_cnn(seed: int = 0) -> nn.Sequential:
    """small_cnn((4, 8)) with batch norm folded: Conv2d at 0 and 3, Linear at 8."""
    torch.manual_seed(seed)
    return fold_batch_norm(small_cnn((4, 8)))


def quantized_weight_count(converted: torch.fx.GraphModule) -> int:
    """How many weights the converted graph dequantizes from int8 (one per int8 layer)."""
    dequantize = torch.ops.quantized_decomposed.dequantize_per_channel.default
    return sum(node.target == dequantize for node in converted.graph.nodes)


def test_folded_student_depends_on_its_seed_only_and_leaves_the_global_generator_alone():
    x, y = pixel_images(32), torch.arange(32) % 10
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = folded_student((4, 8), (x, y), seed=1, steps=2)
    assert torch.equal(torch.get_rng_state(), state)
    again = folded_student((4, 8), (x, y), seed=1, steps=2)
    other = folded_student((4, 8), (x, y), seed=2, steps=2)
    assert torch.equal(first[0].weight, again[0].weight)
    assert not torch.equal(first[0].weight, other[0].weight)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in first.modules()) and not first.training


def test_int8_config_changes_only_the_activation_observer():
    default = get_default_x86_inductor_quantization_config()
    for name, observer in OBSERVERS.items():
        config = int8_config(observer=name)
        assert config.input_activation is config.output_activation
        assert config.input_activation.observer_or_fake_quant_ctr.p.func is observer
        assert config.input_activation.quant_max == 255 and config.input_activation.dtype == torch.uint8
        assert config.weight.qscheme == default.weight.qscheme == torch.per_channel_symmetric
        assert config.weight.observer_or_fake_quant_ctr.p.func is default.weight.observer_or_fake_quant_ctr.p.func
    assert int8_config(reduce_range=True).input_activation.quant_max == 127
    with pytest.raises(ValueError, match="observer must be one of 'histogram', 'minmax'; got 'max'"):
        int8_config(observer="max")


def test_quantizable_layers_are_the_convolutions_and_the_linear_layer():
    assert quantizable_layers(tiny_folded_cnn()) == ["0", "3", "8"]
    assert quantizable_layers(small_cnn((4, 8))) == ["0", "4", "10"]  # unfolded: batch norm between


def test_fp32_layers_keep_their_weights_out_of_int8_without_printing_warnings():
    model, x = tiny_folded_cnn(), pixel_images(16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        everywhere = static_int8_variant(model, x, [x])
        one_kept = static_int8_variant(model, x, [x], fp32_layers=["3"])
        two_kept = static_int8_variant(model, x, [x], fp32_layers=["0", "8"])
    assert [quantized_weight_count(m) for m in (everywhere, one_kept, two_kept)] == [3, 2, 1]
    with torch.no_grad():
        reference = model(x)
        for converted in (everywhere, one_kept, two_kept):
            assert (converted(x) - reference).abs().max() < 0.05 * reference.abs().max()


def test_static_int8_variant_rejects_layers_it_cannot_keep_in_fp32():
    model, x = tiny_folded_cnn(), pixel_images(4)
    with pytest.raises(ValueError, match=r"fp32_layers must name Conv2d or Linear modules of model \['0', '3', '8'\], "
                                         r"got \['1', 'fc'\]"):
        static_int8_variant(model, x, [x], fp32_layers=["fc", "1"])
    with pytest.raises(TypeError, match=r"fp32_layers must be a sequence of layer names such as \['0'\], got the"):
        static_int8_variant(model, x, [x], fp32_layers="38")
    with pytest.raises(TypeError, match="model must be a Module"):
        static_int8_variant(lambda t: t, x, [x])


def test_activation_ranges_follow_the_calibration_data():
    model, x = tiny_folded_cnn(), pixel_images(16)
    ranges = activation_ranges(static_int8_variant(model, x, [x], observer="minmax"))
    assert list(ranges.index) == ["input", "1 (ReLU)", "2 (MaxPool2d)", "4 (ReLU)", "5 (MaxPool2d)",
                                  "6 (AdaptiveAvgPool2d)", "7 (Flatten)"]
    assert ranges["input"] == pytest.approx(x.max().item(), rel=1e-5)  # MinMax: the largest value seen
    scaled = activation_ranges(static_int8_variant(model, x, [16 * x], observer="minmax"))
    assert scaled["input"] / ranges["input"] == pytest.approx(16, rel=1e-5)
    assert (scaled > ranges).all()
    assert activation_ranges(torch.fx.symbolic_trace(model)).empty  # nothing quantized: nothing to report


def test_minmax_ranges_are_the_largest_values_seen_and_histogram_ranges_never_exceed_them():
    torch.manual_seed(0)
    model = folded_student((4, 8), (pixel_images(64), torch.arange(64) % 10), steps=5)
    x = pixel_images(64, seed=1)
    histogram = activation_ranges(static_int8_variant(model, x, [x]))
    minmax = activation_ranges(static_int8_variant(model, x, [x], observer="minmax"))
    with torch.no_grad():
        assert minmax["1 (ReLU)"] == pytest.approx(model[:2](x).max().item(), rel=1e-5)
    assert (histogram <= minmax * (1 + 1e-6)).all()


def test_multiply_adds_count_each_layer_per_input_and_leave_the_model_as_it_was():
    model = small_cnn((4, 8)).train()  # batch norm in training mode: its statistics must not move
    running_mean = model[1].running_mean.clone()
    counts = multiply_adds(model, pixel_images(8))
    assert counts.to_dict() == {"0": 16 * 16 * 4 * 1 * 9, "4": 8 * 8 * 8 * 4 * 9, "10": 10 * 8}
    assert model.training and torch.equal(model[1].running_mean, running_mean)


def test_a_layer_kept_in_fp32_still_reads_an_int8_rounded_input():
    model, x = tiny_folded_cnn(), pixel_images(16)
    converted = static_int8_variant(model, x, [x], observer="minmax", fp32_layers=["3"])
    assert "2 (MaxPool2d)" in activation_ranges(converted).index  # the max-pooling before layer 3: int8 in and out
    convs = [node for node in converted.graph.nodes if node.target == torch.ops.aten.conv2d.default]
    second_input = convs[1].args[0]  # layer 3's input: the dequantized int8 output of the max-pooling
    assert second_input.target == torch.ops.quantized_decomposed.dequantize_per_tensor.default
    assert second_input.args[0].target == torch.ops.quantized_decomposed.quantize_per_tensor.default


def test_rescaled_channels_compute_the_same_function_and_widen_one_activation_range():
    model, x = tiny_folded_cnn(), pixel_images(16)
    scales = torch.tensor([1.0, 64.0, 1.0, 1.0])
    rescaled = rescale_channels(model, "0", "3", scales)
    with torch.no_grad():
        torch.testing.assert_close(rescaled(x), model(x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(rescaled[:2](x)[:, 1], 64 * model[:2](x)[:, 1], rtol=1e-5, atol=1e-6)
    assert torch.equal(model[0].weight, tiny_folded_cnn()[0].weight)  # the original is untouched
    before = activation_ranges(static_int8_variant(model, x, [x], observer="minmax"))
    after = activation_ranges(static_int8_variant(rescaled, x, [x], observer="minmax"))
    assert after["2 (MaxPool2d)"] > 10 * before["2 (MaxPool2d)"]
    assert after["input"] == before["input"]


def test_equalization_gives_each_channel_the_same_weight_range_in_both_convolutions():
    model = rescale_channels(tiny_folded_cnn(), "0", "3", torch.tensor([1.0, 64.0, 0.1, 3.0]))
    equalized = rescale_channels(model, "0", "3", equalization_scales(model, "0", "3"))
    first = equalized[0].weight.abs().amax(dim=(1, 2, 3))
    second = equalized[3].weight.abs().amax(dim=(0, 2, 3))
    torch.testing.assert_close(first, second)
    torch.testing.assert_close(equalization_scales(equalized, "0", "3"), torch.ones(4))


def test_rescaling_rejects_bad_layers_and_scales():
    model = tiny_folded_cnn()
    with pytest.raises(ValueError, match=r"'8' must name a Conv2d of model, one of \['0', '3', '8'\]"):
        rescale_channels(model, "0", "8", torch.ones(4))
    with pytest.raises(ValueError, match="layer '0' must read all 8 output channels of layer '3'"):
        equalization_scales(model, "3", "0")
    with pytest.raises(ValueError, match=r"scales must hold 4 positive factors, one per channel, got shape \(3,\)"):
        rescale_channels(model, "0", "3", torch.ones(3))
    with pytest.raises(ValueError, match="positive factors"):
        rescale_channels(model, "0", "3", torch.tensor([1.0, -1.0, 1.0, 1.0]))


def test_paired_table_compares_every_model_with_the_reference():
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    predictions = {"fp32": torch.tensor([0, 1, 2, 3, 4, 0]), "int8": torch.tensor([0, 1, 9, 9, 4, 5])}
    table = paired_table(predictions, labels, reference="fp32")
    assert table.loc["fp32", "test accuracy"] == pytest.approx(5 / 6) and table.loc["fp32", "McNemar p"] == 1.0
    assert table.loc["fp32", ["predictions changed", "only the reference right", "only the candidate right"]].sum() == 0
    expected = paired_prediction_change(predictions["fp32"], predictions["int8"], labels)
    assert table.loc["int8"].drop(["test accuracy", "change (points)"]).to_dict() == pytest.approx(expected)
    assert table.loc["int8", "test accuracy"] == pytest.approx(4 / 6)
    assert table["change (points)"].tolist() == pytest.approx([0.0, 100 * (4 / 6 - 5 / 6)])
    assert table["only the reference right"].dtype.kind == "i"
    with pytest.raises(ValueError, match=r"reference must be one of the models \['fp32', 'int8'\], got 'bf16'"):
        paired_table(predictions, labels, reference="bf16")


def smallest_significant_gap(discordant: int, alpha: float) -> int | None:
    """Brute force: the smallest |b - c| over the splits b + c = discordant whose McNemar p is below alpha."""
    if discordant == 0:
        return None  # paired_prediction_change needs at least one image
    labels, gaps = torch.zeros(discordant, dtype=torch.long), []
    for b in range(discordant + 1):  # b images only the reference gets right, the others only the candidate
        reference = torch.cat([torch.zeros(b), torch.ones(discordant - b)]).long()
        if paired_prediction_change(reference, 1 - reference, labels)["McNemar p"] < alpha:
            gaps.append(abs(2 * b - discordant))
    return min(gaps, default=None)


@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_detectable_difference_agrees_with_paired_prediction_change(alpha):
    for discordant in range(40):
        gap = smallest_significant_gap(discordant, alpha)
        found = detectable_difference(discordant, 450, alpha=alpha)
        assert found == (None if gap is None else pytest.approx(gap / 450)), discordant


def test_detectable_difference_known_values_and_argument_checks():
    assert detectable_difference(5) is None  # even 5 against 0 gives p = 0.0625
    assert detectable_difference(6) * 450 == pytest.approx(6)  # 6 against 0: p = 0.031
    assert detectable_difference(20) * 450 == pytest.approx(10)  # 15 against 5: p = 0.041
    assert math.isclose(detectable_difference(20, 1000) * 1000, 10)  # the same images, a larger test set
    with pytest.raises(ValueError, match=r"discordant must be at most n_images \(10\), got 11"):
        detectable_difference(11, 10)
    with pytest.raises(ValueError, match="discordant must be an int >= 0, got -1"):
        detectable_difference(-1)
    with pytest.raises(TypeError, match="discordant must be an int"):
        detectable_difference(2.0)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        detectable_difference(10, alpha=0)


WIDTH, LAYERS = 256, 2


@pytest.fixture(scope="module")
def stack() -> nn.Sequential:
    """Two 256-wide bf16 layers, seed 0."""
    return linear_stack(WIDTH, LAYERS)


def test_linear_stack_is_bias_free_bf16_reproducible_and_in_eval_mode(stack):
    assert [tuple(layer.weight.shape) for layer in stack] == [(WIDTH, WIDTH)] * LAYERS
    assert all(layer.bias is None and layer.weight.dtype == torch.bfloat16 for layer in stack)
    assert not stack.training
    assert torch.equal(stack[1].weight, linear_stack(WIDTH, LAYERS)[1].weight)
    assert not torch.equal(stack[0].weight, linear_stack(WIDTH, LAYERS, seed=1)[0].weight)
    assert not torch.equal(stack[0].weight, stack[1].weight)
    assert 0.8 < stack[0].weight.float().std().item() * WIDTH**0.5 < 1.2


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"width": 200}, ValueError, "multiple of 128"),
    ({"width": 64}, ValueError, "width must be an int >= 128"),
    ({"width": True}, TypeError, "width must be an int"),
    ({"width": 256, "layers": 0}, ValueError, "layers must be an int >= 1"),
    ({"width": 256, "seed": -1}, ValueError, "seed must be an int >= 0"),
])
def test_linear_stack_checks_its_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        linear_stack(**kwargs)


def test_quantization_config_picks_each_device_s_layout_and_leaves_inductor_alone():
    assert quantization_config(BASELINE, "cpu") is None
    assert isinstance(quantization_config("int4 weight-only", "cpu"), PrototypeInt4WeightOnlyConfig)
    gpu_int4 = quantization_config("int4 weight-only", "cuda")
    assert isinstance(gpu_int4, Int4WeightOnlyConfig) and gpu_int4.int4_packing_format == "tile_packed_to_4d"
    assert isinstance(quantization_config("int8 weight-only", "cpu"), Int8WeightOnlyConfig)
    configs = [quantization_config(variant, "cuda") for variant in VARIANTS[1:]]
    assert all(config.set_inductor_config is False for config in configs)
    assert quantization_config("int4 weight-only", "cpu").group_size == 128


@pytest.mark.parametrize(("args", "message"), [
    (("int3 weight-only", "cpu"), "variant must be one of 'bf16'"),
    ((BASELINE, "mps"), "device_type must be one of 'cpu', 'cuda'"),
])
def test_quantization_config_lists_what_is_allowed(args, message):
    with pytest.raises(ValueError, match=message):
        quantization_config(*args)


def test_quantized_copies_store_int8_and_packed_int4_and_leave_the_stack_alone(stack):
    before = stack[0].weight.clone()
    int8, int4 = quantized_copy(stack, "int8 weight-only"), quantized_copy(stack, "int4 weight-only")
    assert isinstance(int8[0].weight, Int8Tensor) and int8[0].weight.qdata.dtype == torch.int8
    assert int8[0].weight.scale.dtype == torch.float32
    assert isinstance(int4[1].weight, Int4OpaqueTensor) and int4[1].weight.qdata.dtype == torch.uint8
    assert tuple(int4[1].weight.qdata.shape) == (WIDTH, WIDTH // 2)  # two 4-bit weights per byte
    assert int4[1].weight.scale_and_zero.dtype == torch.bfloat16
    assert torch.equal(stack[0].weight, before) and type(stack[0].weight) is nn.Parameter
    x = torch.randn(3, WIDTH, dtype=torch.bfloat16)
    with torch.no_grad():
        reference = stack(x).float()
        for copy in (int8, int4):
            out = copy(x)
            assert out.shape == (3, WIDTH) and out.dtype == torch.bfloat16
            assert (out.float() - reference).norm() / reference.norm() < 0.2
    with pytest.raises(ValueError, match="variant must be one of 'int8 weight-only'"):
        quantized_copy(stack, BASELINE)
    with pytest.raises(TypeError, match="stack must be a Sequential"):
        quantized_copy(stack[0], "int8 weight-only")


def test_weight_bytes_counts_what_each_variant_stores(stack):
    per_layer = {
        BASELINE: 2 * WIDTH * WIDTH,
        "int8 weight-only": WIDTH * WIDTH + 4 * WIDTH + WIDTH,  # int8 data, float32 scale and int8 zero point per row
        "int4 weight-only": WIDTH * WIDTH // 2 + 2 * 2 * WIDTH * (WIDTH // 128),  # bf16 scale and zero per group
    }
    assert weight_bytes(stack) == LAYERS * per_layer[BASELINE]
    for variant in ("int8 weight-only", "int4 weight-only"):
        assert weight_bytes(quantized_copy(stack, variant)) == LAYERS * per_layer[variant]


def test_weight_bytes_and_frozen_per_batch_check_their_arguments():
    with pytest.raises(TypeError, match="model must be a Module"):
        weight_bytes(torch.zeros(3))
    with pytest.raises(ValueError, match="examples must map at least one batch size"):
        frozen_per_batch(linear_stack(WIDTH, 1), {})


def test_stored_tensors_opens_a_torchao_tensor_and_returns_a_plain_one_as_it_is(stack):
    plain = stack[0].weight
    assert stored_tensors(plain) == [plain]
    inner = stored_tensors(quantized_copy(stack, "int8 weight-only")[0].weight)
    assert [t.dtype for t in inner] == [torch.int8, torch.float32, torch.int8]


def test_matmul_operators_names_the_kernel_each_call_ran(stack):
    x = torch.randn(1, WIDTH, dtype=torch.bfloat16)
    int4 = quantized_copy(stack, "int4 weight-only")
    with torch.no_grad():
        found = matmul_operators({"bf16": lambda: stack(x), "int4": lambda: int4(x), "none": lambda: x + 1})
    assert "aten::mm" in found["bf16"] and "aten::_weight_int4pack_mm_for_cpu" not in found["bf16"]
    assert found["int4"] == ("aten::_weight_int4pack_mm_for_cpu",)
    assert found["none"] == ()
    with pytest.raises(TypeError, match=r"calls\['bf16'\] must be callable"):
        matmul_operators({"bf16": 3})


def test_unavailable_reason_on_a_cpu_names_the_missing_feature():
    assert unavailable_reason(BASELINE, "cpu") is None
    assert unavailable_reason("int4 weight-only", torch.device("cpu")) is None
    assert unavailable_reason(FLOAT8, "cpu").startswith("this device lacks the feature")
    with pytest.raises(ValueError, match="device type must be one of 'cpu', 'cuda'"):
        unavailable_reason(BASELINE, "meta")


def test_unavailable_reason_on_a_gpu_tells_a_missing_package_from_a_missing_feature(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: object())
    assert unavailable_reason("int4 weight-only", "cuda") is None
    assert unavailable_reason(FLOAT8, "cuda") == ("this GPU lacks the feature: NVIDIA A100 has compute capability "
                                                  "8.0; float8 matrix multiplies need compute capability 8.9 "
                                                  "(Ada, Hopper)")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert "the tinygemm int4 kernel needs compute capability 8.0" in unavailable_reason("int4 weight-only", "cuda")
    assert unavailable_reason("int8 weight-only", "cuda") is None
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    assert unavailable_reason(BASELINE, "cuda").startswith("a package is missing: triton")


def test_fast_path_is_per_variant_on_a_cpu_and_compiled_on_a_gpu():
    assert fast_path(BASELINE, "cpu") == "compiled, frozen"
    assert fast_path("int4 weight-only", "cpu") == "eager"
    assert {fast_path(variant, "cuda") for variant in VARIANTS} == {"compiled, CUDA graph"}
    with pytest.raises(ValueError, match="this device lacks the feature"):
        fast_path(FLOAT8, "cpu")


def test_frozen_per_batch_packs_each_batch_and_discards_the_eager_weights():
    model = linear_stack(WIDTH, 1)
    examples = {1: torch.randn(1, WIDTH, dtype=torch.bfloat16), 4: torch.randn(4, WIDTH, dtype=torch.bfloat16)}
    with torch.no_grad():
        expected = {batch: model(x) for batch, x in examples.items()}
        compiled = frozen_per_batch(model, examples)
        for batch, x in examples.items():
            torch.testing.assert_close(compiled[batch](x), expected[batch], rtol=0.02, atol=0.02)
        with pytest.raises(RuntimeError, match="Trying to run Pytorch Eager Module after Dynamo Freezing"):
            model(examples[1])


def test_one_tiny_measurement_end_to_end(monkeypatch):
    """bf16 (frozen) and int4 (eager) time; float8 and a config that needs the missing mslk package say why not."""
    def int8_needing_mslk(variant: str, device_type: str):
        if variant == "int8 weight-only":  # torchao's default int4 layout: its kernels come from the mslk package
            return Int4WeightOnlyConfig(set_inductor_config=False)
        return quantization_config(variant, device_type)

    monkeypatch.setattr("helpers.ch06_compression.weight_only.quantization_config", int8_needing_mslk)
    results = measure_weight_only({128: (1, 2)}, layers=1, variants=(*WEIGHT_ONLY, FLOAT8), rounds=3,
                                  min_run_time=0.01)
    result = results[128]
    assert isinstance(result, WidthResult) and list(results) == [128]
    assert set(result.timings) == {(batch, variant) for batch in (1, 2) for variant in (BASELINE, "int4 weight-only")}
    assert all(len(t.round_medians_s) == 3 for t in result.timings.values())
    assert result.unavailable["int8 weight-only"] == "a package is missing: Requires mslk >= 1.0.0"
    assert result.unavailable[FLOAT8].startswith("this device lacks the feature")
    assert result.weight_bytes == {BASELINE: 2 * 128 * 128, "int4 weight-only": 128 * 64 + 2 * 2 * 128}
    assert result.operators[1, "int4 weight-only"] == ("aten::_weight_int4pack_mm_for_cpu",)
    assert result.operators[2, BASELINE] == ("mkldnn::_linear_pointwise",)
    assert result.ratio(2, "int4 weight-only").rounds == 3
    table = weight_only_table(results)
    assert len(table) == 2 * 4
    assert table.loc[(128, 1, BASELINE), "speedup"] == 1.0
    assert table.loc[(128, 1, "int4 weight-only"), "path"] == "eager"
    assert table.loc[(128, 2, FLOAT8), "why not"].startswith("this device lacks the feature")
    with pytest.raises(ValueError, match="no timing for batch 64"):
        result.ratio(64, "int4 weight-only")


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"variants": ("int8 weight-only",)}, ValueError, "variants must include the baseline 'bf16'"),
    ({"variants": (BASELINE, "int2")}, ValueError, "variant must be one of"),
    ({"batches": ()}, ValueError, "batches must name at least one batch size"),
    ({"batches": (0,)}, ValueError, "batch must be an int >= 1"),
    ({"rounds": 2}, ValueError, "rounds must be an int >= 3"),
    ({"min_run_time": 0}, ValueError, "min_run_time must be > 0"),
    ({"num_threads": 0}, ValueError, "num_threads must be an int >= 1"),
    ({"width": 200}, ValueError, "multiple of 128"),
])
def test_measure_width_checks_its_arguments_before_any_work(kwargs, error, message):
    arguments = {"width": 128, "batches": (1,)} | kwargs
    width, batches = arguments.pop("width"), arguments.pop("batches")
    with pytest.raises(error, match=message):
        measure_width(width, batches, **arguments)


def test_measure_weight_only_needs_widths_with_batch_sizes():
    with pytest.raises(ValueError, match="batches_by_width must map each width"):
        measure_weight_only({})
    with pytest.raises(ValueError, match="batches_by_width must map each width"):
        measure_weight_only([(1024, (1,))])


def test_int8_weights_round_every_layer_per_channel_or_per_tensor_and_leave_the_original_alone():
    model = tiny_folded_cnn()
    model[0].weight.data[1] *= 64  # one filter far larger than the others
    original = model[0].weight.clone()
    per_channel, per_tensor = with_int8_weights(model, per_channel=True), with_int8_weights(model, per_channel=False)
    assert torch.equal(model[0].weight, original)
    for name in ("0", "3", "8"):  # every layer rounded, each filter with its own scale
        weight, before = per_channel.get_submodule(name).weight, model.get_submodule(name).weight
        torch.testing.assert_close(weight, symmetric_int8_round_trip(before, (1, *before.shape[1:])))
        assert not torch.equal(weight, before)
    torch.testing.assert_close(per_tensor[0].weight, symmetric_int8_round_trip(original, tuple(original.shape)))
    small_filters = [0, 2, 3]
    channel_error = (per_channel[0].weight[small_filters] - original[small_filters]).abs().mean()
    tensor_error = (per_tensor[0].weight[small_filters] - original[small_filters]).abs().mean()
    assert tensor_error > 10 * channel_error


def test_gpu_weight_only_says_clearly_that_it_needs_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(ValueError, match="gpu_weight_only needs a CUDA GPU"):
        gpu_weight_only()


def test_per_tensor_rounding_hurts_a_tensor_whose_filters_differ_in_scale_and_the_exercise_names_the_worst():
    even = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    uneven = even * torch.logspace(-2, 0, 8).reshape(8, 1, 1, 1)  # filters a hundred times apart in magnitude
    assert symmetric_int8_error(even, (1, 4, 3, 3)) < symmetric_int8_error(even, tuple(even.shape))
    assert per_tensor_penalty(uneven) > 2 * per_tensor_penalty(even)
    with pytest.raises(ValueError, match="one entry per dimension"):
        symmetric_int8_error(even, (1, 4))
    assert check_granularity_prediction("E1", "conv 2", {"conv 1": even, "conv 2": uneven}).passed
    assert not check_granularity_prediction("E1", "conv 1", {"conv 1": even, "conv 2": uneven}).passed
    assert not check_granularity_prediction("E1", ..., {"conv 1": even}).passed
    with pytest.raises(ValueError, match="at least one layer"):
        check_granularity_prediction("E1", "conv 1", {})
    worst = per_tensor_penalty(uneven)
    assert check_granularity_ratio("E1", worst * 1.01, {"conv 1": even, "conv 2": uneven}).passed
    assert not check_granularity_ratio("E1", per_tensor_penalty(even), {"conv 1": even, "conv 2": uneven}).passed
    assert not check_granularity_ratio("E1", ..., {"conv 1": even}).passed
    with pytest.raises(ValueError, match="at least one layer"):
        check_granularity_ratio("E1", 1.0, {})


def test_static_int8_takes_a_configured_quantizer_and_refuses_anything_else():
    model, x = tiny_cnn().eval(), images(8)
    custom = static_int8(model, x, [x], quantizer=x86_quantizer(reduce_range=True))
    assert isinstance(custom, torch.fx.GraphModule)
    with pytest.raises(TypeError, match="quantizer must be"):
        static_int8(model, x, [x], quantizer="x86")


def test_export_for_pt2e_labels_every_operation_with_its_module_so_the_quantizer_finds_the_layers():
    model, x = tiny_cnn().eval(), images(8)
    exported = export_for_pt2e(model, x)
    labels = {node.meta["source_fn_stack"][-1] for node in exported.graph.nodes
              if node.op == "call_function" and node.target == torch.ops.aten.conv2d.default}
    assert {path for path, _ in labels} == {name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert {kind for _, kind in labels} == {nn.Conv2d}
    with pytest.raises(TypeError, match="example must be"):
        export_for_pt2e(model, [x])


def test_the_labels_alone_let_the_quantizer_find_the_layers_as_on_torch_2_11():
    model, x = tiny_cnn().eval(), images(8)
    exported = export_for_pt2e(model, x)
    for node in exported.graph.nodes:  # torch 2.14 also falls back to this stack; torch 2.11 does not
        node.meta.pop("nn_module_stack", None)
    prepared = prepare_pt2e(exported, x86_quantizer())
    prepared(x)
    assert quantized_activations(convert_pt2e(prepared)) >= 2


def test_static_int8_refuses_to_return_a_model_in_which_nothing_was_quantized():
    model, x = tiny_folded_cnn(), pixel_images(4)
    quantizer = x86_quantizer()
    for name in quantizable_layers(model):
        quantizer.set_module_name_qconfig(name, None)
    with pytest.raises(RuntimeError, match="PT2E quantized no operation of this model"):
        static_int8(model, x, [x], quantizer=quantizer)


def test_switching_an_exported_graph_without_batch_norm_keeps_earlier_compiled_models_compiled():
    x = images(4)
    compiled, _ = compile_for_inference(tiny_cnn().eval(), x)
    folded = prepare_qat(fold_batch_norm(tiny_cnn()), x)  # no batch norm left: only the flag switches
    folded.train()
    assert folded.training
    folded.eval()
    assert not folded.training
    compiled(x)  # would raise (fail_on_recompile) had the switch reset torch.compile's caches
    with_bn = torch.export.export(tiny_cnn().train(), (x,)).module()
    assert allow_train_eval(with_bn).train.__func__.__name__ == "_train"  # torchao's switch rewrites batch norm


def test_last_level_cache_is_a_positive_size_or_unknown():
    size = last_level_cache_mib()
    assert size is None or size > 0
