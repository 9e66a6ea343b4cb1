"""DDP job: is data parallelism correct, what does it cost here, and what do DDP's knobs change?

    python -m torch.distributed.run --standalone --nproc-per-node=2 \\
        -m helpers.ch05_distributed.jobs.ddp --result out.json

1. Correctness: k SGD steps of DDP (each rank B/2 images from its DistributedSampler) against one
   process that trains on the same B images per step (rank 0 computes it alone).
2. Speed, in interleaved rounds: DDP on 2 processes x 1 thread against 1 process x 2 threads at the
   same global batch, and 1 process x 1 thread at the per-rank batch (the cost model's compute time).
3. Knobs: bucket size (down to one bucket per gradient tensor), gradient_as_bucket_view, the bf16
   compression hook against the same fp32 all-reduce as a Python hook (bytes and rounding), and no_sync()
   for gradient accumulation (all-reduce calls and communication time per optimizer step).
4. Overlap, observed: in a few steps with 1 MiB buckets and with the default ones, when forward, backward,
   each bucket's all-reduce and the optimizer step started and ended, on every rank.

The scaling rounds (2) and the knob rounds (3) both time the default 2-process DDP step, in two separate
measurement phases: their medians differ by the machine's noise between the phases.
"""

import argparse
import contextlib
import hashlib
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook, bf16_compress_hook
from torch.profiler import ProfilerActivity, profile
from torch.utils.data import DistributedSampler

from helpers.core.rounds import round_order
from helpers.workload.digits import digits_tensors
from helpers.ch05_distributed.jobs.traces import TRACE_DTYPES, trace_events
from helpers.ch05_distributed.jobs.common import (
    digits_mlp, flat_parameters, job_parser, median_time_s, process_group, say, train_step, wrap_ddp, write_result,
)
from helpers.ch05_distributed.jobs.overlap import CommTimer, bucket_timelines, timed_allreduce_hook


def rank_batches(dataset_size: int, *, rank: int, world: int, per_rank: int, steps: int,
                 seed: int = 0) -> list[list[int]]:
    """The index batches `rank` trains on for `steps` steps: its DistributedSampler, set_epoch each epoch."""
    sampler = DistributedSampler(range(dataset_size), num_replicas=world, rank=rank, shuffle=True, seed=seed,
                                 drop_last=True)
    batches, epoch = [], 0
    while len(batches) < steps:
        sampler.set_epoch(epoch)
        order = list(sampler)
        batches += [order[i:i + per_rank] for i in range(0, len(order) - per_rank + 1, per_rank)]
        epoch += 1
    return batches[:steps]


