"""Plain training and evaluation loops with a progress bar."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from helpers.core.amp import amp_train_step, make_grad_scaler
from helpers.core.validate import require_instance, require_int, require_number


def train_epochs(
    model: nn.Module,
    loader: DataLoader,
    *,
    epochs: int,
    lr: float = 1e-3,
    device: torch.device | str = "cpu",
    progress: bool = True,
    precision: str = "fp32",
    anneal: bool = False,
) -> list[float]:
    """Train with Adam and cross-entropy in the given precision (see amp_train_step); return each epoch's mean loss.

    anneal=True lowers the learning rate along a cosine to zero, which makes the final accuracy steadier.
    """
    require_instance("model", model, nn.Module)
    require_instance("loader", loader, DataLoader)
    require_int("epochs", epochs, minimum=1)
    require_number("lr", lr, strictly_positive=True)
    device = torch.device(device)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scaler = make_grad_scaler(precision, device)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(loader)) if anneal else None
    epoch_losses = []
    bar = tqdm(total=epochs * len(loader), desc="training", leave=False, disable=not progress)
    for _ in range(epochs):
        total, count = torch.zeros((), device=device), 0  # summed on the device: no wait for the GPU per step
        for inputs, targets in loader:
            inputs, targets = inputs.to(device), targets.to(device)
            loss = amp_train_step(model, inputs, targets, optimizer, scaler, precision)
            if schedule is not None:
                schedule.step()
            total += loss * len(targets)
            count += len(targets)
            bar.update()
        epoch_losses.append((total / count).item())  # one wait per epoch
    bar.close()
    return epoch_losses


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256, device: torch.device | str = "cpu"
) -> float:
    """Fraction of correctly classified samples, in eval mode."""
    require_instance("model", model, nn.Module)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must be non-empty and of equal length, got {len(x)} and {len(y)}")
    require_int("batch_size", batch_size, minimum=1)
    device = torch.device(device)
    model.to(device).eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size].to(device))
        correct += (logits.argmax(dim=1).cpu() == y[start : start + batch_size]).sum().item()
    return correct / len(x)
