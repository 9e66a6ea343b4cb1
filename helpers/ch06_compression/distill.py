"""Knowledge distillation (Hinton et al., 2015): the loss, the teacher's targets, a student's training loop, and a
split of the images that keeps the teacher's training images apart from the images it labels for the student."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from torch import nn

from helpers.core.validate import require_instance, require_int, require_number

TARGETS = ("labels only", "hard labels", "soft targets")


@dataclass(frozen=True)
class DistillationSplit:
    """Disjoint images: the teacher's labelled training set, the student's pool, and a validation set.

    The pool is unlabelled for the student except `labelled` (a few per class, taken from the pool);
    `pool_labels` are the pool's true labels, used only to score the teacher's pseudo-labels and for an
    upper-bound arm, never by a student that learns from the teacher.
    """

    teacher: tuple[torch.Tensor, torch.Tensor]
    pool: torch.Tensor
    pool_labels: torch.Tensor
    labelled: tuple[torch.Tensor, torch.Tensor]
    validation: tuple[torch.Tensor, torch.Tensor]


def split_for_distillation(images: torch.Tensor, labels: torch.Tensor, *, teacher_size: int = 600,
                           validation_size: int = 150, labelled_per_class: int = 5,
                           seed: int = 0) -> DistillationSplit:
    """Stratified, disjoint: teacher_size images for the teacher, validation_size for choosing settings, the rest
    the student's pool, of which labelled_per_class per class keep their labels."""
    require_int("teacher_size", teacher_size, minimum=1)
    require_int("validation_size", validation_size, minimum=1)
    require_int("labelled_per_class", labelled_per_class, minimum=1)
    if len(images) != len(labels) or teacher_size + validation_size >= len(labels):
        raise ValueError(f"need as many labels as images ({len(images)} and {len(labels)}) and more images than "
                         f"teacher_size + validation_size = {teacher_size + validation_size}")
    index = torch.arange(len(labels)).numpy()
    rest, teacher = train_test_split(index, test_size=teacher_size, random_state=seed, stratify=labels.numpy())
    pool, validation = train_test_split(rest, test_size=validation_size, random_state=seed,
                                        stratify=labels[rest].numpy())
    pool_labels = labels[pool]
    picked = torch.cat([torch.nonzero(pool_labels == c).flatten()[:labelled_per_class] for c in pool_labels.unique()])
    if len(picked) < labelled_per_class * len(pool_labels.unique()):
        raise ValueError(f"the pool has fewer than {labelled_per_class} images of some class: lower labelled_per_class")
    return DistillationSplit(teacher=(images[teacher], labels[teacher]), pool=images[pool], pool_labels=pool_labels,
                             labelled=(images[pool][picked], pool_labels[picked]),
                             validation=(images[validation], labels[validation]))


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
    """The teacher's logits for every image, in eval mode (batch norm uses its running statistics) without autograd;
    the teacher is left in the mode it came in."""
    require_instance("teacher", teacher, nn.Module)
    require_int("batch_size", batch_size, minimum=1)
    if len(images) == 0:
        raise ValueError("images must hold at least one image")
    was_training = teacher.training
    teacher.eval()
    logits = torch.cat([teacher(images[start:start + batch_size]) for start in range(0, len(images), batch_size)])
    teacher.train(was_training)
    return logits


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
    teacher's argmax ("hard labels") or soft_target_loss at `temperature` ("soft targets").
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
            if targets == "soft targets":
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
