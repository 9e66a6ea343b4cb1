"""Overlap, observed: when each DDP bucket's all-reduce runs against backward, timed from inside the step.

A communication hook wraps DDP's own all-reduce and notes when each bucket's all-reduce starts and
finishes; a hook on every parameter notes when autograd accumulated its gradient. Run in the DDP job
(helpers/ch05_distributed/jobs/ddp.py), which writes the timelines into its result.
"""

import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

from helpers.ch05_distributed.jobs.common import digits_mlp, train_step, wrap_ddp


class CommTimer:
    """The state of timed_allreduce_hook: each bucket all-reduce's bucket index, bytes, and perf_counter
    seconds at its start (DDP calls the hook) and its end (its future completes).

    The end is true on gloo (CPU), where the future completes when the all-reduce has finished. With NCCL it
    completes once the GPU work is queued, so there it would time the launch only.
    """

    def __init__(self) -> None:
        self.allreduces: list[dict] = []

    @property
    def seconds(self) -> float:
        """The all-reduces' times from start to finish, summed (overlapping ones count each)."""
        return sum(a["end"] - a["start"] for a in self.allreduces)


def timed_allreduce_hook(timer: CommTimer, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP's default all-reduce of one bucket, recording in timer when it started and finished."""
    record = {"bucket": bucket.index(), "bytes": bucket.buffer().numel() * bucket.buffer().element_size(),
              "start": time.perf_counter()}
    timer.allreduces.append(record)

    def finished(future: torch.futures.Future) -> torch.Tensor:
        record["end"] = time.perf_counter()
        return future.value()
    return allreduce_hook(None, bucket).then(finished)


def gradient_clock(model: nn.Module) -> list[float]:
    """A list to which each parameter appends the perf_counter time at which autograd accumulated its gradient."""
    times = []
    for parameter in model.parameters():
        parameter.register_post_accumulate_grad_hook(lambda _: times.append(time.perf_counter()))
    return times


def traced_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                timer: CommTimer, gradient_times: list[float]) -> dict:
    """One training step: when each phase and each bucket's all-reduce ran, in seconds since the step began.

    loss.backward() returns only once DDP has waited for every bucket's all-reduce, so the gradients are all
    computed earlier, at "last_gradient": until then backward computes, after it backward waits.
    """
    timer.allreduces.clear()
    gradient_times.clear()
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    forward_start = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    backward_start = time.perf_counter()
    loss.backward()
    optimizer_start = time.perf_counter()
    optimizer.step()
    end = time.perf_counter()
    return {"forward": [forward_start - start, backward_start - start],
            "backward": [backward_start - start, optimizer_start - start],
            "last_gradient": max(gradient_times) - start,
            "optimizer_step": [optimizer_start - start, end - start],
            "allreduces": [{"bucket": a["bucket"], "bytes": a["bytes"], "start": a["start"] - start,
                            "end": a["end"] - start} for a in timer.allreduces]}


def record_bucket_timeline(x: torch.Tensor, y: torch.Tensor, *, warmup: int, steps: int, **ddp_options) -> dict:
    """Every rank's traced_step for `steps` steps after `warmup` (DDP settles its buckets after the first step)."""
    model, timer = wrap_ddp(digits_mlp(), x.device, **ddp_options), CommTimer()
    model.register_comm_hook(timer, timed_allreduce_hook)
    gradient_times = gradient_clock(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(warmup):
        train_step(model, optimizer, x, y)
    records = []
    for _ in range(steps):
        dist.barrier()
        records.append(traced_step(model, optimizer, x, y, timer, gradient_times))
    ranks = [None] * dist.get_world_size()
    dist.all_gather_object(ranks, records)
    return {"ddp_options": ddp_options, "parameter_tensors": len(list(model.parameters())), "warmup_steps": warmup,
            "ranks": ranks}


def bucket_timelines(x: torch.Tensor, y: torch.Tensor, *, warmup: int = 3, steps: int = 3) -> dict:
    """The bucket timeline with 1 MiB buckets (4 here) and with DDP's default ones (2 here)."""
    return {"bucket_cap_mb=1": record_bucket_timeline(x, y, warmup=warmup, steps=steps, bucket_cap_mb=1),
            "default": record_bucket_timeline(x, y, warmup=warmup, steps=steps)}
