"""Tensor-parallel job: a transformer's MLP block split over the ranks, checked and its traffic counted.

    python -m torch.distributed.run --standalone --nproc-per-node=2 \\
        -m helpers.ch05_distributed.jobs.tensor_parallel --result out.json --batch 64

The block is Linear(d, 4d) -> GELU -> Linear(4d, d). parallelize_module makes the first layer
column-parallel (each rank keeps a slice of its output features) and the second row-parallel (each rank
keeps the matching slice of its input features). GELU acts on each element, so it runs on the local
slice; only the second layer's partial outputs must be summed over the ranks (an all-reduce in forward),
and in backward the partial gradients of the block's input (one more all-reduce).

1. Correctness: output, input gradient and full weight gradients against the unsharded block on each rank.
2. What each rank stores: the local shape of every parameter.
3. Traffic: the collectives of one forward and one backward, read from the profiler's trace, against the
   one all-reduce of every gradient that data parallelism (DDP) would send for the same block. TP's bytes
   grow with the activations (--batch x d), DDP's with the parameters only.
4. Step time of the TP block against the unsharded block, in interleaved rounds (optional).
"""

import contextlib
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module
from torch.profiler import ProfilerActivity, profile

from helpers.core.rounds import round_order
from helpers.ch05_distributed.jobs.common import job_parser, median_time_s, process_group, say, write_result
from helpers.ch05_distributed.jobs.traces import TRACE_DTYPES, trace_events

FUNCTIONAL_COLLECTIVE = "_c10d_functional::"


def mlp_block(dim: int, *, seed: int = 0) -> nn.Sequential:
    """A transformer's MLP block, dim -> 4 dim -> GELU -> dim, with the same initial weights on every rank (seeded)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))


def tensor_parallel_block(dim: int, mesh: DeviceMesh) -> nn.Module:
    """The block split over the mesh: layer "0" column-parallel, layer "2" row-parallel.

    parallelize_module replaces each weight by a DTensor and keeps this rank's piece of rank 0's weights
    (src_data_rank=0); the input and output of the block stay whole (replicated) on every rank.
    """
    return parallelize_module(mlp_block(dim).to(mesh.device_type), mesh,
                              {"0": ColwiseParallel(), "2": RowwiseParallel()})


def stored_shapes(block: nn.Module) -> dict[str, dict]:
    """Each parameter's full shape, the shape this rank stores, and its placement (Shard(dim) or Replicate)."""
    shapes = {}
    for name, param in block.named_parameters():
        shapes[name] = {"full": list(param.shape), "local": list(param.to_local().shape),
                        "placement": repr(param.placements[0])}
    return shapes


def is_functional_collective(name: str) -> bool:
    """Whether a trace record is a functional collective itself, not its wait_tensor or a private helper of the
    namespace (torch 2.11 also records _c10d_functional::_wrap_tensor_autograd)."""
    op = name.removeprefix(FUNCTIONAL_COLLECTIVE)
    return name.startswith(FUNCTIONAL_COLLECTIVE) and op != "wait_tensor" and not op.startswith("_")


def collectives_in(events: list[dict]) -> list[dict]:
    """Each collective in a trace, in order: kind, shape and dtype of the tensor sent, and its bytes.

    DTensor launches its collectives as functional collectives (_c10d_functional::all_reduce, ...), which
    the training thread records with the tensor's shape and dtype; each then calls a c10d op
    (c10d::allreduce_, ...). Equal counts of the two show that no collective went around DTensor.
    """
    calls = sorted((e for e in events if is_functional_collective(e.get("name", ""))), key=lambda e: e["ts"])
    launches = [e for e in events if e.get("name", "").startswith("c10d::")]
    if len(calls) != len(launches):
        raise RuntimeError(f"the trace shows {len(calls)} functional collectives but {len(launches)} c10d "
                           "launches: some collective did not go through DTensor")
    found = []
    for call in calls:
        shape, dtype = call["args"]["Input Dims"][0], call["args"]["Input type"][0]
        found.append({"kind": call["name"].removeprefix(FUNCTIONAL_COLLECTIVE), "shape": shape, "dtype": dtype,
                      "bytes": torch.Size(shape).numel() * TRACE_DTYPES[dtype].itemsize})
    return found


def described(calls: list[dict]) -> str:
    """Collectives in words: "all_reduce [64, 256] float (65536 bytes)", comma-separated; "nothing" for none."""
    return ", ".join(f"{c['kind']} {c['shape']} {c['dtype']} ({c['bytes']} bytes)" for c in calls) or "nothing"


@contextlib.contextmanager
def recorded_collectives() -> Iterator[list[dict]]:
    """Profile the code in the with-block; on leaving it, the list holds the collectives that code launched.

    The code must wait for its collectives before the block ends. gloo runs them on a thread of its own,
    and stopping the profiler while one was still running corrupted the heap in torch 2.14 (an abort,
    "malloc_consolidate(): unaligned fastbin chunk detected", in about 1 run in 5).
    """
    found: list[dict] = []
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        yield found
    found += collectives_in(trace_events(prof))


def mean_square(output: torch.Tensor) -> torch.Tensor:
    """The loss of every step here; computing it waits for the all-reduce of a TP block's output."""
    return output.square().mean()


