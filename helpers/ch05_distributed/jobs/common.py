"""What every distributed job module shares: its arguments, its process group, its model, its result file.

A job module (ddp, allreduce, fsdp, tensor_parallel, hang, resume in this folder) runs in each process that
torchrun starts. torchrun gives it RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT in the environment;
init_process_group() reads them (the env:// method).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from datetime import timedelta
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

# Set by process_group: whether timings must wait for the GPU (a CPU job never touches CUDA, so that it
# creates no CUDA context on a machine that has a GPU).
_SYNCHRONIZE_CUDA = False


def job_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every job takes: --result FILE (rank 0 writes JSON there), --device."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--result", type=Path, required=True, help="JSON file that rank 0 writes its results to")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cpu: gloo, every rank on the CPU; cuda: NCCL, one GPU per local rank")
    return parser


@contextlib.contextmanager
def process_group(device_type: str = "cpu", *, timeout_s: float | None = None) -> Iterator[torch.device]:
    """Join the job's process group and always leave it: gloo on the CPU, NCCL with one GPU per local rank.

    timeout_s: how long a collective may wait for the other ranks (None: the backend's default, 30 min on
    gloo, 10 min on NCCL).

    The plain env:// join. Launch with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 (launch.job_environment sets it):
    torchrun's agents otherwise share one store across restarts, where the failed attempt's keys remain and a
    restarted rank can read a dead peer's address (pytorch/pytorch#135712, #167288). With the variable set,
    worker rank 0 hosts a fresh store on a new port in every rendezvous round.
    """
    if device_type not in ("cpu", "cuda"):
        raise ValueError(f"device_type must be 'cpu' or 'cuda', got {device_type!r}")
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"timeout_s must be a positive number of seconds or None, got {timeout_s!r}")
    device = torch.device("cpu")
    if device_type == "cuda":
        local_rank = int(os.environ["LOCAL_RANK"])
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"local rank {local_rank} has no GPU: this node has {torch.cuda.device_count()}; "
                             "start at most one process per GPU")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo",
                            device_id=device if device_type == "cuda" else None,
                            timeout=None if timeout_s is None else timedelta(seconds=timeout_s))
    global _SYNCHRONIZE_CUDA
    _SYNCHRONIZE_CUDA = device.type == "cuda"
    try:
        yield device
    finally:
        dist.destroy_process_group()


def wrap_ddp(model: nn.Module, device: torch.device, **options: object) -> DDP:
    """DDP around the model on this rank's device: device_ids names its GPU; on the CPU it must be None."""
    return DDP(model.to(device), device_ids=[device.index] if device.type == "cuda" else None, **options)


def say(*parts: object) -> None:
    """Print at once (torchrun collects each rank's output line by line)."""
    print(*parts, flush=True)


def write_result(result: dict, path: Path) -> None:
    """Rank 0 writes the job's result as JSON (atomically: a reader never sees half a file)."""
    if dist.get_rank() != 0:
        return
    fd, tmp = tempfile.mkstemp(dir=Path(path).parent, suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(result, handle, indent=1)
    os.replace(tmp, path)


def digits_mlp(hidden: int = 512, depth: int = 4, *, seed: int = 0) -> nn.Sequential:
    """A 64 -> hidden (x depth) -> 10 MLP with the same initial weights on every rank (same seed)."""
    torch.manual_seed(seed)
    widths = [64] + [hidden] * depth
    layers = [m for a, b in zip(widths, widths[1:]) for m in (nn.Linear(a, b), nn.ReLU())]
    return nn.Sequential(*layers, nn.Linear(hidden, 10))


def flat_parameters(model: nn.Module) -> torch.Tensor:
    """Every parameter in one vector on the CPU, in the model's own dtype (to compare runs exactly)."""
    return torch.cat([p.detach().cpu().reshape(-1) for p in model.parameters()])


def median_time_s(step: Callable[[], object], repeats: int, *, together: bool = True) -> float:
    """Median wall time of `repeats` calls of step(); together: every rank starts each call at a barrier.

    Not torch.utils.benchmark's Timer: it picks its own number of calls per rank, and a collective
    inside step() then waits forever for a rank that has stopped calling it. Here every rank makes the
    same calls, and the barrier keeps one rank's late start out of the other's time.
    """
    times = []
    for _ in range(repeats):
        if together:
            dist.barrier()
        start = time.perf_counter()
        step()
        if _SYNCHRONIZE_CUDA:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, *,
             set_to_none: bool = True) -> None:
    """One training step with any optimizer: zero the gradients, forward, backward (DDP all-reduces here), update.

    set_to_none=False zeroes the gradients in place, so their memory stays allocated (and countable).
    """
    optimizer.zero_grad(set_to_none=set_to_none)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
