"""Knowledge distillation (Hinton et al., 2015): the loss, the teacher's targets, a student's training loop."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from helpers.core.validate import require_instance, require_int, require_number

TARGETS = ("labels only", "teacher's hard labels", "teacher's soft targets")


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) between temperature-softened distributions, per image, scaled by T^2."""
    require_number("temperature", temperature, strictly_positive=True)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher logits must have the same shape, got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    student_log_probs = F.log_softmax(student_logits / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)
    return kl * temperature * temperature


@torch.no_grad()
def teacher_logits(teacher: nn.Module, images: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
    """The teacher's logits for every image, in eval mode (batch norm uses its running statistics) without autograd."""
    require_instance("teacher", teacher, nn.Module)
    require_int("batch_size", batch_size, minimum=1)
    if len(images) == 0:
        raise ValueError("images must hold at least one image")
    teacher.eval()
    return torch.cat([teacher(images[start:start + batch_size]) for start in range(0, len(images), batch_size)])


def _check_student_arguments(targets: str, temperature: float, alpha: float, steps: int, batch_size: int) -> None:
    if targets not in TARGETS:
        raise ValueError(f"targets must be one of {TARGETS}, got {targets!r}")
    require_number("temperature", temperature, strictly_positive=True)
    require_number("alpha", alpha, minimum=0.0, maximum=1.0)
    require_int("steps", steps, minimum=1)
    require_int("batch_size", batch_size, minimum=1)


def train_student(
    student: nn.Module,
    labelled: tuple[torch.Tensor, torch.Tensor],
    *,
    transfer: tuple[torch.Tensor, torch.Tensor] | None = None,
    targets: str = "labels only",
    temperature: float = 4.0,
    alpha: float = 0.9,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
) -> nn.Module:
    """Train `student` for `steps` Adam steps on batches of labelled images, plus (unless targets is "labels only")
    batches of transfer images with the teacher's targets: transfer = (images, teacher logits).

    Every arm draws the same labelled batches for a given seed, so that arms differ only in their targets.
    Loss: (1 - alpha) * cross-entropy on the labels + alpha * the teacher term, which is cross-entropy on the
    teacher's argmax ("teacher's hard labels") or soft_target_loss at `temperature` ("teacher's soft targets").
    """
    require_instance("student", student, nn.Module)
    _check_student_arguments(targets, temperature, alpha, steps, batch_size)
    if (transfer is None) != (targets == "labels only"):
        raise ValueError("pass transfer=(images, teacher logits) exactly when targets is not 'labels only'")
    x_labelled, y_labelled = labelled
    # Two generators: the labelled batches must not depend on whether transfer batches are drawn too.
    labelled_picks = torch.Generator().manual_seed(seed)
    transfer_picks = torch.Generator().manual_seed(seed + 1)
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    student.train()
    for _ in range(steps):
        pick = torch.randint(len(y_labelled), (batch_size,), generator=labelled_picks)
        if transfer is None:
            loss = F.cross_entropy(student(x_labelled[pick]), y_labelled[pick])
        else:
            extra = torch.randint(len(transfer[0]), (batch_size,), generator=transfer_picks)
            logits = student(torch.cat([x_labelled[pick], transfer[0][extra]]))
            label_loss = F.cross_entropy(logits[:batch_size], y_labelled[pick])
            if targets == "teacher's soft targets":
                teacher_loss = soft_target_loss(logits[batch_size:], transfer[1][extra], temperature)
            else:
                teacher_loss = F.cross_entropy(logits[batch_size:], transfer[1][extra].argmax(dim=1))
            loss = (1 - alpha) * label_loss + alpha * teacher_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    student.eval()  # not `return student.eval()`: an exported (QAT) model's eval() returns None
    return student