def traced_step(block: nn.Module, x: torch.Tensor) -> tuple[dict[str, list[dict]], torch.Tensor, torch.Tensor]:
    """One forward and one backward, each under the profiler: their collectives, the output, the input's gradient."""
    x = x.clone().requires_grad_(True)
    with recorded_collectives() as forward_calls:
        output = block(x)
        loss = mean_square(output)
    with recorded_collectives() as backward_calls:
        loss.backward()
    return {"forward": forward_calls, "backward": backward_calls}, output, x.grad


def difference(ours: torch.Tensor, reference: torch.Tensor) -> dict:
    """Largest absolute difference between two tensors, and the reference's largest absolute value (its scale)."""
    return {"max_abs_diff": (ours - reference).abs().max().item(), "max_abs": reference.abs().max().item()}


def compare_with_whole(tp_block: nn.Module, output: torch.Tensor, x_grad: torch.Tensor, x: torch.Tensor,
                       dim: int) -> dict[str, dict]:
    """The TP step's output, input gradient and full parameter gradients against the whole block's on this rank.

    DTensor.full_tensor() gathers a sharded gradient from the ranks. Each difference is the largest over the ranks.
    """
    whole, x_whole = mlp_block(dim).to(x.device), x.clone().requires_grad_(True)
    whole_output = whole(x_whole)
    mean_square(whole_output).backward()
    pairs = {"output": (output, whole_output), "input gradient": (x_grad, x_whole.grad)}
    for (name, param), reference in zip(tp_block.named_parameters(), whole.parameters()):
        pairs[f"{name} gradient"] = (param.grad.full_tensor(), reference.grad)
    differences = {name: difference(ours, reference) for name, (ours, reference) in pairs.items()}
    largest = torch.tensor([d["max_abs_diff"] for d in differences.values()], dtype=torch.float64, device=x.device)
    dist.all_reduce(largest, op=dist.ReduceOp.MAX)
    for entry, value in zip(differences.values(), largest.tolist()):
        entry["max_abs_diff"] = value
    return differences


def time_steps(tp_block: nn.Module, whole: nn.Module, x: torch.Tensor, *, rounds: int,
               repeats: int) -> dict[str, list[float]]:
    """Median forward + backward time per round: the TP block (ranks together) and the whole block on each rank."""
    def step(block: nn.Module) -> None:
        block.zero_grad(set_to_none=True)
        mean_square(block(x)).backward()
    variants = {"tensor parallel": lambda: step(tp_block), "whole block on each rank": lambda: step(whole)}
    for run in variants.values():  # warm-up
        run()
    times = {name: [] for name in variants}
    for round_index in range(rounds):
        for name in round_order(variants, round_index):
            times[name].append(median_time_s(variants[name], repeats))
    return times


def traffic_summary(calls: dict[str, list[dict]], whole: nn.Module, batch: int, dim: int) -> dict:
    """TP's bytes per training step (forward + backward) against DDP's, and the batch at which they are equal.

    DDP sends one all-reduce of every gradient: its bytes grow with the parameters, TP's with batch x d.
    """
    parameters = sum(p.numel() for p in whole.parameters())
    element_bytes = next(whole.parameters()).element_size()
    tp_bytes = sum(c["bytes"] for c in calls["forward"] + calls["backward"])
    return {"parameters": parameters, "activation_bytes": batch * dim * element_bytes, "tp_bytes_per_step": tp_bytes,
            "ddp_bytes_per_step": parameters * element_bytes,
            "equal_at_batch": parameters * element_bytes * batch / tp_bytes}


def main() -> None:
    """Run in each process torchrun starts: split the block, check it, count its traffic; rank 0 writes the result."""
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="rows of the input (tokens: batch x sequence length)")
    parser.add_argument("--dim", type=int, default=256, help="the block's width d (hidden layer: 4d)")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds (0: no timing)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.batch < 1 or args.dim < 1 or args.rounds < 0 or args.repeats < 1:
        parser.error("--batch, --dim and --repeats must be at least 1, --rounds at least 0")
    with process_group(args.device) as device:
        rank, world = dist.get_rank(), dist.get_world_size()
        if 4 * args.dim % world:
            raise ValueError(f"the hidden width 4 x {args.dim} must split evenly over {world} ranks")
        mesh = init_device_mesh(device.type, (world,))
        tp_block = tensor_parallel_block(args.dim, mesh)
        # the same input on every rank (same seed): each rank needs the whole batch to compute its slice
        x = torch.randn(args.batch, args.dim, generator=torch.Generator().manual_seed(1)).to(device)
        calls, output, x_grad = traced_step(tp_block, x)
        differences = compare_with_whole(tp_block, output, x_grad, x, args.dim)
        say(f"rank {rank}: forward sent {described(calls['forward'])}; backward sent {described(calls['backward'])}")
        whole = mlp_block(args.dim).to(device)
        result = {"world_size": world, "batch": args.batch, "dim": args.dim,
                  "correctness": differences, "stored": stored_shapes(tp_block), "collectives": calls,
                  "traffic": traffic_summary(calls, whole, args.batch, args.dim)}
        if args.rounds:
            result["step_s"] = time_steps(tp_block, whole, x, rounds=args.rounds, repeats=args.repeats)
            say(f"rank {rank}: {args.rounds} timing rounds done")
        write_result(result, args.result)


if __name__ == "__main__":
    main()
