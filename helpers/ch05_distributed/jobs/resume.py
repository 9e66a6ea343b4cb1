"""Resumable training job: DDP with torch.distributed.checkpoint every few steps, surviving a killed rank.

    python -m torch.distributed.run --standalone --nproc-per-node=2 --max-restarts=1 \\
        -m helpers.ch05_distributed.jobs.resume --checkpoint-dir ckpt --kill-rank 1 --kill-at-step 12 \\
        --result out.json

On start, each rank loads the newest complete checkpoint (DCP writes its `.metadata` file last, so a
folder without one was interrupted and is ignored) and continues from that step. The data order
depends only on the step (DistributedSampler with set_epoch), so a resumed run sees the same batches
as an uninterrupted one. With --kill-rank, that rank kills itself (SIGKILL, as the kernel's OOM killer
or a lost node would) at --kill-at-step in the first attempt only; torchrun then ends the other ranks
and, with --max-restarts=1, starts the group again.
"""

import os
import signal
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch import nn

from helpers.core.rounds import round_order
from helpers.workload.digits import digits_tensors
from helpers.ch05_distributed.jobs.common import (
    digits_mlp, flat_parameters, job_parser, median_time_s, process_group, say, train_step, wrap_ddp,
    write_result,
)
from helpers.ch05_distributed.jobs.ddp import digest, rank_batches


def latest_checkpoint(folder: Path) -> tuple[int, Path | None]:
    """(step, path) of the newest complete checkpoint in folder, or (0, None) when there is none."""
    complete = {int(p.name.removeprefix("step_")): p for p in folder.glob("step_*") if (p / ".metadata").exists()}
    return (max(complete), complete[max(complete)]) if complete else (0, None)


def save_checkpoint(model: nn.Module, optimizer: torch.optim.Optimizer, folder: Path, step: int) -> None:
    """Every rank writes its part of the model and optimizer state into folder/step_NNNN."""
    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=folder / f"step_{step:04d}")


def load_checkpoint(model: nn.Module, optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Load model and optimizer state in place from a DCP checkpoint."""
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=path)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def time_thread_counts(x: torch.Tensor, y: torch.Tensor, *, threads: int, rounds: int, repeats: int) -> dict:
    """DDP step time with `threads` compute threads per process against 1, in alternating rounds."""
    model = wrap_ddp(digits_mlp(), x.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    started_with = torch.get_num_threads()
    times = {threads: [], 1: []}
    for round_index in range(rounds):
        for count in round_order(times, round_index):
            torch.set_num_threads(count)
            times[count].append(median_time_s(lambda: train_step(model, optimizer, x, y), repeats))
    torch.set_num_threads(started_with)
    return {"threads": threads, "started_with": started_with, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "many_threads_s": times[threads], "one_thread_s": times[1]}


def main() -> None:
    """Run in each process torchrun starts: train with checkpoints, resuming from the newest complete one."""
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--checkpoint-dir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--checkpoint-every", type=int, default=5)
    parser.add_argument("--per-rank-batch", type=int, default=32)
    parser.add_argument("--kill-rank", type=int, default=-1, help="rank that kills itself (-1: none)")
    parser.add_argument("--kill-at-step", type=int, default=-1)
    parser.add_argument("--survivors-busy-s", type=float, default=0.0,
                        help="the other ranks sleep this long before that step's all-reduce, busy outside any "
                             "collective as NCCL ranks blocked in one would be: they notice nothing, and only the "
                             "agents' membership change restarts them")
    parser.add_argument("--time-threads", type=int, default=0,
                        help="then time a DDP step with this many threads per process against 1 (0: skip)")
    args = parser.parse_args()
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    with process_group(args.device) as device:
        rank, world = dist.get_rank(), dist.get_world_size()
        x, y = (t.to(device) for t in digits_tensors())
        model = wrap_ddp(digits_mlp(), device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        choice = [latest_checkpoint(args.checkpoint_dir)]  # rank 0 decides, so that every rank resumes alike
        dist.broadcast_object_list(choice, src=0)
        start, path = choice[0]
        if path is not None:
            load_checkpoint(model, optimizer, path)
        say(f"rank {rank}: attempt {attempt}, starting at step {start}"
            + (f" from {path.name}" if path else " (no checkpoint yet)"))
        batches = rank_batches(len(x), rank=rank, world=world, per_rank=args.per_rank_batch, steps=args.steps)
        for step in range(start, args.steps):
            if attempt == 0 and rank == args.kill_rank and step == args.kill_at_step:
                say(f"rank {rank}: killing this process at step {step} (SIGKILL)")
                os.kill(os.getpid(), signal.SIGKILL)
            if path is None and rank != args.kill_rank and step == args.kill_at_step and args.survivors_busy_s:
                time.sleep(args.survivors_busy_s)
            train_step(model, optimizer, x[batches[step]], y[batches[step]])
            if (step + 1) % args.checkpoint_every == 0:
                save_checkpoint(model, optimizer, args.checkpoint_dir, step + 1)
        result = {"world_size": world, "attempt": attempt, "resumed_from_step": start, "steps": args.steps,
                  "parameters_sha256": digest(flat_parameters(model))}
        if args.time_threads:
            shard = slice(rank * 256, (rank + 1) * 256)
            result["threads"] = time_thread_counts(x[shard], y[shard], threads=args.time_threads, rounds=5, repeats=5)
        say(f"rank {rank}: finished {args.steps} steps")
        write_result(result, args.result)


if __name__ == "__main__":
    main()
