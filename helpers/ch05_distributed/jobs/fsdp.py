"""FSDP2 job: what each rank holds when the model is sharded with fully_shard, what a step costs and where it goes.

    python -m torch.distributed.run --standalone --nproc-per-node=2 \\
        -m helpers.ch05_distributed.jobs.fsdp --result out.json

Each Linear layer and then the whole model are wrapped with torch.distributed.fsdp.fully_shard on a DeviceMesh
built from the job's own device: every parameter becomes a DTensor sharded on dimension 0, so each rank stores
1/N of it. Forward all-gathers a layer's full weight just before it is used, backward reduce-scatters the
gradients, and Adam's two moment buffers exist only for the local shard.

1. Step time, in interleaved rounds: DDP; FSDP2 (reshard_after_forward=True, ZeRO-3-like: each layer frees its
   gathered weights after forward, so backward all-gathers them again); FSDP2 with reshard_after_forward=False
   (ZeRO-2-like: it keeps them from forward to backward).
2. Where a step's time goes, for each of them and for FSDP2 with bf16 parameters (MixedPrecisionPolicy), read
   from the profiler's trace of the shorter of two steps: collectives by kind (calls, bytes, time), FSDP2's
   copies around them, Adam, and the rest.
3. Mixed precision: the dtypes FSDP2 stores, gathers and computes with.
4. FSDP2's parameters against DDP's after a few Adam steps from the same seed on the same batches.
5. What each rank holds, accounted from the sizes of the DTensor shards (arithmetic, not measured memory).

With L Linear layers (depth + 1) and N > 1 ranks, a step of FSDP2 makes L all-gathers in forward, L more in
backward with reshard_after_forward=True and none with False, and L reduce-scatters in backward. The root module
holds no parameter of its own, so it adds none. With 1 rank FSDP2 makes no collective at all.
"""

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor
from torch.profiler import ProfilerActivity, profile, record_function

from helpers.core.rounds import round_order
from helpers.core.validate import require_int
from helpers.workload.digits import digits_tensors
from helpers.ch05_distributed.jobs.traces import TRACE_DTYPES, covered, trace_events
from helpers.ch05_distributed.jobs.common import (
    digits_mlp, job_parser, median_time_s, process_group, say, train_step, wrap_ddp, write_result,
)
from helpers.ch05_distributed.jobs.ddp import rank_batches

PER_RANK = 64  # images per rank in every step
BF16_POLICY = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
VARIANTS = ("DDP", "FSDP2", "FSDP2, reshard_after_forward=False", "FSDP2, bf16 param_dtype")
TIMED, MIXED_PRECISION = VARIANTS[:3], VARIANTS[3]  # bf16 is profiled for its dtypes and bytes, not timed (time budget)
STEP_RECORD = "train_step"  # the record_function around the profiled step
# Steps profiled per variant, in one profiler session; the shorter is reported, so one descheduled step cannot decide
# the table. Each profiled step leaves a few MB of fragmented heap behind in the process, so the job keeps to two.
PROFILED_STEPS = 2
# The training thread's records of the collectives it launches (their kind), as torch 2.14's trace names them.
LAUNCH_KINDS = {"c10d::_allgather_base_": "all_gather", "c10d::_reduce_scatter_base_": "reduce_scatter",
                "c10d::allreduce_": "all_reduce"}
# FSDP2's copies around its collectives: the shards into the all-gather's input buffer (all_gather_copy_in, and
# with a bf16 param_dtype the cast before it, _foreach_copy_), the gathered buffer out into each parameter
# (split_with_sizes_copy), and the unsharded gradients into the reduce-scatter's input buffer (chunk_cat).
COPY_RECORDS = ("fsdp::all_gather_copy_in", "aten::_foreach_copy_", "fsdp::split_with_sizes_copy", "fsdp::chunk_cat")
def dtype_name(dtype: torch.dtype) -> str:
    """A dtype's name without its module: 'float32' for torch.float32."""
    return str(dtype).removeprefix("torch.")


def data_parallel_mesh(device: torch.device) -> DeviceMesh:
    """A 1-D mesh over all ranks on the job's own device type.

    Without mesh=, fully_shard builds a mesh on torch's accelerator: CUDA on any machine with a visible GPU,
    even for this CPU job on gloo, and it would move the parameters there while the labels stay on the CPU.
    """
    return init_device_mesh(device.type, (dist.get_world_size(),))


