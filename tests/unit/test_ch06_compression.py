"""Tests of helpers/ch06_compression/: the distillation loss and loop, int8 quantization (PT2E), the charts, the
exercise check. Tiny models on random 16x16 images, a few steps each."""

import copy

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

import helpers.ch06_compression.quantize  # noqa: F401  first: it quietens the log line that importing torchao prints
from helpers.ch03_hardware.compile_timing import compile_for_inference
from helpers.ch06_compression.distill import TARGETS, soft_target_loss, teacher_logits, train_student
from helpers.ch06_compression.exercises import check_uint8_quantizer
from helpers.ch06_compression.plots import plot_distributions, plot_spread, plot_stages
from helpers.ch06_compression.quantize import (
    convert_qat, drop_unused_parameters, fixed_batch_accuracy, fold_batch_norm,
    int8_reduce_range_needed, predict_in_fixed_batches, prepare_qat, static_int8, x86_quantizer,
)
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


def trained_parameters(seed: int, targets: str = "teacher's soft targets") -> list[torch.Tensor]:
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
    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert one_by_one.shape == (10, 10) and not one_by_one.requires_grad
    assert torch.allclose(one_by_one, all_at_once, atol=1e-6, rtol=0)
    with torch.no_grad():
        assert torch.allclose(all_at_once, teacher(x), atol=1e-6, rtol=0)
    for name, value in statistics.items():
        assert torch.equal(teacher.state_dict()[name], value), f"{name} changed"


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
    ({"targets": "teacher's soft targets"}, "exactly when targets is not 'labels only'"),
    ({"targets": "teacher's hard labels"}, "exactly when targets is not 'labels only'"),
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
    hard, soft = labelled_batches("teacher's hard labels"), labelled_batches("teacher's soft targets")
    assert hard == soft
    assert all(value >= 0 for batch in hard for value in batch), "labelled images come first in each batch"


def test_labels_only_arm_trains_on_the_same_labelled_batches_as_the_distillation_arms():
    assert labelled_batches("labels only") == labelled_batches("teacher's soft targets")


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


def test_uint8_check_passes_a_correct_quantizer_and_explains_wrong_ones(capsys):
    cases = [torch.relu(torch.randn(500, generator=torch.Generator().manual_seed(1))),
             torch.randn(500, generator=torch.Generator().manual_seed(2))]  # the second has a non-zero zero point
    assert check_uint8_quantizer("E", _uint8_by_hand, cases)
    assert not check_uint8_quantizer("E", lambda v: None, cases)
    assert not check_uint8_quantizer("E", lambda v: (v, 1.0, 0), cases)  # no quantization at all
    assert not check_uint8_quantizer("E", lambda v: (_uint8_by_hand(v)[0], _uint8_by_hand(v)[1], 0), cases[1:])
    shown = capsys.readouterr().out
    assert "not implemented yet" in shown and "scale" in shown and "zero point 0" in shown