def train(model: nn.Module, batches: list[list[int]], x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    """SGD with momentum over the given index batches; returns the model."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for batch in batches:
        train_step(model, optimizer, x[batch], y[batch])
    return model


def digest(vector: torch.Tensor) -> str:
    """SHA-256 of a tensor's bytes: equal digests mean bitwise-equal tensors."""
    return hashlib.sha256(vector.numpy().tobytes()).hexdigest()


def compare_with_one_process(x: torch.Tensor, y: torch.Tensor, batches: list[list[list[int]]]) -> dict:
    """Train DDP on each rank's batches and, on rank 0, one process on their union per step (and reordered)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    ddp_params = flat_parameters(train(wrap_ddp(digits_mlp().to(x.dtype), x.device), batches[rank], x, y))
    digests = [None] * world
    dist.all_gather_object(digests, digest(ddp_params))
    result = {"ranks_bitwise_equal": len(set(digests)) == 1}
    if rank == 0:
        together = [sum(step_batches, []) for step_batches in zip(*batches)]
        reordered = [sum(reversed(step_batches), []) for step_batches in zip(*batches)]
        single = flat_parameters(train(digits_mlp().to(x.device, x.dtype), together, x, y))
        single_reordered = flat_parameters(train(digits_mlp().to(x.device, x.dtype), reordered, x, y))
        result |= {"max_abs_diff_ddp_vs_single": (ddp_params - single).abs().max().item(),
                   "max_abs_diff_reordered_batch": (single_reordered - single).abs().max().item(),
                   "max_abs_parameter": single.abs().max().item()}
    return result


def float64_tolerance(compared: dict) -> float:
    """What DDP may differ from one process in float64: 100 x the reordering floor (or x float64's resolution at
    the largest parameter, if the floor is smaller). A wrong gradient or an unaveraged sum misses it by far."""
    resolution = torch.finfo(torch.float64).eps * compared["max_abs_parameter"]
    return 100 * max(compared["max_abs_diff_reordered_batch"], resolution)


def check_correctness(x: torch.Tensor, y: torch.Tensor, *, steps: int, per_rank: int) -> dict:
    """DDP's parameters after `steps` steps against one process on the same global batches, fp64 and fp32."""
    world = dist.get_world_size()
    batches = [rank_batches(len(x), rank=r, world=world, per_rank=per_rank, steps=steps) for r in range(world)]
    return {"steps": steps, "per_rank_batch": per_rank,
            **{str(dtype).removeprefix("torch."): compare_with_one_process(x.to(dtype), y, batches)
               for dtype in (torch.float64, torch.float32)}}


def allreduce_traffic(step: Callable[[], object]) -> dict:
    """All-reduce calls and bytes of one call of step(), read from the profiler's trace of the collectives.

    Two threads record each all-reduce: the training thread when it launches one (c10d::allreduce_, with the
    bucket's shape) and the communication thread while it sends it (gloo:all_reduce, with the dtype sent). The
    launches give the calls and sizes: the communication thread's record of the last call may still be open when
    the profiler stops (its arguments then missing), and torch 2.11 also leaves records of earlier calls there.
    """
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    events = trace_events(prof)
    launches = [e for e in events if e.get("name") == "c10d::allreduce_"]
    if not launches:
        raise RuntimeError("the profiler recorded no all-reduce: its trace format may have changed")
    first = min(e["ts"] for e in launches)
    dtypes = {e["args"]["Input type"][0] for e in events if e.get("name", "").endswith(":all_reduce")
              and e["ts"] >= first and "Input type" in e.get("args", {})}
    if len(dtypes) != 1:
        raise RuntimeError(f"expected the all-reduces of one step to send one dtype, the trace shows {sorted(dtypes)}")
    elements = sum(torch.Size(e["args"]["Input Dims"][0][0]).numel() for e in launches)
    element_bytes = TRACE_DTYPES[next(iter(dtypes))].itemsize
    return {"calls": len(launches), "bytes": element_bytes * elements, "dtypes": sorted(dtypes)}


DEFAULT = "default (25 MiB buckets)"
# A cap of one byte is below every gradient's size (the smallest, the last layer's bias, has 40 bytes):
# each gradient tensor then fills a bucket on its own, and DDP all-reduces them one by one.
ONE_BYTE_IN_MIB = 1 / 2**20
KNOBS = {  # name: (DDP's options, communication hook, the variant it is timed against)
    DEFAULT: ({}, None, None),
    "bucket_cap_mb=1": ({"bucket_cap_mb": 1}, None, DEFAULT),
    "one bucket per gradient tensor": ({"bucket_cap_mb": ONE_BYTE_IN_MIB}, None, DEFAULT),
    "gradient_as_bucket_view": ({"gradient_as_bucket_view": True}, None, DEFAULT),
    "allreduce_hook (Python)": ({}, allreduce_hook, DEFAULT),
    "bf16_compress_hook": ({}, bf16_compress_hook, "allreduce_hook (Python)"),
}


def knob_models(device: torch.device) -> dict[str, nn.Module]:
    """The same MLP under each DDP setting of KNOBS, its communication hook registered."""
    variants = {}
    for name, (options, hook, _) in KNOBS.items():
        variants[name] = wrap_ddp(digits_mlp(), device, **options)
        if hook is not None:
            variants[name].register_comm_hook(None, hook)
    return variants


def knob_setting(name: str) -> dict:
    """What a knob variant is: DDP's options, its communication hook, and the variant to time it against."""
    options, hook, baseline = KNOBS[name]
    return {"ddp_options": options, "comm_hook": hook.__name__ if hook else None, "compare_with": baseline}


def measure_knobs(x: torch.Tensor, y: torch.Tensor, *, rounds: int, repeats: int) -> dict:
    """Step time per round, all-reduce traffic per step and gradient storage for each DDP setting.

    The bucket-view variant zeroes its gradients in place (set_to_none=False): setting them to None
    would drop the views into the buckets, and DDP would allocate and copy fresh gradients every step.
    """
    variants = knob_models(x.device)
    # plain SGD: six models are alive at once, and momentum buffers would add a copy of the parameters to each
    optimizers = {name: torch.optim.SGD(m.parameters(), lr=0.05) for name, m in variants.items()}
    steps = {name: (lambda m=m, o=optimizers[name], v=name == "gradient_as_bucket_view":
                    train_step(m, o, x, y, set_to_none=not v)) for name, m in variants.items()}
    times = {name: [] for name in variants}
    for round_index in range(rounds):
        for name in round_order(steps, round_index):
            times[name].append(median_time_s(steps[name], repeats))
    result = {}
    for name, model in variants.items():
        traffic = allreduce_traffic(steps[name])
        grads = [p.grad for p in model.parameters()]
        result[name] = {**knob_setting(name), "step_s": times[name], **traffic,
                        "gradient_storages": len({g.untyped_storage().data_ptr() for g in grads})}
    return result


def bf16_rounding(x: torch.Tensor, y: torch.Tensor) -> dict:
    """The averaged gradient with bf16 compression against the fp32 all-reduce of the same step."""
    exact, compressed = wrap_ddp(digits_mlp(), x.device), wrap_ddp(digits_mlp(), x.device)
    compressed.register_comm_hook(None, bf16_compress_hook)
    for model in (exact, compressed):
        F.cross_entropy(model(x), y).backward()
    g_exact = torch.cat([p.grad.reshape(-1) for p in exact.parameters()])
    g_bf16 = torch.cat([p.grad.reshape(-1) for p in compressed.parameters()])
    error = (g_bf16 - g_exact).abs()
    return {"max_abs_error": error.max().item(), "max_abs_gradient": g_exact.abs().max().item(),
            "median_relative_error": (error / g_exact.abs().clamp_min(1e-12))[g_exact != 0].median().item()}


def accumulation_step(model: nn.Module, optimizer: torch.optim.Optimizer, micro: list[tuple],
                      use_no_sync: bool) -> None:
    """One optimizer step over several micro-batches; with no_sync() only the last backward all-reduces."""
    optimizer.zero_grad(set_to_none=True)
    for i, (xb, yb) in enumerate(micro):
        last = i == len(micro) - 1
        context = model.no_sync() if use_no_sync and not last else contextlib.nullcontext()
        with context:
            (F.cross_entropy(model(xb), yb) / len(micro)).backward()
    optimizer.step()


def micro_batches(x: torch.Tensor, y: torch.Tensor, accumulation: int, per_rank: int) -> list[tuple]:
    """This rank's `accumulation` micro-batches of per_rank images each."""
    return [(x[i * per_rank:(i + 1) * per_rank], y[i * per_rank:(i + 1) * per_rank]) for i in range(accumulation)]


def check_no_sync(x: torch.Tensor, y: torch.Tensor, *, accumulation: int, per_rank: int) -> dict:
    """All-reduce calls and bytes of one accumulated step with and without no_sync(), and their gradients compared."""
    micro = micro_batches(x, y, accumulation, per_rank)
    result, grads = {}, {}
    for use_no_sync in (False, True):
        model = wrap_ddp(digits_mlp(), x.device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        name = "with no_sync" if use_no_sync else "without no_sync"
        accumulation_step(model, optimizer, micro, use_no_sync)  # DDP settles its buckets in the first backward
        result[name] = allreduce_traffic(lambda: accumulation_step(model, optimizer, micro, use_no_sync))
        grads[name] = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    result["max_abs_gradient_difference"] = (grads["with no_sync"] - grads["without no_sync"]).abs().max().item()
    result["max_abs_gradient"] = grads["without no_sync"].abs().max().item()
    return result


def measure_no_sync(x: torch.Tensor, y: torch.Tensor, *, accumulation: int, per_rank: int, rounds: int,
                    repeats: int) -> dict:
    """Per round, with and without no_sync(): optimizer step time, and the buckets' all-reduce time summed."""
    micro = micro_batches(x, y, accumulation, per_rank)
    runs = {}
    for use_no_sync in (False, True):
        model, timer = wrap_ddp(digits_mlp(), x.device), CommTimer()
        model.register_comm_hook(timer, timed_allreduce_hook)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        runs["with no_sync" if use_no_sync else "without no_sync"] = {
            "timer": timer, "step": lambda m=model, o=optimizer, u=use_no_sync: accumulation_step(m, o, micro, u),
            "summed_allreduce_s": [], "step_s": []}
    for round_index in range(rounds):
        for name in round_order(runs, round_index):
            run = runs[name]
            before = run["timer"].seconds
            run["step_s"].append(median_time_s(run["step"], repeats))
            run["summed_allreduce_s"].append((run["timer"].seconds - before) / repeats)
    return {name: {"step_s": r["step_s"], "summed_allreduce_s": r["summed_allreduce_s"]} for name, r in runs.items()}


def measure_scaling(x: torch.Tensor, y: torch.Tensor, *, per_rank: int, rounds: int, repeats: int) -> dict:
    """Per round, in alternating order: DDP with 1 thread per rank (per_rank images each), and on rank 0 alone
    1 process with all the ranks' threads (the global batch), 1 thread at per_rank, and its forward pass only.

    While rank 0 times alone, the other ranks wait at the next DDP step's barrier (without using a core).
    """
    world, rank = dist.get_world_size(), dist.get_rank()
    ddp = wrap_ddp(digits_mlp(), x.device)
    ddp_opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    single = digits_mlp().to(x.device)
    single_opt = torch.optim.SGD(single.parameters(), lr=0.05, momentum=0.9)
    mine, full, half = slice(rank * per_rank, (rank + 1) * per_rank), slice(0, world * per_rank), slice(0, per_rank)
    threads = torch.get_num_threads()

    def alone(batch: slice, thread_count: int, step: bool = True) -> float | None:
        """Rank 0's time for one process on its own; None on the other ranks."""
        if rank != 0:
            return None
        torch.set_num_threads(thread_count)
        with torch.set_grad_enabled(step):
            work = (lambda: train_step(single, single_opt, x[batch], y[batch])) if step else (lambda: single(x[batch]))
            seconds = median_time_s(work, repeats, together=False)
        torch.set_num_threads(threads)
        return seconds

    variants = {f"{world} processes x {threads} thread (DDP)": lambda: median_time_s(
                    lambda: train_step(ddp, ddp_opt, x[mine], y[mine]), repeats),
                f"1 process x {world * threads} threads": lambda: alone(full, world * threads),
                "1 process x 1 thread, per-rank batch": lambda: alone(half, threads),
                "1 process x 1 thread, forward only": lambda: alone(half, threads, step=False)}
    times = {name: [] for name in variants}
    for round_index in range(rounds):
        for name in round_order(variants, round_index):
            seconds = variants[name]()
            if seconds is not None:
                times[name].append(seconds)
    return {"threads_per_process": threads, "step_s": times}


def accumulation_data(x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's images for one accumulated optimizer step: args.accumulation micro-batches."""
    rank, per_step = dist.get_rank(), args.accumulation * args.per_rank_batch
    mine = slice(rank * per_step, (rank + 1) * per_step)
    return x[mine], y[mine]


def checks(x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> dict:
    """DDP against one process over args.steps steps, and no_sync()'s all-reduce traffic and gradients."""
    result = {"correctness": check_correctness(x, y, steps=args.steps, per_rank=args.per_rank_batch)}
    say(f"rank {dist.get_rank()}: {args.steps} DDP steps done")
    result["no_sync"] = check_no_sync(*accumulation_data(x, y, args), accumulation=args.accumulation,
                                      per_rank=args.per_rank_batch)
    return result


def knob_results(x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> dict:
    """On this rank's batch: the knobs' step times and traffic, bf16's rounding, and the bucket timelines."""
    rank = dist.get_rank()
    shard = slice(rank * args.per_rank_batch, (rank + 1) * args.per_rank_batch)
    return {"knobs": measure_knobs(x[shard], y[shard], rounds=args.rounds, repeats=args.repeats),
            "bf16_rounding": bf16_rounding(x[shard], y[shard]),
            "bucket_timeline": bucket_timelines(x[shard], y[shard])}


def timings(x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> dict:
    """Every timed part, in this order: scaling, the knobs (with the bucket timelines), no_sync()."""
    timing = dict(per_rank=args.per_rank_batch, rounds=args.rounds, repeats=args.repeats)
    result = {"scaling": measure_scaling(x, y, **timing), **knob_results(x, y, args),
              "no_sync_timing": measure_no_sync(*accumulation_data(x, y, args), accumulation=args.accumulation,
                                                **timing),
              "parameters": sum(p.numel() for p in digits_mlp().parameters())}
    say(f"rank {dist.get_rank()}: timing rounds done")
    return result


def main() -> None:
    """Run in each process torchrun starts: check DDP against one process, then time it and its knobs."""
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--per-rank-batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--accumulation", type=int, default=4)
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--skip-timing", action="store_true", help="only the correctness checks (for tests)")
    only.add_argument("--only-knobs", action="store_true", help="only the knobs and the bucket timelines (for tests)")
    args = parser.parse_args()
    with process_group(args.device) as device:
        rank, world = dist.get_rank(), dist.get_world_size()
        x, y = (t.to(device) for t in digits_tensors())
        say(f"rank {rank} of {world}: backend {dist.get_backend()}, {torch.get_num_threads()} thread(s), "
            f"{len(x) // world} of {len(x)} training images per epoch")
        result = {"world_size": world, "settings": {name: getattr(args, name) for name in
                                                    ("steps", "per_rank_batch", "rounds", "repeats", "accumulation")}}
        if args.only_knobs:
            result |= knob_results(x, y, args)
        else:
            result |= checks(x, y, args)
            if not args.skip_timing:
                result |= timings(x, y, args)
        write_result(result, args.result)


if __name__ == "__main__":
    main()