def sharded_model(hidden: int, depth: int, mesh: DeviceMesh, *, reshard_after_forward: bool = True,
                  mp_policy: MixedPrecisionPolicy = MixedPrecisionPolicy()) -> nn.Module:
    """The digits MLP with each Linear sharded on mesh, then the root (FSDP2: fully_shard per layer and on the model).

    reshard_after_forward=True frees each layer's gathered weights after its forward (backward gathers them again);
    False keeps them until backward. mp_policy sets the dtype of the gathered weights and of the gradient reduction.
    """
    model = digits_mlp(hidden, depth)
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh, reshard_after_forward=reshard_after_forward, mp_policy=mp_policy)
    return fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward, mp_policy=mp_policy)


def variant_models(hidden: int, depth: int, device: torch.device, mesh: DeviceMesh) -> dict[str, nn.Module]:
    """The same MLP (same seed) under DDP and under each FSDP2 setting the job compares, named as in VARIANTS."""
    models = (wrap_ddp(digits_mlp(hidden, depth), device), sharded_model(hidden, depth, mesh),
              sharded_model(hidden, depth, mesh, reshard_after_forward=False),
              sharded_model(hidden, depth, mesh, mp_policy=BF16_POLICY))
    return dict(zip(VARIANTS, models, strict=True))


def local_bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes this rank stores for these tensors (a DTensor counts only its local shard)."""
    local = [t.to_local() if isinstance(t, DTensor) else t for t in tensors]
    return sum(t.numel() * t.element_size() for t in local)


def accounted_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Parameter, gradient and Adam-state bytes of this rank's shards: the shards' sizes, not measured memory."""
    params = list(model.parameters())
    state = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.dim() > 0]
    return {"parameters": local_bytes(params), "gradients": local_bytes([p.grad for p in params]),
            "optimizer_state": local_bytes(state)}


def profiled_events(step: Callable[[], object], calls: int) -> list[dict]:
    """The complete events of the profiler's trace of `calls` calls of step(), each in record_function(STEP_RECORD).

    gloo's barrier after each call waits for every collective before it, so the communication threads' records
    of a call's collectives are complete before the next call starts and when the profiler stops.
    """
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(calls):
            with record_function(STEP_RECORD):
                step()
            dist.barrier()
    return [e for e in trace_events(prof) if e.get("ph") == "X"]


def launch_elements(event: dict) -> tuple[int, int]:
    """(elements of the full tensor, elements handed to gloo) of a collective launch record, from its shapes.

    _allgather_base_(output, input): gathers this rank's shard (input) into the full tensor (output).
    _reduce_scatter_base_(output, input): reduces the full gradients (input) into this rank's shard (output).
    allreduce_([tensors]): reduces one tensor (DDP's bucket) in place.
    """
    dims = event["args"]["Input Dims"]
    if event["name"] == "c10d::allreduce_":
        elements = torch.Size(dims[0][0]).numel()
        return elements, elements
    full = dims[0] if event["name"] == "c10d::_allgather_base_" else dims[1]
    return torch.Size(full).numel(), torch.Size(dims[1]).numel()


def pair_with_sends(launches: list[dict], sends: list[dict]) -> list[tuple[dict, dict]]:
    """Each launch with the communication thread's record of it: the first later record with the same input size.

    gloo runs a reduce-scatter as an all-reduce of a copy of the full tensor (a gloo:all_reduce record), then
    copies this rank's part out (ProcessGroupGloo::reduce_scatter_tensor_coalesced): on the wire it costs an
    all-reduce. Each record's size is the launch's input: the shard for an all-gather, the full tensor otherwise.
    """
    pending, pairs = sorted(sends, key=lambda e: e["ts"]), []
    for launch in sorted(launches, key=lambda e: e["ts"]):
        sent = launch_elements(launch)[1]
        match = next((s for s in pending if s["ts"] >= launch["ts"]
                      and torch.Size(s["args"]["Input Dims"][0]).numel() == sent), None)
        if match is None:
            raise RuntimeError(f"no communication-thread record matches {launch['name']} at {launch['ts']} us: "
                               "the profiler's trace format may have changed")
        pending.remove(match)
        pairs.append((launch, match))
    return pairs


def collectives_by_kind(pairs: list[tuple[dict, dict]]) -> dict[str, dict]:
    """Per kind of collective: calls, bytes of the full tensors, the largest one, dtype, summed time.

    bytes: what an all-gather produces, what a reduce-scatter or an all-reduce reduces (a ring sends (N-1)/N of
    it for an all-gather or reduce-scatter, 2(N-1)/N for an all-reduce). time_s: the communication threads'
    records summed, from the start of each collective to its end, waiting for the other ranks included.
    """
    kinds: dict[str, dict] = {}
    for launch, send in pairs:
        dtype = TRACE_DTYPES[send["args"]["Input type"][0]]
        size = launch_elements(launch)[0] * dtype.itemsize
        entry = kinds.setdefault(LAUNCH_KINDS[launch["name"]], {"calls": 0, "bytes": 0, "largest_bytes": 0,
                                                                "dtype": dtype_name(dtype), "time_s": 0.0})
        entry["calls"] += 1
        entry["bytes"] += size
        entry["largest_bytes"] = max(entry["largest_bytes"], size)
        entry["time_s"] += send["dur"] / 1e6
    return kinds


