"""FSDP2 job: what each rank holds when the model is sharded with fully_shard, and what a step costs.

    python -m torch.distributed.run --standalone --nproc-per-node=2 \\
        -m helpers.ch05_distributed.jobs.fsdp --result out.json

Each Linear layer and then the whole model are wrapped with torch.distributed.fsdp.fully_shard: every
parameter becomes a DTensor sharded on dimension 0, so each rank stores 1/N of it. Forward gathers a
layer's full weight just before it is used (all-gather), backward reduce-scatters the gradients, and
Adam's two moment buffers exist only for the local shard.
"""

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

from helpers.core.rounds import round_order
from helpers.workload.digits import digits_tensors
from helpers.ch05_distributed.jobs.common import (
    digits_mlp, job_parser, median_time_s, process_group, say, wrap_ddp, write_result,
)
from helpers.ch05_distributed.jobs.ddp import train_step


def local_bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes this rank stores for these tensors (a DTensor counts only its local shard)."""
    local = [t.to_local() if isinstance(t, DTensor) else t for t in tensors]
    return sum(t.numel() * t.element_size() for t in local)


def sharded_model(hidden: int, depth: int, device: torch.device) -> nn.Module:
    """The digits MLP with each Linear sharded, then the root (FSDP2: fully_shard per layer and on the model)."""
    model = digits_mlp(hidden, depth).to(device)
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer)
    return fully_shard(model)


def main() -> None:
    """Run in each process torchrun starts: shard the MLP with fully_shard, measure what each rank holds and a step."""
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with process_group(args.device) as device:
        rank, world = dist.get_rank(), dist.get_world_size()
        x, y = (t.to(device) for t in digits_tensors())
        mine = slice(rank * 64, (rank + 1) * 64)
        models = {"FSDP2": sharded_model(args.hidden, args.depth, device),
                  "DDP": wrap_ddp(digits_mlp(args.hidden, args.depth), device)}
        optimizers = {name: torch.optim.Adam(m.parameters(), lr=1e-3) for name, m in models.items()}
        times = {name: [] for name in models}
        for round_index in range(args.rounds):
            for name in round_order(models, round_index):
                times[name].append(median_time_s(
                    lambda: train_step(models[name], optimizers[name], x[mine], y[mine], set_to_none=False),
                    args.repeats))
        fsdp, optimizer = models["FSDP2"], optimizers["FSDP2"]
        params = list(fsdp.parameters())
        state = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.dim() > 0]
        largest_layer = max(sum(p.numel() * p.element_size() for p in layer.parameters())
                            for layer in digits_mlp(args.hidden, args.depth) if isinstance(layer, nn.Linear))
        result = {"world_size": world, "parameters": sum(p.numel() for p in params),
                  "is_dtensor": all(isinstance(p, DTensor) for p in params), "placements": str(params[0].placements),
                  "parameter_bytes": local_bytes(params), "gradient_bytes": local_bytes([p.grad for p in params]),
                  "optimizer_bytes": local_bytes(state), "largest_gathered_layer_bytes": largest_layer,
                  "step_s": times}
        say(f"rank {rank} of {world}: {result['parameter_bytes'] / 1e6:.2f} MB of parameters held, "
            f"placements {result['placements']}")
        write_result(result, args.result)


if __name__ == "__main__":
    main()