def step_breakdown(events: list[dict], step: dict) -> dict:
    """Where a profiled step's wall time went: parts that add up to step_s, each counting only time not yet counted.

    step is one STEP_RECORD event of the trace whose complete events are `events`.
    step_s: its duration, profiler overhead included (so longer than a timed step).
    collectives_s: the time during which at least one collective was under way, from its launch on the training
        thread to its end on a communication thread. gloo runs collectives on threads of their own, so this is wall
        time, not a sum: the training thread may compute meanwhile (DDP's backward does; FSDP2 on the CPU waits).
    copies_s: FSDP2's copies around its collectives (COPY_RECORDS), outside those intervals.
    optimizer_s: Adam's step (on DTensor shards for FSDP2, on plain tensors for DDP).
    rest_s: everything else: forward and backward compute, autograd, FSDP2's and DDP's hooks, zeroing the gradients.
    collectives: per kind, from the launch records and the communication threads' records (collectives_by_kind).
    """
    start, end = step["ts"], step["ts"] + step["dur"]
    inside = [e for e in events if start <= e["ts"] < end]
    training = [e for e in inside if e["tid"] == step["tid"]]
    sends = [e for e in inside if e["tid"] != step["tid"] and e["name"].startswith("gloo:")]
    pairs = pair_with_sends([e for e in training if e["name"] in LAUNCH_KINDS], sends)
    parts = {"collectives_s": [(launch["ts"], min(send["ts"] + send["dur"], end)) for launch, send in pairs],
             "copies_s": [(e["ts"], e["ts"] + e["dur"]) for e in training if e["name"] in COPY_RECORDS],
             "optimizer_s": [(e["ts"], e["ts"] + e["dur"]) for e in training
                             if e["name"].startswith("Optimizer.step#")]}
    breakdown, counted = {"step_s": step["dur"] / 1e6}, []
    for part, spans in parts.items():
        before = covered(counted)
        counted += spans
        breakdown[part] = (covered(counted) - before) / 1e6
    return breakdown | {"rest_s": (step["dur"] - covered(counted)) / 1e6,
                        "collectives": collectives_by_kind(pairs)}


def typical_breakdown(step: Callable[[], object]) -> dict:
    """step_breakdown of the shorter of PROFILED_STEPS calls of step(), each profiled on its own (one step's trace
    at a time: a trace parsed into Python objects costs each rank tens of MB)."""
    breakdowns = []
    for _ in range(PROFILED_STEPS):
        events = profiled_events(step, 1)
        breakdowns.append(step_breakdown(events, next(e for e in events if e["name"] == STEP_RECORD)))
        del events
    return min(breakdowns, key=lambda b: b["step_s"])


def forward_weight(model: nn.Sequential, step: Callable[[], object]) -> dict:
    """The first Linear's weight as its forward sees it during one call of step(): dtype, shape, DTensor or not.

    A forward pre-hook registered after fully_shard runs after FSDP2's own, which has gathered the weight.
    """
    seen = {}

    def look(module: nn.Module, args: tuple) -> None:
        """Record the weight the layer is about to compute with."""
        seen.update(dtype=dtype_name(module.weight.dtype), shape=list(module.weight.shape),
                    is_dtensor=isinstance(module.weight, DTensor))
    handle = model[0].register_forward_pre_hook(look)
    try:
        step()
    finally:
        handle.remove()
    return seen


def mixed_precision(model: nn.Sequential, step: Callable[[], object]) -> dict:
    """What FSDP2 with BF16_POLICY stores (sharded parameters and gradients) and what forward computes with."""
    in_forward = forward_weight(model, step)
    weight = model[0].weight
    return {"param_dtype": dtype_name(BF16_POLICY.param_dtype), "reduce_dtype": dtype_name(BF16_POLICY.reduce_dtype),
            "sharded_parameter_dtype": dtype_name(weight.dtype),
            "sharded_gradient_dtype": dtype_name(weight.grad.dtype),
            "sharded_weight_shape": list(weight.to_local().shape), "forward_weight_dtype": in_forward["dtype"],
            "forward_weight_shape": in_forward["shape"], "forward_weight_is_dtensor": in_forward["is_dtensor"]}


def trained_parameters(model: nn.Module, batches: list[list[int]], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Adam over the index batches, then every parameter in one vector (an FSDP2 model's gathered in full)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for batch in batches:
        train_step(model, optimizer, x[batch], y[batch])
    full = [p.full_tensor() if isinstance(p, DTensor) else p for p in model.parameters()]
    return torch.cat([p.detach().cpu().reshape(-1) for p in full])


def compare_with_ddp(x: torch.Tensor, y: torch.Tensor, *, hidden: int, depth: int, mesh: DeviceMesh,
                     steps: int) -> dict:
    """FSDP2 against DDP after `steps` Adam steps from the same seed on the same batches, in fp32.

    The floor: DDP against DDP with each rank's images in reverse order, the same sums rounded in another order.
    """
    require_int("steps", steps, minimum=1)
    batches = rank_batches(len(x), rank=dist.get_rank(), world=dist.get_world_size(), per_rank=PER_RANK, steps=steps)
    fsdp = trained_parameters(sharded_model(hidden, depth, mesh), batches, x, y)
    ddp = trained_parameters(wrap_ddp(digits_mlp(hidden, depth), x.device), batches, x, y)
    reordered = trained_parameters(wrap_ddp(digits_mlp(hidden, depth), x.device), [b[::-1] for b in batches], x, y)
    return {"adam_steps": steps, "max_abs_diff_fsdp2_vs_ddp": (fsdp - ddp).abs().max().item(),
            "max_abs_diff_reordered_ddp": (reordered - ddp).abs().max().item(),
            "max_abs_parameter": ddp.abs().max().item()}


def time_variants(steps: dict[str, Callable[[], object]], *, rounds: int, repeats: int) -> dict[str, list[float]]:
    """Median seconds per step of each variant in every round, the variants in ABBA order (round_order)."""
    times = {name: [] for name in steps}
    for round_index in range(rounds):
        for name in round_order(steps, round_index):
            times[name].append(median_time_s(steps[name], repeats))
    return times


def main() -> None:
    """Run in each process torchrun starts: check FSDP2 against DDP, time the variants, profile steps of each."""
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds (8 or more give a 95%% interval)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed steps per variant in each round (1 keeps 8 rounds of 3 variants within ~15 s)")
    parser.add_argument("--check-steps", type=int, default=3, help="Adam steps of the FSDP2-against-DDP check")
    args = parser.parse_args()
    for name in ("hidden", "depth", "rounds", "repeats", "check_steps"):
        require_int(f"--{name.replace('_', '-')}", getattr(args, name), minimum=1)
    with process_group(args.device) as device:
        rank, world = dist.get_rank(), dist.get_world_size()
        mesh = data_parallel_mesh(device)
        x, y = (t.to(device) for t in digits_tensors())
        # first, while no other model exists: its three models are freed before the four timed ones are built
        check = compare_with_ddp(x, y, hidden=args.hidden, depth=args.depth, mesh=mesh, steps=args.check_steps)
        mine = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        models = variant_models(args.hidden, args.depth, device, mesh)
        optimizers = {name: torch.optim.Adam(m.parameters(), lr=1e-3) for name, m in models.items()}
        steps = {name: (lambda m=m, o=optimizers[name]: train_step(m, o, x[mine], y[mine], set_to_none=False))
                 for name, m in models.items()}
        result = {"world_size": world, "mesh_device_type": mesh.device_type, "fsdp2_vs_ddp": check,
                  "step_s": time_variants({name: steps[name] for name in TIMED}, rounds=args.rounds,
                                          repeats=args.repeats)}
        say(f"rank {rank}: {args.rounds} timing rounds done")
        # its first step is also the bf16 variant's warm-up
        result["mixed_precision"] = mixed_precision(models[MIXED_PRECISION], steps[MIXED_PRECISION])
        if device.type == "cpu":  # the collectives' records are gloo's; NCCL's run on CUDA streams, unseen here
            result["breakdown"] = {name: typical_breakdown(step) for name, step in steps.items()}
        fsdp = models["FSDP2"]
        params = list(fsdp.parameters())
        result |= {"parameters": sum(p.numel() for p in params),
                   "sharded_layers": sum(isinstance(m, nn.Linear) for m in fsdp.modules()),
                   "is_dtensor": all(isinstance(p, DTensor) for p in params), "placements": str(params[0].placements),
                   "accounted_bytes": accounted_bytes(fsdp, optimizers["FSDP2"])}
        say(f"rank {rank} of {world}: {result['accounted_bytes']['parameters'] / 1e6:.2f} MB of parameters held, "
            f"placements {result['placements']}, mesh on {mesh.device_type}")
        write_result(result, args.result)


if __name__ == "__main__":
    main()
